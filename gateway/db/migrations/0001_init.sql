-- Messages as they arrive from the provider: stored once per provider message id.
CREATE TABLE inbound_messages (
    id            INTEGER PRIMARY KEY,
    provider      TEXT NOT NULL,
    provider_sid  TEXT NOT NULL,
    from_number   TEXT NOT NULL,
    to_number     TEXT NOT NULL,
    body          TEXT NOT NULL,
    num_segments  INTEGER,
    received_at   TEXT NOT NULL,
    params_json   TEXT NOT NULL,
    UNIQUE (provider, provider_sid)
);
CREATE INDEX inbound_messages_from ON inbound_messages(from_number, received_at);

-- Every outbound message is a row before any provider call (the delivery pipeline fills it).
CREATE TABLE outbound_messages (
    id             INTEGER PRIMARY KEY,
    from_number    TEXT NOT NULL,
    to_number      TEXT NOT NULL,
    body           TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'delivered',
                       'undelivered', 'failed', 'cancelled', 'deferred', 'expired')),
    provider       TEXT,
    provider_sid   TEXT,
    error_code     TEXT,
    error_message  TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX outbound_messages_status ON outbound_messages(status);
CREATE UNIQUE INDEX outbound_messages_provider_sid
    ON outbound_messages(provider, provider_sid) WHERE provider_sid IS NOT NULL;

-- Every status callback, exactly as received, whether or not we know the message.
CREATE TABLE status_callbacks (
    id             INTEGER PRIMARY KEY,
    provider       TEXT NOT NULL,
    provider_sid   TEXT NOT NULL,
    status         TEXT NOT NULL,
    error_code     TEXT,
    received_at    TEXT NOT NULL,
    params_json    TEXT NOT NULL
);
CREATE INDEX status_callbacks_sid ON status_callbacks(provider, provider_sid, id);

-- What the sandbox provider "sent": its own carrier-side store, with receipts still due.
CREATE TABLE sandbox_messages (
    sid             TEXT PRIMARY KEY,
    from_number     TEXT NOT NULL,
    to_number       TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    error_code      TEXT,
    status_callback TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    next_receipt_at TEXT
);
CREATE INDEX sandbox_messages_due ON sandbox_messages(next_receipt_at)
    WHERE next_receipt_at IS NOT NULL;
CREATE INDEX sandbox_messages_to ON sandbox_messages(to_number, created_at);
