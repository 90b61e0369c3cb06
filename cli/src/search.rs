//! `codepilot index` and `codepilot search` (SPEC §22): the code index of a folder, for people.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use codepilot::search::CodeIndex;
use codepilot::search::IndexOptions;
use codepilot::search::IndexStatus;
use codepilot::search::TraceDirection;
use codepilot::search::render;

use crate::Exit;
use crate::Failure;
use crate::cli;
use crate::output;

/// The index of `dir`, stored where the runtime keeps it, built (or brought up to date) with progress on a terminal.
async fn open(
    dir: &std::path::Path,
    max_file_kb: u64,
    rebuild: bool,
) -> Result<Arc<CodeIndex>, Failure> {
    let store_dir = crate::codepilot_home()?.join("index");
    let index = Arc::new(
        CodeIndex::new(
            dir,
            IndexOptions {
                store_dir: Some(store_dir),
                max_file_bytes: max_file_kb * 1024,
                ..IndexOptions::default()
            },
        )
        .map_err(|e| crate::usage(e.to_string()))?,
    );
    let building = Arc::clone(&index);
    let mut task = tokio::task::spawn_blocking(move || {
        if rebuild {
            building.rebuild()
        } else {
            building.build()
        }
    });
    let progress = std::io::stderr().is_terminal();
    let mut shown = false;
    let joined = loop {
        match tokio::time::timeout(Duration::from_millis(150), &mut task).await {
            Ok(joined) => break joined,
            Err(_) => {
                if let (true, (_, Some((done, total)), _)) = (progress, index.state()) {
                    output::err_write(&format!(
                        "\rindexing {}: {done}/{total} files",
                        index.root().display()
                    ));
                    shown = true;
                }
            }
        }
    };
    if shown {
        output::err_line("");
    }
    joined
        .context("the index build stopped unexpectedly")?
        .with_context(|| format!("indexing {}", dir.display()))?;
    Ok(index)
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    output::emit_stdout(&serde_json::to_string_pretty(value).context("encoding JSON")?);
    Ok(())
}

fn status_text(s: &IndexStatus) -> String {
    let mut out = format!("{}\n", s.work_dir);
    let size = s
        .bytes
        .map(|b| format!(" ({:.1} MiB)", b as f64 / (1024.0 * 1024.0)))
        .unwrap_or_default();
    if let Some(path) = &s.path {
        out.push_str(&format!("  stored at   {path}{size}\n"));
    }
    out.push_str(&format!("  files       {}\n", s.files));
    let langs: Vec<String> = s
        .languages
        .iter()
        .map(|(l, n)| format!("{l} {n}"))
        .collect();
    if !langs.is_empty() {
        out.push_str(&format!("  parsed      {}\n", langs.join(", ")));
    }
    out.push_str(&format!(
        "  symbols     {}\n  calls       {}\n  chunks      {}\n",
        s.symbols, s.calls, s.chunks
    ));
    if let Some(r) = &s.last_refresh {
        let from = if r.loaded { "loaded, then" } else { "built:" };
        out.push_str(&format!(
            "  last update {from} {} files read again, {} removed, in {} ms\n",
            r.updated, r.removed, r.millis
        ));
    }
    if s.skipped_total > 0 {
        out.push_str(&format!("  skipped     {} files\n", s.skipped_total));
        for (path, reason) in &s.skipped {
            out.push_str(&format!(
                "    {path} ({})\n",
                serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ));
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// `codepilot index status|rebuild|map`.
pub(crate) async fn index(args: cli::IndexArgs) -> Result<Exit, Failure> {
    let rebuild = matches!(args.command, cli::IndexCommand::Rebuild);
    let index = open(&args.dir, args.max_file_kb, rebuild).await?;
    match args.command {
        cli::IndexCommand::Status | cli::IndexCommand::Rebuild => {
            let status = index.status();
            if args.json {
                print_json(&status)?;
            } else {
                output::emit_stdout(&output::printable(&status_text(&status)));
            }
        }
        cli::IndexCommand::Map { max_tokens, focus } => {
            let map = index.repo_map(max_tokens.max(1), &focus);
            if args.json {
                print_json(&map)?;
            } else {
                output::emit_stdout(output::printable(&map.text).trim_end());
            }
        }
    }
    exit_without_teardown(index);
    Ok(Exit::Completed)
}

/// The process ends right after a command: freeing a large index piece by piece would only delay the exit (by
/// tens of milliseconds on a tree of thousands of files), so it is left to the operating system.
fn exit_without_teardown(index: Arc<CodeIndex>) {
    std::mem::forget(index);
}

/// `codepilot search QUERY`.
pub(crate) async fn search(args: cli::SearchArgs) -> Result<Exit, Failure> {
    if args.query.trim().is_empty() {
        return Err(crate::usage(
            "the query is empty: give words to search for, or a name with --mode",
        ));
    }
    let index = open(&args.dir, args.max_file_kb, false).await?;
    let query = args.query.trim();
    let (json, text, found) = match args.mode {
        cli::SearchMode::Search => {
            let hits = index.search(query, usize::from(args.top_k), None);
            (
                serde_json::to_value(&hits),
                render::search(query, &hits),
                !hits.is_empty(),
            )
        }
        cli::SearchMode::Definition => {
            let symbols = index.definition(query);
            (
                serde_json::to_value(&symbols),
                render::definitions(query, &symbols),
                !symbols.is_empty(),
            )
        }
        cli::SearchMode::References => {
            let refs = index.references(query);
            (
                serde_json::to_value(&refs),
                render::references(query, &refs),
                !refs.is_empty(),
            )
        }
        cli::SearchMode::TraceCallers
        | cli::SearchMode::TraceCallees
        | cli::SearchMode::TraceGraph => {
            let (direction, mode) = match args.mode {
                cli::SearchMode::TraceCallers => (TraceDirection::Callers, "trace_callers"),
                cli::SearchMode::TraceCallees => (TraceDirection::Callees, "trace_callees"),
                _ => (TraceDirection::Graph, "trace_graph"),
            };
            let edges = index.trace(query, direction, args.depth);
            (
                serde_json::to_value(&edges),
                render::trace(query, mode, &edges),
                !edges.is_empty(),
            )
        }
    };
    if args.json {
        print_json(&json.context("encoding JSON")?)?;
    } else {
        output::emit_stdout(&output::printable(&text));
    }
    exit_without_teardown(index);
    Ok(if found { Exit::Completed } else { Exit::Error })
}
