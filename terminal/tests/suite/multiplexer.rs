use std::time::Duration;

use codepilot_terminal::ControlEvent;
use codepilot_terminal::HumanInput;
use codepilot_terminal::TerminalError;
use codepilot_terminal::client;
use pretty_assertions::assert_eq;
use tokio::io::AsyncReadExt as _;
use tokio::io::AsyncWriteExt as _;

use super::helpers::T;
use super::helpers::manager;
use super::helpers::read_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_see_the_same_bytes_and_both_can_type() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    t.execute("echo before-attach", T).await.unwrap();
    let mut one = client::connect(m.socket_dir(), "main", m.token())
        .await
        .unwrap();
    let mut two = client::connect(m.socket_dir(), "main", m.token())
        .await
        .unwrap();
    assert_eq!(
        (one.hello.pid, one.hello.cols, one.hello.rows),
        (t.pid(), 220, 50)
    );
    // The scrollback replay shows what happened before attaching.
    read_until(&mut one.reader, "before-attach").await;
    read_until(&mut two.reader, "before-attach").await;
    t.execute("echo agent-$((40+2))", T).await.unwrap();
    read_until(&mut one.reader, "agent-42").await;
    read_until(&mut two.reader, "agent-42").await;
    one.writer
        .write_all(b"echo from-$((1+0))-one\r")
        .await
        .unwrap();
    read_until(&mut two.reader, "from-1-one").await;
    two.writer
        .write_all(b"echo from-$((1+1))-two\r")
        .await
        .unwrap();
    read_until(&mut one.reader, "from-2-two").await;
    // The agent's next command still gets exactly its own output.
    let r = t.execute("echo agent-again", T).await.unwrap();
    assert_eq!(
        (r.command_index, r.output.as_str()),
        (3, "agent-again"),
        "{r:?}"
    );
    assert_eq!(
        m.take_human_input(),
        [
            HumanInput {
                terminal: "main".into(),
                command: "echo from-$((1+0))-one".into()
            },
            HumanInput {
                terminal: "main".into(),
                command: "echo from-$((1+1))-two".into()
            },
        ]
    );
    assert_eq!(m.take_human_input(), []);
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_human_line_does_not_corrupt_the_agent_command() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    t.execute("true", T).await.unwrap();
    let mut c = client::connect(m.socket_dir(), "main", m.token())
        .await
        .unwrap();
    c.writer.write_all(b"echo half-typed").await.unwrap();
    read_until(&mut c.reader, "half-typed").await;
    let r = t.execute("echo agent-line", T).await.unwrap();
    assert_eq!(
        (r.exit_code, r.output.as_str()),
        (Some(0), "agent-line"),
        "{r:?}"
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_blocks_nothing_and_is_dropped() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    let mut stuck = client::connect(m.socket_dir(), "main", m.token())
        .await
        .unwrap();
    let mut healthy = client::connect(m.socket_dir(), "main", m.token())
        .await
        .unwrap();
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        let mut total = 0usize;
        while let Ok(n) = healthy.reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    let r = t
        .execute(
            "head -c 30000000 /dev/zero | tr '\\0' x; echo",
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(0));
    let r = t.execute("echo still-fast", T).await.unwrap();
    assert_eq!(r.output, "still-fast");
    // The stuck client was disconnected: reading it now ends with EOF.
    let mut buf = vec![0u8; 65536];
    let mut seen = Vec::new();
    loop {
        let n = tokio::time::timeout(T, stuck.reader.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.len() < 30_000_000, "the stuck client got everything");
    m.shutdown().await;
    let total = drain.await.unwrap();
    assert!(total >= 1_000_000, "healthy client got only {total} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    m.create("main").await.unwrap();
    let Err(err) = client::connect(m.socket_dir(), "main", "not-the-token").await else {
        panic!("accepted a wrong token");
    };
    assert!(matches!(err, TerminalError::Protocol(_)), "{err}");
    insta::assert_snapshot!("wrong_token", err.to_string());
    assert!(
        client::control_events(m.socket_dir(), "nope")
            .await
            .is_err()
    );
    let token = std::fs::read_to_string(m.socket_dir().join("token")).unwrap();
    assert_eq!(token, m.token());
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_socket_announces_terminals_and_resizes() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let main = m.create("main").await.unwrap();
    let mut events = client::control_events(m.socket_dir(), m.token())
        .await
        .unwrap();
    let next = async |events: &mut client::ControlEvents| {
        tokio::time::timeout(T, events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        next(&mut events).await,
        ControlEvent::TerminalCreated {
            terminal: "main".into(),
            pid: main.pid(),
            socket: m.socket_dir().join("main.sock"),
        }
    );
    let second = m.create("second").await.unwrap();
    assert!(
        matches!(next(&mut events).await, ControlEvent::TerminalCreated { terminal, .. } if terminal == "second")
    );
    m.terminate("second").await.unwrap();
    assert_eq!(
        next(&mut events).await,
        ControlEvent::TerminalExited {
            terminal: "second".into(),
            pid: second.pid(),
            exit_code: 137
        }
    );
    events.resize("main", 100, 30).await.unwrap();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let r = main.execute("stty size", T).await.unwrap();
        if r.output == "30 100" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    events.resize("ghost", 10, 10).await.unwrap();
    assert!(
        matches!(next(&mut events).await, ControlEvent::Error { message } if message.contains("ghost"))
    );
    // A size the screen model could not hold is refused, and the terminal keeps its size.
    events.resize("main", 65535, 65535).await.unwrap();
    assert!(
        matches!(next(&mut events).await, ControlEvent::Error { message } if message.contains("columns must be 1–1000"))
    );
    assert_eq!(main.execute("stty size", T).await.unwrap().output, "30 100");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_control_line_is_cut_off() {
    use tokio::io::AsyncBufReadExt;
    use tokio::io::AsyncWriteExt;

    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let stream = tokio::net::UnixStream::connect(m.socket_dir().join("control.sock"))
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{}\n", m.token()).as_bytes())
        .await
        .unwrap();
    let mut lines = tokio::io::BufReader::new(read).lines();
    let ok = tokio::time::timeout(T, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.as_deref(), Some("{\"ok\":true}"));
    // 1 MiB without a newline: the server must not buffer it all; it answers and hangs up.
    let junk = vec![b'x'; 1024 * 1024];
    let _ = write.write_all(&junk).await;
    let mut saw_error = false;
    while let Ok(Ok(Some(line))) = tokio::time::timeout(T, lines.next_line()).await {
        saw_error |= line.contains("longer than 4096 bytes");
    }
    assert!(
        saw_error,
        "the server explains why it closes the connection"
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_waits_for_a_command_a_human_started() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let t = m.create("main").await.unwrap();
    t.execute("true", T).await.unwrap();
    let mut c = client::connect(m.socket_dir(), "main", m.token())
        .await
        .unwrap();
    c.writer
        .write_all(b"sleep 1; echo human-done\r")
        .await
        .unwrap();
    read_until(&mut c.reader, "sleep 1; echo human-done\r\n").await;
    let r = t.execute("echo agent-after", T).await.unwrap();
    assert_eq!(
        (r.command_index, r.output.as_str()),
        (2, "agent-after"),
        "{r:?}"
    );
    read_until(&mut c.reader, "agent-after").await;
    assert_eq!(
        m.take_human_input(),
        [HumanInput {
            terminal: "main".into(),
            command: "sleep 1; echo human-done".into()
        }]
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_to_an_unknown_terminal_fails_cleanly() {
    let work = tempfile::tempdir().unwrap();
    let m = manager(work.path()).await;
    let err = client::attach_interactive(m.socket_dir(), "ghost")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ghost.sock"), "{err}");
    let err = client::attach_interactive(&work.path().join("nowhere"), "main")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("token file"), "{err}");
    m.shutdown().await;
}
