//! Fuzz target: the control-block interpreter adapter (`codepilot_script::run_block`) on arbitrary source code.
//!
//! Checks, beyond "never panics and never hangs": every block ends within its wall clock (plus a margin for the
//! adapter), a failure names an exception type, and the tools the block calls see only bound arguments.

#![no_main]

use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;

use codepilot_script::ExcKind;
use codepilot_script::Limits;
use codepilot_script::ParamSpec;
use codepilot_script::RunRequest;
use codepilot_script::ToolError;
use codepilot_script::ToolHost;
use codepilot_script::ToolSpec;
use libfuzzer_sys::fuzz_target;
use serde_json::Map;
use serde_json::Value;
use serde_json::json;

/// A host with one echo tool and one failing tool.
struct Host;

#[async_trait::async_trait]
impl ToolHost for Host {
    async fn call_tool(&self, name: &str, args: Map<String, Value>) -> Result<Value, ToolError> {
        match name {
            "echo" => {
                assert!(
                    args.contains_key("value"),
                    "bound arguments include every parameter"
                );
                Ok(args.get("value").cloned().unwrap_or(Value::Null))
            }
            _ => Err(ToolError::new(ExcKind::ValueError, "boom")),
        }
    }

    fn print(&self, _text: &str) {}
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

fn tools() -> Arc<[ToolSpec]> {
    Arc::new([
        ToolSpec::new(
            "echo",
            vec![ParamSpec::optional("value", Value::Null)],
            "Echo.",
        ),
        ToolSpec::new("fail", vec![ParamSpec::required("why")], "Fail."),
    ])
}

const WALL_CLOCK: Duration = Duration::from_millis(200);

fuzz_target!(|data: &[u8]| {
    let Ok(code) = std::str::from_utf8(data) else {
        return;
    };
    let mut req = RunRequest::new(code, tools());
    req.globals = vec![("WORK_DIR".to_owned(), json!("/work"))];
    req.limits = Limits {
        wall_clock: WALL_CLOCK,
        max_tool_calls: 20,
        max_recursion_depth: 50,
        max_memory_bytes: Some(16 * 1024 * 1024),
        max_print_bytes: 64 * 1024,
    };
    let started = Instant::now();
    let result = runtime().block_on(codepilot_script::run_block(
        req,
        Arc::new(Host),
        Default::default(),
    ));
    assert!(
        started.elapsed() < WALL_CLOCK + Duration::from_secs(2),
        "a block ran {:?} past its wall clock",
        started.elapsed()
    );
    if let Err(failure) = result {
        assert!(
            !failure.exc_type.is_empty(),
            "a failure names its exception"
        );
    }
});
