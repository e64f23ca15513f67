"""``oicp-bridge demo``: see the Hubject side work with nothing to set up.

Starts the built-in Hubject simulator on a loopback port, pushes a sample of EVSE status records with
the OICP 2.3 REST client (a fullLoad, then updates, one of them through an injected Hubject outage so
the retry is visible), prints what Hubject acknowledged, pulls the state back as an EMP would, and ends
with a summary saying whether Hubject's state equals what was pushed. Exit status 0 when it does.
"""

from __future__ import annotations

import argparse
import asyncio

from oicp.client import ClientSettings, PushResult
from oicp.errors import RequestError
from oicp.ids import EvseID, OperatorID, ProviderID
from oicp.models import ActionType, EvseStatus, EvseStatusRecord
from oicp.rest import RestClient
from oicp.simulator import FaultKind, HubjectSimulator, serve_simulator

HELP = "run everything embedded (Hubject simulator, sample status pushes) and show the result"

OPERATOR = OperatorID("DE*OBD")
PROVIDER = ProviderID("DE-DMO")

INITIAL: dict[str, EvseStatus] = {
    "DE*OBD*E1001*1": EvseStatus.AVAILABLE,
    "DE*OBD*E1001*2": EvseStatus.OCCUPIED,
    "DE*OBD*E1002*1": EvseStatus.AVAILABLE,
    "DE*OBD*E1002*2": EvseStatus.OUT_OF_SERVICE,
    "DE*OBD*E1003*1": EvseStatus.RESERVED,
    "DE*OBD*E1003*2": EvseStatus.UNKNOWN,
}
CHANGES: list[tuple[str, EvseStatus]] = [
    ("DE*OBD*E1001*1", EvseStatus.OCCUPIED),
    ("DE*OBD*E1002*2", EvseStatus.AVAILABLE),
    ("DE*OBD*E1001*2", EvseStatus.AVAILABLE),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print only the summary")


def _records(statuses: dict[str, EvseStatus]) -> list[EvseStatusRecord]:
    return [EvseStatusRecord(evse_id=EvseID(e), evse_status=s) for e, s in statuses.items()]


def _describe(action: ActionType, count: int, result: PushResult) -> str:
    code = result.acknowledgement.status_code
    retried = f", after {result.attempts} attempts" if result.attempts > 1 else ""
    return (
        f"  {action.value:<8} {count} record(s) -> Result={result.acknowledgement.result} "
        f"Code={code.code} ({code.description}){retried}; Process-ID {result.process_id}"
    )


async def run_demo(*, quiet: bool = False) -> bool:
    def say(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    simulator = HubjectSimulator()
    expected = dict(INITIAL)
    async with serve_simulator(simulator) as served:
        say(f"Hubject simulator on {served.url}")
        settings = ClientSettings(url=served.url, max_retry_interval=1.0)

        def on_retry(attempt: int, error: RequestError, wait: float) -> None:
            say(f"    attempt {attempt} failed ({error}); retrying in {wait:.2f}s")

        async with RestClient(settings, on_retry=on_retry) as client:
            say(f"Pushing EVSE status for operator {OPERATOR}:")
            result = await client.push_evse_status(OPERATOR, ActionType.FULL_LOAD, _records(INITIAL))
            say(_describe(ActionType.FULL_LOAD, len(INITIAL), result))
            for index, (evse_id, status) in enumerate(CHANGES):
                if index == 1:
                    say("  (the simulator now answers the next request with HTTP 503, as in an outage)")
                    simulator.faults.retry_after = 0.2
                    simulator.faults.error_5xx_status = 503
                    simulator.faults.queue.append(FaultKind.SERVER_ERROR)
                result = await client.push_evse_status(
                    OPERATOR, ActionType.UPDATE, _records({evse_id: status})
                )
                expected[evse_id] = status
                say(_describe(ActionType.UPDATE, 1, result) + f"  [{evse_id} {status.value}]")
            held = await client.pull_evse_status(PROVIDER, operator_ids=[OPERATOR])
    say("Hubject now holds (pulled as an EMP):")
    for evse_id, status in sorted(held.items()):
        say(f"  {evse_id:<16} {status.value}")
    equal = {str(k): v for k, v in held.items()} == expected
    pushes = len([e for e in simulator.request_log if e.operation == "push"])
    print(
        f"Summary: {len(expected)} EVSEs, {pushes} push requests; "
        f"Hubject's state {'EQUALS' if equal else 'DIFFERS FROM'} the pushed state.",
        flush=True,
    )
    return equal


def run(args: argparse.Namespace) -> int:
    return 0 if asyncio.run(run_demo(quiet=args.quiet)) else 1
