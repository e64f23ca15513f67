"""``oicp-bridge run``: the daemon."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import structlog

from bridge.app import Bridge
from bridge.commands import add_config_argument
from bridge.config import config_path, load_config
from bridge.errors import BridgeError, ConfigError
from bridge.logs import configure_logging
from oicp.errors import OICPError

HELP = "run the bridge: OCPI in, Hubject out, admin endpoints; SIGTERM/SIGINT drain and exit 0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--log-format", choices=["auto", "json", "console"], default="auto")
    parser.add_argument("--log-level", default="INFO")


async def serve(bridge: Bridge) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await bridge.run_until(stop)


def run(args: argparse.Namespace) -> int:
    json_logs = {"auto": None, "json": True, "console": False}[args.log_format]
    configure_logging(json=json_logs, level=args.log_level.upper())
    log = structlog.get_logger("bridge")
    path = config_path(args.config)
    try:
        config = load_config(path, require_file=args.config is not None)
        if not config.operators:
            found = "" if path.exists() else " (file not found: use --config or $OICP_BRIDGE_CONFIG)"
            raise ConfigError([f"no [[operators]] configured, so nothing could be pushed{found}"])
        bridge = Bridge.build(config)
        if config.hubject.url.startswith("http://"):
            log.warning("plain http to Hubject: only for local tests", url=config.hubject.url)
        asyncio.run(serve(bridge))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return 1
    except (BridgeError, OICPError, OSError) as exc:
        log.error("bridge failed", error=str(exc), error_type=type(exc).__name__)
        return 1
    return 0
