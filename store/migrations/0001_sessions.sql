-- Portable between SQLite and PostgreSQL: only TEXT and BIGINT (the sqlx `Any` caveat, crates.md §4).
-- Times: *_at in Unix seconds, lease_expires_at in Unix milliseconds (sub-second lease TTLs in tests).
-- lease_token = '' means "no lease".
CREATE TABLE IF NOT EXISTS sessions (
    id                 TEXT    NOT NULL PRIMARY KEY,
    agent_name         TEXT    NOT NULL,
    title              TEXT,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    task_counter       BIGINT  NOT NULL DEFAULT 0,
    message_count      BIGINT  NOT NULL DEFAULT 0,
    input_tokens       BIGINT  NOT NULL DEFAULT 0,
    output_tokens      BIGINT  NOT NULL DEFAULT 0,
    cache_read_tokens  BIGINT  NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT  NOT NULL DEFAULT 0,
    calls              BIGINT  NOT NULL DEFAULT 0,
    lease_token        TEXT    NOT NULL DEFAULT '',
    lease_pid          BIGINT  NOT NULL DEFAULT 0,
    lease_host         TEXT    NOT NULL DEFAULT '',
    lease_acquired_at  BIGINT  NOT NULL DEFAULT 0,
    lease_expires_at   BIGINT  NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS sessions_updated_at ON sessions (updated_at);

CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT   NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    role       TEXT   NOT NULL,
    content    TEXT   NOT NULL,
    -- '' = content as is; 'json' = content is a JSON string literal, used when the text holds NUL
    -- characters (PostgreSQL TEXT cannot store them).
    encoding   TEXT   NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
