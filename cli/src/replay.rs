//! `codepilot replay FILE` (SPEC §23): an exported session re-run with its recorded answers.

use anyhow::Context as _;
use codepilot::trajectory::ReplayOptions;
use codepilot::trajectory::Trajectory;

use crate::Exit;
use crate::Failure;
use crate::cli;
use crate::output;

/// Lines of each side shown around the first difference.
const SHOWN_LINES: usize = 12;

/// The first lines where `a` and `b` differ, with a few before them, as `-`/`+` lines.
fn excerpt(recorded: Option<&str>, replayed: Option<&str>) -> String {
    let a: Vec<&str> = recorded.unwrap_or("").lines().collect();
    let b: Vec<&str> = replayed.unwrap_or("").lines().collect();
    let first = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let from = first.saturating_sub(2);
    let mut out = String::new();
    for line in a.iter().skip(from).take(SHOWN_LINES) {
        out.push_str(&format!("- {line}\n"));
    }
    for line in b.iter().skip(from).take(SHOWN_LINES) {
        out.push_str(&format!("+ {line}\n"));
    }
    if recorded.is_none() {
        out.push_str("(the recording ends here; the replay went on)\n");
    }
    if replayed.is_none() {
        out.push_str("(the replay stopped here)\n");
    }
    out
}

/// `codepilot replay`.
pub(crate) async fn run(args: cli::ReplayArgs) -> Result<Exit, Failure> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let trajectory = Trajectory::parse(&text).map_err(|e| crate::usage(e.to_string()))?;
    let (dir, temp) = match &args.work_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("codepilot-replay-")
                .tempdir()
                .context("creating a folder to replay in")?;
            (t.path().join("work"), Some(t))
        }
    };
    let options = ReplayOptions {
        from_checkpoint: args.from_checkpoint.clone(),
        ..ReplayOptions::default()
    };
    let report = codepilot::trajectory::replay_trajectory(&trajectory, &dir, &options).await?;
    let identical = report.identical();
    if args.json {
        output::emit_stdout(
            &serde_json::json!({
                "identical": identical,
                "tasks": report.tasks,
                "messages": report.messages,
                "first_difference": report.first_difference.as_ref().map(|d| serde_json::json!({
                    "index": d.index, "task": d.task, "recorded": d.recorded, "replayed": d.replayed,
                })),
                "tree_hash": report.tree_hash,
                "recorded_tree_hash": report.recorded_tree_hash,
                "work_dir": report.work_dir,
            })
            .to_string(),
        );
    } else {
        let mut out = format!(
            "replayed {} task(s), {} message(s) compared\n",
            report.tasks, report.messages
        );
        match &report.first_difference {
            None => out.push_str("every message is the same as recorded\n"),
            Some(d) => out.push_str(&format!(
                "first difference: message {} (task {}):\n{}",
                d.index,
                d.task,
                excerpt(d.recorded.as_deref(), d.replayed.as_deref())
            )),
        }
        if report.tree_hash == report.recorded_tree_hash {
            out.push_str("the work directory ends the same (tree hash matches)");
        } else {
            out.push_str(&format!(
                "the work directory ends differently: tree hash {} (recorded {})",
                report.tree_hash, report.recorded_tree_hash
            ));
        }
        output::emit_stdout(&output::printable(&out));
    }
    match temp {
        Some(t) if !identical => {
            let kept = t.keep();
            output::err_line(&format!(
                "the replay's work directory is kept for a look: {}",
                kept.join("work").display()
            ));
        }
        _ => {}
    }
    Ok(if identical {
        Exit::Completed
    } else {
        Exit::Error
    })
}
