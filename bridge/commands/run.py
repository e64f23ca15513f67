"""``oicp-bridge run``: the daemon."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal

import structlog

from bridge.app import Bridge
from bridge.commands import add_config_argument, load_config_or_exit
from bridge.config import LogFormat, LogLevel
from bridge.errors import BridgeError
from bridge.logs import configure_logging
from oicp.errors import OICPError

HELP = "run the bridge: OCPI in, Hubject out, admin endpoints; SIGTERM/SIGINT drain and exit 0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--log-format",
        choices=[f.value for f in LogFormat],
        default=None,
        help="json lines, or console for a terminal (default: [log] format, else auto: json unless a tty)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=[level.value for level in LogLevel],
        default=None,
        help="the lowest level logged (default: [log] level, else INFO)",
    )


def settle_heap() -> None:
    """Move what start-up built (modules, models, schemas, configuration: most of the daemon's objects)
    out of the cyclic collector's reach. Without it every full collection walks them all and stalls the
    event loop 25-37 ms a few times a second under load: the OCPI answers' p99 tail (docs/benchmarks.md,
    "The p99 tail"). Once per process, at the daemon's start; objects made later are collected as usual."""
    gc.collect()
    gc.freeze()


async def serve(bridge: Bridge) -> None:
    settle_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await bridge.run_until(stop)


def run(args: argparse.Namespace) -> int:
    # the configuration first: its problems are printed as plain lines, before any log output
    loaded = load_config_or_exit(args, daemon=True)
    config = loaded.config
    log_format = LogFormat(args.log_format) if args.log_format else config.log.format
    json_logs = {LogFormat.AUTO: None, LogFormat.JSON: True, LogFormat.CONSOLE: False}[log_format]
    configure_logging(json=json_logs, level=(args.log_level or config.log.level.value))
    log = structlog.get_logger("bridge")
    for warning in loaded.warnings:
        log.warning("configuration warning", problem=warning, config=str(loaded.path))
    try:
        bridge = Bridge.build(config)
        asyncio.run(serve(bridge))
    except BridgeError as exc:
        log.error("bridge failed", error=str(exc), error_type=type(exc).__name__)
        return 1
    except OICPError as exc:
        log.error("bridge failed in the Hubject client", error=str(exc), error_type=type(exc).__name__)
        return 1
    return 0
