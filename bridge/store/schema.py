"""The database schema as an ordered list of migrations (``PRAGMA user_version`` counts those applied).

Append only: a released migration is never edited. Each area owns its tables:
- 1: the outbox (bridge.store.outbox): the latest mapped status per (operator, EvseID) and its delivery state,
  what was not pushed and why, and per-operator push/resync bookkeeping.
- 2: OCPI state (bridge.ocpi.store): locations, EVSEs, connectors per party; tokens; poll cursors.
- 3: the sender poller (bridge.ocpi.poller): per polled source, its cursor and last success/error.
"""

from __future__ import annotations

OUTBOX = """
CREATE TABLE outbox (
    operator_id     TEXT NOT NULL,            -- OperatorID as configured, e.g. DE*ABC
    evse_id         TEXT NOT NULL,            -- normalised EvseID, e.g. DE*ABC*E123
    action          TEXT NOT NULL,            -- 'update' (status below) or 'delete'
    oicp_status     TEXT,                     -- Available, Occupied ... (NULL for delete)
    ocpi_status     TEXT NOT NULL,
    last_updated_us INTEGER NOT NULL,         -- OCPI last_updated, microseconds since the epoch (UTC)
    version         INTEGER NOT NULL,         -- from the global sequence, set on every accepted change
    state           TEXT NOT NULL,            -- pending | in_flight | delivered | dead | parked
    pending_since   REAL,                     -- wall clock (s) when it became pending: the max-wait clock
    sent_version    INTEGER,                  -- the version being pushed while in_flight
    delivered_version INTEGER,
    delivered_action TEXT,
    delivered_status TEXT,
    delivered_at    REAL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    dead_code       TEXT,                     -- Hubject's code for dead/parked records
    dead_reason     TEXT,
    source          TEXT NOT NULL,            -- country_code/party_id/location_id/evse_uid it came from
    PRIMARY KEY (operator_id, evse_id)
) WITHOUT ROWID;
CREATE INDEX outbox_pending ON outbox (operator_id, state, pending_since);

CREATE TABLE sequence (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO sequence VALUES ('outbox_version', 0);

CREATE TABLE not_pushed (
    source          TEXT PRIMARY KEY,         -- country_code/party_id/location_id/evse_uid
    evse_id         TEXT,
    ocpi_status     TEXT NOT NULL,
    reason          TEXT NOT NULL,            -- a bridge.mapping.SkipReason value
    last_updated_us INTEGER NOT NULL,
    seen_at         REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE operator_state (
    operator_id        TEXT PRIMARY KEY,
    last_success_at    REAL,
    last_error_at      REAL,
    last_error         TEXT,
    failing_since      REAL,
    last_fullload_at   REAL,
    last_fullload_count INTEGER,
    resync_requested   INTEGER NOT NULL DEFAULT 0,
    resync_force       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""

MIGRATIONS: list[str] = [OUTBOX]
