"""The ``oicp-bridge`` subcommands, one module each (registered in ``bridge.cli.COMMANDS``)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bridge.config import BridgeConfig, config_path, load_config, parse_listen
from bridge.errors import ConfigError


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="configuration file (default: $OICP_BRIDGE_CONFIG, then ./oicp-bridge.toml)",
    )


class CommandExit(Exception):  # noqa: N818 - an exit, not an error: carries the exit status
    """Raised by a command to end with ``status`` after it has printed why; ``bridge.cli.main`` returns it."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True, slots=True)
class Loaded:
    path: Path
    config: BridgeConfig
    warnings: list[str]


def load_config_or_exit(
    args: argparse.Namespace, *, daemon: bool = False, require_file: bool = False, out: TextIO | None = None
) -> Loaded:
    """The one way every command reads its configuration: on any problem, print one line per problem
    (``PATH: key: message``) and raise ``CommandExit(1)``.

    ``daemon``: also the checks ``run`` needs (certificates, store folder, operators), exactly the ones
    ``check-config`` makes, so the two never disagree.
    """
    from bridge.commands import checks  # the checks import lxml and the SOAP schema: only when needed

    path = config_path(args.config)
    stream = out or sys.stderr
    now = time.time()
    try:
        config = load_config(
            path,
            require_file=require_file or args.config is not None,
            checks=(lambda c: checks.problems(c, now)) if daemon else None,
        )
    except ConfigError as exc:
        hint = "" if path.exists() else " (file not found: use --config or $OICP_BRIDGE_CONFIG)"
        for index, problem in enumerate(exc.problems):
            print(f"{path}: {problem}" + (hint if index == 0 and "operators" in problem else ""), file=stream)
        raise CommandExit(1) from None
    return Loaded(path, config, checks.warnings(config, now) if daemon else [])


def admin_url(config: BridgeConfig) -> str:
    """The base URL a command on the same host reaches the daemon's admin listener at."""
    host, port = parse_listen(config.admin.listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # a wildcard bind is reached on loopback
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
