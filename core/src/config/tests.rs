use std::path::Path;
use std::path::PathBuf;

use codepilot_llm::DEFAULT_MAX_TOKENS;
use codepilot_llm::DEFAULT_REQUEST_TIMEOUT_S;
use codepilot_llm::ProviderKind;
use pretty_assertions::assert_eq;

use super::AgentFile;
use super::ConfigError;
use super::STARTER_AGENT_YAML;
use super::ThinkingConfig;
use super::ToolEntry;

const ORIGIN: &str = "agent.yaml";

fn load(text: &str) -> Result<AgentFile, ConfigError> {
    AgentFile::from_yaml_str(text, Some(Path::new(ORIGIN)))
}

fn err(text: &str) -> String {
    match load(text) {
        Ok(a) => panic!("expected an error, got {a:?}"),
        Err(e) => e.to_string(),
    }
}

const MINIMAL_NESTED: &str = "agent:
  name: Bot
  model:
    provider: anthropic
    name: claude-sonnet-4-5
";

const MINIMAL_FLAT: &str = "name: Bot
model:
  provider: anthropic
  name: claude-sonnet-4-5
";

#[test]
fn nested_and_flat_load_the_same_with_defaults() {
    let nested = load(MINIMAL_NESTED).unwrap();
    let flat = load(MINIMAL_FLAT).unwrap();
    assert_eq!(nested, flat);
    assert_eq!(nested.name, "Bot");
    assert_eq!(nested.role, None);
    assert_eq!(nested.system_prompt, "");
    assert_eq!(nested.model.provider, ProviderKind::Anthropic);
    assert_eq!(nested.model.name, "claude-sonnet-4-5");
    assert_eq!(nested.model.api_key_env, None);
    assert_eq!(nested.model.base_url, None);
    assert!(nested.model.temperature.abs() < f32::EPSILON);
    assert_eq!(nested.model.max_tokens, 4096);
    assert_eq!(nested.model.timeout_s, 600);
    assert_eq!(nested.model.context_window, None);
    assert_eq!(nested.model.thinking, ThinkingConfig::default());
    assert_eq!(nested.model.thinking.budget_tokens, 8000);
    assert!(nested.model.stream);
    assert_eq!(nested.runtime.max_steps, 20);
    assert_eq!(nested.runtime.step_timeout_s, 600);
    assert!(!nested.runtime.unsafe_mode);
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(nested.runtime.work_dir, cwd.join("./workspace"));
    assert_eq!(nested.source, Some(PathBuf::from(ORIGIN)));
    assert_eq!(nested.tools, Vec::new());
    assert_eq!(nested.effective_tools().len(), 19);
    assert!((nested.runtime.context_threshold - 0.8).abs() < f64::EPSILON);
}

#[test]
fn full_file_values_are_read() {
    let text = "agent:
  name: Bot
  role: helper
  system_prompt: |
    Be brief.
    Really.
  model:
    provider: llama.cpp
    name: qwen
    api_key_env: MY_KEY
    api_base: http://localhost:8080/v1
    temperature: 0.7
    max_tokens: 100
    context_window: 32768
    thinking: {enabled: true, budget_tokens: 1000}
    stream: false
    timeout_s: 45
  runtime:
    work_dir: /abs/ws
    max_steps: 5
    unsafe_mode: true
    step_timeout_s: 30
  tools:
    - {name: execute, config: {require_permission: true, max_output_chars: 5000}}
    - name: ask_user
      enabled: false
";
    let a = load(text).unwrap();
    assert_eq!(a.role.as_deref(), Some("helper"));
    assert_eq!(a.system_prompt, "Be brief.\nReally.\n");
    assert_eq!(a.model.provider, ProviderKind::LlamaCpp);
    assert_eq!(a.model.api_key_env.as_deref(), Some("MY_KEY"));
    assert_eq!(
        a.model.base_url.as_deref(),
        Some("http://localhost:8080/v1")
    );
    assert!((a.model.temperature - 0.7).abs() < 1e-6);
    assert_eq!(a.model.max_tokens, 100);
    assert_eq!(a.model.context_window, Some(32768));
    assert_eq!(
        a.model.thinking,
        ThinkingConfig {
            enabled: true,
            budget_tokens: 1000
        }
    );
    assert!(!a.model.stream);
    assert_eq!(a.model.timeout_s, 45);
    assert_eq!(a.runtime.work_dir, PathBuf::from("/abs/ws"));
    assert_eq!(a.runtime.max_steps, 5);
    assert!(a.runtime.unsafe_mode);
    assert_eq!(a.runtime.step_timeout_s, 30);
    assert_eq!(a.tools.len(), 2);
    assert_eq!(
        a.tools[0].config.get("max_output_chars"),
        Some(&serde_json::json!(5000))
    );
    assert!(!a.tools[1].enabled);
    let effective: Vec<String> = a.effective_tools().into_iter().map(|t| t.name).collect();
    assert_eq!(
        effective,
        vec![
            "read_file",
            "write_file",
            "find",
            "semantic_search",
            "definition",
            "references",
            "repo_map",
            "execute",
            "read_output",
            "send_input",
            "terminate_terminal",
            "archive_context",
            "reveal_context",
            "list_archived_context",
            "spawn_subagent",
            "await_subagent",
            "reply_subagent",
            "list_subagents"
        ]
    );
}

