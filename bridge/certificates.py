"""When a PEM certificate expires, read with the standard library only.

``ssl`` offers no public way to decode a certificate file that is not a CA (``SSLContext.get_ca_certs``
skips leaf certificates, and ``ssl._ssl._test_decode_cert`` is private), so this reads the one field
needed straight from the DER encoding (RFC 5280 §4.1): Certificate ::= SEQUENCE { tbsCertificate
SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer, validity SEQUENCE { notBefore,
notAfter }, ... }, ... }.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path

_SEQUENCE = 0x30
_EXPLICIT_0 = 0xA0
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18


class CertificateError(ValueError):
    """The file holds no certificate this module can read."""


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at ``at``: (tag, start of its content, end of its content)."""
    if at + 2 > len(der):
        raise CertificateError("truncated DER")
    tag, length = der[at], der[at + 1]
    start = at + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(der):
            raise CertificateError("bad DER length")
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    end = start + length
    if end > len(der):
        raise CertificateError("truncated DER")
    return tag, start, end


def _time(tag: int, text: bytes) -> float:
    try:
        value = text.decode("ascii")
        if tag == _UTC_TIME:  # RFC 5280 §4.1.2.5.1: YY >= 50 is 19YY, else 20YY
            year = int(value[:2])
            value = ("19" if year >= 50 else "20") + value
        elif tag != _GENERALIZED_TIME:
            raise CertificateError(f"unexpected time tag {tag:#x}")
        return datetime.strptime(value, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except (UnicodeDecodeError, ValueError) as exc:
        raise CertificateError(f"bad certificate time: {exc}") from exc


def not_after(der: bytes) -> float:
    """The certificate's notAfter, as seconds since the epoch."""
    tag, start, _ = _element(der, 0)
    if tag != _SEQUENCE:
        raise CertificateError("not a certificate")
    tag, at, _ = _element(der, start)  # tbsCertificate
    if tag != _SEQUENCE:
        raise CertificateError("not a certificate")
    tag, _, end = _element(der, at)
    if tag == _EXPLICIT_0:  # version
        at = end
    for _skipped in ("serialNumber", "signature", "issuer"):
        _, _, at = _element(der, at)
    tag, at, _ = _element(der, at)  # validity
    if tag != _SEQUENCE:
        raise CertificateError("no validity in the certificate")
    _, _, at = _element(der, at)  # notBefore
    tag, start, end = _element(der, at)
    return _time(tag, der[start:end])


def certificate_expiry(path: Path) -> float:
    """notAfter of the first certificate in a PEM file (the leaf of a chain)."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise CertificateError(f"cannot read {path}: {exc}") from exc
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    if begin not in text or end not in text:
        raise CertificateError(f"{path} holds no PEM certificate")
    pem = text[text.index(begin) : text.index(end) + len(end)]
    try:
        der = ssl.PEM_cert_to_DER_cert(pem)
    except ValueError as exc:
        raise CertificateError(f"{path}: {exc}") from exc
    return not_after(der)
