"""``validation_errors`` skips jsonschema for messages a plain-Python check proves valid. That check must
never pass a message the official schema rejects: here both are compared on generated pushes."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from oicp.openapi_schemas import Schema, _fast, _validator, validation_errors

EVSE_IDS = st.one_of(
    st.sampled_from(["DE*ABC*E123*1", "DEABCE1", "+49*810*000*438", "bad", "", "DE*AB*E1", "DE*ABC*E"]),
    st.text(max_size=12),
    st.integers(),
    st.none(),
)
STATUSES = st.one_of(
    st.sampled_from(["Available", "Reserved", "Occupied", "OutOfService", "EvseNotFound", "Unknown"]),
    st.sampled_from(["available", "", "Busy"]),
    st.integers(),
    st.booleans(),
)
RECORDS = st.one_of(
    st.fixed_dictionaries({"EvseID": EVSE_IDS, "EvseStatus": STATUSES}),
    st.fixed_dictionaries({"EvseID": EVSE_IDS}),
    st.just("not a record"),
)
PUSHES = st.fixed_dictionaries(
    {
        "ActionType": st.sampled_from(["update", "fullLoad", "insert", "delete", "upsert", 3]),
        "OperatorEvseStatus": st.one_of(
            st.fixed_dictionaries(
                {
                    "OperatorID": st.sampled_from(["DE*ABC", "DEABC", "+49*810", "D", 7]),
                    "EvseStatusRecord": st.one_of(st.lists(RECORDS, max_size=4), st.just({})),
                },
                optional={"OperatorName": st.one_of(st.text(max_size=5), st.integers(), st.floats())},
            ),
            st.just([]),
        ),
    }
)


def full_errors(schema: Schema, message: Any) -> list[Any]:
    return list(_validator(schema).iter_errors(message))


@settings(max_examples=400, deadline=None)
@given(PUSHES)
def test_the_fast_path_agrees_with_the_official_validator(message: dict[str, Any]) -> None:
    fast = _fast(Schema.PUSH_EVSE_STATUS)
    assert fast is not None
    official = full_errors(Schema.PUSH_EVSE_STATUS, message)
    if fast(message):
        assert official == [], f"the fast check passed a message the schema rejects: {official}"
    assert (validation_errors(Schema.PUSH_EVSE_STATUS, message) == []) == (official == [])


def test_a_large_valid_fullload_takes_the_fast_path_and_a_bad_record_is_still_named() -> None:
    records = [{"EvseID": f"DE*ABC*E{n}", "EvseStatus": "Available"} for n in range(5000)]
    push = {
        "ActionType": "fullLoad",
        "OperatorEvseStatus": {"OperatorID": "DE*ABC", "EvseStatusRecord": records},
    }
    assert validation_errors(Schema.PUSH_EVSE_STATUS, push) == []
    records[4321] = {"EvseID": "DE*ABC*E1", "EvseStatus": "Broken"}
    errors = validation_errors(Schema.PUSH_EVSE_STATUS, push)
    assert len(errors) == 1
    assert errors[0].startswith("OperatorEvseStatus/EvseStatusRecord/4321/EvseStatus:")