#[test]
fn context_budget_must_leave_room_and_names_the_keys() {
    let err = load(
        "name: B\nmodel: {provider: openai, name: gpt-4o, context_window: 8000, max_tokens: 7000}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("model.context_window (8000)"), "{err}");
    assert!(err.contains("model.max_tokens (7000)"), "{err}");
    assert!(err.contains("agent.yaml:2"), "{err}");
    let err = load(
        "name: B\nmodel: {provider: anthropic, name: c, context_window: 12000, max_tokens: 1000, \
         thinking: {enabled: true, budget_tokens: 9000}}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("model.thinking.budget_tokens (9000)"), "{err}");
    let ok = load("name: B\nmodel: {provider: openai, name: gpt-4o, context_window: 8000, max_tokens: 1024}\n")
        .unwrap();
    let budget = ok.model.context_budget().unwrap();
    assert_eq!(
        (budget.window, budget.margin, budget.budget),
        (8000, 256, 6720)
    );
    let err =
        load("name: B\nmodel: {provider: openai, name: x}\nruntime: {context_threshold: 1.5}\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("runtime.context_threshold"), "{err}");
}

#[test]
fn provider_aliases_are_normalised() {
    for (given, want) in [
        ("openai_compatible", ProviderKind::OpenAiCompatible),
        ("llamacpp", ProviderKind::LlamaCpp),
        ("llama.cpp", ProviderKind::LlamaCpp),
        ("OpenAI", ProviderKind::OpenAi),
        ("scripted", ProviderKind::Scripted),
        ("gemini", ProviderKind::Gemini),
        // Every alias codepilot-llm accepts is accepted here: the provider names have one owner.
        ("claude", ProviderKind::Anthropic),
        ("together-ai", ProviderKind::Together),
        ("llama-server", ProviderKind::LlamaCpp),
    ] {
        let text =
            format!("name: B\nmodel:\n  provider: {given}\n  name: m\n  base_url: http://x/v1\n");
        assert_eq!(load(&text).unwrap().model.provider, want, "{given}");
    }
}

#[test]
fn relative_paths_resolve_against_the_yaml_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("prompts")).unwrap();
    std::fs::write(dir.path().join("prompts/sys.md"), "# Be careful\n").unwrap();
    let yaml = dir.path().join("agent.yaml");
    std::fs::write(
        &yaml,
        "agent:
  name: Bot
  system_prompt: prompts/sys.md
  model: {provider: scripted, name: s, script: answers.txt}
  runtime: {work_dir: ws}
",
    )
    .unwrap();
    let a = AgentFile::load(&yaml).unwrap();
    assert_eq!(a.system_prompt, "# Be careful\n");
    assert_eq!(a.runtime.work_dir, dir.path().join("ws"));
    assert_eq!(a.model.script, Some(dir.path().join("answers.txt")));
    assert_eq!(a.source, Some(yaml));
}

#[test]
fn missing_system_prompt_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("agent.yaml");
    std::fs::write(
        &yaml,
        "name: Bot\nsystem_prompt: nope.md\nmodel: {provider: openai, name: gpt-4o}\n",
    )
    .unwrap();
    let e = AgentFile::load(&yaml).unwrap_err();
    let text = e.to_string();
    let shown = text.replace(&dir.path().display().to_string(), "<DIR>");
    insta::assert_snapshot!("config_err_missing_prompt_file", shown);
    assert_eq!(e.line(), Some(2));
}

