//! Cancellation ends the block promptly, also while a tool is pending.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use codepilot_script::FailureKind;
use pretty_assertions::assert_eq;
use tokio_util::sync::CancellationToken;

use super::FakeHost;
use super::request;

async fn run_and_cancel(
    code: &str,
    after: Duration,
) -> (Arc<FakeHost>, codepilot_script::ScriptFailure, Duration) {
    let host = Arc::new(FakeHost::default());
    let token = CancellationToken::new();
    let task = tokio::spawn(codepilot_script::run_block(
        request(code),
        host.clone(),
        token.clone(),
    ));
    tokio::time::sleep(after).await;
    let cancelled_at = Instant::now();
    token.cancel();
    let result = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("run_block must return after cancel")
        .unwrap();
    let took = cancelled_at.elapsed();
    (host, result.unwrap_err(), took)
}

#[tokio::test]
async fn cancel_while_a_tool_is_pending_drops_the_tool_future() {
    let (host, failure, took) =
        run_and_cancel("print('waiting')\nhang()\n", Duration::from_millis(300)).await;
    assert_eq!(failure.kind, FailureKind::Cancelled, "{failure:?}");
    assert!(
        host.hang_dropped.load(Ordering::SeqCst),
        "the pending tool future was dropped"
    );
    assert_eq!(host.printed(), "waiting\n");
    assert_eq!(failure.tool_calls, 1);
    eprintln!("cancel while tool pending returned after {took:?}");
}

#[tokio::test]
async fn cancel_while_spinning_ends_the_block() {
    let (host, failure, took) = run_and_cancel(
        "print('spin')\nwhile True:\n    pass\n",
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(failure.kind, FailureKind::Cancelled, "{failure:?}");
    assert_eq!(failure.exc_type, "KeyboardInterrupt");
    assert_eq!(host.printed(), "spin\n");
    eprintln!("cancel while spinning returned after {took:?}");
}

#[tokio::test]
async fn cancel_while_spinning_in_a_catch_all_loop_still_returns() {
    let (_, failure, _) = run_and_cancel(
        "while True:\n    try:\n        pass\n    except BaseException:\n        pass\n",
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(failure.kind, FailureKind::Cancelled, "{failure:?}");
    // That block's thread is still spinning (until its 600 s wall clock): the next blocks must not
    // be queued behind it. Run more than the pool keeps idle, one after the other.
    for n in 0..3 {
        let host = Arc::new(FakeHost::default());
        let next = codepilot_script::run_block(
            request(&format!("print(echo({n}))\n")),
            host.clone(),
            CancellationToken::new(),
        );
        tokio::time::timeout(Duration::from_secs(30), next)
            .await
            .expect("the next block must not wait for the stuck one")
            .unwrap();
        assert_eq!(host.printed(), format!("{n}\n"));
    }
}

#[tokio::test]
async fn an_already_cancelled_token_runs_nothing_visible() {
    let host = Arc::new(FakeHost::default());
    let token = CancellationToken::new();
    token.cancel();
    let result = codepilot_script::run_block(request("echo(1)\n"), host.clone(), token).await;
    assert_eq!(result.unwrap_err().kind, FailureKind::Cancelled);
    assert!(host.calls().is_empty());
}
