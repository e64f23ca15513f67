"""OCPI Locations rules, pure: what a PUT or PATCH does to a stored Location document (mod_locations PUT and
PATCH, transport_and_format PATCH), the checks a change must pass, and which EVSEs a change touches. No I/O:
``bridge.ocpi.store`` applies these to the rows it reads and writes.

Checks beyond the models (docs/ocpi.md):
- a ``last_updated`` more than ``MAX_CLOCK_SKEW`` beyond the bridge's clock is refused (2001): stored, it
  would make every later, real change of that object look older and be ignored for years;
- a Location lists each EVSE ``uid`` once, each ``evse_id`` on one EVSE in service, and each EVSE each
  Connector ``id`` once (2001): which of two twins is meant is a guess, and a guess can publish the wrong one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError

from bridge.observation import EvseObservation, OcpiEvseStatus
from bridge.ocpi.errors import InvalidParametersError, UnknownLocationError
from bridge.ocpi.v211 import models as v211
from bridge.ocpi.v221 import models as v221
from bridge.ocpi.versions import OcpiVersion
from bridge.outbox import Row, to_micros

Document = dict[str, Any]
# How far beyond the bridge's clock a last_updated may be (a CPO's clock running a little fast).
MAX_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class VersionModels:
    location: type[BaseModel]
    evse: type[BaseModel]
    connector: type[BaseModel]
    # 2.2.1 mod_locations PATCH: "Any request to the PATCH method SHALL contain the last_updated field."
    patch_requires_last_updated: bool


MODELS: dict[OcpiVersion, VersionModels] = {
    OcpiVersion.V2_1_1: VersionModels(v211.Location, v211.Evse, v211.Connector, False),
    OcpiVersion.V2_2_1: VersionModels(v221.Location, v221.Evse, v221.Connector, True),
}


class ObjectKind(StrEnum):
    LOCATION = "Location"
    EVSE = "EVSE"
    CONNECTOR = "Connector"


OWN_ID = {
    ObjectKind.LOCATION: "id",
    ObjectKind.EVSE: "uid",
    ObjectKind.CONNECTOR: "id",
}  # the body's id field


@dataclass(frozen=True, slots=True)
class ObjectPath:
    """The URL segments of a Locations receiver request: which object of which party."""

    country_code: str
    party_id: str
    location_id: str
    evse_uid: str | None = None
    connector_id: str | None = None

    @property
    def kind(self) -> ObjectKind:
        if self.connector_id is not None:
            return ObjectKind.CONNECTOR
        if self.evse_uid is not None:
            return ObjectKind.EVSE
        return ObjectKind.LOCATION

    def own_id(self, kind: ObjectKind) -> str | None:
        """The URL's id of the object itself (``kind`` is ``self.kind``, passed where already known)."""
        if kind is ObjectKind.LOCATION:
            return self.location_id
        return self.evse_uid if kind is ObjectKind.EVSE else self.connector_id

    def __str__(self) -> str:
        parts = [self.country_code, self.party_id, self.location_id, self.evse_uid, self.connector_id]
        return "/".join(p for p in parts if p is not None)


class Outcome(StrEnum):
    CREATED = "created"  # the object was new
    UPDATED = "updated"  # the stored object changed
    UNCHANGED = "unchanged"  # identical to what was stored
    STALE = "stale"  # older last_updated than what is stored: ignored, never overwrites newer


@dataclass(frozen=True, slots=True)
class WriteResult:
    outcome: Outcome
    touched: tuple[Touched, ...] = ()
    # the Location as validated after a change that rewrote its document (None for the status fast path):
    # the EVSE data decision maps it without parsing the document again
    location: Any = None


# --- pure helpers ------------------------------------------------------------------------------------


def describe_validation_error(what: str, exc: ValidationError) -> str:
    """One line a CPO's engineer can act on: each failing field path and why (first 8)."""
    problems = []
    for error in exc.errors()[:8]:
        where = ".".join(str(part) for part in error["loc"]) or "(body)"
        message = error["msg"]
        if error["type"] == "enum":
            message += f" (got {error['input']!r})"
        elif error["type"] == "string_too_long":
            message = f"longer than {error['ctx']['max_length']} characters"
        problems.append(f"{where}: {message}")
    more = len(exc.errors()) - len(problems)
    suffix = f"; and {more} more" if more > 0 else ""
    return f"invalid {what}: " + "; ".join(problems) + suffix


def validate(model: type[BaseModel], document: Any, what: str) -> Any:
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise InvalidParametersError(describe_validation_error(what, exc)) from exc


def parse_last_updated(value: Any, what: str) -> datetime:
    try:
        parsed = v221.parse_datetime(value)
    except ValueError as exc:
        raise InvalidParametersError(f"invalid {what}: last_updated: {exc}") from exc
    assert isinstance(parsed, datetime)
    return parsed


