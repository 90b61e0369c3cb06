//! Command-line definition.

use std::path::PathBuf;

use clap::Args;
use clap::Parser;
use clap::Subcommand;
use clap::ValueEnum;

/// CodePilot: an autonomous software-engineering agent that reads, edits and runs your code.
#[derive(Debug, Parser)]
#[command(name = "codepilot", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one task to completion and exit.
    Run(RunArgs),
    /// Talk to the agent: each line you type is a task, in one session.
    Chat(ChatArgs),
    /// Write a commented starter agent.yaml.
    Init(InitArgs),
    /// Run an offline demo: a scripted model fixes a failing test in a temporary copy of a small project.
    Demo(DemoArgs),
    /// Attach this terminal to one of an agent's shells (detach with Ctrl-]).
    Attach(AttachArgs),
    /// List, show or delete stored sessions.
    Sessions(SessionsArgs),
    /// What the sandbox enforces on this machine.
    Sandbox(SandboxArgs),
    /// Run the daemon: sessions for IDEs, web UIs and `run --connect`, over JSON-RPC (SPEC §13).
    Serve(ServeArgs),
    /// List, prune, restore or delete workspace snapshots (SPEC §17).
    Snapshots(SnapshotsArgs),
    /// The agent file's MCP servers (SPEC §18).
    Mcp(McpArgs),
    /// List a session's checkpoints: one before each turn, and the state each rewind replaced (SPEC §19).
    Checkpoints(CheckpointsArgs),
    /// Rewind a session's work directory and conversation to a checkpoint (SPEC §19).
    Rewind(RewindArgs),
    /// The code index of a folder: its status, a rebuild, its repo map (SPEC §22).
    Index(IndexArgs),
    /// Search a folder's code: ranked by words, or a definition, its references, its callers or callees (SPEC §22).
    Search(SearchArgs),
    /// Re-run an exported session with its recorded answers (no model) and report where it differs (SPEC §23).
    Replay(ReplayArgs),
}

/// `codepilot replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The trajectory (`codepilot sessions export ID -o FILE`).
    pub file: PathBuf,
    /// Where to re-run it: an empty or new folder, kept afterwards. Default: a temporary folder, removed when the
    /// replay is identical.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Start before this turn (its checkpoint id, e.g. `3`) instead of the first: the workspace recorded there, the
    /// conversation before it, the tasks from it on.
    #[arg(long, value_name = "N")]
    pub from_checkpoint: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `codepilot index`.
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: IndexCommand,
    /// The folder indexed (the agent's work_dir).
    #[arg(
        long,
        short = 'd',
        value_name = "DIR",
        default_value = ".",
        global = true
    )]
    pub dir: PathBuf,
    /// Files larger than this are not indexed (the agent file's `search.max_file_kb`; an index with another limit
    /// is kept apart).
    #[arg(long, value_name = "KB", default_value_t = codepilot::search::DEFAULT_MAX_FILE_BYTES / 1024, global = true, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_file_kb: u64,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `codepilot index …`.
#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Bring the stored index up to date and show it: files per language, symbols, skipped files, size.
    Status,
    /// Delete the stored index and build it again from scratch.
    Rebuild,
    /// Print the repo map: the most used files and their key definitions.
    Map {
        /// Token budget of the map.
        #[arg(long, default_value_t = codepilot::search::DEFAULT_REPO_MAP_TOKENS)]
        max_tokens: usize,
        /// Personalise the ranking toward these files (repeatable).
        #[arg(long, value_name = "PATH")]
        focus: Vec<String>,
    },
}

/// What `codepilot search` looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SearchMode {
    /// Chunks ranked by how well their words match the query.
    Search,
    /// Who calls the named function, and who calls them.
    TraceCallers,
    /// What the named function calls, and what those call.
    TraceCallees,
    /// Both directions.
    TraceGraph,
    /// Where the name is defined.
    Definition,
    /// Every use of the name.
    References,
}

