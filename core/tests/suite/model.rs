//! The agent file's `model:` settings reach the provider the runtime builds.

use codepilot::Event;
use codepilot::Outcome;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use codepilot_testkit::temp_workspace;

use super::support::FILE_TOOLS;
use super::support::Recorder;
use super::support::Wire;
use super::support::agent;
use super::support::builder;

#[tokio::test]
async fn model_timeout_s_bounds_the_wait_for_the_server() {
    let dir = temp_workspace(&[]);
    // The first answer comes long after the configured second, so that attempt gives up and is retried; the
    // retry is answered at once.
    let server = ScriptedServer::start(vec![
        Turn::delay(30_000, Turn::answer("```completion\nlate\n```")),
        Turn::answer("```completion\nok\n```"),
    ])
    .await
    .unwrap();
    let mut agent = agent(&server, Wire::OpenAi, dir.path(), true, FILE_TOOLS);
    agent.model.timeout_s = 1;
    let rt = builder(agent).build().await.unwrap();
    let rec = Recorder::attach(&rt);
    let outcome = rt.run("go").await.unwrap();
    assert!(
        matches!(&outcome, Outcome::Completed { summary, .. } if summary.contains("ok")),
        "{outcome:?}"
    );
    let reasons: Vec<String> = rec
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::ModelRetry(r) => Some(r.reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("no response within 1 s"), "{reasons:?}");
}
