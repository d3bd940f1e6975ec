-- One row per customer, keyed by E.164 number.
CREATE TABLE profiles (
    phone             TEXT PRIMARY KEY,
    first_name        TEXT,
    last_name         TEXT,
    email             TEXT,
    language          TEXT,
    time_zone         TEXT,
    attributes_json   TEXT NOT NULL DEFAULT '{}',
    tags_json         TEXT NOT NULL DEFAULT '[]',
    inbound_count     INTEGER NOT NULL DEFAULT 0,
    outbound_count    INTEGER NOT NULL DEFAULT 0,
    delivered_count   INTEGER NOT NULL DEFAULT 0,
    failed_count      INTEGER NOT NULL DEFAULT 0,
    last_inbound_at   TEXT,
    last_outbound_at  TEXT,
    -- Events recorded for this profile so far; each event takes the next number.
    seq               INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);

-- The timeline: every event of a profile, in order, with what it changed or carried.
CREATE TABLE profile_events (
    id            INTEGER PRIMARY KEY,
    event_id      TEXT NOT NULL UNIQUE,
    phone         TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    type          TEXT NOT NULL,
    occurred_at   TEXT NOT NULL,
    data_json     TEXT NOT NULL,
    UNIQUE (phone, seq)
);

-- What each CRM endpoint still has to receive; written in the same transaction as the event.
CREATE TABLE sync_outbox (
    id               INTEGER PRIMARY KEY,
    event_ref        INTEGER NOT NULL REFERENCES profile_events(id),
    endpoint         TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    enqueued_at      TEXT NOT NULL,
    next_attempt_at  TEXT NOT NULL,
    last_error       TEXT,
    delivered_at     TEXT
);
CREATE INDEX sync_outbox_pending ON sync_outbox(endpoint, id) WHERE state = 'pending';
CREATE INDEX sync_outbox_dead ON sync_outbox(endpoint, id) WHERE state = 'dead';

-- Numbers that must never be messaged again without a new opt-in (kept through erasure).
CREATE TABLE suppressions (
    phone       TEXT PRIMARY KEY,
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
