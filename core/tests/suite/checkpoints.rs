//! Checkpoints in the step loop (SPEC §19): a checkpoint that cannot be taken never stops the turn, files left out
//! are named, and the runtime API lists and rewinds.

use codepilot::Event;
use codepilot::Outcome;
use codepilot::RewindScope;
use codepilot::events::ErrorKind;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;

use super::support::FILE_TOOLS;
use super::support::Recorder;
use super::support::Wire;
use super::support::agent;
use super::support::builder;

const WRITE_A: &str = "```codepilot\nwrite_file(\"a.txt\")\n```\n\n```text filename=a.txt\nA\n```";
const DONE: &str = "```completion\ndone\n```";

fn checkpoint_errors(rec: &Recorder) -> Vec<String> {
    rec.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::RuntimeError(r) if r.kind == ErrorKind::Checkpoint => Some(r.message),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_that_cannot_be_taken_is_reported_and_the_turn_runs() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    // A file where the checkpoint folder should be.
    let blocked = dir.path().join("not-a-folder");
    std::fs::write(&blocked, "").unwrap();
    let server = ScriptedServer::start(vec![Turn::answer(WRITE_A), Turn::answer(DONE)])
        .await
        .unwrap();
    let rt = builder(agent(&server, Wire::OpenAi, &work, true, FILE_TOOLS))
        .checkpoint_dir(blocked.join("checkpoints"))
        .build()
        .await
        .unwrap();
    let rec = Recorder::attach(&rt);
    let outcome = rt.run("write a").await.unwrap();
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    assert!(work.join("a.txt").exists());
    let errors = checkpoint_errors(&rec);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("no checkpoint before turn 1: ")
            && errors[0].ends_with("; the turn runs without one"),
        "{}",
        errors[0]
    );
    rt.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_over_the_cap_are_named_and_survive_a_rewind() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("big.bin"), vec![1_u8; 2 << 20]).unwrap();
    let server = ScriptedServer::start(vec![
        Turn::answer(WRITE_A),
        Turn::answer(DONE),
        Turn::answer(DONE),
    ])
    .await
    .unwrap();
    let extra = format!("    checkpoint_max_file_mb: 1\n{FILE_TOOLS}");
    let rt = builder(agent(&server, Wire::OpenAi, &work, true, &extra))
        .build()
        .await
        .unwrap();
    let rec = Recorder::attach(&rt);
    rt.run("write a").await.unwrap();
    rt.run("again").await.unwrap();
    let errors = checkpoint_errors(&rec);
    assert_eq!(errors.len(), 1, "named once, not at every turn: {errors:?}");
    assert!(
        errors[0].contains("left out big.bin (over 1 MiB, runtime.checkpoint_max_file_mb"),
        "{}",
        errors[0]
    );
    let listed = rt.checkpoints().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].skipped, ["big.bin"]);
    let done = rt.rewind("1", RewindScope::Files).await.unwrap();
    assert_eq!((done.files_restored, done.files_deleted), (0, 1));
    assert!(!work.join("a.txt").exists());
    assert!(
        work.join("big.bin").exists(),
        "a file left out is left alone"
    );
    assert_eq!(rt.history().len(), 6, "files only: the conversation stays");
    rt.close().await.unwrap();
}
