"""OCPI state in the store: the latest Location (with its EVSEs and Connectors) per party.

Each Location is kept as one JSON document, exactly as the CPO sent it (PUT) or as merged (PATCH), so a
GET answers what was pushed. ``ocpi_evse`` keeps, per EVSE uid, what deciding the outbox needs: status,
publish flag, the last ``evse_id`` seen (OCPI lets ``evse_id`` vanish once status is REMOVED) and that
EvseID as Hubject writes it (``oicp_evse_id``, indexed: which EVSEs hold an EvseID).

The commonest request, an EVSE PATCH of only ``status``, does not rewrite the document: it sets the EVSE
row's status and ``last_updated_text`` and the Location row's ``last_updated_text``, which every read lays
over the document (``_load``), and the next rewrite of the document folds in (``_commit``).

The rules are ``bridge.ocpi.locations`` (pure); this module is their repository. A write is two steps:
``check_put``/``check_patch`` (validation, before any transaction) and ``put_in``/``patch_in`` inside the
caller's transaction (``bridge.intake`` owns it and decides the outbox from the EVSEs the change touched,
``WriteResult.touched``). This module never calls outward.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.mapping import normalise_evse_id
from bridge.observation import EvseObservation, OcpiEvseStatus
from bridge.ocpi.errors import InvalidParametersError, NotEnoughInformationError, UnknownLocationError
from bridge.ocpi.locations import (
    IDENTIFYING,
    MODELS,
    SUB_LISTS,
    Document,
    EvseRow,
    ObjectKind,
    ObjectPath,
    Outcome,
    Touched,
    WriteResult,
    check_ids,
    check_moment_not_future,
    check_not_future,
    check_unique,
    clone,
    evse_rows,
    find,
    format_datetime,
    list_at,
    merge_patch,
    navigate,
    newer,
    parse_last_updated,
    replace_or_append,
    require,
    touch,
    validate,
)
from bridge.ocpi.versions import OcpiVersion
from bridge.outbox import EPOCH, to_micros
from bridge.store.dialect import Dialect
from bridge.store.engine import Engine
from bridge.store.outbox import WITH_EVSE_COLUMNS, rows_by_operator
from bridge.store.port import Read, ReadAhead, Tx

# also importable from here, where they were before bridge.ocpi.locations held them
__all__ = [
    "Document", "ObjectPath", "OcpiStore", "Outcome", "WriteResult", "format_datetime", "merge_patch",
    "parse_last_updated", "validate",
]  # fmt: skip

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def oicp_key(evse_id: str | None) -> str | None:
    """``ocpi_evse.oicp_evse_id``: the EvseID as Hubject writes it, '' for an evse_id that is not one."""
    if evse_id is None:
        return None
    normalised = normalise_evse_id(evse_id)
    return "" if normalised is None else str(normalised)


def _state(found: Any) -> EvseObservation:
    return EvseObservation(
        found["country_code"], found["party_id"], found["location_id"], found["evse_uid"], found["evse_id"],
        OcpiEvseStatus(found["status"]), EPOCH + timedelta(microseconds=found["last_updated_us"]),
        bool(found["publish"]),
    )  # fmt: skip


UPSERT_LOCATION = """
INSERT INTO ocpi_location (country_code, party_id, location_id, version, document, last_updated_us)
VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (country_code, party_id, location_id) DO UPDATE
SET version = excluded.version, document = excluded.document, last_updated_us = excluded.last_updated_us,
    last_updated_text = NULL
"""
# A Location with the status fast path's columns laid over its document, in one statement (one snapshot).
# The JSON functions are the engine's (``Dialect``): ``_Statements`` fills them in.
LOAD_LOCATION = """
SELECT l.version AS version, l.document AS document, l.last_updated_text AS last_updated_text,
       (SELECT {overlays} FROM ocpi_evse AS e
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
                (SELECT {evse_updated} FROM {evses} WHERE {evse_uid} = e.evse_uid)) AS evse_last_updated,
       coalesce(l.last_updated_text, {location_updated}) AS location_last_updated,
       (SELECT COUNT(*) FROM ocpi_evse AS o WHERE o.oicp_evse_id = e.oicp_evse_id) AS holders,
       EXISTS (SELECT 1 FROM not_pushed AS n WHERE n.source =
               e.country_code || '/' || e.party_id || '/' || e.location_id || '/' || e.evse_uid) AS listed,
       e.oicp_evse_id AS oicp_evse_id
       {outbox_columns}
