"""``oicp-bridge example-config``: print the documented example configuration (``config/example.toml``).

The file ships inside the package (``bridge/example.toml``), so an installed bridge (pip, the Docker
image) can start from it: ``oicp-bridge example-config > oicp-bridge.toml``.
"""

from __future__ import annotations

import argparse
import sys
from importlib.resources import files

HELP = "print the example configuration, every key documented (start from it: > oicp-bridge.toml)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def example_text() -> str:
    return files("bridge").joinpath("example.toml").read_text(encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(example_text())
    return 0