#[test]
fn missing_agent_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = AgentFile::load(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
}

#[test]
fn starter_file_loads() {
    let a = AgentFile::from_yaml_str(STARTER_AGENT_YAML, Some(Path::new("agent.yaml"))).unwrap();
    assert_eq!(a.name, "CodePilot");
    assert_eq!(a.model.provider, ProviderKind::Anthropic);
    assert_eq!(a.runtime.max_steps, 20);
    // The starter shows the defaults, which have their home in codepilot-llm.
    assert_eq!(a.model.max_tokens, DEFAULT_MAX_TOKENS);
    assert_eq!(a.model.timeout_s, DEFAULT_REQUEST_TIMEOUT_S);
    assert_eq!(
        a.model,
        super::ModelConfig::new(ProviderKind::Anthropic, "claude-sonnet-4-5")
    );
    let gated: Vec<&str> = a
        .tools
        .iter()
        .filter(|t| t.config.get("require_permission") == Some(&serde_json::Value::Bool(true)))
        .map(|t| t.name.as_str())
        .collect();
    // send_input is gated with execute by the runtime, without an entry of its own.
    assert_eq!(gated, vec!["execute"]);
    assert_eq!(a.effective_tools().len(), 19, "every built-in stays on");
}

#[test]
fn error_unknown_key() {
    let text = "agent:\n  name: Bot\n  modle:\n    provider: anthropic\n";
    let e = load(text).unwrap_err();
    assert_eq!(e.line(), Some(3));
    insta::assert_snapshot!("config_err_unknown_key", e.to_string());
}

#[test]
fn error_unknown_nested_key() {
    let text = MINIMAL_NESTED.replace("    name: claude", "    temprature: 0.5\n    name: claude");
    let e = load(&text).unwrap_err();
    assert_eq!(e.line(), Some(5));
    insta::assert_snapshot!("config_err_unknown_nested_key", e.to_string());
}

#[test]
fn error_unknown_key_without_close_match_lists_valid_keys() {
    let text = format!("{MINIMAL_NESTED}  runtime:\n    zzzzzz: 1\n");
    insta::assert_snapshot!("config_err_unknown_key_no_match", err(&text));
    let text = MINIMAL_NESTED.replace("    name: claude", "    zzzzzz: 1\n    name: claude");
    insta::assert_snapshot!("config_err_unknown_model_key_no_match", err(&text));
}

#[test]
fn error_top_level_key_next_to_agent() {
    let text = format!("{MINIMAL_NESTED}nmae: x\n");
    let e = load(&text).unwrap_err();
    assert_eq!(e.line(), Some(6));
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e}");
}

#[test]
fn error_bad_type() {
    let text = format!("{MINIMAL_NESTED}  runtime:\n    max_steps: many\n");
    let e = load(&text).unwrap_err();
    assert_eq!(e.line(), Some(7));
    insta::assert_snapshot!("config_err_bad_type", e.to_string());
}

#[test]
fn error_bad_types_name_the_line() {
    let cases = [
        ("name: [1, 2]\nmodel: {provider: openai, name: x}\n", 1),
        (
            "name: B\nmodel: {provider: openai, name: x, temperature: hot}\n",
            2,
        ),
        (
            "name: B\nmodel: {provider: openai, name: x}\nruntime:\n  unsafe_mode: maybe\n",
            4,
        ),
        (
            "name: B\nmodel: {provider: openai, name: x}\ntools: {name: execute}\n",
            3,
        ),
        (
            "name: B\nmodel: {provider: openai, name: x}\ntools:\n  - {name: execute, config: 5}\n",
            4,
        ),
    ];
    let mut all = String::new();
    for (text, line) in cases {
        let e = load(text).unwrap_err();
        assert_eq!(e.line(), Some(line), "{e}");
        all.push_str(&e.to_string());
        all.push('\n');
    }
    insta::assert_snapshot!("config_err_bad_types", all);
}

#[test]
fn error_missing_name() {
    let text = "model:\n  provider: anthropic\n  name: x\n";
    insta::assert_snapshot!("config_err_missing_name", err(text));
}