format_datetime = v221.format_datetime


def find(items: list[Document], key: str, value: str) -> Document | None:
    return next((item for item in items if isinstance(item, dict) and item.get(key) == value), None)


def clone(value: Any) -> Any:
    """A deep copy of JSON data. A JSON round trip runs in C: several times faster than copy.deepcopy,
    which dominated the cost of an EVSE PATCH (docs/benchmarks.md)."""
    return json.loads(json.dumps(value))


def merge_patch(stored: Document, patch: Document, *, list_keys: dict[str, str]) -> Document:
    """PATCH semantics (transport_and_format PATCH): fields present replace, fields absent stay.

    The lists of sub-objects named in ``list_keys`` (``evses`` by ``uid``, ``connectors`` by ``id``) merge
    per element instead of being replaced, since PATCH "is not suitable to remove information".
    """
    merged: Document = clone(stored)
    for key, value in patch.items():
        id_key = list_keys.get(key)
        if id_key is not None and isinstance(value, list) and isinstance(merged.get(key), list):
            current: list[Document] = merged[key]
            for element in value:
                element_id = element.get(id_key) if isinstance(element, dict) else None
                target = find(current, id_key, element_id) if isinstance(element_id, str) else None
                if target is None:
                    current.append(clone(element))
                else:
                    current[current.index(target)] = merge_patch(target, element, list_keys=list_keys)
        else:
            merged[key] = clone(value)
    return merged


SUB_LISTS = {"evses": "uid", "connectors": "id"}
IDENTIFYING = {"id", "uid", "country_code", "party_id", "last_updated"}


@dataclass(frozen=True, slots=True)
class EvseRow:
    """What the store keeps per EVSE uid beside the document (``ocpi_evse``)."""

    evse_id: str | None  # the last evse_id seen for this uid (kept when OCPI drops it)
    status: str
    publish: bool
    last_updated_us: int


@dataclass(frozen=True, slots=True)
class Touched:
    """An EVSE a change wrote: its state now, and the evse_id its uid held before (a rename withdraws it)."""

    state: EvseObservation
    previous_evse_id: str | None
    # what the store learnt on the way, so the intake need not read it again (the status fast path):
    holders: tuple[EvseObservation, ...] | None = None  # every EVSE holding its EvseID now, if known
    listed: bool = True  # whether a not-pushed note may exist for it
    # the outbox rows of its EvseID by operator (read with the EVSE, one statement fewer), if known
    outbox: Mapping[str, Row] | None = dataclasses.field(default=None, compare=False)


def evse_rows(
    path: ObjectPath, location: Any, previous: dict[str, EvseRow], addressed: str | None = None
) -> tuple[list[Touched], dict[str, EvseRow]]:
    """Diff the validated Location against the stored EVSE rows: the EVSEs the change touched (their row
    changed, or the request addressed them: ``addressed`` uid) and the new rows. An EVSE that disappears
    from a replaced Location is REMOVED (its evse_id remembered)."""
    publish = bool(getattr(location, "publish", True))  # 2.1.1 has no publish flag: always published
    touched: list[Touched] = []
    rows: dict[str, EvseRow] = {}
    location_updated: datetime = location.last_updated
    for evse in location.evses or []:
        before = previous.get(evse.uid)
        evse_id = evse.evse_id if evse.evse_id is not None else (before.evse_id if before else None)
        status = OcpiEvseStatus(evse.status)
        row = rows[evse.uid] = EvseRow(evse_id, status.value, publish, to_micros(evse.last_updated))
        if before is None or before != row or evse.uid == addressed:
            state = EvseObservation(
                path.country_code, path.party_id, path.location_id, evse.uid, evse_id, status,
                evse.last_updated, publish,
            )  # fmt: skip
            touched.append(Touched(state, before.evse_id if before else None))
    for uid, before in previous.items():
        if uid in rows:
            continue
        rows[uid] = EvseRow(
            before.evse_id, OcpiEvseStatus.REMOVED.value, before.publish, to_micros(location_updated)
        )
        if rows[uid] != before:
            state = EvseObservation(
                path.country_code, path.party_id, path.location_id, uid, before.evse_id,
                OcpiEvseStatus.REMOVED, location_updated, before.publish,
            )  # fmt: skip
            touched.append(Touched(state, before.evse_id))
    return touched, rows


