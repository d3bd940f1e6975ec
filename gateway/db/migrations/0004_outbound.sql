-- The outbound pipeline: what each queued message needs to be sent, retried and audited.
ALTER TABLE outbound_messages ADD COLUMN encoding TEXT;
ALTER TABLE outbound_messages ADD COLUMN segments INTEGER;
-- 0 replies to a customer, 1 one-off and transactional messages, 2 campaign traffic.
ALTER TABLE outbound_messages ADD COLUMN priority INTEGER NOT NULL DEFAULT 1;
ALTER TABLE outbound_messages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
-- queued/deferred: not before this time; sending: look it up at the provider at this time.
ALTER TABLE outbound_messages ADD COLUMN next_attempt_at TEXT;
ALTER TABLE outbound_messages ADD COLUMN expires_at TEXT;
-- 1: the sender set expires_at itself ("1 hour only"); 0: the default validity, which a
-- quiet-hours or cap deferral moves on (deferred, never dropped; never sent stale either).
ALTER TABLE outbound_messages ADD COLUMN fixed_expiry INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbound_messages ADD COLUMN sending_at TEXT;
ALTER TABLE outbound_messages ADD COLUMN campaign_id TEXT;
-- Why a message is deferred, cancelled or expired (quiet_hours, opted_out …).
ALTER TABLE outbound_messages ADD COLUMN reason TEXT;

-- Ready to go: claimed in priority order, oldest first.
CREATE INDEX outbound_ready ON outbound_messages(from_number, priority, id)
    WHERE status = 'queued' AND next_attempt_at IS NULL;
-- Waiting for a time: back-off, quiet hours, caps, or a lookup after an unknown outcome.
CREATE INDEX outbound_waiting ON outbound_messages(from_number, next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX outbound_to ON outbound_messages(to_number, id);
CREATE INDEX outbound_campaign ON outbound_messages(campaign_id, id)
    WHERE campaign_id IS NOT NULL;
-- Listing the log by status.
DROP INDEX outbound_messages_status;
CREATE INDEX outbound_messages_status ON outbound_messages(status, id);

-- The delivery log: everything the pipeline did to a message, in order. Provider receipts
-- are in status_callbacks, joined by provider id.
CREATE TABLE outbound_events (
    id           INTEGER PRIMARY KEY,
    outbound_id  INTEGER NOT NULL REFERENCES outbound_messages(id),
    at           TEXT NOT NULL,
    event        TEXT NOT NULL,
    status       TEXT NOT NULL,
    error_code   TEXT,
    detail       TEXT
);
CREATE INDEX outbound_events_message ON outbound_events(outbound_id, id);

-- Messages queued before this version get the default validity from now on.
UPDATE outbound_messages
   SET expires_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '+4 hours')
 WHERE expires_at IS NULL AND status IN ('queued', 'deferred', 'sending');
