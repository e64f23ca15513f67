"""EvseID / OperatorID / ProviderID parsing against the official OICP 2.3 patterns and examples.

The patterns and examples below are copied verbatim from OICP 2.3 CPO, 03_CPO_Data_Types.asciidoc,
sections "EvseIDType" and "OperatorIDType".
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from oicp.errors import InvalidIDError
from oicp.ids import EVSE_ID_PATTERN, OPERATOR_ID_PATTERN, EvseID, OperatorID, ProviderID

# OICP 2.3 CPO 03_CPO_Data_Types, "EvseIDType" (verbatim; upper case only in the spec text).
SPEC_EVSE_ID_PATTERN = (
    r"^(([A-Z]{2}\*?[A-Z0-9]{3}\*?E[A-Z0-9\*]{1,30})|(\+?[0-9]{1,3}\*[0-9]{3}\*[0-9\*]{1,32}))$"
)
# OICP 2.3 CPO 03_CPO_Data_Types, "OperatorIDType" (verbatim).
SPEC_OPERATOR_ID_PATTERN = r"^(([A-Za-z]{2}\*?[A-Za-z0-9]{3})|(\+?[0-9]{1,3}\*[0-9]{3}))$"

SPEC_EVSE_RE = re.compile(SPEC_EVSE_ID_PATTERN)
SPEC_OPERATOR_RE = re.compile(SPEC_OPERATOR_ID_PATTERN)

# "Examples ISO" / "Example DIN" of EvseIDType.
OFFICIAL_EVSE_IDS = ["DE*AB7*E840*6487", "DEAB7E8406487", "+49*810*000*438"]
# "Examples ISO" / "Example DIN" of OperatorIDType.
OFFICIAL_OPERATOR_IDS = ["DE*A36", "DEA36", "+49*536"]

ALNUM_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ALNUM_MIXED = ALNUM_UPPER + "abcdefghijklmnopqrstuvwxyz"
LETTERS_MIXED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"


# --- the pattern constants ---------------------------------------------------------------------


def test_library_evse_pattern_is_the_official_one_widened_to_lower_case() -> None:
    assert EVSE_ID_PATTERN.replace("A-Za-z", "A-Z") == SPEC_EVSE_ID_PATTERN


def test_library_operator_pattern_is_the_official_one() -> None:
    assert OPERATOR_ID_PATTERN == SPEC_OPERATOR_ID_PATTERN


# --- official examples ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", OFFICIAL_EVSE_IDS)
def test_official_evse_id_examples_are_accepted_unchanged(value: str) -> None:
    parsed = EvseID(value)
    assert str(parsed) == value
    assert isinstance(parsed, str)
    assert EvseID.is_valid(value)
    assert EvseID.parse(value) == parsed
    assert SPEC_EVSE_RE.fullmatch(parsed)


@pytest.mark.parametrize("value", OFFICIAL_OPERATOR_IDS)
def test_official_operator_id_examples_are_accepted_unchanged(value: str) -> None:
    parsed = OperatorID(value)
    assert str(parsed) == value
    assert OperatorID.is_valid(value)
    assert SPEC_OPERATOR_RE.fullmatch(parsed)


@pytest.mark.parametrize("value", ["DE8EO", "DE-8EO", "DE*8EO"])
def test_official_provider_id_examples_are_accepted(value: str) -> None:
    assert str(ProviderID(value)) == value


def test_repr_names_the_type() -> None:
    assert repr(EvseID("DE*AB7*E840*6487")) == "EvseID('DE*AB7*E840*6487')"


# --- normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("de*ab7*e840*6487", "DE*AB7*E840*6487"),
        ("deab7e8406487", "DEAB7E8406487"),
        ("De*aB7*E840*6487", "DE*AB7*E840*6487"),
    ],
)
def test_lower_case_evse_id_is_accepted_and_upper_cased(value: str, expected: str) -> None:
    parsed = EvseID(value)
    assert str(parsed) == expected
    assert parsed == EvseID(expected)


def test_lower_case_operator_id_is_upper_cased() -> None:
    assert str(OperatorID("de*a36")) == "DE*A36"
    assert str(OperatorID("dea36")) == "DEA36"


def test_lower_case_provider_id_is_upper_cased() -> None:
    assert str(ProviderID("de-8eo")) == "DE-8EO"


def test_pydantic_field_type_validates_and_normalises() -> None:
    adapter = TypeAdapter(EvseID)
    value = adapter.validate_python("de*ab7*e840*6487")
    assert isinstance(value, EvseID)
    assert value == "DE*AB7*E840*6487"
    assert adapter.dump_python(value) == "DE*AB7*E840*6487"
    with pytest.raises(ValidationError):
        adapter.validate_python("DE*AB7*840*6487")


# --- near misses -------------------------------------------------------------------------------

EVSE_NEAR_MISSES = [
    pytest.param("", id="empty"),
    pytest.param("D*AB7*E840*6487", id="country-one-letter"),
    pytest.param("DEU*AB7*E840*6487", id="country-three-letters"),
    pytest.param("D1*AB7*E840*6487", id="country-with-digit"),
    pytest.param("DE*AB7*840*6487", id="iso-missing-E"),
    pytest.param("DEAB78406487", id="iso-missing-E-no-separators"),
    pytest.param("DE*AB7*X840*6487", id="iso-other-letter-instead-of-E"),
    pytest.param("DE*AB*E840*6487", id="operator-two-chars"),
    pytest.param("DE*AB7*E", id="iso-empty-id-part"),
    pytest.param("DE*AB7*E" + "1" * 31, id="iso-id-part-31-chars"),
    pytest.param("+49*810*" + "1" * 33, id="din-id-part-33-chars"),
    pytest.param("+1234*810*000*438", id="din-country-four-digits"),
    pytest.param("DE*AB7*E840-6487", id="illegal-dash"),
    pytest.param("DE*AB7*E840 6487", id="illegal-inner-space"),
    pytest.param("DE*AB7*E840_6487", id="illegal-underscore"),
    pytest.param("DE*AB7*E840.6487", id="illegal-dot"),
    pytest.param("DÄ*AB7*E840*6487", id="illegal-umlaut"),
    pytest.param("DE-AB7-E840-6487", id="iso-dash-separators"),
    pytest.param("DE**AB7*E840", id="iso-double-separator"),
    pytest.param("*DEAB7E840", id="leading-separator"),
    pytest.param("+49810*000*438", id="din-missing-first-separator"),
    pytest.param("+49*810000438", id="din-missing-second-separator"),
    pytest.param("+49*810*E000*438", id="din-with-letter"),
    pytest.param("++49*810*000", id="din-double-plus"),
    pytest.param("+DE*AB7*E840", id="iso-with-plus"),
]


@pytest.mark.parametrize("value", EVSE_NEAR_MISSES)
def test_evse_id_near_misses_are_rejected(value: str) -> None:
    # Cross-check the case against the official pattern itself, so the list cannot drift from it.
    assert SPEC_EVSE_RE.fullmatch(value.upper()) is None
    with pytest.raises(InvalidIDError) as info:
        EvseID(value)
    assert isinstance(info.value, ValueError)
    assert info.value.kind == "EvseID"
    assert info.value.value == value
    assert info.value.pattern == EVSE_ID_PATTERN
    assert not EvseID.is_valid(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("DE*AB7E840*6487", id="only-first-separator"),
        pytest.param("DEAB7*E840*6487", id="only-second-separator"),
        pytest.param("DE*AB7*E*", id="id-part-only-separator"),
        pytest.param("DE*AB7*E" + "1" * 30, id="iso-id-part-30-chars"),
        pytest.param("+49*810*" + "1" * 32, id="din-id-part-32-chars"),
        pytest.param("49*810*000*438", id="din-without-plus"),
        pytest.param("DEABEE1", id="operator-ending-in-E"),
    ],
)
def test_edge_cases_the_official_pattern_allows_are_accepted(value: str) -> None:
    assert SPEC_EVSE_RE.fullmatch(value)
    assert str(EvseID(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "D*A36",
        "DEU*A36",
        "DE*A3",
        "DE*A367",
        "DE-A36",
        "DE**A36",
        "+49536",
        "+49*53",
        "+1234*536",
        "DE*A_6",
    ],
)
def test_operator_id_near_misses_are_rejected(value: str) -> None:
    assert SPEC_OPERATOR_RE.fullmatch(value) is None
    with pytest.raises(InvalidIDError) as info:
        OperatorID(value)
    assert isinstance(info.value, ValueError)
    assert info.value.kind == "OperatorID"


@pytest.mark.parametrize("value", [None, 42, b"DE*AB7*E840*6487"])
def test_non_strings_are_rejected(value: object) -> None:
    with pytest.raises(InvalidIDError):
        EvseID(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["DE*AB7*E84ß", "DE*AB7*E84ı", "DE*AB7*E84ſ", "DE*AB7*Eﬁ"])
def test_non_ascii_characters_are_rejected(value: str) -> None:
    assert SPEC_EVSE_RE.fullmatch(value) is None
    with pytest.raises(InvalidIDError):
        EvseID(value)


# --- operator_id / canonical_key -------------------------------------------------------------


@pytest.mark.parametrize(
    ("evse_id", "operator_id"),
    [
        ("DE*AB7*E840*6487", "DE*AB7"),
        ("DEAB7E8406487", "DE*AB7"),
        ("de*ab7e840", "DE*AB7"),
        ("DEABEE1", "DE*ABE"),
        ("+49*810*000*438", "+49*810"),
        ("49*810*000*438", "49*810"),
    ],
)
def test_evse_id_operator_id(evse_id: str, operator_id: str) -> None:
    op = EvseID(evse_id).operator_id
    assert isinstance(op, OperatorID)
    assert str(op) == operator_id


def test_both_iso_spellings_share_operator_and_key() -> None:
    a, b = EvseID("DE*AB7*E840*6487"), EvseID("DEAB7E8406487")
    assert a != b  # the string is kept as given
    assert a.operator_id == b.operator_id
    assert a.operator_id.canonical_key == "DEAB7"


@pytest.mark.parametrize(
    ("value", "key"),
    [("DE*A36", "DEA36"), ("DEA36", "DEA36"), ("de*a36", "DEA36"), ("+49*536", "+49536")],
)
def test_operator_id_canonical_key(value: str, key: str) -> None:
    assert OperatorID(value).canonical_key == key


def test_canonical_key_identifies_both_spellings() -> None:
    assert OperatorID("DE*A36").canonical_key == OperatorID("DEA36").canonical_key
    assert OperatorID("DE*A36").canonical_key != OperatorID("DE*A37").canonical_key


# --- properties --------------------------------------------------------------------------------

countries = st.text(alphabet=LETTERS_MIXED, min_size=2, max_size=2)
separators = st.sampled_from(["*", ""])
operators = st.text(alphabet=ALNUM_MIXED, min_size=3, max_size=3)
iso_id_parts = st.text(alphabet=ALNUM_MIXED + "*", min_size=1, max_size=30)


@st.composite
def iso_evse_ids(draw: st.DrawFn) -> tuple[str, str, str]:
    """(EvseID, country, operator) built from the ISO grammar of EvseIDType."""
    country, operator = draw(countries), draw(operators)
    e = draw(st.sampled_from(["E", "e"]))
    value = country + draw(separators) + operator + draw(separators) + e + draw(iso_id_parts)
    return value, country, operator


@st.composite
def din_evse_ids(draw: st.DrawFn) -> tuple[str, str, str]:
    """(EvseID, country, operator) built from the DIN grammar of EvseIDType."""
    country = draw(st.sampled_from(["+", ""])) + draw(st.text(alphabet=DIGITS, min_size=1, max_size=3))
    operator = draw(st.text(alphabet=DIGITS, min_size=3, max_size=3))
    rest = draw(st.text(alphabet=DIGITS + "*", min_size=1, max_size=32))
    return f"{country}*{operator}*{rest}", country, operator


@given(iso_evse_ids())
def test_generated_iso_evse_ids_parse_and_round_trip(case: tuple[str, str, str]) -> None:
    value, country, operator = case
    parsed = EvseID(value)
    assert str(parsed) == value.upper()
    assert SPEC_EVSE_RE.fullmatch(parsed)
    assert EvseID(str(parsed)) == parsed  # idempotent
    assert parsed.operator_id == f"{country}*{operator}".upper()
    assert parsed.replace("*", "").startswith(parsed.operator_id.canonical_key)


@given(din_evse_ids())
def test_generated_din_evse_ids_parse_and_round_trip(case: tuple[str, str, str]) -> None:
    value, country, operator = case
    parsed = EvseID(value)
    assert str(parsed) == value
    assert parsed.operator_id == f"{country}*{operator}"
    assert parsed.startswith(parsed.operator_id + "*")


@given(st.text())
def test_arbitrary_text_is_rejected_or_valid(value: str) -> None:
    try:
        parsed = EvseID(value)
    except InvalidIDError:
        return
    assert re.fullmatch(EVSE_ID_PATTERN, parsed)
    assert SPEC_EVSE_RE.fullmatch(parsed)
    assert parsed == parsed.upper()
    assert value.strip().isascii()
    assert parsed == value.strip().upper()


@given(st.text(alphabet="DEabe7*+049-_ ", max_size=40))
def test_near_alphabet_text_is_rejected_or_valid(value: str) -> None:
    try:
        parsed = EvseID(value)
    except InvalidIDError:
        assert SPEC_EVSE_RE.fullmatch(value.strip().upper()) is None
        return
    assert SPEC_EVSE_RE.fullmatch(parsed)
    assert parsed == value.strip().upper()


@given(countries, separators, operators)
def test_generated_operator_ids_parse(country: str, separator: str, operator: str) -> None:
    value = country + separator + operator
    parsed = OperatorID(value)
    assert str(parsed) == value.upper()
    assert parsed.canonical_key == (country + operator).upper()
