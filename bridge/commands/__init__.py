"""The ``oicp-bridge`` subcommands, one module each (registered in ``bridge.cli.COMMANDS``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="configuration file (default: $OICP_BRIDGE_CONFIG, then ./oicp-bridge.toml)",
    )
