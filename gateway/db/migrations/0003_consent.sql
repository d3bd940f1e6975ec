-- The consent ledger: every opt-in and opt-out, per (phone, program), never changed.
CREATE TABLE consent_events (
    id             INTEGER PRIMARY KEY,
    phone          TEXT NOT NULL,
    program_id     TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('opt_in_requested', 'opt_in_confirmed',
                       'opt_out', 're_opt_in', 'imported')),
    source         TEXT NOT NULL,
    occurred_at    TEXT NOT NULL,
    inbound_sid    TEXT,
    inbound_text   TEXT,
    reply_text     TEXT,
    evidence_json  TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX consent_events_phone ON consent_events(phone, program_id, id);
CREATE INDEX consent_events_program ON consent_events(program_id, occurred_at);

-- Append-only: what happened is never rewritten. Erasure may blank the personal text only.
CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
CREATE TRIGGER consent_events_no_update
BEFORE UPDATE OF id, phone, program_id, kind, source, occurred_at ON consent_events
BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;

-- The current status per (phone, program), derived from the ledger (rebuildable from it).
CREATE TABLE consent_status (
    phone            TEXT NOT NULL,
    program_id       TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'opted_in', 'opted_out')),
    since            TEXT NOT NULL,
    last_event_id    INTEGER NOT NULL REFERENCES consent_events(id),
    opt_in_event_id  INTEGER REFERENCES consent_events(id),
    pending_until    TEXT,
    PRIMARY KEY (phone, program_id)
);

-- Messages that might be opt-outs but are not clearly so: a person decides.
CREATE TABLE consent_review (
    id           INTEGER PRIMARY KEY,
    phone        TEXT NOT NULL,
    short_code   TEXT NOT NULL,
    inbound_sid  TEXT,
    text         TEXT NOT NULL,
    rule         TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    resolved_at  TEXT,
    resolution   TEXT
);
CREATE INDEX consent_review_open ON consent_review(received_at) WHERE resolved_at IS NULL;

-- What the consent rules need to know of each outbound message (filled by the pipeline).
ALTER TABLE outbound_messages ADD COLUMN program_id TEXT;
ALTER TABLE outbound_messages ADD COLUMN purpose TEXT;
ALTER TABLE outbound_messages ADD COLUMN sent_at TEXT;
-- For a marketing message: the opt-in event that allowed it (the audit trail).
ALTER TABLE outbound_messages ADD COLUMN consent_event_id INTEGER REFERENCES consent_events(id);
-- A reply given inline in the webhook's answer, to this inbound message.
ALTER TABLE outbound_messages ADD COLUMN in_reply_to INTEGER REFERENCES inbound_messages(id);
CREATE INDEX outbound_messages_reply ON outbound_messages(in_reply_to)
    WHERE in_reply_to IS NOT NULL;
CREATE INDEX outbound_messages_marketing ON outbound_messages(to_number, sent_at)
    WHERE purpose = 'marketing';
