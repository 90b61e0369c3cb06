//! The code-search tools (SPEC §22): `semantic_search`, `definition`, `references`, `repo_map`.

use std::sync::Arc;

use codepilot_protocol::ToolError;
use codepilot_search::CodeIndex;
use codepilot_search::TraceDirection;
use codepilot_search::render;
use serde_json::Value;

use super::StepContext;
use super::ToolOutput;
use super::builtin::arg_opt_int;
use super::builtin::arg_str;
use super::builtin::blocking;
use crate::code_index::CodeSearch;

/// `semantic_search`'s `depth` when none is given.
pub(super) const DEFAULT_DEPTH: i64 = 2;
/// `semantic_search`'s `top_k` when none is given.
pub(super) const DEFAULT_TOP_K: i64 = 5;

/// Most results `semantic_search` returns.
const MAX_TOP_K: i64 = 50;

/// The index, up to date, or the reason it is not there.
async fn fresh_index(ctx: &StepContext, tool: &str) -> Result<Arc<CodeSearch>, ToolError> {
    let Some(search) = ctx.env.search.clone() else {
        return Err(ToolError::runtime(format!(
            "{tool}(): code search is off (search.enabled: false in the agent file); use find() instead"
        )));
    };
    search
        .fresh()
        .await
        .map_err(|message| ToolError::runtime(format!("{tool}(): {message}")))?;
    Ok(search)
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn name_arg(args: &serde_json::Map<String, Value>, tool: &str) -> Result<String, ToolError> {
    let name = arg_str(args, tool, "name")?;
    if name.trim().is_empty() {
        return Err(ToolError::value(format!(
            "{tool}(): `name` is empty; give a function, class or type name"
        )));
    }
    Ok(name.trim().to_owned())
}

pub(super) async fn semantic_search(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    let query = arg_str(args, "semantic_search", "query")?;
    let mode = arg_str(args, "semantic_search", "mode")?;
    let depth = arg_opt_int(args, "semantic_search", "depth")?.unwrap_or(DEFAULT_DEPTH);
    let top_k = arg_opt_int(args, "semantic_search", "top_k")?.unwrap_or(DEFAULT_TOP_K);
    if query.trim().is_empty() {
        return Err(ToolError::value(
            "semantic_search(): `query` is empty".to_owned(),
        ));
    }
    if !(1..=MAX_TOP_K).contains(&top_k) {
        return Err(ToolError::value(format!(
            "semantic_search(): top_k must be 1 to {MAX_TOP_K} (got {top_k})"
        )));
    }
    if !(1..=5).contains(&depth) {
        return Err(ToolError::value(format!(
            "semantic_search(): depth must be 1 to 5 (got {depth})"
        )));
    }
    let direction = match mode.as_str() {
        "search" => None,
        "trace_callers" => Some(TraceDirection::Callers),
        "trace_callees" => Some(TraceDirection::Callees),
        "trace_graph" => Some(TraceDirection::Graph),
        other => {
            return Err(ToolError::value(format!(
                "semantic_search(): invalid mode {other:?}; valid: \"search\", \"trace_callers\", \
                 \"trace_callees\", \"trace_graph\""
            )));
        }
    };
    let search = fresh_index(ctx, "semantic_search").await?;
    let header = format!("=== Semantic Search ({mode}) ===");
    if let Some(direction) = direction {
        let index = Arc::clone(&search.index);
        let name = query.trim().to_owned();
        let depth = u32::try_from(depth).unwrap_or(1);
        let (edges, name) = blocking("semantic_search", move || {
            (index.trace(&name, direction, depth), name)
        })
        .await?;
        let text = format!("{header}\n{}", render::trace(&name, &mode, &edges));
        return Ok(ToolOutput::with_observation(text, to_value(&edges)));
    }
    let vector = search.query_vector(&query).await;
    let index = Arc::clone(&search.index);
    let top_k = usize::try_from(top_k).unwrap_or(1);
    let q = query.clone();
    let hits = blocking("semantic_search", move || {
        index.search(&q, top_k, vector.as_deref())
    })
    .await?;
    let mut text = header;
    if let Some(note) = search.ranking_note(&ctx.env.search_note_given) {
        text.push_str(&format!(" ({note})"));
    }
    text.push('\n');
    text.push_str(&render::search(&query, &hits));
    Ok(ToolOutput::with_observation(text, to_value(&hits)))
}

pub(super) async fn definition(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    by_name(
        ctx,
        args,
        "definition",
        CodeIndex::definition,
        render::definitions,
    )
    .await
}

pub(super) async fn references(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    by_name(
        ctx,
        args,
        "references",
        CodeIndex::references,
        render::references,
    )
    .await
}

/// A tool that looks a name up: `find` answers, `render` writes what the model reads after `[tool] `.
async fn by_name<T: serde::Serialize + Send + 'static>(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
    tool: &'static str,
    find: fn(&CodeIndex, &str) -> Vec<T>,
    render: fn(&str, &[T]) -> String,
) -> Result<ToolOutput, ToolError> {
    let name = name_arg(args, tool)?;
    let search = fresh_index(ctx, tool).await?;
    let index = Arc::clone(&search.index);
    let (found, name) = blocking(tool, move || (find(&index, &name), name)).await?;
    let text = format!("[{tool}] {}", render(&name, &found));
    Ok(ToolOutput::with_observation(text, to_value(&found)))
}

pub(super) async fn repo_map(
    ctx: &StepContext,
    args: &serde_json::Map<String, Value>,
) -> Result<ToolOutput, ToolError> {
    let max_tokens = arg_opt_int(args, "repo_map", "max_tokens")?
        .unwrap_or(i64::try_from(codepilot_search::DEFAULT_REPO_MAP_TOKENS).unwrap_or(i64::MAX));
    if !(64..=32_768).contains(&max_tokens) {
        return Err(ToolError::value(format!(
            "repo_map(): max_tokens must be 64 to 32768 (got {max_tokens})"
        )));
    }
    let focus: Vec<String> = match args.get("focus") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    ToolError::type_error(
                        "repo_map(): `focus` must be a path or a list of paths".to_owned(),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ToolError::type_error(
                "repo_map(): `focus` must be a path or a list of paths".to_owned(),
            ));
        }
    };
    let search = fresh_index(ctx, "repo_map").await?;
    let index = Arc::clone(&search.index);
    let max_tokens =
        usize::try_from(max_tokens).unwrap_or(codepilot_search::DEFAULT_REPO_MAP_TOKENS);
    let map = blocking("repo_map", move || index.repo_map(max_tokens, &focus)).await?;
    let text = if map.files.is_empty() {
        "[repo_map] the index has no definitions yet (no source files in a parsed language)"
            .to_owned()
    } else {
        format!(
            "[repo_map] {} of {} files, most used first:\n{}",
            map.files.len(),
            map.total_files,
            map.text.trim_end()
        )
    };
    Ok(ToolOutput::with_observation(text, Value::String(map.text)))
}
