"""The REST codec without I/O: requests encoded as Hubject's OpenAPI names them, answers decoded to typed
results or errors (the SOAP codec's cases are in test_soap_client.py)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oicp import (
    ActionType,
    EvseID,
    EvseStatus,
    EvseStatusRecord,
    HTTPStatusError,
    OperatorID,
    PushEvseStatusRequest,
    RejectedError,
    RequestError,
    ResponseDecodeError,
)
from oicp._http import Answer
from oicp._rest import (
    decode_pull,
    decode_push,
    encode,
    push_path,
    read_statuses,
    read_statuses_by_id,
    stream_push,
)

URL = "https://h/api/oicp/evsepush/v21/operators/DE*ABC/status-records"
ACK = {"Result": True, "StatusCode": {"Code": "000"}}
REJECTED = {"Result": False, "StatusCode": {"Code": "017", "Description": "Unauthorized Access."}}
R1 = EvseStatusRecord(evse_id=EvseID("DE*ABC*E1"), evse_status=EvseStatus.AVAILABLE)


def test_a_push_is_encoded_with_the_wire_names() -> None:
    body = json.loads(encode(PushEvseStatusRequest.of(OperatorID("de*abc"), ActionType.UPDATE, [R1])))
    assert body == {
        "ActionType": "update",
        "OperatorEvseStatus": {
            "OperatorID": "DE*ABC",
            "EvseStatusRecord": [{"EvseID": "DE*ABC*E1", "EvseStatus": "Available"}],
        },
    }
    assert push_path(OperatorID("DE*ABC")) == "/evsepush/v21/operators/DE*ABC/status-records"


async def test_a_streamed_push_is_the_same_json_as_the_whole_one() -> None:
    async def pages() -> AsyncIterator[Sequence[EvseStatusRecord]]:
        yield [R1]
        yield []
        yield [R1.model_copy(update={"evse_id": EvseID("DE*ABC*E2")})]

    body = stream_push(OperatorID("DE*ABC"), ActionType.FULL_LOAD, pages, "ABC")
    streamed = b"".join([chunk async for chunk in body()])
    records = [R1, R1.model_copy(update={"evse_id": EvseID("DE*ABC*E2")})]
    whole = PushEvseStatusRequest.of(OperatorID("DE*ABC"), ActionType.FULL_LOAD, records, "ABC")
    assert json.loads(streamed) == json.loads(encode(whole))


@pytest.mark.parametrize(
    ("status", "body", "error_type", "retryable"),
    [
        (200, b"<html>maintenance</html>", ResponseDecodeError, True),
        (200, b"", ResponseDecodeError, True),
        (200, json.dumps({"Result": "maybe"}).encode(), ResponseDecodeError, True),
        (502, b"Bad gateway", HTTPStatusError, True),
        (400, b"{}", HTTPStatusError, False),
        (401, json.dumps(REJECTED).encode(), RejectedError, False),
        (200, json.dumps(REJECTED).encode(), RejectedError, False),
        (500, json.dumps(ACK).encode(), HTTPStatusError, True),
    ],
)
def test_every_push_answer_decodes_to_one_typed_error(
    status: int, body: bytes, error_type: type[RequestError], retryable: bool
) -> None:
    with pytest.raises(error_type) as caught:
        decode_push(Answer(status, body, "pid-1"), URL, "DE*ABC")
    assert type(caught.value) is error_type
    assert caught.value.retryable is retryable
    assert caught.value.process_id == "pid-1"


def test_a_rejection_names_the_operator_in_its_hint() -> None:
    with pytest.raises(RejectedError) as caught:
        decode_push(Answer(200, json.dumps(REJECTED).encode()), URL, "DE*ABC")
    assert "OperatorID DE*ABC" in (caught.value.hint or "")


def test_a_valid_acknowledgement_decodes_to_its_fields() -> None:
    acknowledgement = decode_push(Answer(200, json.dumps(ACK).encode()), URL)
    assert acknowledgement.result is True
    assert acknowledgement.status_code.code == "000"


@pytest.mark.parametrize(
    ("status", "body", "error_type"),
    [
        (200, b"not json", ResponseDecodeError),
        (503, b"", HTTPStatusError),
        (400, json.dumps(REJECTED).encode(), RejectedError),
    ],
)
def test_every_pull_answer_decodes_to_one_typed_error(status: int, body: bytes, error_type: type) -> None:
    with pytest.raises(error_type):
        decode_pull(Answer(status, body), URL)


def test_pulled_statuses_are_read_as_one_flat_map() -> None:
    block = {"OperatorID": "DE*ABC", "EvseStatusRecord": [R1.to_wire()]}
    assert read_statuses({"EvseStatuses": {"OperatorEvseStatus": [block]}}, URL) == {
        R1.evse_id: R1.evse_status
    }
    by_id = {"EVSEStatusRecords": {"EvseStatusRecord": [R1.to_wire()]}}
    assert read_statuses_by_id(by_id, URL) == {R1.evse_id: R1.evse_status}
    with pytest.raises(ResponseDecodeError):
        read_statuses({"EvseStatuses": "?"}, URL)
    with pytest.raises(ResponseDecodeError):
        read_statuses_by_id({}, URL)


ANSWER_BODIES = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "Result",
                        "StatusCode",
                        "Code",
                        "EvseStatuses",
                        "EVSEStatusRecords",
                        "OperatorEvseStatus",
                    ]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    ).map(lambda value: json.dumps(value).encode()),
)


@given(status=st.sampled_from([200, 400, 401, 404, 429, 500, 502]), body=ANSWER_BODIES)
def test_decoders_fed_anything_raise_only_request_errors(status: int, body: bytes) -> None:
    answer = Answer(status, body)
    for decode in (lambda: decode_push(answer, URL), lambda: read_statuses(decode_pull(answer, URL), URL)):
        with contextlib.suppress(RequestError):  # anything else escapes and fails the test
            decode()
