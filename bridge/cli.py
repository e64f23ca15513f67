"""The ``oicp-bridge`` command line (names fixed in docs/contract.md).

Each subcommand lives in its own module, which defines ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status). This table is the only place that lists them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol, cast

COMMANDS: dict[str, str] = {
    # name: module implementing it
    "run": "bridge.commands.run",
    "demo": "bridge.demo",
    "resync": "bridge.commands.resync",
    "status": "bridge.commands.status",
    "check-config": "bridge.commands.check_config",
    "example-config": "bridge.commands.example_config",
    "health": "bridge.commands.health",
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules: dict[str, CommandModule] = {}
    for name, module_name in COMMANDS.items():
        module = cast(CommandModule, importlib.import_module(module_name))
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        modules[name] = module
    return parser, modules


def package_version() -> str:
    try:
        return version("oicp-bridge")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status; nothing escapes as a traceback for what a user does
    (bad options, a bad configuration, a closed pipe): 2 for usage errors, as argparse has it."""
    from bridge.commands import CommandExit

    parser, modules = build_parser()
    try:
        args = parser.parse_args(argv)
        status = modules[args.command].run(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
        return status
    except SystemExit as exc:  # argparse: --help, --version (0) and usage errors (2), already printed
        return exc.code if isinstance(exc.code, int) else 1
    except CommandExit as exc:  # the command printed why
        return exc.status
    except BrokenPipeError:
        # `oicp-bridge status | head`: the reader left. Point stdout at /dev/null so the interpreter's
        # final flush does not fail again (Python docs, "Note on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
