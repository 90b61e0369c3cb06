#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use pretty_assertions::assert_eq;
use serde_json::Map;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::ToolHost;
use super::run_with;
use crate::error::FailureKind;
use crate::error::ScriptFailure;
use crate::interp::Bridge;
use crate::interp::ControlInterpreter;
use crate::interp::Program;
use crate::interp::monty_impl::MontyInterpreter;
use crate::spec::RunRequest;
use codepilot_protocol::ToolError;

/// An interpreter that prints, then panics: stands in for a bug inside monty.
#[derive(Clone, Copy)]
struct Panicking;

impl ControlInterpreter for Panicking {
    fn run(&self, _program: &Program<'_>, bridge: &mut dyn Bridge) -> Result<(), ScriptFailure> {
        bridge.print("before the crash\n");
        panic!("index out of bounds in the VM");
    }
}

#[derive(Default)]
struct Host {
    printed: std::sync::Mutex<String>,
}

#[async_trait::async_trait]
impl ToolHost for Host {
    async fn call_tool(&self, _name: &str, _args: Map<String, Value>) -> Result<Value, ToolError> {
        Ok(Value::Null)
    }

    fn print(&self, text: &str) {
        self.printed.lock().unwrap().push_str(text);
    }
}

#[tokio::test]
async fn an_interpreter_panic_becomes_an_interpreter_crash() {
    let host = Arc::new(Host::default());
    let req = RunRequest::new("pass", Arc::new([]));
    let failure = run_with(&Panicking, req, host.clone(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::InterpreterCrash);
    assert_eq!(failure.exc_type, "SystemError");
    assert!(
        failure.message.contains("index out of bounds in the VM"),
        "{}",
        failure.message
    );
    assert_eq!(*host.printed.lock().unwrap(), "before the crash\n");
}

#[tokio::test]
async fn a_block_after_an_interpreter_panic_runs_normally() {
    let host = Arc::new(Host::default());
    let req = RunRequest::new("pass", Arc::new([]));
    let crashed = run_with(&Panicking, req, host.clone(), CancellationToken::new()).await;
    assert_eq!(crashed.unwrap_err().kind, FailureKind::InterpreterCrash);
    let req = RunRequest::new("print('after')", Arc::new([]));
    run_with(
        &MontyInterpreter,
        req,
        host.clone(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(*host.printed.lock().unwrap(), "before the crash\nafter\n");
}
