"""Benchmarks with baselines measured in the same run (docs/benchmarks.md).

``python -m bench`` runs them all; ``python -m bench intake`` one; ``--quick`` or ``--tiny`` for smaller
sizes. Each module has ``run(sizes) -> dict`` (the JSON result, with ``ratio`` and ``target_met``) and
``summary(result) -> str``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

BENCHMARKS = ("intake", "wrk", "storm", "resync", "coldstart", "data_fullload", "data_churn", "pg_intake")


def load(name: str) -> ModuleType:
    """The module of benchmark ``name`` (imported on demand: the child processes import ``bench`` too)."""
    if name not in BENCHMARKS:
        raise KeyError(name)
    return importlib.import_module(f"bench.{name}")
