-- The model's answers as it gave them, where the stored message differs (payload blocks are compacted out of the
-- history): what a replay (SPEC §23) feeds back. One row per such message, by its position in the history.
CREATE TABLE IF NOT EXISTS answers (
    session_id TEXT   NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    idx        BIGINT NOT NULL,
    content    TEXT   NOT NULL,
    PRIMARY KEY (session_id, idx)
);
