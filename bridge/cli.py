"""The ``oicp-bridge`` command line (names fixed in docs/contract.md).

Each subcommand lives in its own module, which defines ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status). This table is the only place that lists them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

COMMANDS: dict[str, str] = {
    # name: module implementing it
    "run": "bridge.commands.run",
    "demo": "bridge.demo",
    "resync": "bridge.commands.resync",
    "status": "bridge.commands.status",
    "check-config": "bridge.commands.check_config",
    "hubject-sim": "oicp.simulator.command",
    "ocpi-sim": "bridge.ocpi.cpo_sim.command",
}


class CommandModule(Protocol):
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, CommandModule]]:
    parser = argparse.ArgumentParser(
        prog="oicp-bridge",
        description="Publish OCPI EVSE status to Hubject (OICP 2.3 REST / OICP 2.2 SOAP).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules: dict[str, CommandModule] = {}
    for name, module_name in COMMANDS.items():
        module = cast(CommandModule, importlib.import_module(module_name))
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        modules[name] = module
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    return modules[args.command].run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
