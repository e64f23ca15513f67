"""OCPI state in SQLite: the latest Location (with its EVSEs and Connectors) per party.

Each Location is kept as one JSON document, exactly as the CPO sent it (PUT) or as merged (PATCH), so a
GET answers what was pushed. ``ocpi_evse`` keeps, per EVSE uid, what the hand-off needs: status, publish
flag, and the last ``evse_id`` seen (OCPI lets ``evse_id`` vanish once status is REMOVED).

The commonest request, an EVSE PATCH of only ``status``, does not rewrite the document: it sets the EVSE
row's status and ``last_updated_text`` and the Location row's ``last_updated_text``, which every read lays
over the document (``_load``), and the next rewrite of the document folds in (``_commit``).

Every change runs in one ``Database.write`` function: validate the resulting Location, write it, diff the
EVSEs against ``ocpi_evse``, and hand the observations to the sink in the same transaction. A request is
answered only after that transaction commits; a request that raises changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError

from bridge.observation import EvseObservation, ObservationSink, OcpiEvseStatus
from bridge.ocpi.errors import InvalidParametersError, NotEnoughInformationError, UnknownLocationError
from bridge.ocpi.v211 import models as v211
from bridge.ocpi.v221 import models as v221
from bridge.ocpi.versions import OcpiVersion
from bridge.outbox import to_micros
from bridge.store.database import Database

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Document = dict[str, Any]


def utc_now() -> datetime:
    return datetime.now(UTC)


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
    observations: tuple[EvseObservation, ...] = ()


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


def _find(items: list[Document], key: str, value: str) -> Document | None:
    return next((item for item in items if isinstance(item, dict) and item.get(key) == value), None)


def _find_ci(items: Any, key: str, value: str) -> Document | None:
    """The item whose ``key`` equals ``value`` exactly, else ignoring case (CiString)."""
    candidates = [i for i in items or [] if isinstance(i, dict) and isinstance(i.get(key), str)]
    exact = next((i for i in candidates if i[key] == value), None)
    return exact or next((i for i in candidates if i[key].lower() == value.lower()), None)


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
                target = _find(current, id_key, element_id) if isinstance(element_id, str) else None
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
class _Row:
    evse_id: str | None
    status: str
    publish: bool
    last_updated_us: int


def observations_for(
    path: ObjectPath, location: Any, previous: dict[str, _Row]
) -> tuple[list[EvseObservation], dict[str, tuple[str | None, str, bool, int]]]:
    """Diff the validated Location against the stored EVSE rows: what the hand-off must hear.

    Returns the observations and the new rows (uid -> evse_id, status, publish, last_updated_us).
    An EVSE that disappears from a replaced Location is reported REMOVED (its evse_id remembered).
    """
    publish = bool(getattr(location, "publish", True))  # 2.1.1 has no publish flag: always published
    observations: list[EvseObservation] = []
    rows: dict[str, tuple[str | None, str, bool, int]] = {}
    location_updated: datetime = location.last_updated
    for evse in location.evses or []:
        before = previous.get(evse.uid)
        evse_id = evse.evse_id if evse.evse_id is not None else (before.evse_id if before else None)
        status = OcpiEvseStatus(evse.status)
        rows[evse.uid] = (evse_id, status.value, publish, to_micros(evse.last_updated))
        if before is None or (before.evse_id, before.status, before.publish) != (
            evse_id,
            status.value,
            publish,
        ):
            observations.append(
                EvseObservation(
                    path.country_code, path.party_id, path.location_id, evse.uid, evse_id, status,
                    evse.last_updated, publish,
                )
            )  # fmt: skip
    for uid, before in previous.items():
        if uid in rows:
            continue
        rows[uid] = (
            before.evse_id,
            OcpiEvseStatus.REMOVED.value,
            before.publish,
            to_micros(location_updated),
        )
        if before.status != OcpiEvseStatus.REMOVED:
            observations.append(
                EvseObservation(
                    path.country_code, path.party_id, path.location_id, uid, before.evse_id,
                    OcpiEvseStatus.REMOVED, location_updated, before.publish,
                )
            )  # fmt: skip
    return observations, rows


UPSERT_LOCATION = """
INSERT INTO ocpi_location (country_code, party_id, location_id, version, document, last_updated_us)
VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE
SET version = excluded.version, document = excluded.document, last_updated_us = excluded.last_updated_us,
    last_updated_text = NULL
