use codepilot_llm::WireFormat;
use pretty_assertions::assert_eq;

use super::*;

#[test]
fn names_and_aliases_parse() {
    for kind in ProviderKind::all() {
        assert_eq!(kind.to_string().parse::<ProviderKind>().unwrap(), *kind);
        let json = serde_json::to_string(kind).unwrap();
        assert_eq!(json, format!("\"{kind}\""));
        assert_eq!(serde_json::from_str::<ProviderKind>(&json).unwrap(), *kind);
    }
    for (alias, kind) in [
        ("openai_compatible", ProviderKind::OpenAiCompatible),
        ("OpenAI-Compatible", ProviderKind::OpenAiCompatible),
        ("llamacpp", ProviderKind::LlamaCpp),
        ("llama.cpp", ProviderKind::LlamaCpp),
        ("llama_cpp", ProviderKind::LlamaCpp),
        ("claude", ProviderKind::Anthropic),
        ("together_ai", ProviderKind::Together),
        ("OpenRouter", ProviderKind::OpenRouter),
        ("google", ProviderKind::Gemini),
        (" vLLM ", ProviderKind::Vllm),
    ] {
        assert_eq!(alias.parse::<ProviderKind>().unwrap(), kind, "{alias}");
    }
    assert_eq!(
        serde_json::from_str::<ProviderKind>("\"llamacpp\"").unwrap(),
        ProviderKind::LlamaCpp
    );
}

#[test]
fn unknown_names_list_the_valid_ones() {
    let err = "gpt".parse::<ProviderKind>().unwrap_err();
    insta::assert_snapshot!("unknown_provider", err.to_string());
    assert!(
        serde_json::from_str::<ProviderKind>("\"gpt\"")
            .unwrap_err()
            .to_string()
            .contains("valid providers")
    );
}

#[test]
fn presets() {
    use ProviderKind as K;
    let table: Vec<String> = K::all()
        .iter()
        .map(|k| {
            format!(
                "{k}: wire={:?} base={} key={} required={}",
                k.wire(),
                k.default_base_url().unwrap_or("-"),
                k.default_api_key_env().unwrap_or("-"),
                k.requires_api_key()
            )
        })
        .collect();
    insta::assert_snapshot!("presets", table.join("\n"));
    assert_eq!(K::all().len(), 12);
    assert_eq!(K::Anthropic.wire(), WireFormat::Anthropic);
    for k in K::all() {
        // A key variable, if any, belongs to the provider itself: never another provider's.
        if let Some(var) = k.default_api_key_env() {
            let stem = k.to_string().to_uppercase().replace('-', "");
            assert!(var.starts_with(&stem), "{k} uses {var}");
        }
    }
    assert_eq!(K::OpenAiCompatible.default_api_key_env(), None);
    assert_eq!(
        K::Ollama.default_base_url(),
        Some("http://localhost:11434/v1")
    );
    assert_eq!(K::Vllm.default_base_url(), Some("http://localhost:8000/v1"));
    assert_eq!(
        K::LlamaCpp.default_base_url(),
        Some("http://localhost:8080/v1")
    );
}

#[test]
fn hosted_providers_need_a_key() {
    let err = build_provider(ProviderConfig::new(
        ProviderKind::Anthropic,
        "claude-sonnet-4-5",
    ))
    .err()
    .unwrap();
    assert!(matches!(&err, LlmError::MissingApiKey { var, .. } if var == "ANTHROPIC_API_KEY"));
    insta::assert_snapshot!("missing_key", err.to_string());
    let mut cfg = ProviderConfig::new(ProviderKind::Groq, "llama");
    cfg.api_key = Some("   ".into());
    assert!(matches!(
        build_provider(cfg),
        Err(LlmError::MissingApiKey { .. })
    ));
    // Local servers build without a key.
    assert!(build_provider(ProviderConfig::new(ProviderKind::Ollama, "llama3")).is_ok());
}

#[test]
fn https_clients_build_and_describe_without_keys() {
    let mut cfg = ProviderConfig::new(ProviderKind::Anthropic, "claude-sonnet-4-5");
    cfg.api_key = Some("sk-ant-secret".into());
    let debug = format!("{cfg:?}");
    assert!(
        !debug.contains("sk-ant-secret") && debug.contains("<redacted>"),
        "{debug}"
    );
    let p = build_provider(cfg).unwrap();
    assert_eq!(p.describe(), "anthropic claude-sonnet-4-5");
    let mut cfg = ProviderConfig::new(ProviderKind::OpenAiCompatible, "qwen");
    cfg.base_url = Some("http://gpu-box:8000/v1/".into());
    assert_eq!(
        build_provider(cfg).unwrap().describe(),
        "openai-compatible qwen at http://gpu-box:8000/v1/"
    );
}

#[test]
fn zero_max_tokens_and_empty_model_are_rejected() {
    let mut cfg = ProviderConfig::new(ProviderKind::Ollama, "llama3");
    cfg.max_tokens = 0;
    assert!(matches!(
        build_provider(cfg),
        Err(LlmError::InvalidConfig(_))
    ));
    assert!(matches!(
        build_provider(ProviderConfig::new(ProviderKind::Ollama, " ")),
        Err(LlmError::InvalidConfig(_))
    ));
}

#[test]
fn api_key_from_env_uses_the_named_variable_only_when_unset() {
    // PATH is always set; the process environment is only read, never changed.
    let path = std::env::var("PATH").unwrap();
    let cfg = ProviderConfig::new(ProviderKind::Ollama, "m").with_api_key_from_env(Some("PATH"));
    assert_eq!(cfg.api_key.as_deref(), Some(path.as_str()));
    let mut cfg = ProviderConfig::new(ProviderKind::Ollama, "m");
    cfg.api_key = Some("explicit".into());
    let cfg = cfg.with_api_key_from_env(Some("PATH"));
    assert_eq!(cfg.api_key.as_deref(), Some("explicit"));
    // Local servers have no default variable, so nothing is picked up implicitly.
    let cfg = ProviderConfig::new(ProviderKind::OpenAiCompatible, "m").with_api_key_from_env(None);
    assert_eq!(cfg.api_key, None);
    let cfg = ProviderConfig::new(ProviderKind::Ollama, "m")
        .with_api_key_from_env(Some("CODEPILOT_TEST_SURELY_UNSET_VARIABLE_4711"));
    assert_eq!(cfg.api_key, None);
}
