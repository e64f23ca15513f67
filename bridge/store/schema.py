"""The database schema as an ordered list of migrations (``PRAGMA user_version`` counts those applied).

Append only: a released migration is never edited. Each area owns its tables:
- 1: the outbox (bridge.store.outbox): the latest mapped status per (operator, EvseID) and its delivery state,
  what was not pushed and why, and per-operator push/resync bookkeeping.
- 2: OCPI state (bridge.ocpi.store): locations, EVSEs, connectors per party; registrations (tokens).
- 3: the sender poller (bridge.ocpi.poller): per polled source, its cursor and last success/error.
- 4: OCPI state: the columns the EVSE status fast path writes instead of rewriting the Location document.
- 5: the outbox: whether a push of the row had an unknown outcome since the last fullLoad.
- 6: decisions from state: each EVSE's EvseID as Hubject writes it (indexed, to find the EVSEs that hold an
  EvseID), the outbox's doubt period and time of death, an interrupted fullLoad, and the configuration the
  decisions were last made with.
- 7: the EVSE data outbox (bridge.store.evse_data): per (operator, EvseID) the latest mapped EvseDataRecord,
  its hash, the last record Hubject acknowledged and whether Hubject holds one; EVSEs not pushable and why;
  per-operator data fullLoad bookkeeping.
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

OCPI = """
CREATE TABLE ocpi_location (
    country_code    TEXT NOT NULL,
    party_id        TEXT NOT NULL,
    location_id     TEXT NOT NULL,
    version         TEXT NOT NULL,            -- OCPI version the document is in: 2.1.1 | 2.2.1
    document        TEXT NOT NULL,            -- the Location JSON (EVSEs, Connectors) as received or merged
    last_updated_us INTEGER NOT NULL,         -- last_updated, microseconds since the epoch (UTC)
    PRIMARY KEY (country_code, party_id, location_id)
) WITHOUT ROWID;

CREATE TABLE ocpi_evse (
    country_code    TEXT NOT NULL,
    party_id        TEXT NOT NULL,
    location_id     TEXT NOT NULL,
    evse_uid        TEXT NOT NULL,
    evse_id         TEXT,                     -- the last evse_id seen for this uid (kept when OCPI drops it)
    status          TEXT NOT NULL,
    publish         INTEGER NOT NULL,
    last_updated_us INTEGER NOT NULL,
    PRIMARY KEY (country_code, party_id, location_id, evse_uid)
) WITHOUT ROWID;

CREATE TABLE ocpi_registration (
    country_code    TEXT NOT NULL,
    party_id        TEXT NOT NULL,
    version         TEXT NOT NULL,
    inbound_sha256  TEXT NOT NULL UNIQUE,     -- SHA-256 of the token the CPO presents to us (only compared)
    outbound_token  TEXT NOT NULL,            -- the token we present to the CPO (sent, so kept as is)
    versions_url    TEXT NOT NULL,
    endpoints       TEXT NOT NULL,            -- JSON: the CPO's version details endpoints
    credentials     TEXT NOT NULL,            -- JSON: the CPO's credentials object as received
    registered_at   REAL NOT NULL,
    PRIMARY KEY (country_code, party_id)
) WITHOUT ROWID;

