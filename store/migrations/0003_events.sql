-- The events of each session (SPEC §13: a client resubscribes with after_seq and misses nothing), one row per
-- event: its number and its envelope as JSON.
CREATE TABLE IF NOT EXISTS events (
    session_id TEXT   NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    body       TEXT   NOT NULL,
    PRIMARY KEY (session_id, seq)
);
