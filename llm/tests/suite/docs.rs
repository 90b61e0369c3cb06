//! The provider lists written in prose match `ProviderKind`: adding a provider without documenting it fails here.

use std::path::Path;
use std::path::PathBuf;

use codepilot_llm::WireFormat;
use pretty_assertions::assert_eq;

use super::*;

/// A file of the workspace, by its path from the workspace root.
fn workspace_file(relative: &str) -> (PathBuf, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.canonicalize().unwrap_or(root).join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path, text)
}

/// Every provider's canonical name, in documentation order.
fn all_names() -> Vec<String> {
    ProviderKind::all()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The OpenAI-compatible servers with a preset URL: every Chat Completions provider but OpenAI itself and the
/// generic `openai-compatible`.
fn preset_names() -> Vec<String> {
    ProviderKind::all()
        .iter()
        .filter(|k| {
            k.wire() == WireFormat::OpenAiChat
                && k.default_base_url().is_some()
                && **k != ProviderKind::OpenAi
        })
        .map(ToString::to_string)
        .collect()
}

/// The names of the `# a | b | c` comment on the one `provider:` line of a YAML example in `text`.
fn provider_comment(text: &str) -> Result<Vec<String>, String> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("provider:") && l.contains('#'))
        .collect();
    let [line] = lines.as_slice() else {
        return Err(format!(
            "expected one commented `provider:` line, found {}",
            lines.len()
        ));
    };
    let (_, comment) = line.split_once('#').unwrap_or_default();
    Ok(comment.split('|').map(|n| n.trim().to_owned()).collect())
}

/// The names listed (`a`, `b` and `c`, backticks optional) between `start` and `end` in `text`, whitespace runs
/// (line breaks) read as one space.
fn listed_between(text: &str, start: &str, end: &str) -> Result<Vec<String>, String> {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some((_, rest)) = flat.split_once(start) else {
        return Err(format!("no sentence with `{start}`"));
    };
    let Some((list, _)) = rest.split_once(end) else {
        return Err(format!(
            "the list after `{start}` does not end with `{end}`"
        ));
    };
    Ok(list
        .replace(" and ", ", ")
        .split(',')
        .map(|n| n.trim().trim_matches('`').to_owned())
        .filter(|n| !n.is_empty())
        .collect())
}

/// `Ok` when `found` (what `what` in `file` says) is `expected`, else a message saying what to update.
fn same(
    file: &Path,
    what: &str,
    found: Result<Vec<String>, String>,
    expected: &[String],
) -> Result<(), String> {
    match found {
        Ok(found) if found == expected => Ok(()),
        Ok(found) => Err(format!(
            "{}: {what} lists [{}], but codepilot-llm's ProviderKind has [{}]; update the documentation",
            file.display(),
            found.join(", "),
            expected.join(", ")
        )),
        Err(why) => Err(format!("{}: {what}: {why}", file.display())),
    }
}

#[test]
fn documented_provider_lists_match_provider_kind() {
    let all = all_names();
    let presets = preset_names();
    let (readme, text) = workspace_file("README.md");
    let (llm_readme, llm_text) = workspace_file("llm/README.md");
    let (starter, starter_text) = workspace_file("core/templates/agent.starter.yaml");
    let problems: Vec<String> = [
        same(
            &readme,
            "the `provider:` comment of the agent.yaml example",
            provider_comment(&text),
            &all,
        ),
        same(
            &readme,
            "the presets sentence",
            listed_between(&text, "the presets ", " fill in the URL"),
            &presets,
        ),
        same(
            &llm_readme,
            "the presets of the OpenAI Chat Completions bullet",
            listed_between(&llm_text, "with presets for ", ". "),
            &presets,
        ),
        same(
            &starter,
            "the `provider:` comment",
            provider_comment(&starter_text),
            &all,
        ),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn an_undocumented_provider_is_noticed() {
    let all = all_names();
    let file = Path::new("agent.yaml");
    let yaml = format!("model:\n  provider: x   # {}\n", all.join(" | "));
    assert_eq!(same(file, "p", provider_comment(&yaml), &all), Ok(()));
    let short = yaml.replace(" | scripted", "");
    let err = same(file, "p", provider_comment(&short), &all).unwrap_err();
    assert!(err.contains("update the documentation"), "{err}");
    let presets = preset_names();
    let prose = "the presets `ollama`, `vllm` and\n`groq` fill in the URL.";
    let err = same(
        file,
        "s",
        listed_between(prose, "the presets ", " fill in the URL"),
        &presets,
    )
    .unwrap_err();
    assert!(err.contains("[ollama, vllm, groq]"), "{err}");
    assert!(same(file, "s", provider_comment("no such line"), &all).is_err());
}