FROM ocpi_evse AS e JOIN ocpi_location AS l
  ON l.country_code = e.country_code AND l.party_id = e.party_id AND l.location_id = e.location_id
  {outbox_join}
WHERE e.country_code = ? AND e.party_id = ? AND e.location_id = ? AND e.evse_uid = ?
"""
FIND_EVSE_COLUMNS = 11  # FIND_EVSE's own columns, before the outbox's where it joins them
_STATUS_PATCH = frozenset({"status", "last_updated", "uid"})
_STATUSES = frozenset(status.value for status in OcpiEvseStatus)
_STATUS_OF = {status.value: status for status in OcpiEvseStatus}  # cheaper than OcpiEvseStatus(value)
UPSERT_EVSE = """
INSERT INTO ocpi_evse
    (country_code, party_id, location_id, evse_uid, evse_id, status, publish, last_updated_us, oicp_evse_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (country_code, party_id, location_id, evse_uid) DO UPDATE
SET evse_id = excluded.evse_id, status = excluded.status, publish = excluded.publish,
    last_updated_us = excluded.last_updated_us, oicp_evse_id = excluded.oicp_evse_id
"""


@dataclasses.dataclass(frozen=True, slots=True)
class _Statements:
    """The statements that use JSON functions, in one engine's dialect."""

    load_location: str
    find_evse: str
    # whether find_evse also reads the EvseID's outbox rows (after its FIND_EVSE_COLUMNS): on PostgreSQL a
    # round trip fewer per PATCH; on SQLite a statement costs less than the join (docs/benchmarks.md)
    find_evse_reads_outbox: bool

    @classmethod
    @functools.cache
    def of(cls, dialect: Dialect) -> _Statements:
        joined = dialect.name == "postgresql"
        return cls(
            LOAD_LOCATION.format(
                overlays=dialect.json_array_agg("e.evse_uid", "e.status", "e.last_updated_text")
            ),
            FIND_EVSE.format(
                evse_updated=dialect.json_text("x.value", "last_updated"),
                evses=dialect.json_elements("l.document", "evses", "x"),
                evse_uid=dialect.json_text("x.value", "uid"),
                location_updated=dialect.json_text("l.document", "last_updated"),
                outbox_columns=f", {WITH_EVSE_COLUMNS}" if joined else "",
                outbox_join="LEFT JOIN outbox AS o ON o.evse_id = e.oicp_evse_id" if joined else "",
            ),
            joined,
        )


def _load(conn: Tx, sql: _Statements, path: ObjectPath) -> tuple[str | None, Document | None]:
    row = conn.execute(sql.load_location, (path.country_code, path.party_id, path.location_id)).fetchone()
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


def resolve_path(tx: Tx, sql: _Statements, version: OcpiVersion, path: ObjectPath) -> ObjectPath:
    """``path`` in the spelling of the stored object it names case-insensitively: OCPI 2.2.1 ids are
    CiString (changelog of 2.2.1). Unchanged where nothing matches, and for 2.1.1 (plain strings). The
    receiver asks before a PUT and after a miss (``bridge.ocpi.receiver``)."""
    if version is not OcpiVersion.V2_2_1:
        return path
    row = tx.execute(
        "SELECT location_id FROM ocpi_location WHERE country_code = ? AND party_id = ?"
        # lower() on both engines (ASCII on SQLite, as COLLATE NOCASE was; OCPI ids are ASCII)
        " AND lower(location_id) = lower(?) ORDER BY location_id = ? DESC LIMIT 1",
        (path.country_code, path.party_id, path.location_id, path.location_id),
    ).fetchone()
    if row is None:
        return path
    found = dataclasses.replace(path, location_id=row[0])
    if path.evse_uid is None:
        return found
    _, document = _load(tx, sql, found)
    evse = _find_ci((document or {}).get("evses"), "uid", path.evse_uid)
    if evse is None:
        return found
    found = dataclasses.replace(found, evse_uid=evse["uid"])
    if path.connector_id is None:
        return found
    connector = _find_ci(evse.get("connectors"), "id", path.connector_id)
    return found if connector is None else dataclasses.replace(found, connector_id=connector["id"])


def _find_ci(items: Any, key: str, value: str) -> Document | None:
    """The item whose ``key`` equals ``value`` exactly, else ignoring case (CiString)."""
    candidates = [i for i in items or [] if isinstance(i, dict) and isinstance(i.get(key), str)]
    exact = next((i for i in candidates if i[key] == value), None)
    return exact or next((i for i in candidates if i[key].lower() == value.lower()), None)


# --- the store ---------------------------------------------------------------------------------------


class OcpiStore:
    """Latest OCPI Locations per party: validation, reads, and writes inside a caller's transaction."""

    def __init__(self, db: Engine, *, clock: Clock = utc_now) -> None:
        self.db = db
        self.clock = clock
        self.sql = _Statements.of(db.dialect)

    async def resolve_path(self, version: OcpiVersion, path: ObjectPath) -> ObjectPath:
        """``resolve_path`` in a read of its own."""
        return await self.db.read(lambda tx: resolve_path(tx, self.sql, version, path))

    # reads ---------------------------------------------------------------------------------------

    async def get_location(self, country_code: str, party_id: str, location_id: str) -> Document | None:
        path = ObjectPath(country_code, party_id, location_id)
        return await self.db.read(lambda tx: _load(tx, self.sql, path)[1])

    async def get_object(self, path: ObjectPath) -> Document | None:
        """The stored Location, EVSE or Connector as a JSON object, or None if unknown."""

        def read(tx: Tx) -> Document | None:
            _, document = _load(tx, self.sql, path)
            return navigate(document, path) if document is not None else None

        return await self.db.read(read)

    async def remembered_evse_id(
        self, country_code: str, party_id: str, location_id: str, uid: str
    ) -> str | None:
        def read(tx: Tx) -> str | None:
            row = tx.execute(
                "SELECT evse_id FROM ocpi_evse"
                " WHERE country_code=? AND party_id=? AND location_id=? AND evse_uid=?",
                (country_code, party_id, location_id, uid),
            ).fetchone()
            return None if row is None else row[0]

        return await self.db.read(read)

    async def location_count(self, country_code: str, party_id: str) -> int:
        def read(tx: Tx) -> int:
            sql = "SELECT count(*) FROM ocpi_location WHERE country_code=? AND party_id=?"
            return int(tx.execute(sql, (country_code, party_id)).fetchone()[0])

        return await self.db.read(read)

    @staticmethod
    def load_in(tx: Tx, path: ObjectPath, dialect: Dialect) -> tuple[str | None, Document | None]:
        """The stored Location (its OCPI version and document, the fast path's columns laid over it), inside
        the caller's transaction (the EVSE data decision maps it); ``dialect``: the engine's."""
        return _load(tx, _Statements.of(dialect), path)

    @staticmethod
    def evses_holding(tx: Tx, evse_id: str) -> list[EvseObservation]:
        """Every EVSE (of any party) whose evse_id is ``evse_id`` as Hubject writes it."""
        return [_state(f) for f in tx.execute("SELECT * FROM ocpi_evse WHERE oicp_evse_id = ?", (evse_id,))]

    @staticmethod
    def evse_ids(tx: Tx) -> list[str]:
        """Every EvseID some EVSE holds (the start-up reconciliation re-decides them)."""
        return [
            r[0] for r in tx.execute("SELECT DISTINCT oicp_evse_id FROM ocpi_evse WHERE oicp_evse_id != ''")
        ]

    @staticmethod
    def fill_oicp_keys(tx: Tx) -> int:
        """Compute ``oicp_evse_id`` where it is missing (rows written before it existed)."""
        missing = tx.execute(
            "SELECT country_code, party_id, location_id, evse_uid, evse_id FROM ocpi_evse "
            "WHERE oicp_evse_id IS NULL AND evse_id IS NOT NULL"
        ).fetchall()
        tx.executemany(
            "UPDATE ocpi_evse SET oicp_evse_id = ? "
            "WHERE country_code=? AND party_id=? AND location_id=? AND evse_uid=?",
            [(oicp_key(m["evse_id"]), m[0], m[1], m[2], m[3]) for m in missing],
        )
        return len(missing)

    # validation (before the transaction) ---------------------------------------------------------

    def check_put(self, version: OcpiVersion, path: ObjectPath, body: Any) -> datetime:
        """Validate a PUT body (mod_locations PUT); its last_updated."""
        models = MODELS[version]
        model = {ObjectKind.LOCATION: models.location, ObjectKind.EVSE: models.evse}.get(
            path.kind, models.connector
        )
        parsed = validate(model, body, path.kind.value)
        check_ids(version, path, body)
        check_not_future(body, self.clock(), path.kind.value)
        updated: datetime = parsed.last_updated
        return updated

    def check_patch(self, version: OcpiVersion, path: ObjectPath, body: Any) -> tuple[Document, datetime]:
        """Validate a PATCH body (mod_locations PATCH); the body to merge and its last_updated."""
        models = MODELS[version]
        what = f"{path.kind.value} PATCH"
        if not isinstance(body, dict):
            raise InvalidParametersError(f"invalid {what}: the body must be a JSON object")
        check_ids(version, path, body)
        if "last_updated" in body:
            new_updated = parse_last_updated(body["last_updated"], what)
        elif models.patch_requires_last_updated:
            raise InvalidParametersError(
                f"invalid {what}: last_updated: required in every PATCH (OCPI 2.2.1)"
            )
        else:
            # 2.1.1 does not require it: the change is as of its arrival (docs/ocpi.md), to the second as
            # the body now says (so the returned moment is always the body's last_updated parsed)
            body = {**body, "last_updated": format_datetime(self.clock())}
            new_updated = parse_last_updated(body["last_updated"], what)
        if not set(body) - IDENTIFYING:
            raise NotEnoughInformationError(
                f"{what} changes nothing: it has no field besides ids and last_updated"
            )
        if "evses" in body or "connectors" in body:
            check_not_future(body, self.clock(), what)
        else:  # only the body's own last_updated: already parsed
            check_moment_not_future(new_updated, self.clock(), what, what)
        return body, new_updated

    def check_sender_locations(
        self, country_code: str, party_id: str, version: OcpiVersion, locations: Sequence[dict[str, Any]]
    ) -> list[tuple[ObjectPath, Document, datetime]]:
        """The Locations of a polled page worth writing: each valid for that version's model, of that
        party, not dated in the future; a bad one is skipped (logged) so it does not block the rest."""
        models = MODELS[version]
        accepted: list[tuple[ObjectPath, Document, datetime]] = []
        for document in locations:
            try:
                parsed = validate(models.location, document, "Location")
                check_not_future(document, self.clock(), "Location")
            except InvalidParametersError as exc:
                log.warning("skipping a Location from %s/%s: %s", country_code, party_id, exc.message)
                continue
            owner = (getattr(parsed, "country_code", country_code), getattr(parsed, "party_id", party_id))
            if owner != (country_code, party_id):
                log.warning("skipping Location %s: it belongs to %s/%s", parsed.id, *owner)
                continue
            accepted.append((ObjectPath(country_code, party_id, parsed.id), document, parsed.last_updated))
        return accepted

    # writes, inside the caller's transaction -----------------------------------------------------

    def put_in(
        self, tx: Tx, version: OcpiVersion, path: ObjectPath, body: Document, updated: datetime
    ) -> WriteResult:
        _, stored = _load(tx, self.sql, path)
        if path.kind is ObjectKind.LOCATION:
            if stored is not None and newer(stored, updated):
                return WriteResult(Outcome.STALE)
            return self._commit(tx, version, path, stored, clone(body))
        document = require(stored, path)
        new = clone(document)
        evses = list_at(new, "evses")
        if path.kind is ObjectKind.EVSE:
            existing = find(evses, "uid", path.evse_uid or "")
            if existing is not None and newer(existing, updated):
                return WriteResult(Outcome.STALE)
            replace_or_append(evses, existing, clone(body))
        else:
            evse = find(evses, "uid", path.evse_uid or "")
            if evse is None:
                raise UnknownLocationError(
                    f"unknown EVSE {path.evse_uid} at Location {path.location_id}: PUT it first"
                )
            connectors = list_at(evse, "connectors")
            existing = find(connectors, "id", path.connector_id or "")
            if existing is not None and newer(existing, updated):
                return WriteResult(Outcome.STALE)
            replace_or_append(connectors, existing, clone(body))
            touch(evse, updated)
        touch(new, updated)
        return self._commit(tx, version, path, stored, new)

    def patch_in(
        self,
        tx: Tx,
        version: OcpiVersion,
        path: ObjectPath,
        body: Document,
        updated: datetime,
        ahead: ReadAhead | None = None,
    ) -> WriteResult:
        """``ahead``: the status fast path's read (``status_read``) made at the start of the write group."""
        fast = self._patch_evse_status(tx, version, path, body, updated, ahead)
        if fast is not None:
            return fast
        if ahead is not None:
            ahead.changes.everything = True  # the general path may rewrite the whole Location
        _, stored = _load(tx, self.sql, path)
        document = require(stored, path)
        target = navigate(document, path)
        if target is None:
            raise UnknownLocationError(f"unknown {path.kind.value} {path}: PUT it before PATCHing it")
        if newer(target, updated):
            return WriteResult(Outcome.STALE)
        if path.kind is ObjectKind.LOCATION:
            new = merge_patch(document, body, list_keys=SUB_LISTS)
        else:
            new = clone(document)
            evse = find(new["evses"], "uid", path.evse_uid or "")
            assert evse is not None
            if path.kind is ObjectKind.EVSE:
                new["evses"][new["evses"].index(evse)] = merge_patch(evse, body, list_keys=SUB_LISTS)
            else:
                connector = find(evse["connectors"], "id", path.connector_id or "")
                assert connector is not None
                evse["connectors"][evse["connectors"].index(connector)] = merge_patch(
                    connector, body, list_keys={}
                )
                touch(evse, updated)
            touch(new, updated)
        return self._commit(tx, version, path, stored, new)

    def upsert_evse_state(self, tx: Tx, state: EvseObservation) -> Touched | None:
        """Record one EVSE's state as observed outside a Location document (a status source that reports
        EVSEs one by one); an older observation than the stored one changes nothing. The touched EVSE, or
        None."""
        key = (state.country_code, state.party_id, state.location_id, state.evse_uid)
        found = tx.execute(
            "SELECT evse_id, status, publish, last_updated_us FROM ocpi_evse "
            "WHERE country_code=? AND party_id=? AND location_id=? AND evse_uid=?",
            key,
        ).fetchone()
        micros = to_micros(state.last_updated)
        row = (state.evse_id, state.status.value, state.publish, micros)
        if found is not None:
            before = (found["evse_id"], found["status"], bool(found["publish"]), found["last_updated_us"])
            if micros < before[3] or row == before:
                return None
        tx.execute(UPSERT_EVSE, (*key, *row, oicp_key(state.evse_id)))
        return Touched(state, None if found is None else found["evse_id"])

    @staticmethod
    def is_status_patch(path: ObjectPath, body: Document) -> bool:
        """Whether a PATCH is the commonest request, an EVSE's ``status`` (the fast path's kind)."""
        return path.kind is ObjectKind.EVSE and set(body) <= _STATUS_PATCH and body.get("status") in _STATUSES

    def status_read(self, path: ObjectPath) -> Read:
        """The status fast path's read of the EVSE at ``path`` (``Engine.write_reading``)."""
        return self.sql.find_evse, (path.country_code, path.party_id, path.location_id, path.evse_uid)

    def _patch_evse_status(
        self,
        tx: Tx,
        version: OcpiVersion,
        path: ObjectPath,
        body: Document,
        updated: datetime,
        ahead: ReadAhead | None = None,
    ) -> WriteResult | None:
        """The commonest request, an EVSE PATCH of ``status`` (and ``last_updated``), without loading,
        re-validating and rewriting the whole Location: the change cannot make a valid Location invalid,
        so it is written to the EVSE and Location rows, which reads lay over the document. None: not such
        a request, or anything unusual (unknown object, another version's document), which the general
        path handles with the same answers. The result reads back as the same document, rows and
        touched EVSEs as that path's (tests/ocpi/test_status_fast_path.py).
        """
        status = body.get("status")
        if path.kind is not ObjectKind.EVSE or not set(body) <= _STATUS_PATCH:
            return None
        if not isinstance(status, str) or status not in _STATUSES:
            return None  # the general path answers it with the model's message
        key = (path.country_code, path.party_id, path.location_id)
        rows = None if ahead is None else _still_holding(ahead)
        if rows is None:
            rows = tx.execute(self.sql.find_evse, (*key, path.evse_uid)).fetchall()
        if not rows:
            return None
        found = rows[0]  # one per outbox row of its EvseID where joined, the EVSE's columns in each
        # by position (FIND_EVSE's column order): a look-up by name scans the columns on every access
        stored_version, evse_id, stored_status, publish, evse_us, location_us, evse_text, location_text = (
            found[:8]
        )
        if ahead is not None:  # the group's earlier writes may have moved the Location's last_updated
            location_us, location_text = ahead.changes.notes.get(
                ("location", key), (location_us, location_text)
            )
        if stored_version != version.value or evse_text is None:
            return None
        # the rows' microseconds are the stored strings parsed (both paths write them so); ``updated`` is
        # the body's last_updated parsed (``check_patch``), what the general path stores and reports
        updated_us = to_micros(updated)
        if evse_us > updated_us:
            return WriteResult(Outcome.STALE)
        raw_updated = body["last_updated"]
        new_location_text = location_text if location_us > updated_us else format_datetime(updated)
        if (status, raw_updated, new_location_text) == (stored_status, evse_text, location_text):
            return WriteResult(Outcome.UNCHANGED)
        tx.execute(
            "UPDATE ocpi_evse SET status = ?, last_updated_us = ?, last_updated_text = ? "
            "WHERE country_code=? AND party_id=? AND location_id=? AND evse_uid=?",
            (status, updated_us, raw_updated, *key, path.evse_uid),
        )
        if new_location_text != location_text:
            new_location_us = updated_us - updated_us % 1_000_000  # to the second, as formatted
            tx.execute(
                "UPDATE ocpi_location SET last_updated_text = ?, last_updated_us = ? "
                "WHERE country_code=? AND party_id=? AND location_id=?",
                (new_location_text, new_location_us, *key),
            )
            if ahead is not None:
                ahead.changes.notes[("location", key)] = (new_location_us, new_location_text)
        if ahead is not None:  # this EVSE's row; the intake's decision writes only its EvseID's rows
            ahead.changes.notes[("evse_id", found[10] or "")] = True  # oicp_evse_id, the 11th column
        state = EvseObservation(
            path.country_code, path.party_id, path.location_id, path.evse_uid or "", evse_id,
            _STATUS_OF[status], updated, bool(publish),
        )  # fmt: skip
        # the EVSE is the only one holding its EvseID (and the status changes nothing else): the intake need
        # not read the holders again; and whether a not-pushed note exists for it
        alone = (state,) if found[8] == 1 else None  # holders (FIND_EVSE's 9th column; listed the 10th)
        outbox = None
        if self.sql.find_evse_reads_outbox:
            outbox = rows_by_operator(row[FIND_EVSE_COLUMNS:] for row in rows)
        return WriteResult(Outcome.UPDATED, (Touched(state, evse_id, alone, bool(found[9]), outbox),))

    def _commit(
        self, tx: Tx, version: OcpiVersion, path: ObjectPath, stored: Document | None, new: Document
    ) -> WriteResult:
        location = validate(MODELS[version].location, new, f"Location {path.location_id} after this change")
        check_unique(new, oicp_key_or_none)
        if stored == new:
            return WriteResult(Outcome.UNCHANGED)
        key = (path.country_code, path.party_id, path.location_id)
        previous = {
            row["evse_uid"]: EvseRow(
                row["evse_id"], row["status"], bool(row["publish"]), row["last_updated_us"]
            )
            for row in tx.execute(
                "SELECT * FROM ocpi_evse WHERE country_code=? AND party_id=? AND location_id=?", key
            )
        }
        touched, rows = evse_rows(path, location, previous, path.evse_uid)
        document = json.dumps(new, separators=(",", ":"))
        tx.execute(UPSERT_LOCATION, (*key, version.value, document, to_micros(location.last_updated)))
        # ``new`` was built from the document with the fast path's columns laid over it: they are in it now
        tx.execute(
            "UPDATE ocpi_evse SET last_updated_text = NULL WHERE country_code=? AND party_id=? "
            "AND location_id=? AND last_updated_text IS NOT NULL",
            key,
        )
        # only the EVSE rows that differ (a PATCH of one EVSE leaves its siblings' rows as they are)
        changed = [
            (*key, uid, row.evse_id, row.status, row.publish, row.last_updated_us, oicp_key(row.evse_id))
            for uid, row in rows.items()
            if previous.get(uid) != row
        ]
        tx.executemany(UPSERT_EVSE, changed)
        return WriteResult(Outcome.CREATED if stored is None else Outcome.UPDATED, tuple(touched), location)


def _still_holding(ahead: ReadAhead) -> list[Any] | None:
    """The fast path's rows read at the group's start, if no earlier write of the group changed them: the
    EVSE's row and its EvseID's (outbox, not-pushed notes, other holders), recorded under the EvseID (an EVSE
    without one under ""); the Location's last_updated is laid over them from the notes instead. None: read
    again."""
    changes = ahead.changes
    if changes.everything:
        return None
    rows = ahead.rows.fetchall()
    if rows and ("evse_id", rows[0][10] or "") in changes.notes:  # oicp_evse_id, FIND_EVSE's 11th
        return None
    return rows


def oicp_key_or_none(evse_id: Any) -> str | None:
    key = oicp_key(evse_id) if isinstance(evse_id, str) else None
    return key or None
