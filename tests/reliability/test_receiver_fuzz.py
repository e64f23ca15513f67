"""Property-based fuzzing of the OCPI receiver's Locations endpoints with hypothesis.

Three generators: valid objects with one field replaced by arbitrary JSON or removed, arbitrary JSON
bodies, and arbitrary bytes; each sent as PUT or PATCH to a Location, EVSE or Connector (2.2.1 and 2.1.1),
sometimes under arbitrary (percent-encoded) ids. Properties: never a 5xx, always a well-formed OCPI
envelope with an HTTP status the receiver documents, the store unchanged whenever the answer is not 1000,
and every answer conforms to ``docs/openapi-bridge.yaml``.

The receiver runs on its own event loop in a thread for the whole module, so hypothesis drives it from
plain synchronous tests. Default: 120 examples per generator (a few seconds); ``-m slow``: 2500 each.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.ocpi_target import (
    LOCATION_211,
    LOCATION_221,
    ROOT_211,
    ROOT_221,
    Answer,
    Target,
    serve_target,
)
from tests.reliability.openapi_bridge import assert_conforms

T = TypeVar("T")
DOCUMENTED_HTTP = {200, 201, 400, 401, 403, 404, 413}
FAST = settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(FAST, max_examples=2500)


class LoopThread:
    """An event loop in a thread: hypothesis' synchronous examples run coroutines on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class Fuzzed:
    loop: LoopThread
    target: Target

    def send(self, method: str, path: str, body: bytes) -> tuple[Answer, bool]:
        """Send; return the answer and whether the store changed."""
        before = self.loop.run(self.target.tables())
        answer = self.loop.run(self.target.call(method, path, raw=body))
        after = self.loop.run(self.target.tables())
        return answer, before != after


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    loop = LoopThread()
    served = serve_target(tmp_path_factory.mktemp("fuzz"), max_body_bytes=64_000)
    try:
        target = loop.run(served.__aenter__())
        yield Fuzzed(loop, target)
        loop.run(served.__aexit__(None, None, None))
    finally:
        loop.close()


# --- generators --------------------------------------------------------------------------------------

EVSE_221 = LOCATION_221["evses"][0]
EVSE_211 = LOCATION_211["evses"][0]
# (version root, location id, the valid objects at each level)
TARGETS = [
    (ROOT_221, "LOC1", LOCATION_221, EVSE_221, EVSE_221["connectors"][0]),
    (ROOT_211, "LOC211", LOCATION_211, EVSE_211, EVSE_211["connectors"][0]),
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=60),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a field or element of ``value`` (including inner objects and lists)."""
    paths: list[tuple[Any, ...]] = []
    items: list[tuple[Any, Any]] = (
        list(value.items())
        if isinstance(value, dict)
        else list(enumerate(value))
        if isinstance(value, list)
        else []
    )
    for key, child in items:
        paths.append((*prefix, key))
        paths.extend(leaf_paths(child, (*prefix, key)))
    return paths


@st.composite
def endpoint(draw: st.DrawFn) -> tuple[str, str, Any]:
    """(method, path, the valid object for that path)."""
    root, location_id, location, evse, connector = draw(st.sampled_from(TARGETS))
    level = draw(st.sampled_from(["location", "evse", "connector"]))
    path, valid = f"{root}/{location_id}", location
    if level != "location":
        path, valid = f"{path}/{evse['uid']}", evse
    if level == "connector":
        path, valid = f"{path}/{connector['id']}", connector
    return draw(st.sampled_from(["PUT", "PATCH"])), path, valid


@st.composite
def one_field_mutated(draw: st.DrawFn) -> tuple[str, str, bytes]:
    method, path, valid = draw(endpoint())
    document = copy.deepcopy(valid)
    document["last_updated"] = "2026-01-01T00:00:00Z"  # newer than stored: the change is not ignored
    where = draw(st.sampled_from(leaf_paths(document)))
    parent: Any = document
    for key in where[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        parent[where[-1]] = draw(json_values)
    elif isinstance(parent, dict):
        del parent[where[-1]]
    else:
        parent.pop(where[-1])
    return method, path, json.dumps(document).encode()


segment = (
    st.text(min_size=1, max_size=45).filter(lambda s: s not in (".", "..")).map(lambda s: quote(s, safe=""))
)


@st.composite
def arbitrary_json(draw: st.DrawFn) -> tuple[str, str, bytes]:
    method, path, valid = draw(endpoint())
    if draw(st.booleans()):  # arbitrary ids in the URL, sometimes with a valid body
        root = path.split("/locations/")[0] + "/locations/BE/BEC"
        ids = draw(st.lists(segment, min_size=1, max_size=3))
        path = root + "/" + "/".join(ids)
        if draw(st.booleans()):
            return method, path, json.dumps(valid).encode()
    return method, path, json.dumps(draw(json_values)).encode()


@st.composite
def arbitrary_bytes(draw: st.DrawFn) -> tuple[str, str, bytes]:
    method, path, _ = draw(endpoint())
    return method, path, draw(st.binary(max_size=300))


# --- the property --------------------------------------------------------------------------------------


def check(fuzzed: Fuzzed, request: tuple[str, str, bytes]) -> None:
    method, path, body = request
    answer, changed = fuzzed.send(method, path, body)
    assert answer.http_status < 500, answer.text
    assert answer.http_status in DOCUMENTED_HTTP, (answer.http_status, answer.text)
    envelope = answer.envelope
    assert envelope is not None, answer.text
    assert isinstance(envelope.get("status_code"), int)
    assert isinstance(envelope.get("status_message"), str)
    assert isinstance(envelope.get("timestamp"), str)
    if envelope["status_code"] != 1000:
        assert not changed, f"refused with {envelope['status_code']} but the store changed"
    else:
        assert answer.http_status in (200, 201)
    assert_conforms(fuzzed.target.exchanges[-1])


def run(fuzzed: Fuzzed, strategy: st.SearchStrategy[tuple[str, str, bytes]], config: settings) -> None:
    @config
    @given(strategy)
    def prop(request: tuple[str, str, bytes]) -> None:
        check(fuzzed, request)

    prop()
    fuzzed.target.exchanges.clear()


def test_one_mutated_field_never_breaks_the_receiver_nor_leaves_a_partial_change(fuzzed: Fuzzed) -> None:
    run(fuzzed, one_field_mutated(), FAST)


def test_arbitrary_json_and_ids_never_break_the_receiver(fuzzed: Fuzzed) -> None:
    run(fuzzed, arbitrary_json(), FAST)


def test_arbitrary_bytes_never_break_the_receiver(fuzzed: Fuzzed) -> None:
    run(fuzzed, arbitrary_bytes(), FAST)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["mutated", "json", "bytes"])
def test_long_fuzzing_never_breaks_the_receiver(fuzzed: Fuzzed, name: str) -> None:
    strategy = {"mutated": one_field_mutated(), "json": arbitrary_json(), "bytes": arbitrary_bytes()}[name]
    run(fuzzed, strategy, SLOW)
