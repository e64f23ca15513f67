"""``hubject-sim``: the Hubject simulator as a standalone server, for integrators' tests.

Used as ``oicp-bridge hubject-sim`` and as ``python -m oicp.simulator``. Plain HTTP unless
``--tls-cert``/``--tls-key`` are given; ``--client-ca`` additionally requires a client certificate
signed by that CA (mutual TLS, as Hubject does). Faults can be set at start with flags and changed
while running with ``PUT /_simulator/faults`` (docs/oicp-simulator.md).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
from pathlib import Path

from oicp.simulator.app import HubjectSimulator
from oicp.simulator.faults import Faults
from oicp.simulator.server import serve_simulator

HELP = "run the Hubject simulator as a standalone server (OICP paths under /api/oicp)"
DEFAULT_LISTEN = "127.0.0.1:8090"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _rate(value: str) -> float:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate is between 0 and 1, got {value}")
    return rate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=parse_listen(DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=f"where the simulator listens (default {DEFAULT_LISTEN})",
    )
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--tls-cert", type=Path, help="server certificate (PEM); enables HTTPS")
    tls.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    tls.add_argument("--client-ca", type=Path, help="require client certificates signed by this CA (mTLS)")
    data = parser.add_argument_group("EVSE data")
    data.add_argument(
        "--known-evse-ids",
        type=Path,
        metavar="FILE",
        help="EvseIDs with EVSE data, one per line; pushes for others are answered 603 Unknown EVSE ID",
    )
    data.add_argument(
        "--require-evse-data",
        action="store_true",
        help="answer a status push for EvseIDs without pushed EVSE data 603, as Hubject does",
    )
    faults = parser.add_argument_group("fault injection (also PUT /_simulator/faults)")
    faults.add_argument("--seed", type=int, default=0, help="seed of the fault dice (runs repeat)")
    faults.add_argument("--error-rate", type=_rate, default=0.0, help="share of requests answered 5xx")
    faults.add_argument("--error-status", type=int, default=500, help="the 5xx status (503 adds Retry-After)")
    faults.add_argument("--rate-limit-rate", type=_rate, default=0.0, help="share of requests answered 429")
    faults.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds on 429/503")
    faults.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    faults.add_argument("--hang-rate", type=_rate, default=0.0, help="share of requests never answered")
    faults.add_argument("--drop-rate", type=_rate, default=0.0, help="share of connections closed unanswered")
    faults.add_argument("--reject-rate", type=_rate, default=0.0, help="share answered Result=false")
    faults.add_argument("--reject-code", default="001", help="StatusCode of those rejections")
    faults.add_argument("--calls-per-minute", type=int, default=None, help="429 past this many calls/minute")


def faults_from_args(args: argparse.Namespace) -> Faults:
    return Faults(
        seed=args.seed,
        error_5xx_rate=args.error_rate,
        error_5xx_status=args.error_status,
        rate_limit_rate=args.rate_limit_rate,
        retry_after=args.retry_after,
        latency=args.latency,
        hang_rate=args.hang_rate,
        drop_rate=args.drop_rate,
        reject_rate=args.reject_rate,
        reject_code=args.reject_code,
        calls_per_minute=args.calls_per_minute,
    )


def server_ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert is None and args.tls_key is None:
        if args.client_ca is not None:
            raise SystemExit("hubject-sim: --client-ca needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise SystemExit("hubject-sim: --tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(args.client_ca)
    except (OSError, ssl.SSLError) as exc:
        raise SystemExit(f"hubject-sim: cannot load TLS material: {exc}") from exc
    return context


def _known_evse_ids(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SystemExit(f"hubject-sim: cannot read {path}: {exc}") from exc
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


async def serve_until_stopped(args: argparse.Namespace) -> None:
    simulator = HubjectSimulator(
        faults=faults_from_args(args),
        known_evse_ids=_known_evse_ids(args.known_evse_ids),
        require_evse_data=args.require_evse_data,
    )
    host, port = args.listen
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve_simulator(simulator, host, port, server_ssl_context(args)) as served:
        mtls = " (client certificate required)" if args.client_ca else ""
        print(f'Hubject simulator listening: url = "{served.url}"{mtls}', flush=True)
        print(
            f"control: {served.base_url}/_simulator/faults, /_simulator/state, /_simulator/reset", flush=True
        )
        await stop.wait()
    print("Hubject simulator stopped", flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        asyncio.run(serve_until_stopped(args))
    except OSError as exc:
        print(f"hubject-sim: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oicp.simulator", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))