#[test]
fn error_missing_model_name() {
    let text = "name: B\nmodel:\n  provider: anthropic\n";
    insta::assert_snapshot!("config_err_missing_model_name", err(text));
}

#[test]
fn error_missing_base_url() {
    let text = "name: B\nmodel:\n  provider: openai-compatible\n  name: local\n";
    insta::assert_snapshot!("config_err_missing_base_url", err(text));
}

#[test]
fn error_bad_tool_name() {
    let text = format!("{MINIMAL_NESTED}  tools:\n    - name: execute\n    - name: raed_file\n");
    let e = load(&text).unwrap_err();
    assert_eq!(e.line(), Some(8));
    insta::assert_snapshot!("config_err_bad_tool_name", e.to_string());
}

#[test]
fn error_duplicate_tool() {
    let text = format!("{MINIMAL_NESTED}  tools:\n    - name: execute\n    - {{name: execute}}\n");
    let e = load(&text).unwrap_err();
    assert_eq!(e.line(), Some(8));
    insta::assert_snapshot!("config_err_duplicate_tool", e.to_string());
}

#[test]
fn error_bad_provider() {
    let text = "name: B\nmodel:\n  provider: antropic\n  name: x\n";
    let e = load(text).unwrap_err();
    assert_eq!(e.line(), Some(3));
    insta::assert_snapshot!("config_err_bad_provider", e.to_string());
}

