-- Recovering from provider faults: look-ups that back off per message, and receipts fetched
-- from the provider when its callback never came.
-- Look-ups tried for a message whose hand-over had an unknown outcome (sets its back-off).
ALTER TABLE outbound_messages ADD COLUMN lookups INTEGER NOT NULL DEFAULT 0;
-- sent, no final receipt yet: fetch the status from the provider at this time (NULL: not to
-- be fetched: inline replies, or given up as too old).
ALTER TABLE outbound_messages ADD COLUMN receipt_check_at TEXT;
ALTER TABLE outbound_messages ADD COLUMN receipt_checks INTEGER NOT NULL DEFAULT 0;

CREATE INDEX outbound_receipt_due ON outbound_messages(from_number, receipt_check_at)
    WHERE status = 'sent' AND receipt_check_at IS NOT NULL;

-- Messages sent before this version still waiting for a receipt are checked as well.
UPDATE outbound_messages SET receipt_check_at = sent_at
 WHERE status = 'sent' AND provider_sid IS NOT NULL AND provider != 'inline'
   AND sent_at IS NOT NULL;
