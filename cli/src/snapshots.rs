//! `codepilot snapshots list|prune|restore|rm`, and the snapshot store the `--snapshots` flags open.

use std::time::Duration;

use codepilot::store::SessionId;
use codepilot::store::snapshot::SnapshotInfo;
use codepilot::store::snapshot::SnapshotOptions;
use codepilot::store::snapshot::SnapshotStore;

use crate::Exit;
use crate::Failure;
use crate::cli::SessionKind;
use crate::cli::SnapshotArgs;
use crate::cli::SnapshotsArgs;
use crate::cli::SnapshotsCommand;
use crate::output;
use crate::secrets::EnvSnapshot;
use crate::usage;

/// Opens the store `url`, reading `AWS_*` settings from `env` (the process's own copy: credentials are out of
/// the environment the agent's shells inherit).
pub(crate) fn open(
    url: &str,
    opts: SnapshotOptions,
    env: &EnvSnapshot,
) -> Result<SnapshotStore, Failure> {
    let opts = SnapshotOptions {
        env: Some(env.with_prefix("AWS_")),
        ..opts
    };
    SnapshotStore::open(url, opts).map_err(|e| usage(format!("--snapshots: {e}")))
}

/// The snapshot store `--snapshots` names, if any.
pub(crate) fn store(
    args: &SnapshotArgs,
    env: &EnvSnapshot,
) -> Result<Option<SnapshotStore>, Failure> {
    let Some(url) = &args.snapshots else {
        return Ok(None);
    };
    if args.snapshot_max_mb == 0 {
        return Err(usage("--snapshot-max-mb must be at least 1"));
    }
    let opts = SnapshotOptions {
        max_bytes: args.snapshot_max_mb.saturating_mul(1 << 20),
        keep: args.snapshot_keep.max(1),
        ..SnapshotOptions::default()
    };
    open(url, opts, env).map(Some)
}

fn session(id: Option<&str>) -> Result<Option<SessionId>, Failure> {
    id.map(|id| id.parse::<SessionId>().map_err(|e| usage(e.to_string())))
        .transpose()
}

fn print(list: &[SnapshotInfo], json: bool) {
    for s in list {
        if json {
            output::emit_stdout(
                &serde_json::json!({
                    "key": s.key,
                    "session": s.session,
                    "created_at": codepilot::store::rfc3339(s.created_ms / 1000),
                    "size": s.size,
                })
                .to_string(),
            );
        } else {
            #[allow(clippy::cast_precision_loss)]
            let mib = s.size as f64 / f64::from(1 << 20);
            output::emit_stdout(&format!(
                "{}  {}  {mib:>8.1} MiB",
                s.key,
                codepilot::store::rfc3339(s.created_ms / 1000)
            ));
        }
    }
}

/// `(session, key)` of every session that records a snapshot, from the sessions' database.
async fn recorded(db_url: Option<&str>) -> Result<Vec<(String, String)>, Failure> {
    let sessions =
        codepilot::store::open_store(crate::session_backend(SessionKind::Db, db_url)?).await?;
    Ok(sessions
        .list()
        .await?
        .into_iter()
        .filter_map(|s| Some((s.id.to_string(), s.meta.snapshot?)))
        .collect())
}

pub(crate) async fn run(args: SnapshotsArgs, env: &EnvSnapshot) -> Result<Exit, Failure> {
    let Some(url) = &args.snapshots else {
        return Err(usage(
            "say which snapshot store: --snapshots file:///DIR or s3://BUCKET/PREFIX (or CODEPILOT_SNAPSHOTS)",
        ));
    };
    let store = open(url, SnapshotOptions::default(), env)?;
    match args.command {
        SnapshotsCommand::List { session: id } => {
            let list = store.list(session(id.as_deref())?.as_ref()).await?;
            if list.is_empty() && !args.json {
                output::err_line("no snapshots");
            }
            print(&list, args.json);
        }
        SnapshotsCommand::Prune {
            session: id,
            keep,
            older_than_days,
        } => {
            let older_than = older_than_days.map(|d| Duration::from_secs(d.saturating_mul(86_400)));
            let recorded = recorded(args.db_url.as_deref()).await?;
            let protect: Vec<&str> = recorded.iter().map(|(_, k)| k.as_str()).collect();
            let deleted = store
                .prune(session(id.as_deref())?.as_ref(), keep, older_than, &protect)
                .await?;
            print(&deleted, args.json);
            if !args.json {
                output::err_line(&format!("deleted {} snapshot(s)", deleted.len()));
            }
        }
        SnapshotsCommand::Restore { key, dir } => {
            let files = store.extract(&key, &dir).await?;
            output::err_line(&format!("restored {files} file(s) into {}", dir.display()));
        }
        SnapshotsCommand::Rm { key, force } => {
            if !force
                && let Some((owner, _)) = recorded(args.db_url.as_deref())
                    .await?
                    .into_iter()
                    .find(|(_, k)| *k == key)
            {
                return Err(usage(format!(
                    "{key} is session {owner}'s current snapshot (its history points to it); delete the session                      first, or pass --force"
                )));
            }
            store.delete(&key).await?;
            output::err_line(&format!("deleted {key}"));
        }
    }
    Ok(Exit::Completed)
}