"""

OCPI_SENDER_POLL = """
CREATE TABLE IF NOT EXISTS ocpi_sender_poll (
    source          TEXT PRIMARY KEY,         -- the polled versions_url ([[ocpi.sources]] versions_url)
    cursor_us       INTEGER,                  -- start (date_to) of the last complete poll, us since the epoch
    last_success_at REAL,                     -- wall clock (s) of the last complete poll
    last_full_at    REAL,                     -- wall clock (s) of the last complete full fetch
    last_error      TEXT,
    last_error_at   REAL
) WITHOUT ROWID;
"""

# The EVSE status fast path (bridge.ocpi.store) records a status PATCH in these columns and leaves the
# Location document alone; reading a Location lays them over the document. NULL: the document's value holds.
# Every rewrite of the document (PUT, general PATCH) folds them in and sets them back to NULL.
OCPI_STATUS_COLUMNS = """
ALTER TABLE ocpi_location ADD COLUMN last_updated_text TEXT;  -- the Location's last_updated as sent
ALTER TABLE ocpi_evse ADD COLUMN last_updated_text TEXT;      -- the EVSE's last_updated; status is the EVSE's
"""

# A push whose outcome is unknown (timeout, reset, crash) may still be applied by Hubject later, even after a
# later push of the same EVSE was acknowledged. Until the next fullLoad such a row never skips a change as
# "Hubject already holds it" (bridge.outbox.hubject_holds).
OUTBOX_UNSURE = """
ALTER TABLE outbox ADD COLUMN unsure INTEGER NOT NULL DEFAULT 0;
"""

# bridge.intake decides each outbox row from the current OCPI state of the EVSE that owns its EvseID: the
# EVSEs holding an EvseID are found by ``oicp_evse_id`` (the normalised EvseID; '' when the evse_id is not a
# valid one, NULL when not yet computed: the start-up reconciliation fills it in). A push with an unknown
# outcome leaves its row ``unsure`` until a push sent after ``unsure_until`` is acknowledged. A fullLoad under
# way is marked in ``operator_state`` so that a crash during it is known at the next start.
DECIDED_FROM_STATE = """
ALTER TABLE ocpi_evse ADD COLUMN oicp_evse_id TEXT;
CREATE INDEX ocpi_evse_by_evse_id ON ocpi_evse (oicp_evse_id);
ALTER TABLE outbox ADD COLUMN unsure_until REAL;
ALTER TABLE outbox ADD COLUMN dead_at REAL;
ALTER TABLE operator_state ADD COLUMN fullload_started_at REAL;
ALTER TABLE operator_state ADD COLUMN fullload_refused_at REAL;
ALTER TABLE operator_state ADD COLUMN fullload_refusal TEXT;
CREATE TABLE bridge_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


# EVSE data (issue 14, bridge.evse_data.decide): one row per (operator, EvseID). ``record`` is the latest
# mapped EvseDataRecord as canonical JSON (for a withdrawal: the last mapped one), ``acked_record`` the last
# one Hubject acknowledged (a delete must send a full record), ``held`` whether Hubject holds a record for
# the EvseID: a status is pushed only then (design §6.1). Flags are INTEGER 0/1 on both engines.
EVSE_DATA = """
CREATE TABLE evse_data_outbox (
    operator_id     TEXT NOT NULL,
    evse_id         TEXT NOT NULL,            -- normalised EvseID, as in outbox.evse_id
    action          TEXT NOT NULL,            -- 'update' (record below) or 'delete'
    record          TEXT,                     -- canonical JSON of the latest mapped record
    record_hash     TEXT,                     -- its SHA-256 (NULL for delete)
    source          TEXT NOT NULL,            -- country_code/party_id/location_id/evse_uid
    version         INTEGER NOT NULL,         -- from the sequence 'evse_data_version'
    state           TEXT NOT NULL,            -- pending | in_flight | delivered | dead
    pending_since   REAL,
    sent_version    INTEGER,
    sent_action     TEXT,                     -- insert | update | delete, while in flight
    acked_record    TEXT,
    acked_hash      TEXT,
    held            INTEGER NOT NULL DEFAULT 0,
    unsure          INTEGER NOT NULL DEFAULT 0,
    unsure_until    REAL,
    reclassified    INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    dead_code       TEXT,
    dead_reason     TEXT,
    dead_at         REAL,
    delivered_at    REAL,
    PRIMARY KEY (operator_id, evse_id)
) WITHOUT ROWID;
CREATE INDEX evse_data_outbox_pending ON evse_data_outbox (operator_id, state, pending_since);
INSERT INTO sequence (name, value) VALUES ('evse_data_version', 0);

CREATE TABLE evse_data_not_pushable (
    source          TEXT PRIMARY KEY,         -- country_code/party_id/location_id/evse_uid
    operator_id     TEXT NOT NULL,
    evse_id         TEXT,
    reason          TEXT NOT NULL,            -- a bridge.evse_data.NotPushableReason value
    detail          TEXT NOT NULL,
    seen_at         REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE evse_data_operator (
    operator_id         TEXT PRIMARY KEY,
    last_fullload_at    REAL,
    last_fullload_count INTEGER,
    fullload_started_at REAL,
    fullload_refusal    TEXT,
    last_error          TEXT,
    last_error_at       REAL
) WITHOUT ROWID;
"""

MIGRATIONS: list[str] = [
    OUTBOX, OCPI, OCPI_SENDER_POLL, OCPI_STATUS_COLUMNS, OUTBOX_UNSURE, DECIDED_FROM_STATE, EVSE_DATA,
]  # fmt: skip