/// `codepilot search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words describing the code (mode search) or a function, method or type name (the other modes).
    pub query: String,
    /// What to look for.
    #[arg(long, short = 'm', value_enum, default_value = "search")]
    pub mode: SearchMode,
    /// Results of a ranked search.
    #[arg(long, short = 'k', default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub top_k: u16,
    /// How many calls deep a trace goes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=5))]
    pub depth: u32,
    /// The folder searched (the agent's work_dir).
    #[arg(long, short = 'd', value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Files larger than this are not indexed (the agent file's `search.max_file_kb`).
    #[arg(long, value_name = "KB", default_value_t = codepilot::search::DEFAULT_MAX_FILE_BYTES / 1024, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_file_kb: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `codepilot checkpoints`.
#[derive(Debug, Args)]
pub struct CheckpointsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CheckpointsCommand,
    /// Also read checkpoints a session took on another machine from this snapshot store (file:///DIR or
    /// s3://BUCKET/PREFIX).
    #[arg(long, value_name = "URL", env = "CODEPILOT_SNAPSHOTS", global = true)]
    pub snapshots: Option<String>,
    /// Print one JSON object per checkpoint instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `codepilot checkpoints …`.
#[derive(Debug, Subcommand)]
pub enum CheckpointsCommand {
    /// The session's checkpoints, oldest first.
    List {
        /// The session.
        #[arg(value_name = "SESSION")]
        session: String,
    },
}

/// `codepilot rewind`.
#[derive(Debug, Args)]
pub struct RewindArgs {
    /// Agent options (the agent file gives the work directory; the session options where the session is stored).
    #[command(flatten)]
    pub agent: AgentArgs,
    /// The session.
    #[arg(value_name = "SESSION", id = "rewind_session")]
    pub target: String,
    /// The checkpoint: N (the state before turn N began), N.S (before step S of turn N) or rewind-K (the state a
    /// rewind replaced, to undo it). `codepilot checkpoints list SESSION` shows them.
    #[arg(value_name = "CHECKPOINT")]
    pub checkpoint: String,
    /// Rewind only the work directory.
    #[arg(long, conflicts_with = "conversation")]
    pub files: bool,
    /// Rewind only the conversation.
    #[arg(long)]
    pub conversation: bool,
    /// Say what would change, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `codepilot mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: McpCommand,
}

/// `codepilot mcp …`.
#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Start every MCP server of the agent file, print its status and tools with their signatures, stop them
    /// (exit 1 when a server is not ready).
    List {
        /// The agent file.
        #[arg(long, short = 'c', value_name = "FILE", default_value = "agent.yaml")]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Log in to an MCP server behind the MCP authorization spec (OAuth): prints the authorization URL on its own
    /// line (and opens a browser when there is one), waits for the browser to come back to the loopback
    /// redirect, keeps the tokens under CODEPILOT_HOME (0600) for every later run; exit 0 when authorized.
    Login {
        /// The server's name in the agent file.
        server: String,
        /// The agent file.
        #[arg(long, short = 'c', value_name = "FILE", default_value = "agent.yaml")]
        config: PathBuf,
    },
    /// Forget the tokens `mcp login` kept for a server.
    Logout {
        /// The server's name in the agent file.
        server: String,
        /// The agent file.
        #[arg(long, short = 'c', value_name = "FILE", default_value = "agent.yaml")]
        config: PathBuf,
    },
    /// The client the official MCP conformance suite drives (`scripts/mcp-conformance.sh`): connects to URL
    /// through the same client the runtime uses, calls every tool it lists with arguments made from their
    /// signatures, answers questions with their defaults; `MCP_CONFORMANCE_SCENARIO` names the scenario.
    #[command(hide = true)]
    Conformance {
        /// The server's streamable-HTTP URL (the suite appends it).
        url: String,
    },
}

