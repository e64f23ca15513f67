"""JSON-schema validation of OICP messages against Hubject's own OpenAPI files, loaded offline.

The YAML files under ``oicp/openapi/`` are verbatim copies of Hubject's OpenAPI definitions; their
``$ref``s are resolved file-relative, so a schema here is exactly what Hubject publishes, never a
hand-copied version. OpenAPI 3.0 schema objects are close enough to JSON Schema draft 4 for the
keywords these files use (type, required, properties, enum, pattern, items, maxItems, oneOf);
``example`` and ``description`` are annotations, and ``maximum`` on strings (a quirk of the files) is
ignored by JSON Schema for non-numbers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

OPENAPI_ROOT = Path(str(resources.files("oicp") / "openapi"))


class Schema(StrEnum):
    """Message schemas by file, relative to ``oicp/openapi``."""

    PUSH_EVSE_STATUS = "cpo-2.3/src/schemas/eRoamingPushEvseStatus.yaml"
    ACKNOWLEDGEMENT = "cpo-2.3/src/schemas/eRoamingAcknowledgment.yaml"
    PULL_EVSE_STATUS = "emp-2.3/src/schemas/eRoamingPullEVSEStatus.yaml"
    PULL_EVSE_STATUS_BY_ID = "emp-2.3/src/schemas/eRoamingPullEVSEStatusByID.yaml"
    PULL_EVSE_STATUS_BY_OPERATOR_ID = "emp-2.3/src/schemas/eRoamingPullEVSEStatusByOperatorID.yaml"
    EVSE_STATUS_RESPONSE = "emp-2.3/src/schemas/eRoamingEVSEStatus.yaml"
    EVSE_STATUS_BY_ID_RESPONSE = "emp-2.3/src/schemas/eRoamingEVSEStatusByID.yaml"
    PUSH_EVSE_DATA = "cpo-2.3/src/schemas/eRoamingPushEvseData.yaml"
    EVSE_DATA_RECORD = "cpo-2.3/src/schemas/EvseDataRecord.yaml"
    PULL_EVSE_DATA = "emp-2.3/src/schemas/eRoamingPullEVSEData.yaml"
    EVSE_DATA_RESPONSE = "emp-2.3/src/schemas/eRoamingEVSEData.yaml"


class _OpenApiLoader(yaml.SafeLoader):
    """YAML 1.2 booleans only. PyYAML follows YAML 1.1, where ``on``/``off``/``yes``/``no`` are booleans,
    so ``OpeningTimes.yaml``'s ``required: [Period, on]`` would require a key ``True`` that no JSON object
    can have; OpenAPI 3.0 documents are YAML 1.2, where only true/false are."""


_OpenApiLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_OpenApiLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@functools.cache
def _load_yaml(uri: str) -> Resource[Any]:
    """One schema file as a resource, read once: the registry retrieves a ``$ref``'d file on every lookup
    (retrieved resources are not kept in an immutable registry), so without this cache each record of a
    push re-read and re-parsed ``EvseID.yaml`` (about 3 ms a record; a 100 000-record fullLoad took 2 min)."""
    path = Path(uri.removeprefix("file://"))
    with path.open(encoding="utf-8") as handle:
        contents = yaml.load(handle, Loader=_OpenApiLoader)  # a SafeLoader subclass: no arbitrary objects
        return Resource.from_contents(contents, default_specification=DRAFT4)


class _CycleError(Exception):
    """A schema refers back to itself: it cannot be inlined."""


def _inline(node: Any, path: Path, seen: frozenset[Path]) -> Any:
    """``node`` (from the file at ``path``) with every ``$ref`` to another file replaced by that file's
    schema, recursively. The files' refs are all whole-file and relative (``./EvseID.yaml``)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and "#" not in ref and "://" not in ref:
            target = (path.parent / ref).resolve()
            if target in seen:
                raise _CycleError(str(target))
            contents = _load_yaml(target.as_uri()).contents
            return _inline(contents, target, seen | {target})
        return {key: _inline(value, path, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, path, seen) for item in node]
    return node


@functools.cache
def _validator(schema: Schema) -> Draft4Validator:
    """The validator of one message schema. Its ``$ref``s are inlined once, so validating a record does
    not resolve references (a 100 000-record fullLoad validates in about a second instead of minutes);
    a schema that refers back to itself keeps its references and is resolved through the registry."""
    path = (OPENAPI_ROOT / schema.value).resolve()
    registry: Registry[Any] = Registry(retrieve=_load_yaml)  # type: ignore[call-arg]
    resource = _load_yaml(path.as_uri())
    try:
        return Draft4Validator(_inline(resource.contents, path, frozenset({path})), registry=registry)
    except _CycleError:
        registry = registry.with_resource(path.as_uri(), resource)
        return Draft4Validator({"$ref": path.as_uri()}, registry=registry)


