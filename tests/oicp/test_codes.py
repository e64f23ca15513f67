"""The OICP status-code catalogue against the CodeType table of the specification."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oicp._hints import CODE_HINTS, hint_for
from oicp.codes import CODE_CATALOGUE, RECORD_LEVEL_CODES, Area, Disposition, classify
from oicp.errors import RejectedError

# Copied from OICP 2.3 CPO, 03_CPO_Data_Types.asciidoc, section "CodeType (list of error and status
# codes)" ([[CodeType]]): Option : Description : Area of Usage. tests/data/ holds no copy of the OICP
# spec and the spec folder is not part of CI clones, so the table is reproduced here verbatim.
SPEC_CODE_TABLE: list[tuple[str, str, str]] = [
    ("000", "Success.", "General codes"),
    ("001", "Hubject system error.", "Internal system codes"),
    ("002", "Hubject database error.", "Internal system codes"),
    ("009", "Data transaction error.", "Internal system codes"),
    ("017", "Unauthorized Access.", "Internal system codes"),
    ("018", "Inconsistent EvseID.", "Internal system codes"),
    ("019", "Inconsistent EvcoID.", "Internal system codes"),
    ("021", "System error.", "General codes"),
    ("022", "Data error.", "General codes"),
    ("101", "QR Code Authentication failed – Invalid Credentials.", "Authentication codes"),
    ("102", "RFID Authentication failed – invalid UID.", "Authentication codes"),
    ("103", "RFID Authentication failed – card not readable.", "Authentication codes"),
    ("105", "PLC Authentication failed - invalid EvcoID.", "Authentication codes"),
    ("106", "No positive authentication response.", "Authentication codes / Internal system codes"),
    ("110", "QR Code App Authentication failed – time out error.", "Authentication codes"),
    (
        "120",
        "PLC (ISO/ IEC 15118) Authentication failed – invalid underlying EvcoID.",
        "Authentication codes",
    ),
    ("121", "PLC (ISO/ IEC 15118) Authentication failed – invalid certificate.", "Authentication codes"),
    ("122", "PLC (ISO/ IEC 15118) Authentication failed – time out error.", "Authentication codes"),
    ("200", "EvcoID locked.", "Authentication codes"),
    ("210", "No valid contract.", "Session codes"),
    ("300", "Partner not found.", "Session codes"),
    ("310", "Partner did not respond.", "Session codes"),
    ("320", "Service not available.", "Session codes"),
    ("400", "Session is invalid.", "Session codes"),
    ("501", "Communication to EVSE failed.", "EVSE codes"),
    ("510", "No EV connected to EVSE.", "EVSE codes"),
    ("601", "EVSE already reserved.", "EVSE codes"),
    ("602", "EVSE already in use/ wrong token.", "EVSE codes"),
    ("603", "Unknown EVSE ID.", "EVSE codes"),
    ("604", "EVSE ID is not Hubject compatible.", "EVSE codes"),
    ("700", "EVSE out of service.", "EVSE codes"),
]
SPEC_CODES = [code for code, _, _ in SPEC_CODE_TABLE]


def test_spec_table_copy_is_complete() -> None:
    assert len(SPEC_CODE_TABLE) == 31
    assert len(set(SPEC_CODES)) == len(SPEC_CODES)


@pytest.mark.parametrize(("code", "description", "area"), SPEC_CODE_TABLE)
def test_every_spec_code_is_catalogued_verbatim(code: str, description: str, area: str) -> None:
    assert code in CODE_CATALOGUE
    meaning, catalogue_area, disposition = CODE_CATALOGUE[code]
    assert meaning == description
    assert catalogue_area == Area(area)
    assert isinstance(disposition, Disposition)


def test_catalogue_has_no_codes_beyond_the_spec() -> None:
    assert set(CODE_CATALOGUE) == set(SPEC_CODES)


def test_000_is_success() -> None:
    info = classify("000")
    assert info.success
    assert not info.retryable
    assert info.disposition is Disposition.SUCCESS
    assert info.meaning == "Success."


def test_only_000_is_success() -> None:
    assert [code for code in SPEC_CODES if classify(code).success] == ["000"]


@pytest.mark.parametrize("code", ["001", "002", "009", "021"])
def test_hubject_internal_errors_are_retryable(code: str) -> None:
    info = classify(code)
    assert info.retryable
    assert not info.success
    assert info.disposition is Disposition.RETRYABLE


@pytest.mark.parametrize("code", ["017", "018", "022", "603"])
def test_request_errors_are_permanent(code: str) -> None:
    info = classify(code)
    assert not info.retryable
    assert not info.success
    assert info.disposition is Disposition.PERMANENT


@pytest.mark.parametrize("code", ["999", "023", "", "abc", "0000"])
def test_unknown_code_is_retryable(code: str) -> None:
    info = classify(code)
    assert info.retryable
    assert not info.success
    assert info.area is Area.UNKNOWN
    assert info.code == code
    assert info.hint is None
    assert not info.record_level


@given(st.text(max_size=6).filter(lambda c: c not in CODE_CATALOGUE))
def test_any_uncatalogued_code_is_retryable(code: str) -> None:
    info = classify(code)
    assert info.disposition is Disposition.RETRYABLE
    assert info.area is Area.UNKNOWN


@pytest.mark.parametrize(("code", "description", "area"), SPEC_CODE_TABLE)
def test_classify_returns_meaning_and_area(code: str, description: str, area: str) -> None:
    info = classify(code)
    assert info.code == code
    assert info.meaning == description
    assert info.area == Area(area)


def test_record_level_codes_name_single_evse_records() -> None:
    assert {"018", "603", "604"} == RECORD_LEVEL_CODES
    assert classify("603").record_level
    assert classify("018").record_level
    assert not classify("001").record_level
    assert not classify("017").record_level


def test_record_level_codes_are_permanent() -> None:
    for code in RECORD_LEVEL_CODES:
        assert classify(code).disposition is Disposition.PERMANENT


def test_hints() -> None:
    hint_017 = classify("017").hint
    assert hint_017 is not None
    assert "certificate" in hint_017
    assert "OperatorID" in hint_017
    hint_603 = classify("603").hint
    assert hint_603 is not None
    assert "eRoamingPushEvseData" in hint_603
    assert classify("000").hint is None
    assert set(CODE_HINTS) <= set(CODE_CATALOGUE)


@pytest.mark.parametrize(
    ("code", "retryable"), [("001", True), ("017", False), ("603", False), ("999", True)]
)
def test_rejected_error_takes_retryability_from_the_catalogue(code: str, retryable: bool) -> None:
    info = classify(code)
    error = RejectedError(code, "text from Hubject", None, info=info)
    assert error.retryable is retryable
    assert error.code == code
    assert code in str(error)
    assert info.meaning in str(error)


@pytest.mark.parametrize("code", sorted(CODE_HINTS))
def test_there_is_one_hint_table(code: str) -> None:
    # CodeInfo.hint and the hints the clients attach read the same text (017 once).
    assert (
        classify(code).hint == hint_for(status=None, code=code, url="https://h/api/oicp") == CODE_HINTS[code]
    )


def test_the_unauthorised_hint_names_the_operator_when_it_is_known() -> None:
    hint = hint_for(status=401, code=None, url="https://h/api/oicp", operator_id="DE*ABC")
    assert hint is not None
    assert hint.startswith("OperatorID DE*ABC is not linked to this client certificate")
    assert hint.endswith(CODE_HINTS["017"].split(" is not linked", 1)[1])


def test_a_rejection_knows_whether_it_names_records() -> None:
    assert RejectedError("603", None, "DE*ABC*E1", info=classify("603")).record_level
    assert not RejectedError("017", None, None, info=classify("017")).record_level
