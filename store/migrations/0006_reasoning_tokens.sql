-- Of a session's output tokens, those the model spent reasoning (codepilot_protocol::Usage::reasoning_tokens).
ALTER TABLE sessions ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
