//! Resource limits in a daemon (SPEC §24): one session runs a process storm and a huge allocation against its
//! limits while nine others work; the nine complete their turns unaffected, and the daemon's clients get the
//! `resource_limit` events.

use std::collections::HashMap;

use codepilot_server::DaemonConfig;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use serde_json::Value;
use serde_json::json;

use super::support::DONE;
use super::support::TestDaemon;
use super::support::agent_yaml;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_runaway_session_does_not_touch_nine_others() {
    if let codepilot::sandbox::resources::Mechanism::Rlimits { why } =
        codepilot::sandbox::resources::Mechanism::detect()
    {
        codepilot_testkit::service::cgroups_missing(&why);
        return;
    }
    let runaway_model = ScriptedServer::start(vec![
        Turn::answer(
            "```codepilot\n\
             execute(\"main\", \"for i in $(seq 2000); do sleep 30 & done\", timeout=120)\n\
             execute(\"main\", \"python3 -c \\\"x = b'x' * (600 << 20)\\\"\")\n\
             execute(\"main\", \"echo still-here\")\n\
             ```",
        ),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    // The scripted server answers in order: each calm session gets its own.
    let mut calm_models = Vec::new();
    for _ in 0..9 {
        calm_models.push(
            ScriptedServer::start(vec![
                Turn::answer(
                    "```codepilot\nexecute(\"main\", \"for i in 1 2 3 4 5; do sleep 0.2 & done; wait; echo fine-$((6*7))\")\n```",
                ),
                Turn::answer(DONE),
            ])
            .await
            .unwrap(),
        );
    }
    let d = TestDaemon::start(DaemonConfig::default()).await;
    let mut c = d.client().await;
    let limits = "    resources: {max_processes: 64, max_memory_mb: 256}\n";
    let mut sessions = Vec::new();
    for i in 0..10 {
        let work = d.dir.path().join(format!("work-{i}"));
        std::fs::create_dir_all(&work).unwrap();
        let model = if i == 0 {
            &runaway_model
        } else {
            &calm_models[i - 1]
        };
        sessions.push(c.start_session(agent_yaml(model, &work, limits)).await);
    }
    for session in &sessions {
        c.call("turn/start", json!({"session_id": session, "text": "work"}))
            .await
            .unwrap();
    }
    let mut outcomes: HashMap<String, Value> = HashMap::new();
    let mut events: HashMap<String, Vec<Value>> = HashMap::new();
    while outcomes.len() < sessions.len() {
        // The runaway shell's forks are refused and bash retries them with back-off: on a loaded machine its
        // command can be silent for more than the usual 10 s before the limit's event.
        let msg = c.next_within(std::time::Duration::from_secs(90)).await;
        let session = msg["params"]["session_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match msg["method"].as_str() {
            Some("event") => events
                .entry(session)
                .or_default()
                .push(msg["params"]["event"].clone()),
            Some("turn/completed" | "turn/failed") => {
                outcomes.insert(session, msg["params"].clone());
            }
            _ => {}
        }
    }
    for session in &sessions {
        assert_eq!(
            outcomes[session]["outcome"]["status"], "completed",
            "{session}: {:#}",
            outcomes[session]
        );
    }
    let results = |session: &str| -> Vec<String> {
        events[session]
            .iter()
            .filter(|e| e["type"] == "tool_result")
            .map(|e| e["result"].as_str().unwrap().to_owned())
            .collect()
    };
    let runaway = &sessions[0];
    let limited: Vec<(&str, u64)> = events[runaway]
        .iter()
        .filter(|e| e["type"] == "resource_limit")
        .map(|e| (e["kind"].as_str().unwrap(), e["limit"].as_u64().unwrap()))
        .collect();
    assert_eq!(limited, vec![("processes", 64), ("memory", 256)]);
    assert!(
        results(runaway)[2].contains("\nstill-here\n"),
        "{:#?}",
        results(runaway)
    );
    for calm in &sessions[1..] {
        let seen = results(calm);
        assert!(seen[0].contains("\nfine-42\n"), "{calm}: {seen:#?}");
        assert!(
            !events[calm].iter().any(|e| e["type"] == "resource_limit"),
            "{calm} ran into a limit"
        );
    }
}
