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
-- `id` is also the order in which events are delivered to the CRM.
CREATE TABLE profile_events (
    id            INTEGER PRIMARY KEY,
    event_id      TEXT NOT NULL,
    phone         TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    type          TEXT NOT NULL,
    occurred_at   TEXT NOT NULL,
    data_json     TEXT NOT NULL,
    UNIQUE (phone, seq)
);

-- How far each CRM endpoint has got in profile_events: every event up to last_ref has been
-- delivered or set aside as a dead letter. A new endpoint starts at 0: the whole history.
CREATE TABLE sync_cursors (
    endpoint         TEXT PRIMARY KEY,
    last_ref         INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    last_error_at    TEXT,
    last_success_at  TEXT
);

-- Events an endpoint did not take within sync.max_age_hours; `replay` sends them again.
CREATE TABLE sync_dead_letters (
    id           INTEGER PRIMARY KEY,
    endpoint     TEXT NOT NULL,
    event_ref    INTEGER NOT NULL REFERENCES profile_events(id),
    state        TEXT NOT NULL CHECK (state IN ('dead', 'replay', 'delivered')),
    attempts     INTEGER NOT NULL,
    last_error   TEXT,
    dead_at      TEXT NOT NULL,
    replayed_at  TEXT,
    UNIQUE (endpoint, event_ref)
);
CREATE INDEX sync_dead_letters_state ON sync_dead_letters(endpoint, state, event_ref);

-- Numbers that must never be messaged again without a new opt-in (kept through erasure).
CREATE TABLE suppressions (
    phone       TEXT PRIMARY KEY,
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
