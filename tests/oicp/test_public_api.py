"""The facade: what ``import oicp`` offers (httpx's test_exported_members), and what it costs to import."""

from __future__ import annotations

import subprocess
import sys
import types

import oicp


def _ruff_order(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: SCREAMING_CASE, then CamelCase, then the rest, each sorted.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_exported_members() -> None:
    public = {
        name
        for name, value in vars(oicp).items()
        if (not name.startswith("_") or name == "__version__") and not isinstance(value, types.ModuleType)
    }
    assert set(oicp.__all__) == public
    assert oicp.__all__ == sorted(oicp.__all__, key=_ruff_order)
    assert len(oicp.__all__) == len(set(oicp.__all__))


def test_what_a_user_tries_first_is_there() -> None:
    for name in (
        "RestClient",
        "SoapClient",
        "ClientSettings",
        "PushResult",
        "EvseStatusClient",
        "RetryPolicy",
    ):
        assert name in oicp.__all__
    assert frozenset({"018", "603", "604"}) == oicp.RECORD_LEVEL_CODES
    assert oicp.__version__.count(".") == 2


# Modules the library must not need at import: the extras (zeep, lxml; jsonschema, yaml) and the bridge.
BLOCKED = {
    "bridge",
    "jsonschema",
    "lxml",
    "prometheus_client",
    "pydantic_settings",
    "structlog",
    "yaml",
    "zeep",
}

IMPORT_WITH_BLOCKED = """
import sys
blocked = set(sys.argv[1].split(","))
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} is blocked")
        return None
sys.meta_path.insert(0, Block())
from oicp import *
from oicp import ClientSettings, RestClient, SoapClient
SoapClient(ClientSettings())
print(sorted({m.split(".")[0] for m in sys.modules} & blocked))
"""


def test_importing_the_facade_needs_no_extra_and_no_bridge() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_WITH_BLOCKED, ",".join(sorted(BLOCKED))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
