//! Wall clock (tool time included), tool-call cap, recursion, memory.

use std::time::Duration;
use std::time::Instant;

use codepilot_script::FailureKind;
use pretty_assertions::assert_eq;

use super::request;
use super::run_err;
use super::run_req;

#[tokio::test]
async fn wall_clock_stops_a_busy_loop_uncatchably() {
    let mut req = request(
        "print('start')\nwhile True:\n    try:\n        pass\n    except BaseException:\n        pass\n",
    );
    req.limits.wall_clock = Duration::from_millis(500);
    let (host, result) = run_req(req).await;
    let failure = result.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure:?}");
    assert_eq!(failure.exc_type, "TimeoutError");
    // monty raises its own time limit from the dispatch loop without a traceback, so no line here.
    assert_eq!(failure.line, None, "{failure:?}");
    assert_eq!(host.printed(), "start\n");
    insta::assert_snapshot!("timeout_message", failure.message);
}

#[tokio::test]
async fn wall_clock_counts_time_spent_in_tools() {
    // Each nap is well under the limit; their sum is not. monty's own clock alone would never fire.
    let mut req = request("for i in range(10):\n    nap(0.3)\n");
    req.limits.wall_clock = Duration::from_secs(1);
    let (host, result) = run_req(req).await;
    let failure = result.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure:?}");
    assert_eq!(failure.line, Some(2), "{failure:?}");
    let calls = host.calls().len();
    assert!((2..=4).contains(&calls), "calls: {calls}");
}

#[tokio::test]
async fn wall_clock_interrupts_a_pending_tool() {
    let mut req = request("print('x')\nnap(3600)\n");
    req.limits.wall_clock = Duration::from_millis(300);
    let started = Instant::now();
    let (_, result) = run_req(req).await;
    let failure = result.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Timeout);
    assert_eq!(failure.line, Some(2));
    assert_eq!(failure.line_text.as_deref(), Some("nap(3600)"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the tool's hour was not waited out"
    );
}

#[tokio::test]
async fn tool_call_cap_stops_a_long_loop_uncatchably() {
    let (host, failure) = run_err(
        "for i in range(10000):\n    try:\n        echo(i)\n    except BaseException:\n        pass\n",
    )
    .await;
    assert_eq!(failure.kind, FailureKind::ToolCallLimit, "{failure:?}");
    assert_eq!(failure.tool_calls, 200);
    assert_eq!(host.calls().len(), 200);
    assert_eq!(failure.line, Some(3));
    insta::assert_snapshot!("tool_call_limit", super::render(&failure));
}

#[tokio::test]
async fn recursion_is_limited() {
    let (_, failure) = run_err("def f(n):\n    return f(n + 1)\nf(0)\n").await;
    assert_eq!(failure.kind, FailureKind::Exception);
    assert_eq!(failure.exc_type, "RecursionError");
    assert_eq!(failure.line, Some(2));
    // The limit is configurable: 50 levels fit the default of 200, not a limit of 20.
    let code = "def f(n):\n    return 0 if n == 0 else f(n - 1)\nprint(f(50))\n";
    assert_eq!(super::run_ok(code).await, "0\n");
    let mut req = request(code);
    req.limits.max_recursion_depth = 20;
    let (_, result) = run_req(req).await;
    assert_eq!(result.unwrap_err().exc_type, "RecursionError");
}

#[tokio::test]
async fn huge_allocation_raises_memory_error_instead_of_taking_the_process_down() {
    let (_, failure) = run_err("s = 'a' * 10**9\nprint(len(s))\n").await;
    assert_eq!(failure.kind, FailureKind::Exception);
    assert_eq!(failure.exc_type, "MemoryError");
    assert_eq!(failure.line, Some(1));
    insta::assert_snapshot!("huge_allocation", super::render(&failure));
    let (_, failure) = run_err("x = [0] * 10**9\n").await;
    assert_eq!(failure.exc_type, "MemoryError");
}
