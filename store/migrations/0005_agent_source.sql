-- The agent a session runs with (a JSON codepilot_store::AgentSource: the agent file's text, the file it was read
-- from, the work directory), recorded by the daemon so another daemon can open the session with it; '' means none.
ALTER TABLE sessions ADD COLUMN agent_source TEXT NOT NULL DEFAULT '';
