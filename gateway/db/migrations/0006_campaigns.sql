-- Campaigns: the definition (validated JSON), the lifecycle, and when the next run is due.
-- The database is the source of truth for schedules; the in-memory scheduler is re-armed
-- from here at every start.
CREATE TABLE campaigns (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('push', 'pull')),
    program_id   TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('draft', 'scheduled', 'running', 'paused',
                     'completed', 'cancelled')),
    spec_json    TEXT NOT NULL,
    next_run_at  TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX campaigns_status ON campaigns(status, next_run_at);

-- One run per scheduled time (UNIQUE: firing twice for the same time is a no-op).
CREATE TABLE campaign_runs (
    id             INTEGER PRIMARY KEY,
    campaign_id    TEXT NOT NULL REFERENCES campaigns(id),
    scheduled_for  TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('materialising', 'queuing', 'sending',
                       'completed', 'missed', 'cancelled')),
    -- Materialisation goes in chunks ordered by phone; this is the last phone taken.
    cursor_phone   TEXT,
    audience       INTEGER NOT NULL DEFAULT 0,
    started_at     TEXT NOT NULL,
    finished_at    TEXT,
    UNIQUE (campaign_id, scheduled_for)
);

-- A run's recipients, fixed before anything is queued: a restart resumes, never repeats.
-- outbound_id is set in the transaction that queues the message.
CREATE TABLE campaign_recipients (
    run_id       INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    phone        TEXT NOT NULL,
    variant      INTEGER NOT NULL,
    outbound_id  INTEGER,
    skipped      TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

-- Pull campaigns: the coupon pool (one code per customer) and every keyword hit.
CREATE TABLE campaign_codes (
    campaign_id  TEXT NOT NULL REFERENCES campaigns(id),
    code         TEXT NOT NULL,
    phone        TEXT,
    assigned_at  TEXT,
    PRIMARY KEY (campaign_id, code)
);
CREATE UNIQUE INDEX campaign_codes_phone ON campaign_codes(campaign_id, phone)
    WHERE phone IS NOT NULL;
CREATE INDEX campaign_codes_free ON campaign_codes(campaign_id) WHERE phone IS NULL;

CREATE TABLE campaign_hits (
    id           INTEGER PRIMARY KEY,
    campaign_id  TEXT NOT NULL REFERENCES campaigns(id),
    phone        TEXT NOT NULL,
    at           TEXT NOT NULL,
    in_window    INTEGER NOT NULL,
    inbound_sid  TEXT
);
CREATE INDEX campaign_hits_campaign ON campaign_hits(campaign_id, phone);

-- The audience of a program: its opted-in numbers, in phone order.
CREATE INDEX consent_status_program ON consent_status(program_id, status, phone);