/// Workspace snapshots (SPEC §17), for `run`, `chat` and `serve`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Keep the work directory in this store: file:///DIR or s3://BUCKET/PREFIX (credentials and region from the
    /// AWS_* variables; AWS_ENDPOINT_URL for S3-compatible stores). A resumed session's workspace is restored
    /// into a work_dir that lacks it; the work_dir is saved at the end of every task.
    #[arg(long, value_name = "URL", env = "CODEPILOT_SNAPSHOTS")]
    pub snapshots: Option<String>,
    /// Largest workspace a snapshot may hold, in MiB (files .gitignore excludes do not count).
    #[arg(long, value_name = "MIB", default_value_t = codepilot::store::snapshot::DEFAULT_MAX_BYTES >> 20)]
    pub snapshot_max_mb: u64,
    /// Snapshots kept per session (older ones are deleted after each save).
    #[arg(long, value_name = "N", default_value_t = codepilot::store::snapshot::DEFAULT_KEEP)]
    pub snapshot_keep: usize,
}

/// What to do when a session's snapshot would be restored over a work_dir holding something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestoreArg {
    /// Restore only into an empty or missing work_dir (or over an older copy of this session's workspace).
    IfEmpty,
    /// Restore whatever the work_dir holds (its contents are deleted).
    Replace,
    /// Keep the work_dir as it is.
    Skip,
}

/// `codepilot serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen (repeatable): unix://PATH, stdio:// or ws://HOST:PORT. Default: a Unix socket at
    /// $XDG_RUNTIME_DIR/codepilot/runtime.sock (else $CODEPILOT_HOME/runtime.sock).
    #[arg(long, value_name = "URL")]
    pub listen: Vec<String>,
    /// Database URL for the sessions (sqlite://… or postgres://…). Default: SQLite under $CODEPILOT_HOME.
    #[arg(
        long,
        value_name = "URL",
        env = "CODEPILOT_DB_URL",
        hide_env_values = true
    )]
    pub db_url: Option<String>,
    /// The file holding the token WebSocket clients must present (created, 0600, when missing). Default:
    /// $CODEPILOT_HOME/serve.token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// A browser origin allowed to connect besides the daemon's own page, e.g. https://ide.example (repeatable).
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// How long a permission or ask-user request waits for a client's answer before it is denied.
    #[arg(long, value_name = "SECONDS", default_value_t = codepilot_server::DEFAULT_REQUEST_TIMEOUT.as_secs())]
    pub request_timeout_s: u64,
    /// Workspace snapshots.
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
    /// How long a session stays leased to this daemon after its last heartbeat: a daemon on another node takes
    /// a session over only when it has been silent this long.
    #[arg(long, value_name = "SECONDS", default_value_t = codepilot::store::LEASE_TTL.as_secs())]
    pub lease_ttl_s: u64,
    /// This daemon's node name in leases and `session/list`. Daemons sharing a database must have distinct
    /// names; on one node, a dead daemon's sessions are taken over at once. Default: the host name.
    #[arg(long, value_name = "NAME", env = "CODEPILOT_NODE")]
    pub node: Option<String>,
}

/// `codepilot sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SandboxCommand,
}

/// `codepilot sandbox …`.
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Prints which of the sandbox's guarantees this machine enforces (exit 0 when all, 1 when some are missing).
    Check,
}

/// Where sessions are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SessionKind {
    /// Kept in memory; gone when the process exits.
    Memory,
    /// One JSON file per session under $CODEPILOT_HOME/sessions/.
    File,
    /// A database: SQLite at $CODEPILOT_HOME/sessions.db, or --db-url.
    Db,
}

