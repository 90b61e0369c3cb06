//! The multiplexer: per-terminal Unix sockets humans (and hosts) attach to, and the control socket.
//!
//! # Wire protocol
//! Terminal socket `<dir>/<name>.sock`:
//! 1. the client sends the token and `\n` (within 10 s);
//! 2. on a wrong token the server sends `{"error":"…"}\n` and closes;
//! 3. otherwise it sends `{"pid":P,"cols":C,"rows":R}\n`, then the scrollback (the last
//!    `scrollback_bytes` raw bytes), then live raw PTY bytes; bytes from the client go to the
//!    PTY as typed. Any number of clients may attach. Each client has its own queue; a client
//!    that falls more than 4 MiB behind, or blocks a write for 30 s, is sent a notice line
//!    (best effort) and dropped; it never slows the shell or other clients.
//!
//! Control socket `<dir>/control.sock`: the same token line, then `{"ok":true}\n`, then one JSON
//! object per line: a `terminal_created` for every live terminal, then live `terminal_created` /
//! `terminal_exited` events. The client may send `{"type":"resize","terminal":T,"cols":C,"rows":R}`
//! lines; failures come back as `{"type":"error","message":…}`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;
use tokio::io::AsyncReadExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::io::BufReader;
use tokio::net::UnixListener;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

pub use crate::control::ControlEvent;
pub use crate::control::ControlRequest;
use crate::registry::Registry;
use crate::terminal::CLIENT_BACKLOG_BYTES;
use crate::terminal::Terminal;

/// The handshake reply on a terminal socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    /// The shell's pid.
    pub pid: u32,
    /// PTY width.
    pub cols: u16,
    /// PTY height.
    pub rows: u16,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_TOKEN_LINE: u64 = 1024;
/// Longest control request line a client may send; a longer one ends that client's connection.
const MAX_CONTROL_LINE: usize = 4096;

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads and checks the token line; on failure replies with an error line and returns `None`.
async fn handshake(
    stream: UnixStream,
    token: &str,
) -> Option<(BufReader<OwnedReadHalf>, OwnedWriteHalf)> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    let got = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        (&mut read)
            .take(MAX_TOKEN_LINE)
            .read_until(b'\n', &mut line),
    )
    .await;
    let ok = matches!(got, Ok(Ok(_))) && constant_time_eq(line.trim_ascii_end(), token.as_bytes());
    if ok {
        return Some((read, write));
    }
    let reply = serde_json::json!({
        "error": "invalid token: send the token from the token file in the socket directory, then a newline"
    });
    let _ = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        write.write_all(format!("{reply}\n").as_bytes()),
    )
    .await;
    let _ = write.shutdown().await;
    None
}

/// Accepts clients of one terminal until it closes.
pub(crate) async fn serve_terminal(
    listener: UnixListener,
    terminal: Arc<Terminal>,
    token: Arc<str>,
) {
    let closed = terminal.closed.clone();
    loop {
        tokio::select! {
            () = closed.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(terminal_client(stream, Arc::clone(&terminal), Arc::clone(&token)));
                }
                Err(e) => {
                    tracing::warn!(terminal = %terminal.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

pub(crate) async fn terminal_client(stream: UnixStream, terminal: Arc<Terminal>, token: Arc<str>) {
    let Some((mut read, mut write)) = handshake(stream, &token).await else {
        return;
    };
    let (cols, rows) = terminal.size();
    let hello = Hello {
        pid: terminal.pid,
        cols,
        rows,
    };
    let Ok(hello) = serde_json::to_string(&hello) else {
        return;
    };
    let (replay, mut feed) = terminal.mux.subscribe();
    let greeting = async {
        write.write_all(format!("{hello}\n").as_bytes()).await?;
        write.write_all(&replay).await
    };
    if !matches!(
        tokio::time::timeout(WRITE_TIMEOUT, greeting).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let input_terminal = Arc::clone(&terminal);
    let input = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => input_terminal.human_input(buf[..n].to_vec()).await,
            }
        }
    });
    let closed = terminal.closed.clone();
    loop {
        let chunk = tokio::select! {
            biased;
            () = feed.kicked.cancelled() => {
                let notice = format!(
                    "\r\n[codepilot: this client fell more than {} KiB behind the terminal output and was disconnected; reattach to continue]\r\n",
                    CLIENT_BACKLOG_BYTES / 1024
                );
                let _ = write.try_write(notice.as_bytes());
                break;
            }
            chunk = feed.rx.recv() => chunk,
            () = closed.cancelled() => {
                // Deliver what the shell printed last, then hang up.
                while let Ok(chunk) = feed.rx.try_recv() {
                    let _ = tokio::time::timeout(Duration::from_secs(1), write.write_all(&chunk)).await;
                }
                break;
            }
        };
        let Some(chunk) = chunk else {
            break;
        };
        if !matches!(
            tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&chunk)).await,
            Ok(Ok(()))
        ) {
            break;
        }
        feed.queued.fetch_sub(chunk.len(), Ordering::AcqRel);
    }
    input.abort();
    let _ = write.shutdown().await;
}

