//! Host control: permissions, ask_user, custom tools.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use codepilot::FnTool;
use codepilot::PermissionDecision;
use codepilot::PermissionRequest;
use codepilot::ToolError;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use codepilot_testkit::temp_workspace;
use pretty_assertions::assert_eq;

use super::support::FILE_TOOLS;
use super::support::Recorder;
use super::support::Wire;
use super::support::agent;
use super::support::builder;
use super::support::last_user_text;

const DONE: &str = "```completion\ndone\n```";
const GATED: &str = "  tools:\n    - {name: execute, enabled: false}\n    - {name: write_file, config: {require_permission: true}}\n";
const WRITE: &str =
    "```codepilot\nwrite_file(\"out.txt\")\n```\n\n```text filename=out.txt\nhi\n```";

async fn server(answers: &[&str]) -> ScriptedServer {
    ScriptedServer::start(answers.iter().map(|a| Turn::answer(*a)).collect())
        .await
        .unwrap()
}

#[tokio::test]
async fn gated_tools_are_denied_without_a_handler() {
    let dir = temp_workspace(&[]);
    let srv = server(&[WRITE, DONE]).await;
    let rt = builder(agent(&srv, Wire::OpenAi, dir.path(), true, GATED))
        .build()
        .await
        .unwrap();
    let rec = Recorder::attach(&rt);
    rt.run("write").await.unwrap();
    let obs = last_user_text(&srv.requests()[1].body);
    assert!(obs.contains("Permission denied"), "{obs}");
    assert!(obs.contains("no permission handler"), "{obs}");
    assert!(!dir.path().join("out.txt").exists());
    assert!(rec.events().iter().any(|e| matches!(e, codepilot::Event::PermissionRequest(p) if p.description == "Write 'out.txt' (full file)")));
}

#[tokio::test]
async fn a_permission_handler_decides() {
    for allow in [true, false] {
        let dir = temp_workspace(&[]);
        let srv = server(&[WRITE, DONE]).await;
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&asked);
        let rt = builder(agent(&srv, Wire::OpenAi, dir.path(), true, GATED))
            .permission_handler(move |req: PermissionRequest| {
                counter.fetch_add(1, Ordering::SeqCst);
                assert_eq!(req.tool, "write_file");
                async move {
                    if allow {
                        PermissionDecision::Allow
                    } else {
                        PermissionDecision::Deny {
                            reason: Some("not today".to_owned()),
                        }
                    }
                }
            })
            .build()
            .await
            .unwrap();
        rt.run("write").await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!(dir.path().join("out.txt").exists(), allow);
        if !allow {
            let obs = last_user_text(&srv.requests()[1].body);
            assert!(obs.contains("not today"), "{obs}");
        }
    }
}

#[tokio::test]
async fn a_refused_write_still_takes_its_payload() {
    // The first write is denied, the second allowed: the second must get its own content, not the first's.
    let two = "```codepilot\ntry:\n    write_file(\"first.txt\")\nexcept PermissionError:\n    pass\n\
               write_file(\"second.txt\")\n```\n\n```text filename=first.txt\nFIRST\n```\n\n\
               ```text filename=second.txt\nSECOND\n```";
    let dir = temp_workspace(&[]);
    let srv = server(&[two, DONE]).await;
    let rt = builder(agent(&srv, Wire::OpenAi, dir.path(), true, GATED))
        .permission_handler(|req: PermissionRequest| async move {
            if req.description.contains("first.txt") {
                PermissionDecision::Deny { reason: None }
            } else {
                PermissionDecision::Allow
            }
        })
        .build()
        .await
        .unwrap();
    rt.run("write both").await.unwrap();
    assert!(!dir.path().join("first.txt").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("second.txt")).unwrap(),
        "SECOND\n"
    );
    let obs = last_user_text(&srv.requests()[1].body);
    assert!(!obs.contains("payload block(s) were not used"), "{obs}");
}

#[tokio::test]
async fn ask_user_goes_through_the_handler() {
    let dir = temp_workspace(&[]);
    let ask = "```codepilot\nname = ask_user(\"Which name?\")\nprint(\"got\", name)\n```";
    let srv = server(&[ask, DONE]).await;
    let rt = builder(agent(&srv, Wire::OpenAi, dir.path(), true, FILE_TOOLS))
        .ask_user_handler(|q: String| async move { Some(format!("answer to {q}")) })
        .build()
        .await
        .unwrap();
    rt.run("ask").await.unwrap();
    let obs = last_user_text(&srv.requests()[1].body);
    assert!(
        obs.contains("[ask_user] Q: Which name?\n[ask_user] A: answer to Which name?"),
        "{obs}"
    );
    assert!(obs.contains("got answer to Which name?"), "{obs}");
}

#[tokio::test]
async fn ask_user_without_a_handler_says_so() {
    let dir = temp_workspace(&[]);
    let ask = "```codepilot\nask_user(\"Which name?\")\n```";
    let srv = server(&[ask, DONE]).await;
    let rt = builder(agent(&srv, Wire::OpenAi, dir.path(), true, FILE_TOOLS))
        .build()
        .await
        .unwrap();
    rt.run("ask").await.unwrap();
    let obs = last_user_text(&srv.requests()[1].body);
    assert!(obs.contains("no ask-user handler"), "{obs}");
}

#[derive(serde::Deserialize)]
struct GreetArgs {
    name: String,
    times: u32,
}

