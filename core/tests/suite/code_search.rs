//! The code-search tools (SPEC §22) through the runtime against the scripted server over HTTP: the block calls them,
//! the model reads their observations, the index follows the agent's own writes, embeddings are used when configured
//! and a dead endpoint costs one warning.

use codepilot::Event;
use codepilot::Outcome;
use codepilot::protocol::ErrorKind;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;

use super::support::Recorder;
use super::support::Wire;
use super::support::agent;
use super::support::builder;
use super::support::last_user_text;

fn project(root: &std::path::Path) {
    let files = [
        (
            "billing/invoice.py",
            "from billing.tax import tax_for\n\n\nclass Invoice:\n    \"\"\"A customer's invoice.\"\"\"\n\n    def total(self, lines):\n        subtotal = sum(l.amount for l in lines)\n        return subtotal + tax_for(subtotal)\n",
        ),
        (
            "billing/tax.py",
            "RATE = 0.2\n\n\ndef tax_for(amount):\n    return round(amount * RATE, 2)\n",
        ),
        (
            "app.py",
            "from billing.invoice import Invoice\n\n\ndef main():\n    print(Invoice().total([]))\n",
        ),
    ];
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_block_searches_traces_and_maps_the_code_and_sees_its_own_writes() {
    let work = tempfile::tempdir().unwrap();
    project(work.path());
    let block1 = "```codepilot\nhits = semantic_search(\"compute the invoice total with tax\", top_k=2)\nprint(hits[0][\"symbol\"], hits[0][\"file\"], hits[0][\"start_line\"])\ndefinition(\"tax_for\")\nreferences(\"Invoice\")\nsemantic_search(\"tax_for\", mode=\"trace_callers\", depth=2)\nrepo_map(max_tokens=256)\n```";
    let block2 = "```codepilot\nwrite_file(\"billing/refund.py\")\nd = definition(\"refund\")\nprint(len(d), d[0][\"file\"], d[0][\"line\"])\nsemantic_search(\"total\", mode=\"trace_callers\")\n```\n```python filename=billing/refund.py\ndef refund(invoice):\n    return -invoice.total([])\n```";
    let server = ScriptedServer::start(vec![
        Turn::answer(block1),
        Turn::answer(block2),
        Turn::answer("```completion\nfound it\n```"),
    ])
    .await
    .unwrap();
    let rt = builder(agent(&server, Wire::Anthropic, work.path(), true, ""))
        .build()
        .await
        .unwrap();
    let outcome = rt
        .run("where is the invoice total computed?")
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    let bodies = server.requests();
    let step1 = last_user_text(&bodies[1].body);
    let observed = step1
        .split("Terminals:")
        .next()
        .unwrap_or(&step1)
        .lines()
        .filter(|l| !l.starts_with("Step ") && !l.starts_with("Context: "))
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("search_tools_observation", observed);
    let step2 = last_user_text(&bodies[2].body);
    assert!(
        step2.contains("1 billing/refund.py 1"),
        "the agent's own write is found at once: {step2}"
    );
    assert!(
        step2.contains("refund → total  billing/refund.py:2"),
        "{step2}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_join_the_ranking_and_a_dead_endpoint_is_one_warning() {
    let work = tempfile::tempdir().unwrap();
    project(work.path());
    let search = "```codepilot\nsemantic_search(\"invoice total\")\n```";
    let server = ScriptedServer::start(vec![
        Turn::answer(search),
        Turn::answer(search),
        Turn::answer(search),
        Turn::answer("```completion\ndone\n```"),
    ])
    .await
    .unwrap();
    let extra = format!(
        "  search:\n    embeddings: {{base_url: \"{}/v1\", model: scripted-embed, api_key_env: EMBED_KEY, batch_size: 8}}\n",
        server.base_url()
    );
    let rt = builder(agent(&server, Wire::Anthropic, work.path(), true, &extra))
        .env(|var| match var {
            "ANTHROPIC_API_KEY" => Some("test-key".to_owned()),
            "EMBED_KEY" => Some("sk-embed".to_owned()),
            _ => None,
        })
        .build()
        .await
        .unwrap();
    let rec = Recorder::attach(&rt);
    // The chunks are embedded in the background; the first search's query is embedded on the spot.
    let outcome = rt.run("find the total").await;
    assert!(
        matches!(outcome, Ok(Outcome::Completed { .. })),
        "{outcome:?}"
    );
    let embedded: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/embeddings")
        .collect();
    assert!(!embedded.is_empty());
    assert!(
        embedded
            .iter()
            .all(|r| r.headers.get("authorization").map(String::as_str) == Some("Bearer sk-embed"))
    );
    assert!(
        embedded
            .iter()
            .any(|r| r.body["input"] == serde_json::json!(["invoice total"])),
        "the query itself is embedded"
    );
    let bodies = server.requests();
    let chats: Vec<_> = bodies.iter().filter(|r| r.path == "/v1/messages").collect();
    let first = last_user_text(&chats[1].body);
    assert!(
        first.contains("=== Semantic Search (search) ==="),
        "{first}"
    );
    assert!(
        !first.contains("set search.embeddings"),
        "no lexical-only note with embeddings: {first}"
    );
    assert!(first.contains("Invoice.total"), "{first}");

    // The endpoint dies: searches go on lexically, with one warning.
    server.set_embeddings_down(true);
    server.push(Turn::answer(search));
    server.push(Turn::answer(search));
    server.push(Turn::answer("```completion\ndone\n```"));
    let outcome = rt.run("again").await.unwrap();
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    let chats: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/messages")
        .collect();
    let after = last_user_text(&chats[chats.len() - 2].body);
    assert!(
        after.contains("Invoice.total"),
        "search still answers: {after}"
    );
    let warnings: Vec<String> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::RuntimeError(r) if r.kind == ErrorKind::Search => Some(r.message),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("answered 503") && warnings[0].contains("lexical"),
        "{warnings:?}"
    );
    assert!(!warnings[0].contains("sk-embed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_search_off_the_tools_say_so() {
    let work = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer("```codepilot\ndefinition(\"x\")\n```"),
        Turn::answer("```completion\nok\n```"),
    ])
    .await
    .unwrap();
    let rt = builder(agent(
        &server,
        Wire::Anthropic,
        work.path(),
        true,
        "  search:\n    enabled: false\n",
    ))
    .build()
    .await
    .unwrap();
    rt.run("look").await.unwrap();
    let step = last_user_text(&server.requests()[1].body);
    assert!(
        step.contains("code search is off (search.enabled: false"),
        "{step}"
    );
}

#[test]
fn bad_search_settings_name_the_key() {
    let load = |yaml: &str| {
        codepilot::AgentFile::from_yaml_str(
            &format!("name: A\nmodel: {{provider: openai, name: m}}\n{yaml}"),
            None,
        )
        .unwrap_err()
        .to_string()
    };
    let err = load("search: {embeddings: {model: m}}\n");
    assert!(
        err.contains("search.embeddings.base_url") && err.contains("required"),
        "{err}"
    );
    let err = load("search: {embeddings: {base_url: \"ftp://x\", model: m}}\n");
    assert!(err.contains("must start with http://"), "{err}");
    let err = load("search: {embeddings: {base_url: \"http://x\"}}\n");
    assert!(err.contains("search.embeddings.model"), "{err}");
    let err = load("search: {embeddings: {provider: cohere, model: m}}\n");
    assert!(err.contains("search.embeddings.provider"), "{err}");
    let err = load("search: {max_file_kb: 0}\n");
    assert!(err.contains("search.max_file_kb"), "{err}");
    let err = load(
        "tools:\n  - {name: semantic_search, config: {provider: voyage, model: voyage-code-3}}\n",
    );
    assert!(
        err.contains("belongs in the search section") && err.contains("search: {embeddings:"),
        "{err}"
    );
    let err = load("search: {embedings: {}}\n");
    assert!(err.contains("embedings"), "{err}");
}