/// Options shared by `run` and `chat`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The agent file.
    #[arg(long, short = 'c', value_name = "FILE", default_value = "agent.yaml")]
    pub config: PathBuf,
    /// Where the session is stored.
    #[arg(long, value_enum, default_value_t = SessionKind::Db)]
    pub session: SessionKind,
    /// Resume (or create) this session.
    #[arg(long, value_name = "ID")]
    pub session_id: Option<String>,
    /// Database URL for `--session db` (sqlite://… or postgres://…). Default: SQLite under $CODEPILOT_HOME.
    #[arg(
        long,
        value_name = "URL",
        env = "CODEPILOT_DB_URL",
        hide_env_values = true
    )]
    pub db_url: Option<String>,
    /// Approve every tool that asks for permission, without prompting.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print one JSON event per line on stdout instead of human output.
    #[arg(long)]
    pub json: bool,
    /// Workspace snapshots.
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
    /// With --snapshots, when the session has a snapshot and the work_dir holds something else.
    #[arg(long, value_enum, default_value_t = RestoreArg::IfEmpty)]
    pub restore: RestoreArg,
}

/// `codepilot run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Agent options.
    #[command(flatten)]
    pub agent: AgentArgs,
    /// The task. `-` (or no task with piped stdin) reads it from stdin.
    #[arg(value_name = "TASK")]
    pub task: Option<String>,
    /// Run the task on the daemon at this socket (unix://PATH) instead of in this process.
    #[arg(long, value_name = "URL")]
    pub connect: Option<String>,
    /// Print the system prompt the task's first model call would send (the project's AGENTS.md files and
    /// runtime.instructions_files included) and exit without calling the model; no TASK needed, and no new
    /// session is stored.
    #[arg(long, conflicts_with = "connect")]
    pub print_prompt: bool,
    /// Limits for this run (SPEC §21), each replacing the agent file's runtime.limits value.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// A JSON Schema file (draft 2020-12) the task's result must match: the completion is validated (and refused
    /// with the validator's errors, up to runtime.output_retries times) and printed as JSON; with --json, the last
    /// line's outcome carries it as `structured`. Exits 6 when it never matched.
    #[arg(long, value_name = "FILE")]
    pub output_schema: Option<PathBuf>,
}

/// `--max-total-tokens`, `--max-cost-usd`, `--max-wall-s`: a run that would pass one ends with exit code 5.
#[derive(Debug, Args, Default)]
pub struct LimitArgs {
    /// Tokens of every kind this run may use; a model call that could go past it is not made.
    #[arg(long, value_name = "N")]
    pub max_total_tokens: Option<u64>,
    /// US dollars this run may spend (the model's prices: model.pricing or the built-in table).
    #[arg(long, value_name = "USD")]
    pub max_cost_usd: Option<f64>,
    /// Seconds this run may take, whatever it is doing; a running command is interrupted.
    #[arg(long, value_name = "SECONDS")]
    pub max_wall_s: Option<u64>,
}

/// `codepilot chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Agent options.
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// `codepilot init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the file.
    #[arg(value_name = "FILE", default_value = "agent.yaml")]
    pub path: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

/// `codepilot demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo project afterwards (its path is printed).
    #[arg(long)]
    pub keep: bool,
    /// Print one JSON event per line on stdout instead of human output.
    #[arg(long)]
    pub json: bool,
}

/// `codepilot attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The runtime's socket directory (printed by `codepilot run` when it starts).
    #[arg(long, value_name = "DIR", env = "CODEPILOT_SOCKET_DIR")]
    pub socket_dir: PathBuf,
    /// The terminal to attach to.
    #[arg(value_name = "NAME", default_value = "main")]
    pub name: String,
}

/// `codepilot sessions`.
#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SessionsCommand,
    /// Where sessions are stored.
    #[arg(long, value_enum, default_value_t = SessionKind::Db, global = true)]
    pub session: SessionKind,
    /// Database URL (sqlite://… or postgres://…). Default: SQLite under $CODEPILOT_HOME.
    #[arg(
        long,
        value_name = "URL",
        env = "CODEPILOT_DB_URL",
        hide_env_values = true,
        global = true
    )]
    pub db_url: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `codepilot snapshots`.
