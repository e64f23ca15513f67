"""What a user's type checker sees of ``oicp`` (stamina's tests/typing): mypy --strict checks this file.

``assert_type`` pins the types the public API promises; each ``type: ignore[code]`` pins a misuse that must
stay an error (``warn_unused_ignores`` fails the run if the API starts accepting it). Nothing here runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import assert_type

from oicp import (
    RECORD_LEVEL_CODES,
    Acknowledgement,
    ActionType,
    ClientSettings,
    CodeInfo,
    Disposition,
    EvseID,
    EvseStatus,
    EvseStatusClient,
    EvseStatusRecord,
    HTTPStatusError,
    OICPError,
    OperatorID,
    ProviderID,
    PushResult,
    RejectedError,
    RequestError,
    RestClient,
    RetryHook,
    RetryPolicy,
    SoapClient,
    Throttle,
    __version__,
    classify,
)

SETTINGS = ClientSettings(url="http://127.0.0.1:8090/api/oicp", max_attempts=3)
RECORD = EvseStatusRecord(evse_id=EvseID("DE*ABC*E1"), evse_status=EvseStatus.AVAILABLE)


def log_retry(attempt: int, error: RequestError, wait: float) -> None:
    print(attempt, error.retryable, wait)


async def pages() -> AsyncIterator[Sequence[EvseStatusRecord]]:
    yield [RECORD]


async def push_and_pull() -> None:
    hook: RetryHook = log_retry
    async with RestClient(SETTINGS, on_retry=hook, throttle=Throttle(100)) as client:
        assert_type(client.throttle, Throttle)
        assert_type(client.retry_policy, RetryPolicy)
    async with RestClient(SETTINGS, retry_policy=RetryPolicy(budget=30.0), on_retry=hook) as rest:
        assert_type(rest, RestClient)
        result = await rest.push_evse_status(OperatorID("DE*ABC"), ActionType.UPDATE, [RECORD])
        assert_type(result, PushResult)
        assert_type(result.acknowledgement, Acknowledgement)
        assert_type(result.process_id, str | None)
        assert_type(result.attempts, int)
        streamed = await rest.push_evse_status_stream(OperatorID("DE*ABC"), ActionType.FULL_LOAD, pages)
        assert_type(streamed, PushResult)
        assert_type(await rest.pull_evse_status(ProviderID("DE-XYZ")), dict[EvseID, EvseStatus])
        await rest.push_evse_status("DE*ABC", ActionType.UPDATE, [RECORD])  # type: ignore[arg-type]
        await rest.push_evse_status(OperatorID("DE*ABC"), "update", [RECORD])  # type: ignore[arg-type]
    async with SoapClient(SETTINGS) as soap:
        assert_type(soap, SoapClient)
        assert_type(
            await soap.pull_evse_status(ProviderID("DE-XYZ"), evse_ids=[EvseID("DE*ABC*E1")]),
            dict[EvseID, EvseStatus],
        )
    RestClient(SETTINGS, retries=3)  # type: ignore[call-arg]
    SoapClient(SETTINGS, retry_policy=3)  # type: ignore[arg-type]


def both_clients_are_evse_status_clients() -> list[EvseStatusClient]:
    return [RestClient(SETTINGS), SoapClient(SETTINGS)]


def errors(exc: OICPError) -> None:
    if isinstance(exc, RejectedError):
        assert_type(exc.code, str)
        assert_type(exc.info, CodeInfo)
        assert_type(exc.record_level, bool)
    if isinstance(exc, HTTPStatusError):
        assert_type(exc.status, int)
        assert_type(exc.body_excerpt, str)
    if isinstance(exc, RequestError):
        assert_type(exc.retryable, bool)
        assert_type(exc.retry_after, float | None)
        assert_type(exc.process_id, str | None)
        assert_type(exc.hint, str | None)


def codes() -> None:
    info = classify("603")
    assert_type(info, CodeInfo)
    assert_type(info.disposition, Disposition)
    assert_type(info.record_level, bool)
    assert_type(info.hint, str | None)
    assert_type(RECORD_LEVEL_CODES, frozenset[str])
    assert_type(__version__, str)
