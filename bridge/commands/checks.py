"""What a configuration model cannot know: files, certificates, folders. Shared by ``run`` and
``check-config``, so that what ``check-config`` passes, ``run`` starts with (and the other way round).

Each problem is one line that starts with the key it is about (``hubject.client_cert: ...``), which lets
``bridge.config.load_config`` drop the lines of sections that are invalid anyway.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import ssl
from pathlib import Path

from lxml import etree

from bridge.config import BridgeConfig, Protocol, parse_listen
from oicp import client_ssl_context, soap_endpoint
from oicp.errors import ConfigurationError
from oicp.wsdl import SOAP_PATH, ServiceSchema

EXPIRY_WARNING_DAYS = 30


def certificate_expiry(path: Path) -> float | None:
    """The certificate's notAfter as epoch seconds, or None if it cannot be read."""
    try:
        decoded = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]  # stdlib's only PEM decoder
    except (OSError, ssl.SSLError, AttributeError):
        return None
    return float(ssl.cert_time_to_seconds(decoded["notAfter"]))


def check_soap(url: str) -> list[str]:
    """The SOAP transport's own needs: its shipped WSDL/XSD load offline, and the endpoint it will call."""
    try:
        ServiceSchema.load()
    except (OSError, etree.LxmlError) as exc:
        return [f"hubject.protocol = soap: the shipped WSDL/XSD cannot be loaded: {exc}"]
    endpoint = soap_endpoint(url)
    if not endpoint.endswith(SOAP_PATH) and "/ws/" not in endpoint:
        return [f"hubject.url: the SOAP endpoint would be {endpoint}, which is not a /ws/ service path"]
    return []


def store_problems(path: Path) -> list[str]:
    """The store file can be created (or opened for writing) at ``path``."""
    target = path.resolve()
    if target.is_dir():
        return [f"store.url: {path} is a folder, not a database file"]
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return [f"store.url: cannot create {target.parent}: {ancestor} is a file, not a folder"]
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return [f"store.url: cannot create the store in {target.parent}: no write permission in {ancestor}"]
    if target.exists() and not os.access(target, os.R_OK | os.W_OK):
        return [f"store.url: {path} exists but cannot be read and written by this user"]
    return []


def postgres_problems() -> list[str]:
    """The PostgreSQL driver is installed (the URL itself is validated with the configuration; the server
    is not asked: check-config runs where the database may not be reachable)."""
    if importlib.util.find_spec("psycopg") is None:
        return ["store.url: postgresql:// needs the postgres extra: pip install 'oicp-bridge[postgres]'"]
    return []


def receiver_tls_problems(config: BridgeConfig) -> list[str]:
    receiver = config.ocpi.receiver
    if receiver.tls_cert is None or receiver.tls_key is None:
        return []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(receiver.tls_cert, receiver.tls_key)
    except (OSError, ssl.SSLError) as exc:
        return [f"ocpi.receiver.tls_cert: {receiver.tls_cert} / {receiver.tls_key} cannot be loaded: {exc}"]
    return []


def problems(config: BridgeConfig, now: float) -> list[str]:
    """Everything that stops the daemon from working; ``run`` refuses to start with any of them."""
    found: list[str] = []
    hubject = config.hubject
    if not config.operators:
        found.append("operators: no [[operators]] configured, so nothing would be pushed")
    if not hubject.url.startswith(("http://", "https://")):
        found.append(f"hubject.url: must start with https:// (got {hubject.url!r})")
    if hubject.protocol is Protocol.SOAP:
        found.extend(check_soap(hubject.url))
    if hubject.protocol is Protocol.REST and "/api/oicp" not in hubject.url:
        found.append(
            "hubject.url: the OICP REST URL ends in /api/oicp, e.g. https://service-qa.hubject.com/api/oicp"
        )
    if hubject.url.startswith("https://"):
        if hubject.client_cert is None:
            found.append("hubject.client_cert: Hubject requires mutual TLS; set client_cert and client_key")
        try:
            client_ssl_context(config.client_settings())
        except ConfigurationError as exc:
            found.append(f"hubject.client_cert: {exc}")
    if hubject.client_cert is not None:
        expiry = certificate_expiry(hubject.client_cert)
        if expiry is not None and expiry < now:
            found.append(f"hubject.client_cert: {hubject.client_cert} expired")
    found.extend(receiver_tls_problems(config))
    if config.store.is_postgres:
        found.extend(postgres_problems())
    else:
        found.extend(store_problems(config.store.sqlite_path))
    return found


def warnings(config: BridgeConfig, now: float) -> list[str]:
    """What works but is probably not meant (``check-config`` prints them, ``run`` logs them)."""
    found: list[str] = []
    hubject = config.hubject
    if hubject.url.startswith("http://"):
        found.append(f"hubject.url: plain http ({hubject.url}) is for local tests only")
    if hubject.client_cert is not None:
        expiry = certificate_expiry(hubject.client_cert)
        if expiry is not None and now <= expiry < now + EXPIRY_WARNING_DAYS * 86400:
            days = int((expiry - now) // 86400)
            found.append(f"hubject.client_cert: {hubject.client_cert} expires in {days} days")
    if not config.ocpi.receiver.tokens and not config.ocpi.sources:
        found.append(
            "ocpi: no pre-shared receiver tokens and no sources; only CPOs that register through "
            "the credentials module can send status"
        )
    if config.admin.token is None:
        found.append("admin.token: not set, so POST /resync (and 'oicp-bridge resync') is disabled")
    if not is_loopback(config.admin.listen):
        found.append(
            f"admin.listen: {config.admin.listen} is not a loopback address: /metrics and /status are "
            "served without authentication to whoever reaches it; publish it only on a private network"
        )
    return found


def is_loopback(listen: str) -> bool:
    host, _ = parse_listen(listen)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: assume the worst
        return False