#[test]
fn error_ranges() {
    let cases = [
        (
            "name: B\nmodel: {provider: openai, name: x, temperature: 2.5}\n",
            "model.temperature",
        ),
        (
            "name: B\nmodel: {provider: openai, name: x, temperature: -0.1}\n",
            "model.temperature",
        ),
        (
            "name: B\nmodel: {provider: openai, name: x, max_tokens: 0}\n",
            "model.max_tokens",
        ),
        (
            "name: B\nmodel: {provider: openai, name: x}\nruntime: {max_steps: 0}\n",
            "runtime.max_steps",
        ),
        (
            "name: B\nmodel: {provider: openai, name: x}\nruntime: {step_timeout_s: 0}\n",
            "runtime.step_timeout_s",
        ),
        (
            "name: B\nmodel: {provider: openai, name: x, thinking: {budget_tokens: 0}}\n",
            "model.thinking.budget_tokens",
        ),
        (
            "name: B\nmodel: {provider: openai, name: x, timeout_s: 0}\n",
            "model.timeout_s",
        ),
        (
            "name: B\nmodel: {provider: openai, name: ''}\n",
            "model.name",
        ),
        (
            "name: B\nmodel: {provider: openai, name: x, base_url: 'localhost:1'}\n",
            "model.base_url",
        ),
    ];
    for (text, key) in cases {
        match load(text) {
            Err(ConfigError::Invalid { key: k, line, .. }) => {
                assert_eq!(k, key, "{text}");
                assert!(line.is_some(), "{text}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    insta::assert_snapshot!(
        "config_err_temperature",
        err("name: B\nmodel:\n  provider: openai\n  name: x\n  temperature: 3\n")
    );
}

#[test]
fn malformed_yaml_never_panics() {
    let inputs = [
        "",
        "   \n",
        "agent: [",
        "{{{{",
        "- a\n- b\n",
        "hello",
        "agent: 5",
        "name: [1, 2]\n",
        "name: B\nmodel: {provider: openai, name: x}\n---\nname: C\n",
        "\t\tname: x",
        "name: B\nname: C\n",
        "agent:\n  agent:\n    name: x\n",
        "name: !!binary aGVsbG8=\n",
        "name: *nope\n",
    ];
    let mut all = String::new();
    for text in inputs {
        let e = load(text).unwrap_err();
        all.push_str(&format!("{text:?}\n  => {e}\n"));
    }
    insta::assert_snapshot!("config_err_malformed", all);
}

#[test]
fn yaml_bomb_is_bounded() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..20 {
        let prev = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    text.push_str("name: B\nmodel: {provider: openai, name: x}\n");
    let e = load(&text).unwrap_err();
    assert!(matches!(e, ConfigError::Yaml { .. }), "{e}");
    let deep = format!("name: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    let e2 = load(&deep).unwrap_err();
    assert!(matches!(e2, ConfigError::Yaml { .. }), "{e2}");
    insta::assert_snapshot!("config_err_bombs", format!("{e}\n{e2}"));
}

#[test]
fn builder_validates_and_normalises() {
    let kind: ProviderKind = "llamacpp".parse().unwrap();
    let a = AgentFile::builder("Bot", kind, "qwen")
        .base_url("http://localhost:8080/v1")
        .max_steps(3)
        .timeout_s(20)
        .tool(ToolEntry::new("execute"))
        .build()
        .unwrap();
    assert_eq!(a.model.provider, ProviderKind::LlamaCpp);
    assert_eq!(a.model.to_string(), "llama-cpp/qwen");
    assert_eq!(a.model.timeout_s, 20);
    assert_eq!(a.runtime.max_steps, 3);
    let e = AgentFile::builder("Bot", ProviderKind::OpenAiCompatible, "m")
        .build()
        .unwrap_err();
    assert!(matches!(e, ConfigError::MissingKey { .. }), "{e}");
    let e = AgentFile::builder("Bot", ProviderKind::OpenAi, "m")
        .timeout_s(0)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("'model.timeout_s'"), "{e}");
    let e = AgentFile::builder("Bot", ProviderKind::OpenAi, "m")
        .tool(ToolEntry::new("exec"))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("did you mean 'execute'"), "{e}");
}

#[test]
fn misspelt_or_mistyped_tool_config_is_an_error() {
    let typo = "name: a\nmodel: {provider: scripted, name: m}\ntools:\n  - {name: execute, config: {require_permision: true}}\n";
    let err = AgentFile::from_yaml_str(typo, Some(Path::new("agent.yaml")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("require_permision") && err.contains("did you mean 'require_permission'"),
        "{err}"
    );
    assert!(err.contains("agent.yaml:4"), "{err}");
    let mistyped = "name: a\nmodel: {provider: scripted, name: m}\ntools:\n  - {name: execute, config: {require_permission: \"yes\"}}\n";
    let err = AgentFile::from_yaml_str(mistyped, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("true or false"), "{err}");
    let ok = "name: a\nmodel: {provider: scripted, name: m}\ntools:\n  - {name: execute, config: {require_permission: true, max_output_chars: 5000}}\n";
    AgentFile::from_yaml_str(ok, None).unwrap();
}

#[test]
fn mcp_servers_load_with_defaults_and_resolved_paths() {
    let agent = load(&format!(
        "{MINIMAL_NESTED}  mcp_servers:
    - name: calc
      command: python3
      args: [tools/server.py]
      cwd: tools
      env: {{TOKEN: \"${{CALC_TOKEN}}\"}}
    - name: web
      url: http://127.0.0.1:8000/mcp
      headers: {{Authorization: \"Bearer ${{WEB_MCP_TOKEN}}\"}}
      timeout_s: 5
      require_permission: true
      tools: {{include: [search], exclude: [delete]}}
"
    ))
    .unwrap();
    let cwd = std::env::current_dir().unwrap();
    let [calc, web] = agent.mcp_servers.as_slice() else {
        panic!("two servers: {:?}", agent.mcp_servers);
    };
    assert_eq!(calc.timeout_s, super::DEFAULT_MCP_TIMEOUT_S);
    assert!(!calc.require_permission);
    assert_eq!(
        calc.transport,
        super::McpTransport::Stdio {
            command: "python3".into(),
            args: vec!["tools/server.py".into()],
            cwd: cwd.join("./tools"),
            env: [("TOKEN".to_owned(), "${CALC_TOKEN}".to_owned())].into(),
        }
    );
    assert_eq!(calc.tool_name("get-weather.v2"), "calc__get_weather_v2");
    assert!(web.require_permission);
    assert_eq!(web.timeout_s, 5);
    assert!(web.wants("search") && !web.wants("delete") && !web.wants("other"));
}

#[test]
fn bad_mcp_servers_name_the_key_and_line() {
    let cases = [
        (
            "    - name: Calc\n      command: x\n",
            "invalid value for 'mcp_servers.name' in agent.yaml:7: 'Calc' is not a server name",
        ),
        (
            "    - name: a\n      command: x\n      url: http://h/mcp\n",
            "has both `command` and `url`",
        ),
        (
            "    - name: a\n",
            "missing required key 'mcp_servers.command' in agent.yaml:7",
        ),
        (
            "    - name: a\n      command: x\n    - name: a\n      command: y\n",
            "two MCP servers are named 'a'",
        ),
        (
            "    - name: a\n      url: ftp://h\n",
            "is not an http(s) URL",
        ),
        (
            "    - name: a\n      command: x\n      timeout_s: 0\n",
            "'mcp_servers.timeout_s' in agent.yaml:9: must be at least 1",
        ),
        (
            "    - name: a\n      command: x\n      headers: {A: b}\n",
            "`headers` apply to a `url` server only",
        ),
        ("    - name: calc_\n      command: x\n", "not ending in one"),
        (
            "    - name: a\n      command: x\n      comand: y\n",
            "unknown key 'comand' in agent.yaml:9; did you mean 'command'?",
        ),
    ];
    for (entry, expected) in cases {
        let text = format!("{MINIMAL_NESTED}  mcp_servers:\n{entry}");
        let message = err(&text);
        assert!(message.contains(expected), "{entry:?}: {message}");
    }
}

#[test]
fn resources_default_to_safe_limits_take_overrides_and_off() {
    use codepilot_sandbox::resources::Limits;
    let base = "name: R\nmodel: {provider: openai, name: x}\n";
    let defaults = load(base).unwrap().runtime.resources.unwrap();
    assert_eq!(defaults, Limits::defaults());
    assert_eq!(defaults.max_processes, Some(512));
    assert!(defaults.max_memory_mb.is_some_and(|mb| mb >= 64));
    assert_eq!(
        (defaults.max_disk_mb, defaults.max_open_files),
        (None, None)
    );

    let set = load(&format!(
        "{base}runtime:\n  resources: {{max_processes: 64, max_memory_mb: off, cpu_weight: 50, max_disk_mb: 100, \
         max_open_files: 256}}\n"
    ))
    .unwrap()
    .runtime
    .resources
    .unwrap();
    assert_eq!(
        set,
        Limits {
            max_processes: Some(64),
            max_memory_mb: None,
            cpu_weight: Some(50),
            max_disk_mb: Some(100),
            max_open_files: Some(256),
        }
    );
    let off = load(&format!("{base}runtime: {{resources: off}}\n")).unwrap();
    assert_eq!(off.runtime.resources, None);

    for (yaml, wanted) in [
        ("resources: none", "'none' is not a setting; use off"),
        (
            "resources: {max_proceses: 5}",
            "did you mean 'max_processes'?",
        ),
        (
            "resources: {max_processes: 2}",
            "runtime.resources.max_processes",
        ),
        ("resources: {max_open_files: 4}", "must be from 16 to"),
        ("resources: {cpu_weight: 20000}", "must be from 1 to 10000"),
        ("resources: {max_disk_mb: lots}", "'lots' is not a number"),
        (
            "resources: {max_memory_mb: -1}",
            "runtime.resources.max_memory_mb",
        ),
        (
            "resources: {max_memory_mb: 4096.5}",
            "4096.5 is not a whole number",
        ),
        (
            "resources: {max_processes: }",
            "runtime.resources.max_processes",
        ),
        ("resources: 5", "5 is not a setting"),
    ] {
        let err = load(&format!("{base}runtime:\n  {yaml}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(wanted), "{yaml}: {err}");
    }
}

#[test]
fn checkpoints_default_to_every_turn_and_take_step_and_off() {
    use super::CheckpointMode;
    let base = "name: C\nmodel: {provider: openai, name: x}\n";
    let rt = load(base).unwrap().runtime;
    assert_eq!(rt.checkpoints, CheckpointMode::Turn);
    assert_eq!(
        (rt.checkpoint_keep, rt.checkpoint_max_file_bytes),
        (50, 16 << 20)
    );
    let set = load(&format!(
        "{base}runtime:\n  checkpoints: step\n  checkpoint_keep: 5\n  checkpoint_max_file_mb: 2\n"
    ))
    .unwrap()
    .runtime;
    assert_eq!(set.checkpoints, CheckpointMode::Step);
    assert_eq!(
        (set.checkpoint_keep, set.checkpoint_max_file_bytes),
        (5, 2 << 20)
    );
    // A bare `off` is YAML 1.1's `false`.
    let off = load(&format!("{base}runtime: {{checkpoints: off}}\n")).unwrap();
    assert_eq!(off.runtime.checkpoints, CheckpointMode::Off);
    for (yaml, wanted) in [
        (
            "checkpoints: daily",
            "'runtime.checkpoints' in agent.yaml:4: unknown checkpoint mode \"daily\"; use turn",
        ),
        ("checkpoint_keep: 0", "runtime.checkpoint_keep"),
        ("checkpoint_max_file_mb: 0", "must be at least 1"),
        ("checkpoint_max_file_mb: 4096", "must be at most 1024"),
    ] {
        let err = err(&format!("{base}runtime:\n  {yaml}\n"));
        assert!(err.contains(wanted), "{yaml}: {err}");
    }
}

#[test]
fn observability_is_read_and_checked() {
    let a = load(&format!(
        "{MINIMAL_NESTED}  observability:\n    endpoint: https://api.honeycomb.io\n    protocol: grpc\n    headers: {{x-honeycomb-team: k}}\n    service_name: bot\n    log_content: true\n"
    ))
    .unwrap();
    assert_eq!(
        a.observability,
        codepilot_telemetry::TraceSettings {
            enabled: None,
            endpoint: Some("https://api.honeycomb.io".to_owned()),
            protocol: Some(codepilot_telemetry::Protocol::Grpc),
            headers: vec![("x-honeycomb-team".to_owned(), "k".to_owned())],
            service_name: Some("bot".to_owned()),
            log_content: true,
        }
    );
    assert_eq!(
        load(MINIMAL_NESTED).unwrap().observability,
        codepilot_telemetry::TraceSettings::default()
    );
    let e = err(&format!(
        "{MINIMAL_NESTED}  observability:\n    protocol: http/json\n"
    ));
    assert!(
        e.contains("observability.protocol") && e.contains("http/protobuf or grpc"),
        "{e}"
    );
    let e = err(&format!(
        "{MINIMAL_NESTED}  observability:\n    endpoint: localhost:4318\n"
    ));
    assert!(e.contains("observability.endpoint"), "{e}");
    let e = err(&format!(
        "{MINIMAL_NESTED}  observability:\n    log_contents: true\n"
    ));
    assert!(e.contains("log_contents"), "{e}");
}

#[test]
fn mcp_oauth_and_elicitation_are_read_and_checked() {
    let a = load(&format!(
        "{MINIMAL_NESTED}  mcp_servers:\n    - name: linear\n      url: https://mcp.linear.app/mcp\n      elicitation: accept-defaults\n      oauth: {{client_id: cp, client_secret_env: LINEAR_SECRET, scopes: [read, write], redirect_port: 9000, grant: client_credentials}}\n"
    ))
    .unwrap();
    let server = &a.mcp_servers[0];
    assert_eq!(
        server.elicitation,
        crate::config::Elicitation::AcceptDefaults
    );
    assert_eq!(
        server.oauth,
        Some(crate::config::OAuthConfig {
            client_id: Some("cp".to_owned()),
            client_secret_env: Some("LINEAR_SECRET".to_owned()),
            scopes: vec!["read".to_owned(), "write".to_owned()],
            redirect_port: Some(9000),
            client_metadata_url: None,
            client_credentials: true,
        })
    );
    for (extra, key) in [
        ("      elicitation: ask-me\n", "mcp_servers.elicitation"),
        (
            "      oauth: {grant: implicit}\n",
            "mcp_servers.oauth.grant",
        ),
        (
            "      oauth: {grant: client_credentials}\n",
            "mcp_servers.oauth.grant",
        ),
        (
            "      oauth: {client_secret_env: X}\n",
            "mcp_servers.oauth.client_secret_env",
        ),
        (
            "      oauth: {client_metadata_url: http://x/c.json}\n",
            "mcp_servers.oauth.client_metadata_url",
        ),
        (
            "      oauth: {redirect_port: 0}\n",
            "mcp_servers.oauth.redirect_port",
        ),
    ] {
        let e = err(&format!(
            "{MINIMAL_NESTED}  mcp_servers:\n    - name: remote\n      url: https://example.com/mcp\n{extra}"
        ));
        assert!(e.contains(key), "{extra}: {e}");
    }
    let e = err(&format!(
        "{MINIMAL_NESTED}  mcp_servers:\n    - name: local\n      command: x\n      oauth: {{scopes: [a]}}\n"
    ));
    assert!(e.contains("`oauth` applies to a `url` server only"), "{e}");
}
