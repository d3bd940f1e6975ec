-- A customer's active conversation on a short code (at most one). Ended conversations are
-- deleted; what was asked and answered stays on the profile's timeline.
CREATE TABLE conversations (
    phone        TEXT NOT NULL,
    short_code   TEXT NOT NULL,
    flow         TEXT NOT NULL,
    step         TEXT NOT NULL,
    retries      INTEGER NOT NULL DEFAULT 0,
    answers_json TEXT NOT NULL DEFAULT '{}',
    started_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    PRIMARY KEY (phone, short_code)
);