fn greet() -> FnTool {
    FnTool::new("greet", "Greet someone. Returns the greeting.")
        .param("name")
        .param_default("times", 1)
        .handler(|a: GreetArgs| async move {
            if a.times == 0 {
                return Err(ToolError::value("times must be at least 1"));
            }
            Ok(vec![format!("hello {}", a.name); a.times as usize].join(" "))
        })
}

#[tokio::test]
async fn custom_tools_are_callable_and_their_results_visible() {
    let dir = temp_workspace(&[]);
    let call = "```codepilot\nr = greet(\"ada\", times=2)\ntry:\n    greet(\"bob\", times=0)\nexcept ValueError as e:\n    print(\"caught\", e)\n```";
    let srv = server(&[call, DONE]).await;
    let rt = builder(agent(&srv, Wire::OpenAi, dir.path(), true, FILE_TOOLS))
        .tool(greet())
        .build()
        .await
        .unwrap();
    rt.run("greet").await.unwrap();
    let system = super::support::system_text(&srv.requests()[0].body);
    assert!(system.contains("• greet(name, times=1)"), "{system}");
    let obs = last_user_text(&srv.requests()[1].body);
    assert!(obs.contains("[greet] hello ada hello ada"), "{obs}");
    assert!(
        obs.contains("[greet] ERROR: times must be at least 1"),
        "{obs}"
    );
    assert!(obs.contains("caught times must be at least 1"), "{obs}");
}

#[tokio::test]
async fn registering_a_tool_after_build_and_bad_names() {
    let dir = temp_workspace(&[]);
    let srv = server(&[DONE]).await;
    let rt = builder(agent(&srv, Wire::OpenAi, dir.path(), true, FILE_TOOLS))
        .build()
        .await
        .unwrap();
    rt.register_tool(greet()).unwrap();
    let dup = rt.register_tool(greet()).unwrap_err();
    assert!(dup.to_string().contains("already registered"), "{dup}");
    let bad = rt.register_tool(FnTool::new("2bad", "x")).unwrap_err();
    assert!(bad.to_string().contains("not usable"), "{bad}");
    rt.register_tool(
        FnTool::new("lookup", "x")
            .param("id")
            .param_default("type", "a"),
    )
    .unwrap();
    let builtin = rt.register_tool(FnTool::new("len", "x")).unwrap_err();
    assert!(builtin.to_string().contains("builtin"), "{builtin}");
    rt.run("x").await.unwrap();
    assert!(super::support::system_text(&srv.requests()[0].body).contains("• greet("));
}

/// A handler that is registered but has nobody to decide right now (a binding whose users add deciders later).
struct Absent;

impl codepilot::PermissionHandler for Absent {
    fn decide<'a>(
        &'a self,
        _request: &'a PermissionRequest,
    ) -> codepilot::BoxFuture<'a, PermissionDecision> {
        Box::pin(async { panic!("an unavailable handler is never asked") })
    }

    fn available(&self) -> bool {
        false
    }
}

impl codepilot::AskUserHandler for Absent {
    fn ask<'a>(&'a self, _question: &'a str) -> codepilot::BoxFuture<'a, Option<String>> {
        Box::pin(async { panic!("an unavailable handler is never asked") })
    }

    fn available(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn unavailable_handlers_refuse_as_if_none_were_registered() {
    let dir = temp_workspace(&[]);
    let ask = "```codepilot\ntry:\n    ask_user(\"which?\")\nexcept RuntimeError as e:\n    print(\"caught\", e)\n```";
    let srv = server(&[WRITE, ask, DONE]).await;
    let rt = builder(agent(&srv, Wire::OpenAi, dir.path(), true, GATED))
        .permission_handler(Absent)
        .ask_user_handler(Absent)
        .build()
        .await
        .unwrap();
    rt.run("write").await.unwrap();
    let obs = last_user_text(&srv.requests()[1].body);
    assert!(obs.contains("no permission handler"), "{obs}");
    assert!(!dir.path().join("out.txt").exists());
    let obs = last_user_text(&srv.requests()[2].body);
    assert!(obs.contains("caught nobody can answer"), "{obs}");
}

#[tokio::test]
async fn replace_tool_swaps_builtins_and_custom_tools() {
    let dir = temp_workspace(&[]);
    let call = "```codepilot\nprint(greet(\"ann\"), read_file(\"x\"))\n```";
    let srv = server(&[call, DONE]).await;
    let rt = builder(agent(&srv, Wire::OpenAi, dir.path(), true, FILE_TOOLS))
        .build()
        .await
        .unwrap();
    assert!(!rt.replace_tool(greet()).unwrap(), "nothing to replace yet");
    let shout =
        FnTool::new("greet", "Shouts.")
            .param("name")
            .handler(|a: serde_json::Value| async move {
                Ok::<_, ToolError>(format!("HI {}", a["name"].as_str().unwrap_or_default()))
            });
    assert!(rt.replace_tool(shout).unwrap());
    let stub = FnTool::new("read_file", "Always the same.")
        .param("path")
        .handler(|_: serde_json::Value| async move { Ok::<_, ToolError>("stub") });
    assert!(rt.replace_tool(stub).unwrap(), "a built-in is replaced too");
    rt.run("x").await.unwrap();
    let system = super::support::system_text(&srv.requests()[0].body);
    assert_eq!(system.matches("• greet(").count(), 1, "{system}");
    assert!(system.contains("Shouts."), "{system}");
    let obs = last_user_text(&srv.requests()[1].body);
    assert!(obs.contains("HI ann stub"), "{obs}");
}
