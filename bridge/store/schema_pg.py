"""The database schema on PostgreSQL: the same tables and columns as ``bridge.store.schema`` (SQLite),
migration for migration (number N here is number N there), in PostgreSQL types; then what only PostgreSQL
needs (the leases of ``bridge.store.pg_leases``). ``bridge_schema`` counts those applied (SQLite uses
``PRAGMA user_version``). Append only: a released migration is never edited.

What differs from the SQLite schema, and why:
- ``INTEGER`` columns holding microseconds since the epoch (``last_updated_us``, ``cursor_us``) and the
  outbox versions are ``BIGINT``: PostgreSQL's ``INTEGER`` is 32 bits (SQLite's grows to 64).
- ``REAL`` (wall clock seconds) is ``DOUBLE PRECISION``: PostgreSQL's ``REAL`` is 32 bits, which would round
  an epoch time to about two minutes; SQLite's ``REAL`` is 64 bits.
- ``ocpi_evse.publish`` is ``BOOLEAN``: bridge.ocpi.store binds a Python ``bool`` (SQLite stores it as 1/0,
  PostgreSQL has no implicit cast from boolean to integer) and reads it through ``bool()``; no statement
  compares it with a number. The other flags (``resync_requested``, ``resync_force``, ``unsure``) stay
  ``INTEGER`` 0/1: the repositories bind them with ``int()`` and compare them with ``= 1``.
- JSON documents (``ocpi_location.document``, ``endpoints``, ``credentials``) stay ``TEXT``: the repositories
  read them with SQLite's JSON1 functions today; moving them to ``JSONB`` is a step of the port of those
  statements (docs/postgres.md).
- No ``WITHOUT ROWID`` (SQLite only: PostgreSQL tables are heaps with a primary key index either way).
- The table named ``sequence`` keeps its name (a non-reserved word in PostgreSQL).
"""

from __future__ import annotations

OUTBOX = """
CREATE TABLE outbox (
    operator_id     TEXT NOT NULL,
    evse_id         TEXT NOT NULL,
    action          TEXT NOT NULL,
    oicp_status     TEXT,
    ocpi_status     TEXT NOT NULL,
    last_updated_us BIGINT NOT NULL,
    version         BIGINT NOT NULL,
    state           TEXT NOT NULL,
    pending_since   DOUBLE PRECISION,
    sent_version    BIGINT,
    delivered_version BIGINT,
    delivered_action TEXT,
    delivered_status TEXT,
    delivered_at    DOUBLE PRECISION,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    dead_code       TEXT,
    dead_reason     TEXT,
    source          TEXT NOT NULL,
    PRIMARY KEY (operator_id, evse_id)
);
CREATE INDEX outbox_pending ON outbox (operator_id, state, pending_since);

CREATE TABLE sequence (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO sequence VALUES ('outbox_version', 0);

CREATE TABLE not_pushed (
    source          TEXT PRIMARY KEY,
    evse_id         TEXT,
    ocpi_status     TEXT NOT NULL,
    reason          TEXT NOT NULL,
    last_updated_us BIGINT NOT NULL,
    seen_at         DOUBLE PRECISION NOT NULL
);

CREATE TABLE operator_state (
    operator_id        TEXT PRIMARY KEY,
    last_success_at    DOUBLE PRECISION,
    last_error_at      DOUBLE PRECISION,
    last_error         TEXT,
    failing_since      DOUBLE PRECISION,
    last_fullload_at   DOUBLE PRECISION,
    last_fullload_count INTEGER,
    resync_requested   INTEGER NOT NULL DEFAULT 0,
    resync_force       INTEGER NOT NULL DEFAULT 0
);
"""

OCPI = """
CREATE TABLE ocpi_location (
    country_code    TEXT NOT NULL,
    party_id        TEXT NOT NULL,
    location_id     TEXT NOT NULL,
    version         TEXT NOT NULL,
    document        TEXT NOT NULL,
    last_updated_us BIGINT NOT NULL,
    PRIMARY KEY (country_code, party_id, location_id)
);

CREATE TABLE ocpi_evse (
    country_code    TEXT NOT NULL,
    party_id        TEXT NOT NULL,
    location_id     TEXT NOT NULL,
    evse_uid        TEXT NOT NULL,
    evse_id         TEXT,
    status          TEXT NOT NULL,
    publish         BOOLEAN NOT NULL,
    last_updated_us BIGINT NOT NULL,
    PRIMARY KEY (country_code, party_id, location_id, evse_uid)
);

CREATE TABLE ocpi_registration (
    country_code    TEXT NOT NULL,
    party_id        TEXT NOT NULL,
    version         TEXT NOT NULL,
    inbound_sha256  TEXT NOT NULL UNIQUE,
    outbound_token  TEXT NOT NULL,
    versions_url    TEXT NOT NULL,
    endpoints       TEXT NOT NULL,
    credentials     TEXT NOT NULL,
    registered_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (country_code, party_id)
);
"""

