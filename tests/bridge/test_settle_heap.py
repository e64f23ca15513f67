"""The daemon moves its start-up objects out of the cyclic collector's scans (``settle_heap``), so full
collections stop stalling the event loop under load (docs/benchmarks.md, "The p99 tail")."""

from __future__ import annotations

import json
import subprocess
import sys

PROGRAM = """
import gc, json
from bridge.commands.run import settle_heap
import bridge.app  # what the daemon has imported by the time it serves
before = gc.get_freeze_count()
settle_heap()
frozen = gc.get_freeze_count()
# a full collection now walks only what was made after the start
gc.collect()
print(json.dumps({"before": before, "frozen": frozen, "tracked": len(gc.get_objects())}))
"""


def test_settle_heap_freezes_the_start_up_objects() -> None:
    # in a process of its own: freezing is for the life of a process, not for this test run's
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["before"] == 0
    # the imported bridge is tens of thousands of objects; after the freeze the collector tracks few
    assert found["frozen"] > 20_000
    assert found["tracked"] < found["frozen"] / 10
