//! Trajectories (SPEC §23): a stored session written out as JSON lines ([`TrajectoryLine`]), enough to re-run it
//! with the recorded answers.

use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use base64::Engine as _;
use codepilot_protocol::CheckpointInfo;
use codepilot_protocol::CheckpointKind;
use codepilot_protocol::TRAJECTORY_FORMAT;
use codepilot_protocol::TrajectoryEnd;
use codepilot_protocol::TrajectoryEvent;
use codepilot_protocol::TrajectoryFile;
use codepilot_protocol::TrajectoryHeader;
use codepilot_protocol::TrajectoryLine;
use codepilot_protocol::TrajectoryMessage;
use codepilot_protocol::TrajectoryWorkspace;
use codepilot_store::SessionId;
use codepilot_store::SessionStore;
use codepilot_store::checkpoint::CheckpointOptions;
use codepilot_store::checkpoint::RecordedContent;
use codepilot_store::checkpoint::RecordedFile;
use codepilot_store::checkpoint::SessionCheckpoints;

use crate::Error;
use crate::Result;

/// Events read from the store per query.
const EVENT_PAGE: usize = 1000;

/// What [`export_trajectory`] needs besides the session.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// The agent file's text, when the session did not record it (sessions the CLI or Python ran).
    pub agent_yaml: Option<String>,
    /// The file `agent_yaml` was read from.
    pub agent_file: Option<PathBuf>,
    /// The session's work directory, when the session did not record it.
    pub work_dir: Option<PathBuf>,
    /// Where its checkpoints are (default: `checkpoints/` in `CODEPILOT_HOME`).
    pub checkpoint_dir: Option<PathBuf>,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportStats {
    /// Lines written.
    pub lines: u64,
    /// Messages among them.
    pub messages: u64,
    /// Stored events among them.
    pub events: u64,
    /// Files of the starting workspace.
    pub files: u64,
}

