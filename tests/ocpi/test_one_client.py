"""One OCPI client in ``bridge/`` (issue 12 item 3, architecture review §4.5): one ``Authorization``
builder, one discovery routine, one reading of the response envelope; the poller does no HTTP itself.
The CPO simulator keeps its own client on purpose and is left out."""

from __future__ import annotations

import re
from pathlib import Path

import bridge
from bridge.ocpi import poller

BRIDGE = Path(bridge.__file__).parent


def sources() -> dict[str, str]:
    return {
        str(path.relative_to(BRIDGE)): path.read_text(encoding="utf-8")
        for path in BRIDGE.rglob("*.py")
        if "cpo_sim" not in path.parts
    }


def holding(pattern: str) -> set[str]:
    return {name for name, text in sources().items() if re.search(pattern, text)}


def test_one_header_builder() -> None:
    assert holding(r"b64encode\(") == {"ocpi/auth.py"}
    assert holding(r'f"Token \{') == {"ocpi/auth.py"}


def test_one_place_sends_ocpi_requests_and_reads_their_envelope() -> None:
    assert holding(r"\.request\(\s*method") == {"ocpi/client.py"}
    assert holding(r'get\("status_code"\)|\["status_code"\]') == {"ocpi/client.py"}
    assert holding(r"async def discover\(self, versions_url") == {"ocpi/client.py"}


def test_the_poller_does_no_http_itself() -> None:
    assert "aiohttp" not in vars(poller)  # only a type-checking import for the session it passes on
    assert "OcpiClient(" in Path(poller.__file__).read_text(encoding="utf-8")
