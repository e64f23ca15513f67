"""The TLS context for talking to Hubject: mutual TLS, hostname verification always on.

OICP 2.3 CPO 01 (Communication Paradigms): partners authenticate with a client certificate issued for
Hubject's environment. Server verification is never switched off; a private CA (tests, the simulator)
is given as ``ca_cert``.
"""

from __future__ import annotations

import ssl

from oicp._client import ClientSettings
from oicp.errors import ConfigurationError


def client_ssl_context(settings: ClientSettings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(settings.ca_cert) if settings.ca_cert else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"CA bundle {settings.ca_cert} cannot be used: {exc}") from exc
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.client_cert is not None:
        password = settings.key_password.get_secret_value() if settings.key_password else None
        try:
            context.load_cert_chain(settings.client_cert, settings.client_key, password=password)
        except (OSError, ssl.SSLError) as exc:
            # The message never includes the password.
            raise ConfigurationError(
                f"client certificate {settings.client_cert} / key {settings.client_key} cannot be loaded: "
                f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc.args[-1] if exc.args else exc}"
            ) from exc
    elif settings.client_key is not None:
        raise ConfigurationError("client_key is set but client_cert is not")
    return context
