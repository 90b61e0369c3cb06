//! `codepilot demo`: a scripted model fixes a failing test in a temporary copy of a bundled project.
//!
//! Everything but the model is real: the files, the edits, the terminal and the test run. The model's answers are
//! canned (`cli/demo/answers.md`), and the demo says so.

use std::sync::Arc;

use anyhow::Context;
use codepilot::AgentFile;
use codepilot::AsyncRuntime;

use crate::Exit;
use crate::Failure;
use crate::output;

const PROJECT: &[(&str, &str)] = &[
    ("calc.py", include_str!("../demo/project/calc.py")),
    ("test_calc.py", include_str!("../demo/project/test_calc.py")),
];
const ANSWERS: &str = include_str!("../demo/answers.md");
const TASK: &str = "The test suite fails. Find the bug and fix it, then confirm the tests pass.";

pub(crate) async fn run(keep: bool, json: bool) -> Result<Exit, Failure> {
    let dir = tempfile::Builder::new()
        .prefix("codepilot-demo-")
        .tempdir()
        .context("creating a temporary directory for the demo")?;
    let work = dir.path().join("project");
    std::fs::create_dir_all(&work).context("creating the demo project")?;
    for (name, text) in PROJECT {
        std::fs::write(work.join(name), text)
            .with_context(|| format!("writing demo file {name}"))?;
    }
    let answers = dir.path().join("answers.md");
    std::fs::write(&answers, ANSWERS).context("writing the demo script")?;
    let yaml = format!(
        "agent:\n  name: CodePilot demo\n  model:\n    provider: scripted\n    name: demo-script\n    script: {}\n  \
         runtime:\n    work_dir: {}\n    max_steps: 8\n",
        serde_json::to_string(&answers.display().to_string())?,
        serde_json::to_string(&work.display().to_string())?,
    );
    let agent = AgentFile::from_yaml_str(&yaml, Some(&dir.path().join("agent.yaml")))?;

    if !json {
        output::err_line(
            "CodePilot demo — the model here is SCRIPTED: its answers are canned, so no API key is needed.\n\
             The files, edits, terminal and test run are real. Project copied to:",
        );
        output::err_line(&format!("  {}", work.display()));
        output::err_line(&format!("Task: {TASK}\n"));
    }
    let out = crate::make_output(json);
    // The demo's checkpoints and code index go with its project, not into the user's home.
    let rt = AsyncRuntime::builder(agent)
        .checkpoint_dir(dir.path().join("checkpoints"))
        .index_dir(dir.path().join("index"))
        .build()
        .await?;
    let sink = Arc::clone(&out);
    out.starting_after(rt.last_event_seq());
    rt.on_envelope(move |e| sink.on_event(e));
    let mut signals = crate::signals::Signals::new();
    let exit = crate::run_task(
        &rt,
        TASK,
        &codepilot::RunOptions::default(),
        &out,
        &mut signals,
    )
    .await
    .map(|(exit, _)| exit);
    rt.close().await?;
    if keep {
        let path = dir.keep();
        if !json {
            output::err_line(&format!(
                "kept the demo project at {}",
                path.join("project").display()
            ));
        }
    }
    exit
}