/// Serves the control socket until `closed` is cancelled.
pub(crate) async fn serve_control(
    listener: UnixListener,
    registry: Arc<Registry>,
    token: Arc<str>,
    events: broadcast::Sender<ControlEvent>,
    closed: CancellationToken,
) {
    loop {
        tokio::select! {
            () = closed.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(control_client(
                        stream,
                        Arc::clone(&registry),
                        Arc::clone(&token),
                        events.subscribe(),
                        closed.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn send_event(write: &mut OwnedWriteHalf, event: &ControlEvent) -> bool {
    let Ok(line) = serde_json::to_string(event) else {
        return true;
    };
    matches!(
        tokio::time::timeout(
            WRITE_TIMEOUT,
            write.write_all(format!("{line}\n").as_bytes())
        )
        .await,
        Ok(Ok(()))
    )
}

async fn control_client(
    stream: UnixStream,
    registry: Arc<Registry>,
    token: Arc<str>,
    mut rx: broadcast::Receiver<ControlEvent>,
    closed: CancellationToken,
) {
    let Some((read, mut write)) = handshake(stream, &token).await else {
        return;
    };
    if write.write_all(b"{\"ok\":true}\n").await.is_err() {
        return;
    }
    for terminal in registry.all() {
        if terminal.exit_code().is_some() {
            continue;
        }
        let event = ControlEvent::TerminalCreated {
            terminal: terminal.name.clone(),
            pid: terminal.pid,
            socket: terminal.sock_path.clone(),
        };
        if !send_event(&mut write, &event).await {
            return;
        }
    }
    let mut lines = tokio_util::codec::FramedRead::new(
        read,
        tokio_util::codec::LinesCodec::new_with_max_length(MAX_CONTROL_LINE),
    );
    loop {
        tokio::select! {
            () = closed.cancelled() => break,
            event = rx.recv() => match event {
                Ok(event) => if !send_event(&mut write, &event).await { break },
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
            line = futures_util::StreamExt::next(&mut lines) => match line {
                Some(Ok(line)) if line.trim().is_empty() => {}
                Some(Ok(line)) => {
                    let reply = match serde_json::from_str::<ControlRequest>(&line) {
                        Ok(ControlRequest::Resize { terminal, cols, rows }) => match registry.get(&terminal) {
                            Some(t) => t.resize(cols, rows).err().map(|e| e.to_string()),
                            None => Some(format!("terminal {terminal:?} not found")),
                        },
                        Err(e) => Some(format!("invalid control request ({e}); expected {{\"type\":\"resize\",\"terminal\":NAME,\"cols\":N,\"rows\":N}}")),
                    };
                    if let Some(message) = reply
                        && !send_event(&mut write, &ControlEvent::Error { message }).await
                    {
                        break;
                    }
                }
                Some(Err(tokio_util::codec::LinesCodecError::MaxLineLengthExceeded)) => {
                    let message = format!("control request longer than {MAX_CONTROL_LINE} bytes; closing");
                    let _ = send_event(&mut write, &ControlEvent::Error { message }).await;
                    break;
                }
                Some(Err(_)) | None => break,
            },
        }
    }
}