OCPI_SENDER_POLL = """
CREATE TABLE IF NOT EXISTS ocpi_sender_poll (
    source          TEXT PRIMARY KEY,
    cursor_us       BIGINT,
    last_success_at DOUBLE PRECISION,
    last_full_at    DOUBLE PRECISION,
    last_error      TEXT,
    last_error_at   DOUBLE PRECISION
);
"""

OCPI_STATUS_COLUMNS = """
ALTER TABLE ocpi_location ADD COLUMN last_updated_text TEXT;
ALTER TABLE ocpi_evse ADD COLUMN last_updated_text TEXT;
"""

OUTBOX_UNSURE = """
ALTER TABLE outbox ADD COLUMN unsure INTEGER NOT NULL DEFAULT 0;
"""

DECIDED_FROM_STATE = """
ALTER TABLE ocpi_evse ADD COLUMN oicp_evse_id TEXT;
CREATE INDEX ocpi_evse_by_evse_id ON ocpi_evse (oicp_evse_id);
ALTER TABLE outbox ADD COLUMN unsure_until DOUBLE PRECISION;
ALTER TABLE outbox ADD COLUMN dead_at DOUBLE PRECISION;
ALTER TABLE operator_state ADD COLUMN fullload_started_at DOUBLE PRECISION;
ALTER TABLE operator_state ADD COLUMN fullload_refused_at DOUBLE PRECISION;
ALTER TABLE operator_state ADD COLUMN fullload_refusal TEXT;
CREATE TABLE bridge_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Leadership (bridge.leases, bridge.store.pg_leases): one row per operator's push lane or polled source.
# ``token`` is the fencing token: it grows by one whenever the lease passes to a new holder (or to the same
# holder after it expired). ``expires_at`` is in the server's clock (epoch seconds), so replicas' clocks
# never have to agree.
LEASES = """
CREATE TABLE bridge_lease (
    name        TEXT PRIMARY KEY,       -- 'operator:DE*ABC', 'source:https://cpo.example/ocpi/versions'
    holder      TEXT NOT NULL,          -- the replica holding it ('' before anyone has)
    token       BIGINT NOT NULL,        -- fencing token
    expires_at  DOUBLE PRECISION NOT NULL
);
"""


# schema.py's 7 (EVSE data, bridge.store.evse_data), here number 8: the leases came first on PostgreSQL.
EVSE_DATA = """
CREATE TABLE evse_data_outbox (
    operator_id     TEXT NOT NULL,
    evse_id         TEXT NOT NULL,
    action          TEXT NOT NULL,
    record          TEXT,
    record_hash     TEXT,
    source          TEXT NOT NULL,
    version         BIGINT NOT NULL,
    state           TEXT NOT NULL,
    pending_since   DOUBLE PRECISION,
    sent_version    BIGINT,
    sent_action     TEXT,
    acked_record    TEXT,
    acked_hash      TEXT,
    held            INTEGER NOT NULL DEFAULT 0,
    unsure          INTEGER NOT NULL DEFAULT 0,
    unsure_until    DOUBLE PRECISION,
    reclassified    INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    dead_code       TEXT,
    dead_reason     TEXT,
    dead_at         DOUBLE PRECISION,
    delivered_at    DOUBLE PRECISION,
    PRIMARY KEY (operator_id, evse_id)
);
CREATE INDEX evse_data_outbox_pending ON evse_data_outbox (operator_id, state, pending_since);
INSERT INTO sequence (name, value) VALUES ('evse_data_version', 0);

CREATE TABLE evse_data_not_pushable (
    source          TEXT PRIMARY KEY,
    operator_id     TEXT NOT NULL,
    evse_id         TEXT,
    reason          TEXT NOT NULL,
    detail          TEXT NOT NULL,
    seen_at         DOUBLE PRECISION NOT NULL
);

CREATE TABLE evse_data_operator (
    operator_id         TEXT PRIMARY KEY,
    last_fullload_at    DOUBLE PRECISION,
    last_fullload_count INTEGER,
    fullload_started_at DOUBLE PRECISION,
    fullload_refusal    TEXT,
    last_error          TEXT,
    last_error_at       DOUBLE PRECISION
);
"""

# PostgreSQL's own: the status fast path reads an EvseID's outbox rows in the statement that reads its EVSE
# (FIND_EVSE's join on ``evse_id`` alone, a round trip fewer per PATCH; bridge/ocpi/store.py). SQLite runs the
# two statements (cheaper there than the join) and needs no such index.
OUTBOX_BY_EVSE_ID = """
CREATE INDEX outbox_by_evse_id ON outbox (evse_id);
"""

# Numbers 1-6 are schema.py's 1-6, 8 is its 7 (EVSE_DATA); 7 (LEASES) and 9 (OUTBOX_BY_EVSE_ID) are
# PostgreSQL's own.
SQLITE_MIGRATIONS_MIRRORED = 7

MIGRATIONS: list[str] = [
    OUTBOX, OCPI, OCPI_SENDER_POLL, OCPI_STATUS_COLUMNS, OUTBOX_UNSURE, DECIDED_FROM_STATE, LEASES,
    EVSE_DATA, OUTBOX_BY_EVSE_ID,
]  # fmt: skip
