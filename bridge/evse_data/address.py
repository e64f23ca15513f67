"""OCPI address fields → OICP ``Address`` pieces (design §3.3). Pure (the IANA database is read-only data)."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# A house number: digits, an optional letter, an optional range or suffix ("12", "12a", "12-14", "7/2").
_NUMBER = r"\d{1,5}\s?[A-Za-z]?(?:\s?[-/]\s?\d{1,5}[A-Za-z]?)?"
_TRAILING = re.compile(rf"^(?P<street>.*[^\W\d_].*?)[\s,]+(?P<number>{_NUMBER})$")  # "Hauptstraße 12a"
_LEADING = re.compile(rf"^(?P<number>{_NUMBER})[\s,]+(?P<street>[^\W\d_].*)$")  # "12 rue de la Paix"
HOUSE_NUM_MAX = 10
STREET_MIN, STREET_MAX = 2, 100


def cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters, at a word boundary when one is in the second half."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    if space > limit // 2:
        head = head[:space]
    return head.rstrip(" ,;")


def split_house_number(address: str) -> tuple[str, str]:
    """``(street, house number)``: a conservative split of a trailing or leading number token, else the
    whole text and ``""`` (schema-valid; never the number in both fields) [A-11]."""
    text = " ".join(address.split())
    for pattern in (_TRAILING, _LEADING):
        match = pattern.fullmatch(text)
        if match and len(match["number"]) <= HOUSE_NUM_MAX:
            return match["street"].strip(" ,"), match["number"].replace(" ", "")
    return text, ""


def street_text(street: str) -> str:
    """Street within 2..100 characters: short ones padded with ``_`` (Hubject's data-quality advice)."""
    return cut(street, STREET_MAX).ljust(STREET_MIN, "_")


def utc_offset(zone: str, at: datetime) -> str | None:
    """The offset of IANA ``zone`` at ``at`` as OICP writes it (``UTC+01:00``), or None if the zone is
    unknown. OICP TimeZone is a fixed offset: re-mapped daily (design §6.2), a DST change becomes an
    update twice a year [A-13]."""
    try:
        offset = ZoneInfo(zone).utcoffset(at)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown key, malformed key, a directory
        return None
    if offset is None:
        return None
    minutes = round(offset.total_seconds() / 60)
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"
