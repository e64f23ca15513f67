"""``ocpi-sim``: the simulated CPO as a standalone tool.

``oicp-bridge ocpi-sim serve``: an OCPI Locations sender for the bridge to poll (``[[ocpi.sources]]``),
its EVSEs changing status at ``--rate`` changes per second.
``oicp-bridge ocpi-sim push --receiver URL --token T``: PUT every location to a Locations receiver (the
bridge), then PATCH status changes at ``--rate`` per second (``--register`` treats ``--token`` as OCPI's
token A and runs the credentials handshake first).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from aiohttp import web

from bridge.config import parse_listen as config_parse_listen
from bridge.ocpi.cpo_sim import SimulatedCpo
from bridge.ocpi.cpo_sim.errors import CpoSimError
from bridge.ocpi.versions import OcpiVersion

HELP = "the simulated CPO: push OCPI locations and status changes to a receiver, or serve a polled feed"
DEFAULT_LISTEN = "127.0.0.1:8070"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` as the bridge's configuration reads it (``bridge.config.parse_listen``)."""
    try:
        return config_parse_listen(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "mode", choices=("serve", "push"), help="serve a Locations sender, or push to a receiver"
    )
    fleet = parser.add_argument_group("the fleet")
    fleet.add_argument("--seed", type=int, default=0, help="RNG seed: the same seed gives the same run")
    fleet.add_argument("--locations", type=int, default=10, help="locations of the fleet")
    fleet.add_argument("--evses", type=int, default=2, help="EVSEs per location")
    fleet.add_argument("--country", default="DE", help="country_code of the CPO party")
    fleet.add_argument("--party", default="OBD", help="party_id of the CPO party")
    fleet.add_argument("--operator", help="EvseID prefix (default COUNTRY*PARTY, e.g. DE*OBD)")
    fleet.add_argument(
        "--version",
        choices=[v.value for v in OcpiVersion],
        default=OcpiVersion.V2_2_1.value,
        help="the OCPI version spoken (default 2.2.1)",
    )
    fleet.add_argument("--rate", type=float, default=1.0, help="status changes per second (0: none)")
    fleet.add_argument("--count", type=int, default=None, help="stop after this many changes")
    serve = parser.add_argument_group("serve mode")
    serve.add_argument(
        "--listen",
        type=parse_listen,
        default=parse_listen(DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=f"where the Locations sender listens (default {DEFAULT_LISTEN})",
    )
    serve.add_argument("--token", action="append", default=[], help="token accepted (push: the token to use)")
    serve.add_argument(
        "--registration-token", action="append", default=[], help="OCPI token A for registration"
    )
    serve.add_argument("--max-limit", type=int, default=100, help="page size limit (X-Limit)")
    serve.add_argument(
        "--fail-page",
        type=int,
        action="append",
        default=[],
        metavar="OFFSET",
        help="answer HTTP 500 once to the page at this offset (repeatable)",
    )
    push = parser.add_argument_group("push mode")
    push.add_argument(
        "--receiver", help="the receiver's versions URL, e.g. http://127.0.0.1:8080/ocpi/versions"
    )
    push.add_argument("--register", action="store_true", help="--token is token A: register first")


def build(args: argparse.Namespace) -> SimulatedCpo:
    sim = SimulatedCpo(
        seed=args.seed,
        locations=args.locations,
        evses_per_location=args.evses,
        country_code=args.country,
        party_id=args.party,
        version=OcpiVersion(args.version),
        operator_id=args.operator,
        tokens=args.token,
        registration_tokens=args.registration_token,
        max_limit=args.max_limit,
    )
    for offset in args.fail_page:
        sim.faults.fail_page_once(offset)
    return sim


async def change_loop(
    sim: SimulatedCpo, args: argparse.Namespace, stop: asyncio.Event, *, push: bool
) -> None:
    """Make one change every 1/rate seconds (push: PATCH it) until stopped or ``--count`` is reached."""
    made = 0
    while args.rate > 0 and not stop.is_set() and (args.count is None or made < args.count):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0 / args.rate)
            return
        changes = sim.step(1)
        made += len(changes)
        if push:
            await sim.push_changes(changes)
        for change in changes:
            print(f"{change.evse_id}: {change.previous} -> {change.status}", flush=True)


async def serve(sim: SimulatedCpo, args: argparse.Namespace, stop: asyncio.Event) -> None:
    runner = web.AppRunner(sim.build_sender_app())
    await runner.setup()
    host, port = args.listen
    await web.TCPSite(runner, host, port).start()
    print(f"serving {sim.fleet.evse_count} EVSEs at http://{host}:{port}/ocpi/versions (OCPI {sim.version})")
    try:
        await change_loop(sim, args, stop, push=False)
        await stop.wait()
    finally:
        await runner.cleanup()


async def push(sim: SimulatedCpo, args: argparse.Namespace, stop: asyncio.Event) -> None:
    if not args.receiver or len(args.token) != 1:
        raise CpoSimError("push mode needs --receiver URL and exactly one --token")
    token = args.token[0]
    if args.register:
        token = await sim.register(
            args.receiver, token, own_versions_url="http://127.0.0.1/ocpi/versions", own_token="sim"
        )
        print("registered with the receiver")
    pushed = await sim.push_all(args.receiver, token)
    print(f"PUT {pushed} locations ({sim.fleet.evse_count} EVSEs) to {args.receiver}")
    await change_loop(sim, args, stop, push=True)


async def main(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sim = build(args)
    try:
        await (serve if args.mode == "serve" else push)(sim, args, stop)
    except CpoSimError as exc:
        print(f"ocpi-sim: {exc}", file=sys.stderr)
        return 1
    finally:
        await sim.aclose()
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(main(args))
    except ValueError as exc:  # a fleet that cannot be built (unknown country, no EVSEs)
        print(f"ocpi-sim: {exc}", file=sys.stderr)
        return 2
