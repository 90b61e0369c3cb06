-- Workspace snapshots (SPEC §17): the object key of the session's latest snapshot; '' means none yet.
ALTER TABLE sessions ADD COLUMN snapshot TEXT NOT NULL DEFAULT '';
