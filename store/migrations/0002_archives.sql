-- Context archives (SPEC §16): a JSON array of codepilot_protocol::ArchiveEntry; '' means none.
ALTER TABLE sessions ADD COLUMN archives TEXT NOT NULL DEFAULT '';
