"""``oicp-bridge check-config``: validate the configuration and the certificates, one line per problem.

It loads the configuration exactly as ``run`` does (``load_config_or_exit(daemon=True)``): a file it
passes is one ``run`` starts with, and one it refuses, ``run`` refuses too.
"""

from __future__ import annotations

import argparse
import sys

from bridge.commands import add_config_argument, load_config_or_exit

HELP = "validate the configuration and certificates; exit 1 with one line per problem"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    loaded = load_config_or_exit(args, daemon=True, require_file=True, out=sys.stdout)
    for warning in loaded.warnings:
        print(f"{loaded.path}: warning: {warning}")
    config = loaded.config
    protocol = config.hubject.protocol.value
    print(f"{loaded.path}: OK ({len(config.operators)} operator(s), protocol {protocol})")
    return 0