def _timestamps(document: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every ``last_updated`` of a Location, EVSE or Connector document and of the objects inside it."""
    if not isinstance(document, dict):
        return
    if "last_updated" in document:
        yield where, document["last_updated"]
    for key, kind in (("evses", "EVSE"), ("connectors", "Connector")):
        items = document.get(key)
        if isinstance(items, list):
            for item in items:
                name = item.get("uid" if kind == "EVSE" else "id") if isinstance(item, dict) else None
                yield from _timestamps(item, f"{kind} {name}")


def check_not_future(body: Any, now: datetime, what: str) -> None:
    """Refuse a change dated beyond the bridge's clock plus ``MAX_CLOCK_SKEW`` (2001)."""
    for where, value in _timestamps(body, what):
        try:
            moment = parse_last_updated(value, where)
        except InvalidParametersError:
            continue  # the model reports a malformed one
        check_moment_not_future(moment, now, what, where)


def check_moment_not_future(moment: datetime, now: datetime, what: str, where: str) -> None:
    if moment > now + MAX_CLOCK_SKEW:
        raise InvalidParametersError(
            f"invalid {what}: {where} last_updated {format_datetime(moment)} is in the future (the bridge's "
            f"clock says {format_datetime(now)}; at most {int(MAX_CLOCK_SKEW.total_seconds())} s ahead is "
            "accepted)"
        )


def check_unique(document: Document, normalise: Any) -> None:
    """A Location lists each EVSE uid once, each evse_id (as Hubject writes it, ``normalise``) on at most
    one EVSE in service, and per EVSE each Connector id once (2001)."""
    uids: set[Any] = set()
    evse_ids: dict[str, str] = {}
    for evse in document.get("evses") or []:
        if not isinstance(evse, dict):
            continue
        uid = evse.get("uid")
        if uid in uids:
            raise InvalidParametersError(f"invalid Location: EVSE uid {uid!r} is listed twice")
        uids.add(uid)
        key = normalise(evse.get("evse_id")) if evse.get("status") != OcpiEvseStatus.REMOVED else None
        if key is not None:
            if key in evse_ids:
                raise InvalidParametersError(
                    f"invalid Location: evse_id {evse.get('evse_id')!r} is on EVSE {evse_ids[key]!r} and "
                    f"EVSE {uid!r}"
                )
            evse_ids[key] = str(uid)
        connector_ids: set[Any] = set()
        for connector in evse.get("connectors") or []:
            cid = connector.get("id") if isinstance(connector, dict) else None
            if cid in connector_ids:
                raise InvalidParametersError(f"invalid Location: EVSE {uid!r} lists Connector {cid!r} twice")
            connector_ids.add(cid)


def navigate(location: Document, path: ObjectPath) -> Document | None:
    if path.kind is ObjectKind.LOCATION:
        return location
    evse = find(location.get("evses") or [], "uid", path.evse_uid or "")
    if evse is None or path.kind is ObjectKind.EVSE:
        return evse
    return find(evse.get("connectors") or [], "id", path.connector_id or "")


def require(stored: Document | None, path: ObjectPath) -> Document:
    if stored is None:
        raise UnknownLocationError(
            f"unknown Location {path.country_code}/{path.party_id}/{path.location_id}: PUT the Location first"
        )
    return stored


def newer(stored: Document, updated: datetime) -> bool:
    """True if the stored object's last_updated is later than ``updated`` (then the change is stale)."""
    try:
        return bool(parse_last_updated(stored.get("last_updated"), "stored object") > updated)
    except InvalidParametersError:
        return False


def touch(parent: Document, updated: datetime) -> None:
    """mod_locations PUT/PATCH: a child's change sets the parent's last_updated (never backwards)."""
    if not newer(parent, updated):
        parent["last_updated"] = format_datetime(updated)


def list_at(parent: Document, key: str) -> list[Document]:
    """The list under ``key``, made an empty one where it is absent or null (both valid in a stored
    object: ``"evses": null`` is an optional field left empty)."""
    items = parent.get(key)
    if not isinstance(items, list):
        items = parent[key] = []
    return items


def replace_or_append(items: list[Document], existing: Document | None, new: Document) -> None:
    if existing is None:
        items.append(new)
    else:
        items[items.index(existing)] = new


def check_ids(version: OcpiVersion, path: ObjectPath, body: Any) -> None:
    """Ids in the body, where present, must equal the URL's (mod_locations PUT request parameters)."""
    if not isinstance(body, dict):
        return
    kind = path.kind
    own_id = OWN_ID[kind]
    checks = [(own_id, path.own_id(kind))]
    if version is OcpiVersion.V2_2_1 and kind is ObjectKind.LOCATION:
        checks += [("country_code", path.country_code), ("party_id", path.party_id)]
    for field, value in checks:
        if field in body and body[field] != value:
            raise InvalidParametersError(
                f"{kind.value} {field} {body[field]!r} in the body differs from {value!r} in the URL"
            )