Check = Callable[[Any], bool]
# ``format`` too: the validator has no format checker, so jsonschema treats it as an annotation
_ANNOTATIONS = frozenset({"description", "example", "title", "format"})
_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "object": dict,
    "array": list,
    "boolean": bool,
    "integer": int,  # a float such as 1.0 fails here and goes to the full validator, which decides
    "number": (int, float),
}


def _fast_check(schema: Any) -> Check | None:
    """A plain-Python predicate that is True only for instances the schema certainly accepts, for the
    keywords these message schemas use; None if the schema uses anything else. False means "not sure":
    the caller then runs the full validator, which also gives the messages. So results never change;
    a valid fullLoad of 100 000 records just skips jsonschema's per-record machinery (~35 µs a record)."""
    if not isinstance(schema, dict):
        return None
    checks: list[Check] = []
    for key, value in schema.items():
        if key in _ANNOTATIONS:
            continue
        check = _keyword_check(key, value)
        if check is None:
            return None
        checks.append(check)
    return lambda instance: all(check(instance) for check in checks)


def _keyword_check(key: str, value: Any) -> Check | None:
    if key == "type" and isinstance(value, str) and value in _TYPES:
        expected = _TYPES[value]
        if value == "boolean":
            return lambda i: isinstance(i, bool)
        return lambda i: isinstance(i, expected) and not isinstance(i, bool)
    if key == "required" and isinstance(value, list):
        names = tuple(value)
        return lambda i: not isinstance(i, dict) or all(k in i for k in names)
    if key == "properties" and isinstance(value, dict):
        props: dict[str, Check] = {}
        for name, sub in value.items():
            sub_check = _fast_check(sub)
            if sub_check is None:
                return None
            props[name] = sub_check
        return lambda i: not isinstance(i, dict) or all(c(i[n]) for n, c in props.items() if n in i)
    if key == "items" and isinstance(value, dict):
        item = _fast_check(value)
        if item is None:
            return None
        return lambda i: not isinstance(i, list) or all(map(item, i))
    if key == "maxItems" and isinstance(value, int):
        limit = value
        return lambda i: not isinstance(i, list) or len(i) <= limit
    if key == "pattern" and isinstance(value, str):
        compiled = re.compile(value)
        return lambda i: not isinstance(i, str) or compiled.search(i) is not None
    if key == "enum" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        allowed = frozenset(value)
        return lambda i: isinstance(i, str) and i in allowed
    if key in ("maximum", "minimum") and isinstance(value, int | float) and not isinstance(value, bool):
        # numbers only (booleans are not numbers in JSON Schema); on strings, a quirk of the files, ignored
        bound = value
        if key == "maximum":
            return lambda i: isinstance(i, bool) or not isinstance(i, int | float) or i <= bound
        return lambda i: isinstance(i, bool) or not isinstance(i, int | float) or i >= bound
    return None


@functools.cache
def _fast(schema: Schema) -> Check | None:
    return _fast_check(_validator(schema).schema)


def validation_errors(schema: Schema, message: Mapping[str, Any] | Any) -> list[str]:
    """Every way ``message`` breaks the official schema, as readable lines (empty: valid)."""
    fast = _fast(schema)
    if fast is not None and fast(message):
        return []
    errors = sorted(_validator(schema).iter_errors(message), key=lambda e: list(e.absolute_path))
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(body)'}: {error.message}" for error in errors
    ]


def pull_request_schema(body: Mapping[str, Any]) -> Schema:
    """Which of the three pull requests a body is.

    The EMP OpenAPI declares the body as ``oneOf`` the three, but a ByID or ByOperatorID body also
    satisfies plain eRoamingPullEVSEStatus (which requires only ProviderID and allows extra fields), so
    ``oneOf`` would reject every valid ByID body. The distinguishing field decides instead.
    """
    if "EvseID" in body:
        return Schema.PULL_EVSE_STATUS_BY_ID
    if "OperatorID" in body:
        return Schema.PULL_EVSE_STATUS_BY_OPERATOR_ID
    return Schema.PULL_EVSE_STATUS