/// A workspace file as a trajectory line holds it: content already written by an earlier workspace line (same
/// sha256, in `written`) is named by its hash only.
fn file_line(f: &RecordedFile, written: &mut std::collections::HashSet<String>) -> TrajectoryFile {
    match &f.content {
        RecordedContent::Bytes(b) => {
            let sha = codepilot_store::checkpoint::content_hash(b);
            let data = written
                .insert(sha.clone())
                .then(|| base64::engine::general_purpose::STANDARD.encode(b));
            TrajectoryFile {
                path: f.path.clone(),
                mode: f.mode,
                data,
                sha256: Some(sha),
                link: None,
            }
        }
        RecordedContent::Link(t) => TrajectoryFile {
            path: f.path.clone(),
            mode: f.mode,
            data: None,
            sha256: None,
            link: Some(t.clone()),
        },
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Writes session `id` of `store` to `out` as a trajectory: the header (agent, work dir, versions), the workspace as
/// its first checkpoint recorded it (when the session took one), every message, every stored event, the
/// checkpoints, and the work directory's tree hash now.
///
/// # Errors
/// [`Error::Trajectory`] when the session does not exist or its work directory is unknown; store, checkpoint and
/// I/O errors as they come.
pub async fn export_trajectory(
    store: &dyn SessionStore,
    id: &SessionId,
    options: &ExportOptions,
    out: &mut (dyn Write + Send),
) -> Result<ExportStats> {
    let Some(record) = store.load(id).await? else {
        return Err(Error::Trajectory(format!(
            "no session {id}; `codepilot sessions list` shows what exists"
        )));
    };
    let source = record.meta.agent_source.clone();
    let work_dir = source
        .as_ref()
        .map(|s| s.work_dir.clone())
        .or_else(|| options.work_dir.clone())
        .ok_or_else(|| {
            Error::Trajectory(format!(
                "session {id} did not record its agent: name its agent file (--config) so its work directory is known"
            ))
        })?;
    let agent_file = source
        .as_ref()
        .and_then(|s| s.file.as_ref())
        .or(options.agent_file.as_ref())
        .map(|f| f.to_string_lossy().into_owned());
    let agent_yaml = source
        .map(|s| s.yaml)
        .or_else(|| options.agent_yaml.clone());
    let mut stats = ExportStats::default();
    let mut emit = |line: &TrajectoryLine, stats: &mut ExportStats| -> Result<()> {
        let text = serde_json::to_string(line)
            .map_err(|e| Error::Internal(format!("encoding a trajectory line: {e}")))?;
        writeln!(out, "{text}")
            .map_err(|e| Error::Internal(format!("writing the trajectory: {e}")))?;
        stats.lines += 1;
        Ok(())
    };
    emit(
        &TrajectoryLine::Header(TrajectoryHeader {
            format: TRAJECTORY_FORMAT.to_owned(),
            session_id: id.to_string(),
            agent_name: record.meta.agent_name.clone(),
            agent_yaml,
            agent_file,
            work_dir: work_dir.to_string_lossy().into_owned(),
            codepilot_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: record.meta.created_at,
            exported_at: now(),
            tasks: record.task_counter,
        }),
        &mut stats,
    )?;

    let checkpoints = SessionCheckpoints::open(
        id,
        CheckpointOptions {
            dir: options.checkpoint_dir.clone(),
            ..CheckpointOptions::default()
        },
    )?;
    let infos = checkpoints.list();
    // The workspace before each turn: the first is where a replay starts, the others let it start at a later turn
    // (`--from-checkpoint`). Content an earlier line holds is named by its hash.
    let mut written = std::collections::HashSet::new();
    let turns = infos.iter().filter(|c| c.kind == CheckpointKind::Turn);
    for (i, info) in turns.enumerate() {
        let files = checkpoints.files_of(&info.id)?;
        if i == 0 {
            stats.files = files.len() as u64;
        }
        emit(
            &TrajectoryLine::Workspace(TrajectoryWorkspace {
                checkpoint: info.id.clone(),
                tree_hash: codepilot_store::checkpoint::tree_hash(&files),
                files: files.iter().map(|f| file_line(f, &mut written)).collect(),
            }),
            &mut stats,
        )?;
    }
    let mut raw: std::collections::BTreeMap<u64, String> = store
        .load_answers(id)
        .await?
        .into_iter()
        .map(|a| (a.index, a.content))
        .collect();
    for (index, m) in record.messages.iter().enumerate() {
        emit(
            &TrajectoryLine::Message(TrajectoryMessage {
                index: index as u64,
                role: m.role,
                content: m.content.clone(),
                raw: raw.remove(&(index as u64)),
            }),
            &mut stats,
        )?;
        stats.messages += 1;
    }
    let mut after = 0;
    loop {
        let page = store.load_events(id, after, EVENT_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in page {
            let envelope =
                serde_json::from_str(&e.body).unwrap_or(serde_json::Value::String(e.body));
            emit(
                &TrajectoryLine::Event(TrajectoryEvent {
                    seq: e.seq,
                    envelope,
                }),
                &mut stats,
            )?;
            stats.events += 1;
        }
    }
    for info in infos {
        emit(&TrajectoryLine::Checkpoint(info), &mut stats)?;
    }
    let tree_hash = tree_hash_of(&work_dir)?;
    emit(
        &TrajectoryLine::End(TrajectoryEnd {
            messages: record.messages.len() as u64,
            tree_hash,
        }),
        &mut stats,
    )?;
    Ok(stats)
}

/// The tree hash of `work_dir` now (what `.gitignore` leaves; the hash a checkpoint of it would have).
///
/// # Errors
/// When the folder cannot be walked or a file read.
pub fn tree_hash_of(work_dir: &Path) -> Result<String> {
    let files =
        codepilot_store::checkpoint::read_tree(work_dir).map_err(|source| Error::WorkDir {
            path: work_dir.to_path_buf(),
            source,
        })?;
    Ok(codepilot_store::checkpoint::tree_hash(&files))
}

/// A trajectory read back: its lines by kind.
#[derive(Debug, Clone)]
pub struct Trajectory {
    /// The header.
    pub header: TrajectoryHeader,
    /// The workspace before each turn, first to last (the first is where a replay starts); every file's content
    /// filled in. Empty when the session took no checkpoint.
    pub workspaces: Vec<TrajectoryWorkspace>,
    /// The checkpoints the session took.
    pub checkpoints: Vec<CheckpointInfo>,
    /// The messages, in order.
    pub messages: Vec<TrajectoryMessage>,
    /// The end line.
    pub end: TrajectoryEnd,
}

impl Trajectory {
    /// Reads a trajectory from JSON lines.
    ///
    /// # Errors
    /// [`Error::Trajectory`] naming the line that is not a trajectory line, or what is missing.
    pub fn parse(text: &str) -> Result<Self> {
        let mut header = None;
        let mut workspaces = Vec::new();
        let mut checkpoints = Vec::new();
        let mut contents: std::collections::HashMap<String, String> =
            std::collections::HashMap::new();
        let mut messages = Vec::new();
        let mut end = None;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let parsed: TrajectoryLine = serde_json::from_str(line).map_err(|e| {
                Error::Trajectory(format!("line {}: not a trajectory line: {e}", n + 1))
            })?;
            match parsed {
                TrajectoryLine::Header(h) => {
                    if h.format != TRAJECTORY_FORMAT {
                        return Err(Error::Trajectory(format!(
                            "the trajectory is in format {} and this CodePilot reads {TRAJECTORY_FORMAT}",
                            h.format
                        )));
                    }
                    header = Some(h);
                }
                TrajectoryLine::Workspace(mut w) => {
                    for f in &mut w.files {
                        match (&f.data, &f.sha256) {
                            (Some(data), Some(sha)) => {
                                contents.insert(sha.clone(), data.clone());
                            }
                            (None, Some(sha)) => {
                                f.data = Some(contents.get(sha).cloned().ok_or_else(|| {
                                    Error::Trajectory(format!(
                                        "line {}: {} names content (sha256 {sha}) no earlier workspace line holds",
                                        n + 1,
                                        f.path
                                    ))
                                })?);
                            }
                            _ => {}
                        }
                    }
                    workspaces.push(w);
                }
                TrajectoryLine::Message(m) => messages.push(m),
                TrajectoryLine::End(e) => end = Some(e),
                TrajectoryLine::Checkpoint(c) => checkpoints.push(c),
                TrajectoryLine::Event(_) => {}
            }
        }
        let header = header
            .ok_or_else(|| Error::Trajectory("the trajectory has no header line".to_owned()))?;
        let end = end.ok_or_else(|| {
            Error::Trajectory(
                "the trajectory has no end line: it was cut short; export it again".to_owned(),
            )
        })?;
        Ok(Self {
            header,
            workspaces,
            checkpoints,
            messages,
            end,
        })
    }
}

/// Where a replay first differed from the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The message's position in the conversation.
    pub index: u64,
    /// The task it belongs to.
    pub task: u64,
    /// What the recording has there (`None`: the replay went further).
    pub recorded: Option<String>,
    /// What the replay produced (`None`: the replay stopped short).
    pub replayed: Option<String>,
}

/// What [`replay_trajectory`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Where it ran.
    pub work_dir: PathBuf,
    /// Tasks re-run.
    pub tasks: u64,
    /// Messages compared (those from the starting checkpoint on).
    pub messages: u64,
    /// The first message that differs (after the work directory's path and durations are normalised).
    pub first_difference: Option<Difference>,
    /// The replayed work directory's tree hash.
    pub tree_hash: String,
    /// The recorded one.
    pub recorded_tree_hash: String,
}

