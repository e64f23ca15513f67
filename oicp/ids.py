"""EvseID, OperatorID and ProviderID: parsing, validation and normalisation.

Patterns are the official ones (OICP 2.3 CPO 03_CPO_Data_Types, EvseIDType / OperatorIDType /
ProviderIDType, identical to the ``pattern`` of the CPO OpenAPI schemas). Values are normalised to
upper case, which the patterns allow either way, so that one EVSE has one key.

ISO ids have an optional ``*`` separator: ``DE*AB7*E840*6487`` and ``DEAB7E8406487`` name the same
EVSE. The string itself is kept as given (after upper-casing) because Hubject stores what it is sent;
``canonical_key`` gives a separator-free key for comparing operators.
"""

from __future__ import annotations

import re
from typing import Any, Self

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from oicp.errors import InvalidIDError

EVSE_ID_PATTERN = (
    r"^(([A-Za-z]{2}\*?[A-Za-z0-9]{3}\*?E[A-Za-z0-9\*]{1,30})|(\+?[0-9]{1,3}\*[0-9]{3}\*[0-9\*]{1,32}))$"
)
OPERATOR_ID_PATTERN = r"^(([A-Za-z]{2}\*?[A-Za-z0-9]{3})|(\+?[0-9]{1,3}\*[0-9]{3}))$"
PROVIDER_ID_PATTERN = r"^([A-Za-z]{2}\-?[A-Za-z0-9]{3}|[A-Za-z]{2}[\*|-]?[A-Za-z0-9]{3})$"

_EVSE_ID_RE = re.compile(EVSE_ID_PATTERN)
_OPERATOR_ID_RE = re.compile(OPERATOR_ID_PATTERN)
_PROVIDER_ID_RE = re.compile(PROVIDER_ID_PATTERN)
# The operator part of an ISO EvseID: country, optional '*', three characters.
_ISO_OPERATOR_RE = re.compile(r"^([A-Z]{2})\*?([A-Z0-9]{3})")
_DIN_OPERATOR_RE = re.compile(r"^(\+?[0-9]{1,3})\*([0-9]{3})")


class _PatternID(str):
    """A str that is valid for its pattern and upper case; usable directly as a pydantic field type."""

    __slots__ = ()
    _kind: str = ""
    _pattern: str = ""
    _regex: re.Pattern[str] = re.compile("")

    def __new__(cls, value: str) -> Self:
        if not isinstance(value, str):
            raise InvalidIDError(cls._kind, repr(value), cls._pattern)
        if not cls.is_valid(value):
            raise InvalidIDError(cls._kind, value, cls._pattern)
        return super().__new__(cls, value.strip().upper())

    @classmethod
    def parse(cls, value: str) -> Self:
        return cls(value)

    @classmethod
    def is_valid(cls, value: str) -> bool:
        # ASCII first: str.upper() turns some non-ASCII letters into ASCII ones ('ß' -> 'SS', 'ı' -> 'I'),
        # which would make an invalid ID valid. fullmatch, not match: the '$' of the official patterns
        # would accept a trailing newline.
        text = value.strip()
        return text.isascii() and bool(cls._regex.fullmatch(text.upper()))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls,
            core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class OperatorID(_PatternID):
    """An OICP OperatorID such as ``DE*ABC``, ``DEABC`` or ``+49*536``."""

    __slots__ = ()
    _kind = "OperatorID"
    _pattern = OPERATOR_ID_PATTERN
    _regex = _OPERATOR_ID_RE

    @property
    def canonical_key(self) -> str:
        """Separator-free form: ``DE*ABC`` and ``DEABC`` share the key ``DEABC``."""
        return self.replace("*", "")


class EvseID(_PatternID):
    """An OICP EvseID such as ``DE*AB7*E840*6487`` (ISO) or ``+49*810*000*438`` (DIN)."""

    __slots__ = ()
    _kind = "EvseID"
    _pattern = EVSE_ID_PATTERN
    _regex = _EVSE_ID_RE

    @property
    def operator_id(self) -> OperatorID:
        """The OperatorID this EvseID starts with, written with the ``*`` separator."""
        iso = _ISO_OPERATOR_RE.match(self)
        if iso and not self.startswith("+"):
            return OperatorID(f"{iso.group(1)}*{iso.group(2)}")
        din = _DIN_OPERATOR_RE.match(self)
        if din is None:  # pragma: no cover - the EvseID pattern guarantees one of the two forms
            raise InvalidIDError("EvseID", str(self), EVSE_ID_PATTERN)
        return OperatorID(f"{din.group(1)}*{din.group(2)}")


class ProviderID(_PatternID):
    """An OICP ProviderID (EMP) such as ``DE-DCB`` or ``DE*DCB``."""

    __slots__ = ()
    _kind = "ProviderID"
    _pattern = PROVIDER_ID_PATTERN
    _regex = _PROVIDER_ID_RE
