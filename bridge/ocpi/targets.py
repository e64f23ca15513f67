"""Which URLs the bridge agrees to fetch because another party named them (the credentials module).

A CPO chooses the versions URL the bridge then GETs. Without a check, a CPO holding a token could make
the bridge call its own loopback admin listener or a link-local metadata service and learn from the
answer what is there. ``check_target`` resolves the host and refuses loopback, link-local, unspecified
and multicast addresses unless the deployment allows them (a CPO backend on the same host). Private
networks stay allowed: CPO backends in the same cluster are a normal deployment.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from bridge.ocpi.errors import OcpiClientError


class TargetRefusedError(OcpiClientError):
    """The URL points at an address the bridge does not call for another party."""


def refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_link_local or address.is_unspecified or address.is_multicast


async def check_target(url: str, *, allow_local: bool) -> None:
    """Raise TargetRefusedError unless ``url`` is http(s) and every address its host resolves to may be
    called. A name that does not resolve is left to the request itself to fail."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefusedError(f"{url!r} is not an http(s) URL")
    if allow_local:
        return
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parts.port or 443, type=socket.SOCK_STREAM
            )
        except OSError:
            return
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        if refused(address):
            raise TargetRefusedError(
                f"{url}: {host} is {address}, a loopback or link-local address"
                " (set [ocpi.receiver] allow_local_credentials_urls to allow it)"
            )