impl ReplayReport {
    /// Whether the replay did exactly what the recording did.
    #[must_use]
    pub fn identical(&self) -> bool {
        self.first_difference.is_none() && self.tree_hash == self.recorded_tree_hash
    }
}

/// Writes the recorded starting workspace into `dir` (which must be empty or not exist).
///
/// # Errors
/// [`Error::Trajectory`] for a non-empty `dir`, a path that would leave it, or content that is not base64; I/O
/// errors as they come.
pub fn materialize(workspace: &TrajectoryWorkspace, dir: &Path) -> Result<()> {
    let io = |source| Error::WorkDir {
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() && std::fs::read_dir(dir).map_err(io)?.next().is_some() {
        return Err(Error::Trajectory(format!(
            "{} is not empty: a replay writes the recorded workspace into an empty folder",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    for f in &workspace.files {
        let rel = Path::new(&f.path);
        if !rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return Err(Error::Trajectory(format!(
                "the workspace names a path outside it: {}",
                f.path
            )));
        }
        let dest = dir.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        match (&f.data, &f.link) {
            (_, Some(target)) => std::os::unix::fs::symlink(target, &dest).map_err(io)?,
            (data, None) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data.as_deref().unwrap_or(""))
                    .map_err(|e| {
                        Error::Trajectory(format!("{}: its content is not base64: {e}", f.path))
                    })?;
                std::fs::write(&dest, bytes).map_err(io)?;
                let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(
                    f.mode & 0o7777,
                );
                std::fs::set_permissions(&dest, mode).map_err(io)?;
            }
        }
    }
    Ok(())
}

/// A message as compared: the recorded work directory replaced by a placeholder, durations (`0.03s`, `12 ms`)
/// by `<t>`.
fn normalise(text: &str, work_dir: &str) -> String {
    let text = if work_dir.is_empty() {
        text.to_owned()
    } else {
        text.replace(work_dir, "<WORK_DIR>")
    };
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            while j < bytes.len() && (bytes[j].is_ascii_digit() || bytes[j] == b'.') {
                j += 1;
            }
            let mut k = j;
            if k < bytes.len() && bytes[k] == b' ' {
                k += 1;
            }
            let unit = ["ms", "s"].into_iter().find(|u| text[k..].starts_with(u));
            if let Some(u) = unit {
                let after = k + u.len();
                if after >= bytes.len() || !bytes[after].is_ascii_alphanumeric() {
                    out.push_str("<t>");
                    i = after;
                    continue;
                }
            }
            out.push_str(&text[start..j]);
            i = j;
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Where a replay keeps what it writes besides the work directory.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Its checkpoints and code index (default: a temporary folder, removed afterwards).
    pub scratch_dir: Option<PathBuf>,
    /// Start at this turn checkpoint (`"3"`: before the third task) instead of the first: its workspace, the
    /// conversation before it, the tasks from it on.
    pub from_checkpoint: Option<String>,
}

/// Re-runs a trajectory in `work_dir` (empty or new): the recorded workspace written there, the recorded agent
/// file with its work_dir set to it, the recorded answers as the model (no model is called), every gated tool call
/// allowed; then compares every message with the recording and the tree hash with the recorded one.
///
/// # Errors
/// [`Error::Trajectory`] when the trajectory has no agent file or `work_dir` is not empty; the agent file's own
/// errors; runtime errors (a replay whose model runs out of answers is a difference, not an error).
pub async fn replay_trajectory(
    trajectory: &Trajectory,
    work_dir: &Path,
    options: &ReplayOptions,
) -> Result<ReplayReport> {
    let Some(yaml) = &trajectory.header.agent_yaml else {
        return Err(Error::Trajectory(
            "the trajectory has no agent file: export it with --config naming the agent file the session ran with"
                .to_owned(),
        ));
    };
    let start_at = match &options.from_checkpoint {
        Some(id) => Some(id.as_str()),
        // The checkpoint before the first task, when the session took checkpoints at all.
        None if trajectory.checkpoints.is_empty() => None,
        None => Some(
            trajectory
                .checkpoints
                .iter()
                .find(|c| c.kind == CheckpointKind::Turn && c.turn == 1)
                .map_or("1", |c| c.id.as_str()),
        ),
    };
    let (start, prefix, first_task) = match start_at {
        None => (None, 0, 1),
        Some(id) => {
            let (info, workspace) = turn_start(trajectory, id)?;
            (Some(workspace), info.messages, info.turn)
        }
    };
    match start {
        Some(w) => materialize(w, work_dir)?,
        None => std::fs::create_dir_all(work_dir).map_err(|source| Error::WorkDir {
            path: work_dir.to_path_buf(),
            source,
        })?,
    }
    let work_dir = work_dir.canonicalize().map_err(|source| Error::WorkDir {
        path: work_dir.to_path_buf(),
        source,
    })?;
    // Relative paths in the agent file (a system prompt file, a script) resolve against its folder when it is
    // still there, else against the current one.
    let origin = trajectory
        .header
        .agent_file
        .as_deref()
        .map(Path::new)
        .filter(|f| f.parent().is_some_and(Path::is_dir));
    let mut agent = crate::AgentFile::from_yaml_str(yaml, origin)?;
    agent.runtime.work_dir = work_dir.clone();
    let prefix = usize::try_from(prefix).unwrap_or(usize::MAX);
    let answers: Vec<String> = trajectory
        .messages
        .iter()
        .skip(prefix)
        .filter(|m| m.role == codepilot_protocol::Role::Assistant)
        .map(|m| m.raw.clone().unwrap_or_else(|| m.content.clone()))
        .collect();
    let tasks: Vec<(u64, String)> = trajectory
        .messages
        .iter()
        .filter(|m| m.role == codepilot_protocol::Role::User)
        .filter_map(|m| {
            let n = codepilot_protocol::task_number(&m.content)?;
            let (_, task) = m.content.split_once('\n')?;
            (n >= first_task).then(|| (n, task.to_owned()))
        })
        .collect();
    let scratch = tempfile::Builder::new()
        .prefix("codepilot-replay-")
        .tempdir()
        .map_err(|source| Error::WorkDir {
            path: std::env::temp_dir(),
            source,
        })?;
    let scratch_dir = options
        .scratch_dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    let mut builder = crate::AsyncRuntime::builder(agent);
    if prefix > 0 {
        // The conversation before the checkpoint, as the session held it there.
        let (store, id) = seeded_session(trajectory, prefix, first_task).await?;
        builder = builder.store(store).session_id(id.to_string());
    }
    let rt = builder
        .provider(std::sync::Arc::new(codepilot_llm::ScriptedProvider::new(
            answers,
        )))
        .permission_handler(|_| async { codepilot_protocol::PermissionDecision::Allow })
        .checkpoint_dir(scratch_dir.join("checkpoints"))
        .index_dir(scratch_dir.join("index"))
        .build()
        .await?;
    for (_, task) in &tasks {
        // A replay that runs out of recorded answers fails its model call: the comparison below says where.
        if let Err(e) = rt.run(task).await {
            tracing::debug!("replay: a task ended with {e}");
            break;
        }
    }
    let replayed = rt.history();
    rt.close().await?;
    let recorded_dir = trajectory.header.work_dir.as_str();
    let here = work_dir.to_string_lossy().into_owned();
    let mut first_difference = None;
    let mut task = first_task.saturating_sub(1);
    let len = replayed.len().max(trajectory.messages.len());
    // The messages before a later starting checkpoint were given, not replayed.
    for i in prefix.min(len)..len {
        let recorded = trajectory.messages.get(i).map(|m| m.content.as_str());
        let got = replayed.get(i).map(|m| m.content.as_str());
        if let Some(n) = recorded.or(got).and_then(codepilot_protocol::task_number) {
            task = n;
        }
        let same = match (recorded, got) {
            (Some(a), Some(b)) => normalise(a, recorded_dir) == normalise(b, &here),
            _ => false,
        };
        if !same {
            first_difference = Some(Difference {
                index: i as u64,
                task,
                recorded: recorded.map(str::to_owned),
                replayed: got.map(str::to_owned),
            });
            break;
        }
    }
    Ok(ReplayReport {
        tree_hash: tree_hash_of(&work_dir)?,
        recorded_tree_hash: trajectory.end.tree_hash.clone(),
        work_dir,
        tasks: tasks.len() as u64,
        messages: len.saturating_sub(prefix) as u64,
        first_difference,
    })
}

/// The turn checkpoint `id` and the workspace recorded for it.
fn turn_start<'a>(
    trajectory: &'a Trajectory,
    id: &str,
) -> Result<(&'a CheckpointInfo, &'a TrajectoryWorkspace)> {
    let turns: Vec<&str> = trajectory
        .checkpoints
        .iter()
        .filter(|c| c.kind == CheckpointKind::Turn)
        .map(|c| c.id.as_str())
        .collect();
    let Some(info) = trajectory.checkpoints.iter().find(|c| c.id == id) else {
        let from = if turns.is_empty() {
            "no checkpoint (the session kept none from before a turn)".to_owned()
        } else {
            turns.join(", ")
        };
        return Err(Error::Trajectory(if id == "1" {
            format!(
                "the checkpoint before the first task is gone (runtime.checkpoint_keep keeps the newest); replay from \
                 a later turn with --from-checkpoint: {from}"
            )
        } else {
            format!("the trajectory has no checkpoint {id}; a replay can start at {from}")
        }));
    };
    if info.kind != CheckpointKind::Turn {
        return Err(Error::Trajectory(format!(
            "checkpoint {id} is inside turn {}: a replay starts before a turn; use checkpoint {}",
            info.turn, info.turn
        )));
    }
    let workspace = trajectory
        .workspaces
        .iter()
        .find(|w| w.checkpoint == id)
        .ok_or_else(|| {
            Error::Trajectory(format!(
                "the trajectory holds no workspace for checkpoint {id} (an older export keeps only the first): \
                 export the session again"
            ))
        })?;
    Ok((info, workspace))
}

/// A memory store holding a session with the recorded conversation's first `prefix` messages and `first_task - 1`
/// tasks run.
async fn seeded_session(
    trajectory: &Trajectory,
    prefix: usize,
    first_task: u64,
) -> Result<(std::sync::Arc<dyn SessionStore>, SessionId)> {
    let store: std::sync::Arc<dyn SessionStore> = std::sync::Arc::new(
        codepilot_store::MemoryStore::new(codepilot_store::StoreOptions::default()),
    );
    let id = SessionId::generate();
    let (lease, _) = store.open(&id, &trajectory.header.agent_name).await?;
    let messages: Vec<codepilot_protocol::Message> = trajectory
        .messages
        .iter()
        .take(prefix)
        .map(|m| codepilot_protocol::Message {
            role: m.role,
            content: m.content.clone(),
        })
        .collect();
    store
        .checkpoint(
            &lease,
            &codepilot_store::Checkpoint {
                base_len: 0,
                messages,
                task_counter: first_task.saturating_sub(1),
                ..codepilot_store::Checkpoint::default()
            },
        )
        .await?;
    store.release(lease).await?;
    Ok((store, id))
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn durations_and_the_work_dir_do_not_count() {
        assert_eq!(
            normalise(
                "Ran 3 tests in 0.000s at /tmp/a/w and 12 ms, 3 steps, v1.5s2",
                "/tmp/a/w"
            ),
            "Ran 3 tests in <t> at <WORK_DIR> and <t>, 3 steps, v1.5s2"
        );
    }
}
