//! print() output reaches the host in true order relative to tool calls.

use pretty_assertions::assert_eq;
use serde_json::json;

use super::Seen;
use super::run;
use super::run_err;

#[tokio::test]
async fn prints_and_tool_calls_interleave_in_true_order() {
    let (host, result) = run(
        "print('before')\nprint('a', 1, sep='-', end='|')\necho('x')\nprint('between')\necho('y')\nprint('after')\n",
    )
    .await;
    result.unwrap();
    assert_eq!(
        host.seen(),
        vec![
            Seen::Print("before\na-1|".to_owned()),
            Seen::Call("echo".to_owned(), json!({"value": "x"})),
            Seen::Print("between\n".to_owned()),
            Seen::Call("echo".to_owned(), json!({"value": "y"})),
            Seen::Print("after\n".to_owned()),
        ]
    );
}

#[tokio::test]
async fn prints_before_a_failure_are_delivered() {
    let (host, failure) = run_err("print('one')\necho(1)\nprint('two')\n1 / 0\n").await;
    assert_eq!(failure.exc_type, "ZeroDivisionError");
    assert_eq!(failure.line, Some(4));
    assert_eq!(
        host.seen(),
        vec![
            Seen::Print("one\n".to_owned()),
            Seen::Call("echo".to_owned(), json!({"value": 1})),
            Seen::Print("two\n".to_owned()),
        ]
    );
}

#[tokio::test]
async fn print_volume_is_capped() {
    let mut req = super::request("while True:\n    print('x' * 1000)\n");
    req.limits.max_print_bytes = 100_000;
    let (host, result) = super::run_req(req).await;
    let failure = result.unwrap_err();
    assert_eq!(failure.exc_type, "MemoryError");
    assert!(
        failure
            .message
            .starts_with("print output limit of 100000 bytes exceeded"),
        "{}",
        failure.message
    );
    let printed = host.printed().len();
    assert!((99_000..=100_000).contains(&printed), "{printed}");
}

#[tokio::test]
async fn prints_arrive_while_the_block_is_still_computing() {
    let host = std::sync::Arc::new(super::FakeHost::default());
    let token = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(codepilot_script::run_block(
        super::request("print('tick')\nwhile True:\n    pass\n"),
        host.clone(),
        token.clone(),
    ));
    let mut seen_live = false;
    for _ in 0..1000 {
        if host.printed() == "tick\n" {
            seen_live = !task.is_finished();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    token.cancel();
    let failure = task.await.unwrap().unwrap_err();
    assert!(seen_live, "the print was delivered before the block ended");
    assert_eq!(failure.kind, codepilot_script::FailureKind::Cancelled);
}