#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SnapshotsCommand,
    /// The snapshot store: file:///DIR or s3://BUCKET/PREFIX.
    #[arg(long, value_name = "URL", env = "CODEPILOT_SNAPSHOTS", global = true)]
    pub snapshots: Option<String>,
    /// The sessions' database (sqlite://… or postgres://…; default: SQLite under $CODEPILOT_HOME): `prune` and
    /// `rm` never delete a snapshot a session's history points to.
    #[arg(
        long,
        value_name = "URL",
        env = "CODEPILOT_DB_URL",
        hide_env_values = true,
        global = true
    )]
    pub db_url: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `codepilot snapshots …`.
#[derive(Debug, Subcommand)]
pub enum SnapshotsCommand {
    /// List snapshots, newest first.
    List {
        /// Only this session's.
        session: Option<String>,
    },
    /// Delete old snapshots: each session keeps its newest --keep and the one its history points to; of the rest,
    /// those older than --older-than-days (all of them without it).
    Prune {
        /// Only this session's.
        session: Option<String>,
        /// Snapshots kept per session, newest first (at least 1).
        #[arg(long, value_name = "N", default_value_t = codepilot::store::snapshot::DEFAULT_KEEP)]
        keep: usize,
        /// Only delete snapshots older than this many days.
        #[arg(long, value_name = "DAYS")]
        older_than_days: Option<u64>,
    },
    /// Unpack a snapshot into a directory (created if missing; files a snapshot would hold are replaced,
    /// .gitignored ones stay).
    Restore {
        /// The snapshot's key, as `list` prints it.
        key: String,
        /// Where to unpack it.
        dir: PathBuf,
    },
    /// Delete one snapshot.
    Rm {
        /// The snapshot's key.
        key: String,
        /// Delete it even when a session's history points to it (that session then cannot restore its files).
        #[arg(long)]
        force: bool,
    },
}

/// `codepilot sessions …`.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, newest first.
    List,
    /// Show one session's transcript.
    Show {
        /// Session id.
        id: String,
    },
    /// Delete a session.
    Rm {
        /// Session id.
        id: String,
    },
    /// Write a session as a trajectory (JSON lines): its agent, the workspace it started from, every message and
    /// stored event, its checkpoints and the work directory's tree hash now — what `codepilot replay` re-runs.
    Export {
        /// Session id.
        id: String,
        /// Where to write it (default: stdout).
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
        /// The agent file the session ran with, for sessions that did not record theirs (those `run` and `chat`
        /// started): its text goes into the trajectory and its work_dir is the session's.
        #[arg(long, short = 'c', value_name = "FILE", default_value = "agent.yaml")]
        config: PathBuf,
        /// The format (JSON lines; the only one).
        #[arg(long, value_enum, default_value_t = TrajectoryFormat::Jsonl)]
        format: TrajectoryFormat,
    },
}

/// How `sessions export` writes a trajectory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrajectoryFormat {
    /// One JSON object per line (`codepilot-trajectory/1`).
    Jsonl,
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn parses_run_with_flags() {
        let cli = Cli::parse_from([
            "codepilot",
            "run",
            "--json",
            "--yes",
            "--session",
            "memory",
            "fix it",
        ]);
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(args.task.as_deref(), Some("fix it"));
        assert!(args.agent.json);
        assert!(args.agent.yes);
        assert_eq!(args.agent.session, SessionKind::Memory);
        assert_eq!(args.agent.config, PathBuf::from("agent.yaml"));
    }

    #[test]
    fn sessions_flags_are_global() {
        let cli = Cli::parse_from([
            "codepilot",
            "sessions",
            "list",
            "--session",
            "file",
            "--json",
        ]);
        let Command::Sessions(args) = cli.command else {
            panic!("expected sessions");
        };
        assert_eq!(args.session, SessionKind::File);
        assert!(args.json);
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