"""
# A Location with the status fast path's columns laid over its document, in one statement (one snapshot).
LOAD_LOCATION = """
SELECT l.version AS version, l.document AS document, l.last_updated_text AS last_updated_text,
       (SELECT json_group_array(json_array(e.evse_uid, e.status, e.last_updated_text)) FROM ocpi_evse AS e
        WHERE e.country_code = l.country_code AND e.party_id = l.party_id AND e.location_id = l.location_id
          AND e.last_updated_text IS NOT NULL) AS evse_overlays
FROM ocpi_location AS l WHERE l.country_code = ? AND l.party_id = ? AND l.location_id = ?
"""
# What the status fast path compares, from the rows; the document is parsed only when the fast path has not
# yet written that EVSE or Location since the document was last rewritten (the columns are NULL).
# evse_last_updated NULL: the EVSE is not in the document (a REMOVED uid's row outlives its EVSE).
FIND_EVSE = """
SELECT l.version AS version, e.evse_id AS evse_id, e.status AS status, e.publish AS publish,
       e.last_updated_us AS evse_us, l.last_updated_us AS location_us,
       coalesce(e.last_updated_text,
                (SELECT json_extract(x.value, '$.last_updated') FROM json_each(l.document, '$.evses') AS x
                 WHERE json_extract(x.value, '$.uid') = e.evse_uid)) AS evse_last_updated,
       coalesce(l.last_updated_text, json_extract(l.document, '$.last_updated')) AS location_last_updated
FROM ocpi_evse AS e JOIN ocpi_location AS l
  ON l.country_code = e.country_code AND l.party_id = e.party_id AND l.location_id = e.location_id
WHERE e.country_code = ? AND e.party_id = ? AND e.location_id = ? AND e.evse_uid = ?
"""
_STATUS_PATCH = frozenset({"status", "last_updated", "uid"})
_STATUSES = frozenset(status.value for status in OcpiEvseStatus)
UPSERT_EVSE = """
INSERT INTO ocpi_evse
    (country_code, party_id, location_id, evse_uid, evse_id, status, publish, last_updated_us)
VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE
SET evse_id = excluded.evse_id, status = excluded.status, publish = excluded.publish,
    last_updated_us = excluded.last_updated_us
