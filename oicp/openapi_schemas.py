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
from collections.abc import Mapping
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


def _load_yaml(uri: str) -> Resource[Any]:
    path = Path(uri.removeprefix("file://"))
    with path.open(encoding="utf-8") as handle:
        return Resource.from_contents(yaml.safe_load(handle), default_specification=DRAFT4)


@functools.cache
def _validator(schema: Schema) -> Draft4Validator:
    path = OPENAPI_ROOT / schema.value
    registry: Registry[Any] = Registry(retrieve=_load_yaml)  # type: ignore[call-arg]
    resource = _load_yaml(path.as_uri())
    registry = registry.with_resource(path.as_uri(), resource)
    return Draft4Validator({"$ref": path.as_uri()}, registry=registry)


def validation_errors(schema: Schema, message: Mapping[str, Any] | Any) -> list[str]:
    """Every way ``message`` breaks the official schema, as readable lines (empty: valid)."""
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
