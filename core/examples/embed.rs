//! Embedding CodePilot in a host program: build a runtime from code, follow its events, answer its permission
//! requests, add a custom tool, and run a task.
//!
//! Run with: `cargo run -p codepilot --example embed -- [agent.yaml] "task"`
//! Without arguments it runs offline on the scripted provider against a temporary workspace.

use std::sync::Arc;

use codepilot::AgentFile;
use codepilot::AsyncRuntime;
use codepilot::Event;
use codepilot::FnTool;
use codepilot::Outcome;
use codepilot::PermissionDecision;
use codepilot::PermissionRequest;
use codepilot::StoreConfig;
use codepilot::ToolError;
use codepilot::llm::ScriptedProvider;

#[derive(serde::Deserialize)]
struct TicketArgs {
    id: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let work = tempfile::tempdir()?;

    let (agent, task, scripted) = match args.as_slice() {
        [config, task] => (AgentFile::load(config.as_ref())?, task.clone(), None),
        _ => {
            let yaml = format!(
                "name: Embedded\nmodel: {{provider: scripted, name: demo}}\nruntime: {{work_dir: {}}}\n\
                 tools: [{{name: read_file}}, {{name: write_file, config: {{require_permission: true}}}}]\n",
                serde_json::to_string(&work.path().display().to_string())?
            );
            let answers = vec![
                "Looking up the ticket.\n\n```codepilot\nt = ticket(7)\nwrite_file(\"TICKET.md\")\n```\n\n\
                 ```markdown filename=TICKET.md\n# Ticket 7\nFix the login timeout.\n```\n"
                    .to_owned(),
                "```completion\nWrote TICKET.md for ticket 7.\n```\n".to_owned(),
            ];
            (
                AgentFile::from_yaml_str(&yaml, None)?,
                "Summarise ticket 7 into TICKET.md".to_owned(),
                Some(answers),
            )
        }
    };

    let ticket = FnTool::new(
        "ticket",
        "Fetch a ticket from the tracker by number. Returns {id, title}.",
    )
    .param("id")
    .handler(|a: TicketArgs| async move {
        if a.id == 0 {
            return Err(ToolError::value("ticket ids start at 1"));
        }
        Ok(serde_json::json!({"id": a.id, "title": "Fix the login timeout"}))
    });

    let mut builder = AsyncRuntime::builder(agent)
        .session(StoreConfig::Memory)
        .tool(ticket)
        .permission_handler(|req: PermissionRequest| async move {
            eprintln!("[host] approving: {}", req.description);
            PermissionDecision::Allow
        });
    if let Some(answers) = scripted {
        builder = builder.provider(Arc::new(ScriptedProvider::new(answers)));
    }
    let rt = builder.build().await?;

    rt.on_event(|e| match e {
        Event::Stream(s) => eprint!("{}", s.text),
        Event::ToolCall(c) => eprintln!("\n[host] tool: {}", c.label),
        _ => {}
    });

    let outcome = rt.run(&task).await?;
    rt.close().await?;
    match outcome {
        Outcome::Completed { summary, steps, .. } => {
            println!("completed in {steps} step(s): {summary}");
            Ok(())
        }
        other => anyhow::bail!("the task did not complete: {other:?}"),
    }
}
