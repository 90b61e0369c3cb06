//! `codepilot checkpoints list SESSION`, `codepilot rewind SESSION N[.S]` and chat's `/checkpoints` and `/rewind N`
//! (SPEC §19).

use codepilot::AgentFile;
use codepilot::AsyncRuntime;
use codepilot::CheckpointInfo;
use codepilot::CheckpointKind;
use codepilot::RewindScope;
use codepilot::store::SessionId;
use codepilot::store::checkpoint::CheckpointOptions;
use codepilot::store::checkpoint::SessionCheckpoints;
use codepilot::store::snapshot::SnapshotOptions;

use crate::Exit;
use crate::Failure;
use crate::cli::CheckpointsArgs;
use crate::cli::CheckpointsCommand;
use crate::cli::RewindArgs;
use crate::output;
use crate::secrets::EnvSnapshot;
use crate::usage;

fn when(created_ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let ago = now.saturating_sub(created_ms).max(0) / 1000;
    match ago {
        0..60 => format!("{ago}s ago"),
        60..3600 => format!("{}m ago", ago / 60),
        3600..86_400 => format!("{}h ago", ago / 3600),
        _ => format!("{}d ago", ago / 86_400),
    }
}

#[allow(clippy::cast_precision_loss)]
fn size(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

/// Prints checkpoints as a table or JSON lines.
fn print(list: &[CheckpointInfo], json: bool) -> Result<(), Failure> {
    if json {
        for c in list {
            output::emit_stdout(&serde_json::to_string(c)?);
        }
        return Ok(());
    }
    if list.is_empty() {
        output::err_line("no checkpoints yet: one is taken before each task");
        return Ok(());
    }
    output::emit_stdout("ID          KIND     TAKEN      MESSAGES   FILES       SIZE   ADDED");
    for c in list {
        let kind = match c.kind {
            CheckpointKind::Turn => "turn",
            CheckpointKind::Step => "step",
            CheckpointKind::Rewind => "rewind",
        };
        let mut line = format!(
            "{:<11} {kind:<8} {:>9}  {:>8}  {:>6}  {:>9}  {:>6}",
            c.id,
            when(c.created_ms),
            c.messages,
            c.files,
            size(c.bytes),
            size(c.stored_bytes)
        );
        if !c.skipped.is_empty() {
            line.push_str(&format!("  ({} file(s) left out)", c.skipped.len()));
        }
        output::emit_stdout(&line);
    }
    Ok(())
}

/// `codepilot checkpoints list SESSION`: read from this machine's checkpoint folder (and the snapshot store's
/// copy, with `--snapshots`), without opening the session.
pub(crate) async fn list(args: CheckpointsArgs, env: &EnvSnapshot) -> Result<Exit, Failure> {
    let CheckpointsCommand::List { session } = &args.command;
    let id: SessionId = session.parse().map_err(|e| usage(format!("{e}")))?;
    let mirrored = match &args.snapshots {
        Some(url) => {
            let store = crate::snapshots::open(url, SnapshotOptions::default(), env)?;
            store.checkpoint_mirror().pull_index(&id).await?
        }
        None => None,
    };
    let list = tokio::task::spawn_blocking(move || {
        let mut checkpoints = SessionCheckpoints::open(&id, CheckpointOptions::default())?;
        if let Some(bytes) = mirrored {
            checkpoints.merge_mirrored(&bytes)?;
        }
        Ok::<_, codepilot::store::checkpoint::CheckpointError>(checkpoints.list())
    })
    .await
    .map_err(anyhow::Error::from)??;
    print(&list, args.json)?;
    Ok(Exit::Completed)
}

/// The scope the flags ask for.
fn scope(args: &RewindArgs) -> RewindScope {
    match (args.files, args.conversation) {
        (true, _) => RewindScope::Files,
        (false, true) => RewindScope::Conversation,
        (false, false) => RewindScope::Both,
    }
}

/// `codepilot rewind SESSION CHECKPOINT`: opens the session (taking its lease), rewinds, closes.
pub(crate) async fn rewind(
    agent: AgentFile,
    args: &RewindArgs,
    env: EnvSnapshot,
) -> Result<Exit, Failure> {
    let out = crate::make_output(args.agent.json);
    let rt = crate::build_runtime(agent, &args.agent, &out, env).await?;
    let scope = scope(args);
    let result = if args.dry_run {
        rt.rewind_preview(&args.checkpoint, scope).await
    } else {
        rt.rewind(&args.checkpoint, scope).await
    };
    if let Err(e) = rt.close().await {
        output::err_line(&format!("codepilot: closing the session: {e}"));
    }
    let done = result?;
    if args.dry_run {
        if args.agent.json {
            output::emit_stdout(&serde_json::to_string(&done)?);
        } else {
            output::emit_stdout(&output::describe_rewind(&done));
        }
    } else if !args.agent.json {
        output::err_line(&format!(
            "undo with: codepilot rewind {} {}",
            args.target, done.saved_as
        ));
    }
    Ok(Exit::Completed)
}

/// A chat line that is a checkpoint command rather than a task.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ChatCommand {
    /// `/checkpoints`.
    List,
    /// `/rewind CHECKPOINT [files|conversation|both]`.
    Rewind(String, RewindScope),
    /// A `/rewind` the chat cannot read.
    Bad(String),
}

impl ChatCommand {
    /// The command `line` is, if it is one.
    pub(crate) fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        match words.next()? {
            "/checkpoints" => Some(Self::List),
            "/rewind" => {
                let Some(checkpoint) = words.next() else {
                    return Some(Self::Bad(
                        "usage: /rewind N [files|conversation|both] (N: the task to go back to before; /checkpoints lists them)"
                            .to_owned(),
                    ));
                };
                let scope = match words.next().map(str::parse::<RewindScope>) {
                    None => RewindScope::Both,
                    Some(Ok(scope)) => scope,
                    Some(Err(e)) => return Some(Self::Bad(e)),
                };
                Some(Self::Rewind(checkpoint.to_owned(), scope))
            }
            _ => None,
        }
    }

    /// Carries the command out on `rt` (the rewind's event is printed by the output).
    pub(crate) async fn run(self, rt: &AsyncRuntime, json: bool) -> Result<(), Failure> {
        match self {
            Self::List => print(&rt.checkpoints().await?, json),
            Self::Rewind(checkpoint, scope) => {
                rt.rewind(&checkpoint, scope).await?;
                Ok(())
            }
            Self::Bad(message) => Err(usage(message)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn chat_commands_parse() {
        assert_eq!(ChatCommand::parse("fix the bug"), None);
        assert_eq!(ChatCommand::parse("/checkpoints"), Some(ChatCommand::List));
        assert_eq!(
            ChatCommand::parse("/rewind 3"),
            Some(ChatCommand::Rewind("3".to_owned(), RewindScope::Both))
        );
        assert_eq!(
            ChatCommand::parse("/rewind 3.2 files"),
            Some(ChatCommand::Rewind("3.2".to_owned(), RewindScope::Files))
        );
        assert!(matches!(
            ChatCommand::parse("/rewind"),
            Some(ChatCommand::Bad(_))
        ));
        assert!(matches!(
            ChatCommand::parse("/rewind 2 everything"),
            Some(ChatCommand::Bad(m)) if m.contains("files, conversation or both")
        ));
    }
}