"""

# --- the store ---------------------------------------------------------------------------------------


class OcpiStore:
    """Latest OCPI Locations per party, with the observation hand-off in the same transaction."""

    def __init__(self, db: Database, sink: ObservationSink, *, clock: Clock = utc_now) -> None:
        self.db = db
        self.sink = sink
        self.clock = clock

    # reads ---------------------------------------------------------------------------------------

    async def get_location(self, country_code: str, party_id: str, location_id: str) -> Document | None:
        path = ObjectPath(country_code, party_id, location_id)
        return await self.db.read(lambda conn: _load(conn, path)[1])

    async def get_object(self, path: ObjectPath) -> Document | None:
        """The stored Location, EVSE or Connector as a JSON object, or None if unknown."""

        def read(conn: sqlite3.Connection) -> Document | None:
            _, document = _load(conn, path)
            return _navigate(document, path) if document is not None else None

        return await self.db.read(read)

    async def resolve_path(self, version: OcpiVersion, path: ObjectPath) -> ObjectPath:
        """``path`` in the spelling of the stored object it names case-insensitively: OCPI 2.2.1 ids are
        CiString (changelog of 2.2.1). Unchanged where nothing matches, and for 2.1.1 (plain strings)."""
        if version is not OcpiVersion.V2_2_1:
            return path

        def read(conn: sqlite3.Connection) -> ObjectPath:
            row = conn.execute(
                "SELECT location_id FROM ocpi_location WHERE country_code = ? AND party_id = ?"
                " AND location_id = ? COLLATE NOCASE ORDER BY location_id = ? DESC LIMIT 1",
                (path.country_code, path.party_id, path.location_id, path.location_id),
            ).fetchone()
            if row is None:
                return path
            found = dataclasses.replace(path, location_id=row[0])
            if path.evse_uid is None:
                return found
            _, document = _load(conn, found)
            evse = _find_ci((document or {}).get("evses"), "uid", path.evse_uid)
            if evse is None:
                return found
            found = dataclasses.replace(found, evse_uid=evse["uid"])
            if path.connector_id is None:
                return found
            connector = _find_ci(evse.get("connectors"), "id", path.connector_id)
            return found if connector is None else dataclasses.replace(found, connector_id=connector["id"])

        return await self.db.read(read)

    async def remembered_evse_id(
        self, country_code: str, party_id: str, location_id: str, uid: str
    ) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT evse_id FROM ocpi_evse"
                " WHERE country_code=? AND party_id=? AND location_id=? AND evse_uid=?",
                (country_code, party_id, location_id, uid),
            ).fetchone()
            return None if row is None else row[0]

        return await self.db.read(read)

    async def location_count(self, country_code: str, party_id: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            sql = "SELECT count(*) FROM ocpi_location WHERE country_code=? AND party_id=?"
            return int(conn.execute(sql, (country_code, party_id)).fetchone()[0])

        return await self.db.read(read)

    # writes --------------------------------------------------------------------------------------

    async def put(self, version: OcpiVersion, path: ObjectPath, body: Any) -> WriteResult:
        """PUT replaces the Location, EVSE or Connector at ``path`` (mod_locations PUT)."""
        models = MODELS[version]
        model = {ObjectKind.LOCATION: models.location, ObjectKind.EVSE: models.evse}.get(
            path.kind, models.connector
        )
        parsed = validate(model, body, path.kind.value)
        _check_ids(version, path, body)
        new_updated: datetime = parsed.last_updated
        return await self.db.write(
            lambda conn: self._put(conn, version, path, body, new_updated), inline=True
        )

    async def patch(self, version: OcpiVersion, path: ObjectPath, body: Any) -> WriteResult:
        """PATCH merges the fields given into the stored object (mod_locations PATCH)."""
        models = MODELS[version]
        what = f"{path.kind.value} PATCH"
        if not isinstance(body, dict):
            raise InvalidParametersError(f"invalid {what}: the body must be a JSON object")
        _check_ids(version, path, body)
        if "last_updated" in body:
            new_updated = parse_last_updated(body["last_updated"], what)
        elif models.patch_requires_last_updated:
            raise InvalidParametersError(
                f"invalid {what}: last_updated: required in every PATCH (OCPI 2.2.1)"
            )
        else:
            # 2.1.1 does not require it: the change is as of its arrival (docs/ocpi.md).
            new_updated = self.clock()
            body = {**body, "last_updated": format_datetime(new_updated)}
        if not set(body) - IDENTIFYING:
            raise NotEnoughInformationError(
                f"{what} changes nothing: it has no field besides ids and last_updated"
            )
        return await self.db.write(
            lambda conn: self._patch(conn, version, path, body, new_updated), inline=True
        )

    async def apply_sender_locations(
        self, country_code: str, party_id: str, version: OcpiVersion, locations: Sequence[dict[str, Any]]
    ) -> int:
        """Upsert Locations fetched from a CPO's Locations sender; return how many changed.

        Each is validated with that version's model; an invalid one, or one naming another party, is
        skipped (logged) so one bad Location does not block the rest. An older ``last_updated`` never
        overwrites a newer one. All valid Locations are written in one transaction.
        """
        models = MODELS[version]
        accepted: list[tuple[ObjectPath, Document, datetime]] = []
        for document in locations:
            try:
                parsed = validate(models.location, document, "Location")
            except InvalidParametersError as exc:
                log.warning("skipping a Location from %s/%s: %s", country_code, party_id, exc.message)
                continue
            owner = (getattr(parsed, "country_code", country_code), getattr(parsed, "party_id", party_id))
            if owner != (country_code, party_id):
                log.warning("skipping Location %s: it belongs to %s/%s", parsed.id, *owner)
                continue
            accepted.append((ObjectPath(country_code, party_id, parsed.id), document, parsed.last_updated))

        def write(conn: sqlite3.Connection) -> int:
            changed = 0
            for path, document, updated in accepted:
                outcome = self._put(conn, version, path, document, updated).outcome
                changed += outcome in (Outcome.CREATED, Outcome.UPDATED)
            return changed

        return await self.db.write(write)

    # the writer-thread side ------------------------------------------------------------------------

    def _put(
        self,
        conn: sqlite3.Connection,
        version: OcpiVersion,
        path: ObjectPath,
        body: Document,
        updated: datetime,
    ) -> WriteResult:
        _, stored = _load(conn, path)
        if path.kind is ObjectKind.LOCATION:
            if stored is not None and _newer(stored, updated):
                return WriteResult(Outcome.STALE)
            return self._commit(conn, version, path, stored, clone(body))
        document = _require(stored, path)
        new = clone(document)
        evses = _list_at(new, "evses")
        if path.kind is ObjectKind.EVSE:
            existing = _find(evses, "uid", path.evse_uid or "")
            if existing is not None and _newer(existing, updated):
                return WriteResult(Outcome.STALE)
            _replace_or_append(evses, existing, clone(body))
        else:
            evse = _find(evses, "uid", path.evse_uid or "")
            if evse is None:
                raise UnknownLocationError(
                    f"unknown EVSE {path.evse_uid} at Location {path.location_id}: PUT it first"
                )
            connectors = _list_at(evse, "connectors")
            existing = _find(connectors, "id", path.connector_id or "")
            if existing is not None and _newer(existing, updated):
                return WriteResult(Outcome.STALE)
            _replace_or_append(connectors, existing, clone(body))
            _touch(evse, updated)
        _touch(new, updated)
        return self._commit(conn, version, path, stored, new)

    def _patch(
        self,
        conn: sqlite3.Connection,
        version: OcpiVersion,
        path: ObjectPath,
        body: Document,
        updated: datetime,
    ) -> WriteResult:
        fast = self._patch_evse_status(conn, version, path, body, updated)
        if fast is not None:
            return fast
        _, stored = _load(conn, path)
        document = _require(stored, path)
        target = _navigate(document, path)
        if target is None:
            raise UnknownLocationError(f"unknown {path.kind.value} {path}: PUT it before PATCHing it")
        if _newer(target, updated):
            return WriteResult(Outcome.STALE)
        if path.kind is ObjectKind.LOCATION:
            new = merge_patch(document, body, list_keys=SUB_LISTS)
        else:
            new = clone(document)
            evse = _find(new["evses"], "uid", path.evse_uid or "")
            assert evse is not None
            if path.kind is ObjectKind.EVSE:
                new["evses"][new["evses"].index(evse)] = merge_patch(evse, body, list_keys=SUB_LISTS)
            else:
                connector = _find(evse["connectors"], "id", path.connector_id or "")
                assert connector is not None
                evse["connectors"][evse["connectors"].index(connector)] = merge_patch(
                    connector, body, list_keys={}
                )
                _touch(evse, updated)
            _touch(new, updated)
        return self._commit(conn, version, path, stored, new)

    def _patch_evse_status(
        self,
        conn: sqlite3.Connection,
        version: OcpiVersion,
        path: ObjectPath,
        body: Document,
        updated: datetime,
    ) -> WriteResult | None:
        """The commonest request, an EVSE PATCH of ``status`` (and ``last_updated``), without loading,
        re-validating and rewriting the whole Location: the change cannot make a valid Location invalid,
        so it is written to the EVSE and Location rows, which reads lay over the document. None: not such
        a request, or anything unusual (unknown object, another version's document), which the general
        path handles with the same answers. The result reads back as the same document, rows and
        observations as that path's (tests/ocpi/test_status_fast_path.py).
        """
        status = body.get("status")
        if path.kind is not ObjectKind.EVSE or not set(body) <= _STATUS_PATCH:
            return None
        if not isinstance(status, str) or status not in _STATUSES:
            return None  # the general path answers it with the model's message
        key = (path.country_code, path.party_id, path.location_id)
        found = conn.execute(FIND_EVSE, (*key, path.evse_uid)).fetchone()
        if found is None or found["version"] != version.value or found["evse_last_updated"] is None:
            return None
        # the rows' microseconds are the stored strings parsed (both paths write them so)
        updated_us = to_micros(updated)
        if found["evse_us"] > updated_us:
            return WriteResult(Outcome.STALE)
        raw_updated = body["last_updated"]
        # what the general path stores and reports: the datetimes as parsed back from the document's strings
        evse_time = parse_last_updated(raw_updated, "EVSE PATCH")
        touch_location = not found["location_us"] > updated_us
        new_location_updated = format_datetime(updated) if touch_location else found["location_last_updated"]
        if (status, raw_updated, new_location_updated) == (
            found["status"],
            found["evse_last_updated"],
            found["location_last_updated"],
        ):
            return WriteResult(Outcome.UNCHANGED)
        conn.execute(
            "UPDATE ocpi_evse SET status = ?, last_updated_us = ?, last_updated_text = ? "
            "WHERE country_code=? AND party_id=? AND location_id=? AND evse_uid=?",
            (status, to_micros(evse_time), raw_updated, *key, path.evse_uid),
        )
        if new_location_updated != found["location_last_updated"]:
            conn.execute(
                "UPDATE ocpi_location SET last_updated_text = ?, last_updated_us = ? "
                "WHERE country_code=? AND party_id=? AND location_id=?",
                (new_location_updated, to_micros(updated.replace(microsecond=0)), *key),  # as formatted
            )
        observations: tuple[EvseObservation, ...] = ()
        if status != found["status"]:
            observations = (
                EvseObservation(
                    path.country_code, path.party_id, path.location_id, path.evse_uid or "", found["evse_id"],
                    OcpiEvseStatus(status), evse_time, bool(found["publish"]),
                ),
            )  # fmt: skip
            self.sink.accept(conn, observations)
        return WriteResult(Outcome.UPDATED, observations)

    def _commit(
        self,
        conn: sqlite3.Connection,
        version: OcpiVersion,
        path: ObjectPath,
        stored: Document | None,
        new: Document,
    ) -> WriteResult:
        location = validate(MODELS[version].location, new, f"Location {path.location_id} after this change")
        if stored == new:
            return WriteResult(Outcome.UNCHANGED)
        key = (path.country_code, path.party_id, path.location_id)
        previous = {
            row["evse_uid"]: _Row(row["evse_id"], row["status"], bool(row["publish"]), row["last_updated_us"])
            for row in conn.execute(
                "SELECT * FROM ocpi_evse WHERE country_code=? AND party_id=? AND location_id=?", key
            )
        }
        observations, rows = observations_for(path, location, previous)
        document = json.dumps(new, separators=(",", ":"))
        conn.execute(UPSERT_LOCATION, (*key, version.value, document, to_micros(location.last_updated)))
        # ``new`` was built from the document with the fast path's columns laid over it: they are in it now
        conn.execute(
            "UPDATE ocpi_evse SET last_updated_text = NULL WHERE country_code=? AND party_id=? "
            "AND location_id=? AND last_updated_text IS NOT NULL",
            key,
        )
        # only the EVSE rows that differ (a PATCH of one EVSE leaves its siblings' rows as they are)
        changed = [
            (*key, uid, *row)
            for uid, row in rows.items()
            if (before := previous.get(uid)) is None
            or (before.evse_id, before.status, before.publish, before.last_updated_us) != row
        ]
        conn.executemany(UPSERT_EVSE, changed)
        if observations:
            self.sink.accept(conn, observations)
        return WriteResult(Outcome.CREATED if stored is None else Outcome.UPDATED, tuple(observations))


def _load(conn: sqlite3.Connection, path: ObjectPath) -> tuple[str | None, Document | None]:
    row = conn.execute(LOAD_LOCATION, (path.country_code, path.party_id, path.location_id)).fetchone()
    if row is None:
        return None, None
    document: Document = json.loads(row["document"])
    if row["last_updated_text"] is not None:
        document["last_updated"] = row["last_updated_text"]
    overlays = {uid: (status, text) for uid, status, text in json.loads(row["evse_overlays"])}
    if overlays:
        for evse in document.get("evses") or []:
            overlay = overlays.get(evse.get("uid")) if isinstance(evse, dict) else None
            if overlay is not None:
                evse["status"], evse["last_updated"] = overlay
    return row["version"], document


def _navigate(location: Document, path: ObjectPath) -> Document | None:
    if path.kind is ObjectKind.LOCATION:
        return location
    evse = _find(location.get("evses") or [], "uid", path.evse_uid or "")
    if evse is None or path.kind is ObjectKind.EVSE:
        return evse
    return _find(evse.get("connectors") or [], "id", path.connector_id or "")


def _require(stored: Document | None, path: ObjectPath) -> Document:
    if stored is None:
        raise UnknownLocationError(
            f"unknown Location {path.country_code}/{path.party_id}/{path.location_id}: PUT the Location first"
        )
    return stored


def _newer(stored: Document, updated: datetime) -> bool:
    """True if the stored object's last_updated is later than ``updated`` (then the change is stale)."""
    try:
        return bool(parse_last_updated(stored.get("last_updated"), "stored object") > updated)
    except InvalidParametersError:
        return False


def _touch(parent: Document, updated: datetime) -> None:
    """mod_locations PUT/PATCH: a child's change sets the parent's last_updated (never backwards)."""
    if not _newer(parent, updated):
        parent["last_updated"] = format_datetime(updated)


def _list_at(parent: Document, key: str) -> list[Document]:
    """The list under ``key``, made an empty one where it is absent or null (both valid in a stored
    object: ``"evses": null`` is an optional field left empty)."""
    items = parent.get(key)
    if not isinstance(items, list):
        items = parent[key] = []
    return items


def _replace_or_append(items: list[Document], existing: Document | None, new: Document) -> None:
    if existing is None:
        items.append(new)
    else:
        items[items.index(existing)] = new


def _check_ids(version: OcpiVersion, path: ObjectPath, body: Any) -> None:
    """Ids in the body, where present, must equal the URL's (mod_locations PUT request parameters)."""
    if not isinstance(body, dict):
        return
    own_id = {ObjectKind.LOCATION: "id", ObjectKind.EVSE: "uid", ObjectKind.CONNECTOR: "id"}[path.kind]
    expected = {ObjectKind.LOCATION: path.location_id, ObjectKind.EVSE: path.evse_uid}.get(
        path.kind, path.connector_id
    )
    checks = [(own_id, expected)]
    if version is OcpiVersion.V2_2_1 and path.kind is ObjectKind.LOCATION:
        checks += [("country_code", path.country_code), ("party_id", path.party_id)]
    for field, value in checks:
        if field in body and body[field] != value:
            raise InvalidParametersError(
                f"{path.kind.value} {field} {body[field]!r} in the body differs from {value!r} in the URL"
            )
