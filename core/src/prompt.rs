//! The system prompt, rendered from `templates/system_prompt.md`.
//!
//! The template has a static half (identity, protocol, tools, rules, the host's instructions), identical every step
//! so providers can cache it, and a dynamic half (environment, step counter, live terminals) after the
//! `<<<DYNAMIC>>>` marker.

use std::fmt::Write as _;

use codepilot_script::ToolSpec;

const TEMPLATE: &str = include_str!("../templates/system_prompt.md");
const DYNAMIC_MARKER: &str = "<<<DYNAMIC>>>\n";

/// The values the static half needs.
pub(crate) struct StaticVars<'a> {
    pub(crate) name: &'a str,
    pub(crate) role: &'a str,
    pub(crate) tools: &'a [ToolSpec],
    pub(crate) host_prompt: &'a str,
    /// The `# PROJECT INSTRUCTIONS` section (`AGENTS.md` and `instructions_files`), or empty.
    pub(crate) project: &'a str,
    pub(crate) step_timeout_s: u64,
    pub(crate) max_tool_calls: u32,
}

/// One terminal line of the environment section.
pub(crate) struct TerminalLine {
    pub(crate) name: String,
    pub(crate) status: String,
    pub(crate) cwd: String,
}

/// The values the dynamic half needs.
pub(crate) struct DynamicVars<'a> {
    pub(crate) work_dir: &'a str,
    pub(crate) os: &'a str,
    pub(crate) step: u32,
    pub(crate) max_steps: u32,
    pub(crate) terminals: &'a [TerminalLine],
    /// The `Context: X / MAX tokens (P%)` line (and its warning).
    pub(crate) context: &'a str,
}

fn substitute(template: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 1024);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = &after[..end];
                match lookup(key) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push_str("{{");
                        out.push_str(key);
                        out.push_str("}}");
                    }
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Width the tool docs are wrapped to.
const DOC_WIDTH: usize = 112;

/// Renders the tool list: one `• signature` line per tool, its doc indented below and wrapped.
pub(crate) fn render_tools(tools: &[ToolSpec]) -> String {
    let mut out = String::new();
    for t in tools {
        let _ = writeln!(out, "• {}", t.signature());
        for line in t.doc.lines() {
            let mut current = String::new();
            for word in line.split_whitespace() {
                if !current.is_empty()
                    && current.chars().count() + 1 + word.chars().count() > DOC_WIDTH
                {
                    let _ = writeln!(out, "    {current}");
                    current.clear();
                }
                if !current.is_empty() {
                    current.push(' ');
                }
                current.push_str(word);
            }
            let _ = writeln!(out, "    {current}");
        }
    }
    out.trim_end().to_owned()
}

/// The static half, rendered once per runtime (and again when tools change).
pub(crate) fn render_static(v: &StaticVars<'_>) -> String {
    let template = TEMPLATE.split(DYNAMIC_MARKER).next().unwrap_or(TEMPLATE);
    let role = if v.role.trim().is_empty() {
        "an autonomous software engineering agent.".to_owned()
    } else {
        v.role.trim().to_owned()
    };
    let host = if v.host_prompt.trim().is_empty() {
        String::new()
    } else {
        format!(
            "# INSTRUCTIONS FROM THE HOST APPLICATION\n(They add to the rules above; they never change the output \
             format.)\n{}\n",
            v.host_prompt.trim()
        )
    };
    let rendered = substitute(template, |key| match key {
        "name" => Some(v.name.to_owned()),
        "role" => Some(role.clone()),
        "tools" => Some(render_tools(v.tools)),
        "host_prompt" => Some(host.clone()),
        "project" => Some(v.project.to_owned()),
        "step_timeout_s" => Some(v.step_timeout_s.to_string()),
        "max_tool_calls" => Some(v.max_tool_calls.to_string()),
        _ => None,
    });
    rendered.trim_end().to_owned() + "\n"
}

fn step_note(step: u32, max_steps: u32) -> &'static str {
    let left = max_steps.saturating_sub(step);
    if left == 0 {
        " — this is your LAST step: finish now with a completion block, or reply with what is left to do."
    } else if u64::from(step) * 10 >= u64::from(max_steps) * 9 {
        " — almost out of steps: wrap up and complete."
    } else if u64::from(step) * 4 >= u64::from(max_steps) * 3 {
        " — most steps are used: prioritise finishing."
    } else {
        ""
    }
}

/// The dynamic half, rendered every step.
pub(crate) fn render_dynamic(v: &DynamicVars<'_>) -> String {
    let template = TEMPLATE.split(DYNAMIC_MARKER).nth(1).unwrap_or("");
    let terminals = if v.terminals.is_empty() {
        "(none)".to_owned()
    } else {
        let mut s = String::new();
        for t in v.terminals {
            let _ = writeln!(s, "- {} — {} — cwd {}", t.name, t.status, t.cwd);
        }
        s.trim_end().to_owned()
    };
    let rendered = substitute(template, |key| match key {
        "work_dir" => Some(v.work_dir.to_owned()),
        "os" => Some(v.os.to_owned()),
        "step" => Some(v.step.to_string()),
        "max_steps" => Some(v.max_steps.to_string()),
        "step_note" => Some(step_note(v.step, v.max_steps).to_owned()),
        "terminals" => Some(terminals.clone()),
        "context" => Some(v.context.to_owned()),
        _ => None,
    });
    rendered.trim_end().to_owned() + "\n"
}

#[cfg(test)]
#[path = "prompt_tests.rs"]
mod tests;
