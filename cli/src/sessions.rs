//! `codepilot sessions list|show|rm`.

use anyhow::Context as _;
use codepilot::store::SessionId;

use crate::Exit;
use crate::Failure;
use crate::cli::SessionsArgs;
use crate::cli::SessionsCommand;
use crate::output;
use crate::session_backend;
use crate::usage;

fn when(ts: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let ago = now.saturating_sub(ts).max(0);
    match ago {
        0..60 => format!("{ago}s ago"),
        60..3600 => format!("{}m ago", ago / 60),
        3600..86_400 => format!("{}h ago", ago / 3600),
        _ => format!("{}d ago", ago / 86_400),
    }
}

pub(crate) async fn run(args: SessionsArgs) -> Result<Exit, Failure> {
    let store =
        codepilot::store::open_store(session_backend(args.session, args.db_url.as_deref())?)
            .await?;
    match args.command {
        SessionsCommand::List => {
            let list = store.list().await?;
            if args.json {
                for s in &list {
                    output::emit_stdout(
                        &serde_json::json!({
                            "id": s.id.to_string(),
                            "agent": s.meta.agent_name,
                            "title": s.meta.title,
                            "tasks": s.task_counter,
                            "messages": s.meta.message_count,
                            "created_at": s.meta.created_at,
                            "updated_at": s.meta.updated_at,
                            "input_tokens": s.usage.input_tokens,
                            "output_tokens": s.usage.output_tokens,
                            "usage": s.usage,
                            "runs_on": s.holder.as_ref().map(|h| format!("{} (pid {})", h.host, h.pid)),
                            "snapshot": s.meta.snapshot,
                        })
                        .to_string(),
                    );
                }
            } else if list.is_empty() {
                output::err_line("no sessions");
            } else {
                for s in &list {
                    output::emit_stdout(&format!(
                        "{}  {:>9}  {:>3} task(s)  {:>5} msgs  {}",
                        s.id,
                        when(s.meta.updated_at),
                        s.task_counter,
                        s.meta.message_count,
                        s.meta.title.as_deref().unwrap_or("")
                    ));
                }
            }
        }
        SessionsCommand::Show { id } => {
            let id: SessionId = id.parse().map_err(|e| usage(format!("{e}")))?;
            let Some(rec) = store.load(&id).await? else {
                return Err(usage(format!(
                    "no session {id}; `codepilot sessions list` shows what exists"
                )));
            };
            if args.json {
                output::emit_stdout(&serde_json::to_string(&rec.messages)?);
            } else {
                let u = &rec.usage;
                output::emit_stdout(&format!(
                    "session {} · agent {} · {} task(s) · {} message(s)\ntokens: {} in all over {} model call(s) \
                     (in {} · out {}, of which reasoning {} · cache read {} · cache write {})",
                    rec.id,
                    rec.meta.agent_name,
                    rec.task_counter,
                    rec.messages.len(),
                    u.total(),
                    u.calls,
                    u.input_tokens,
                    u.output_tokens,
                    u.reasoning_tokens,
                    u.cache_read_tokens,
                    u.cache_write_tokens
                ));
                for m in &rec.messages {
                    output::emit_stdout(&format!(
                        "\n── {} ──\n{}",
                        m.role.as_str(),
                        m.content.trim_end()
                    ));
                }
                // Its workers' conversations, stored beside it as `<id>.sub-<N>` (SPEC §20).
                for (n, worker) in workers_of(&*store, &id).await? {
                    let Some(w) = store.load(&worker).await? else {
                        continue;
                    };
                    output::emit_stdout(&format!(
                        "\n══ sub-agent #{n} (session {worker}) · {} message(s) ══",
                        w.messages.len()
                    ));
                    for m in &w.messages {
                        output::emit_stdout(&format!(
                            "\n── #{n} {} ──\n{}",
                            m.role.as_str(),
                            m.content.trim_end()
                        ));
                    }
                }
            }
        }
        SessionsCommand::Export {
            id,
            out,
            config,
            format: crate::cli::TrajectoryFormat::Jsonl,
        } => {
            let id: SessionId = id.parse().map_err(|e| usage(format!("{e}")))?;
            let mut options = codepilot::trajectory::ExportOptions::default();
            if config.exists() {
                let agent = crate::load_agent(&config)?;
                options.work_dir = Some(agent.runtime.work_dir);
                options.agent_file =
                    Some(std::path::absolute(&config).unwrap_or_else(|_| config.clone()));
                options.agent_yaml = Some(
                    std::fs::read_to_string(&config)
                        .with_context(|| format!("reading {}", config.display()))?,
                );
            }
            let mut writer: Box<dyn std::io::Write + Send> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout())),
            };
            let stats =
                codepilot::trajectory::export_trajectory(&*store, &id, &options, &mut *writer)
                    .await?;
            let written = std::io::Write::flush(&mut writer);
            if let Some(path) = &out {
                written.with_context(|| format!("writing {}", path.display()))?;
            }
            output::err_line(&format!(
                "exported session {id}: {} message(s), {} event(s), {} file(s) of its starting workspace{}",
                stats.messages,
                stats.events,
                stats.files,
                out.as_ref()
                    .map(|p| format!(" → {}", p.display()))
                    .unwrap_or_default()
            ));
        }
        SessionsCommand::Rm { id } => {
            let id: SessionId = id.parse().map_err(|e| usage(format!("{e}")))?;
            for (_, worker) in workers_of(&*store, &id).await? {
                store.delete(&worker).await?;
            }
            if store.delete(&id).await? {
                let opts = codepilot::store::checkpoint::CheckpointOptions::default();
                if let Err(e) = codepilot::store::checkpoint::delete_session(&id, &opts) {
                    output::err_line(&format!("codepilot: deleting its checkpoints: {e}"));
                }
                output::err_line(&format!("deleted session {id}"));
            } else {
                return Err(usage(format!("no session {id}")));
            }
        }
    }
    Ok(Exit::Completed)
}

/// The sessions of `id`'s workers, by worker number.
async fn workers_of(
    store: &dyn codepilot::store::SessionStore,
    id: &SessionId,
) -> Result<Vec<(u32, SessionId)>, Failure> {
    let prefix = format!("{id}.sub-");
    let mut found: Vec<(u32, SessionId)> = store
        .list()
        .await?
        .into_iter()
        .filter_map(|s| {
            // `<id>.sub-<N>`, `<id>.sub-<N>.<k>` (a later process's worker N), and their own workers.
            let rest = s.id.as_str().strip_prefix(&prefix)?;
            let n = rest.split('.').next()?.parse().ok()?;
            Some((n, s.id))
        })
        .collect();
    found.sort();
    Ok(found)
}
