//! Clients of the multiplexer: attach to a terminal (raw bytes or an interactive session on
//! the local TTY) and follow the control socket. See [`crate::mux`] for the wire protocol.

use std::os::fd::AsFd as _;
use std::path::Path;

use tokio::io::AsyncBufReadExt as _;
use tokio::io::AsyncReadExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;
use tokio::net::unix::OwnedWriteHalf;

use crate::control::ControlEvent;
use crate::control::ControlRequest;
use crate::error::Result;
use crate::error::TerminalError;
use crate::mux::Hello;

/// The detach key of [`attach_interactive`]: Ctrl-] (byte 0x1d), as in telnet.
pub const DETACH_KEY: u8 = 0x1d;

/// An attached terminal connection after the handshake.
pub struct Connection {
    /// The server's greeting.
    pub hello: Hello,
    /// Raw output: the scrollback replay, then live PTY bytes.
    pub reader: BufReader<OwnedReadHalf>,
    /// Raw input to the PTY.
    pub writer: OwnedWriteHalf,
}

async fn open(
    path: &Path,
    token: &str,
) -> Result<(BufReader<OwnedReadHalf>, OwnedWriteHalf, String)> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| TerminalError::io(format!("cannot connect to {}", path.display()), e))?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{token}\n").as_bytes())
        .await
        .map_err(|e| TerminalError::io("cannot send the token", e))?;
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    (&mut reader)
        .take(64 * 1024)
        .read_line(&mut line)
        .await
        .map_err(|e| TerminalError::io("cannot read the handshake", e))?;
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&line)
        && let Some(error) = map.get("error")
    {
        return Err(TerminalError::Protocol(
            error.as_str().unwrap_or("refused").to_owned(),
        ));
    }
    if line.is_empty() {
        return Err(TerminalError::Protocol(
            "the server closed the connection during the handshake".into(),
        ));
    }
    Ok((reader, write, line))
}

/// Connects to terminal `terminal` under `socket_dir`, sends `token` and reads the greeting.
///
/// # Errors
/// No such socket, a refused token, or a malformed greeting.
pub async fn connect(socket_dir: &Path, terminal: &str, token: &str) -> Result<Connection> {
    let path = socket_dir.join(format!("{terminal}.sock"));
    let (reader, writer, line) = open(&path, token).await?;
    let hello = serde_json::from_str(&line).map_err(|e| {
        TerminalError::Protocol(format!("unexpected greeting {:?}: {e}", line.trim_end()))
    })?;
    Ok(Connection {
        hello,
        reader,
        writer,
    })
}

/// A connection to the control socket.
pub struct ControlEvents {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl ControlEvents {
    /// The next event; `None` when the server closed the connection.
    ///
    /// # Errors
    /// A read failure or a line that is not a known event.
    pub async fn next(&mut self) -> Result<Option<ControlEvent>> {
        let Some(line) = self
            .lines
            .next_line()
            .await
            .map_err(|e| TerminalError::io("cannot read the control socket", e))?
        else {
            return Ok(None);
        };
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| TerminalError::Protocol(format!("unexpected control event {line:?}: {e}")))
    }

    /// Asks the server to resize a terminal (errors come back as [`ControlEvent::Error`]).
    ///
    /// # Errors
    /// The connection is broken.
    pub async fn resize(&mut self, terminal: &str, cols: u16, rows: u16) -> Result<()> {
        let request = ControlRequest::Resize {
            terminal: terminal.to_owned(),
            cols,
            rows,
        };
        let line =
            serde_json::to_string(&request).map_err(|e| TerminalError::Protocol(e.to_string()))?;
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| TerminalError::io("cannot write to the control socket", e))
    }
}

/// Connects to `socket_dir/control.sock`: first a `terminal_created` per live terminal, then
/// live events.
///
/// # Errors
/// No control socket or a refused token.
pub async fn control_events(socket_dir: &Path, token: &str) -> Result<ControlEvents> {
    let (reader, writer, _ok) = open(&socket_dir.join("control.sock"), token).await?;
    Ok(ControlEvents {
        lines: reader.lines(),
        writer,
    })
}

/// Restores the saved terminal attributes when dropped (every exit path, errors included).
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enable() -> Result<Option<Self>> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        if !rustix::termios::isatty(fd) {
            return Ok(None);
        }
        let saved = rustix::termios::tcgetattr(fd)
            .map_err(|e| TerminalError::io("cannot read the terminal settings", e.into()))?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &raw)
            .map_err(|e| TerminalError::io("cannot switch the terminal to raw mode", e.into()))?;
        Ok(Some(Self { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        let _ = rustix::termios::tcsetattr(
            stdin.as_fd(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// Forwards the local window size (stdout's) as a resize request, when both are available.
async fn send_local_size(control: Option<&mut ControlEvents>, terminal: &str) {
    if let (Some(control), Ok(size)) = (
        control,
        rustix::termios::tcgetwinsize(std::io::stdout().as_fd()),
    ) {
        let _ = control.resize(terminal, size.ws_col, size.ws_row).await;
    }
}

/// Attaches the local terminal to `terminal`: reads the token from `socket_dir/token`, puts
/// the local TTY in raw mode (restored on every exit path), copies stdin to the shell and the
/// shell to stdout, and forwards window-size changes (SIGWINCH) through the control socket.
/// Press Ctrl-] ([`DETACH_KEY`]) to detach; the shell keeps running. Returns when detached or
/// when the terminal closes.
///
/// Note: stdin is read through tokio's blocking stdin reader, so the calling program should
/// exit soon after this returns (as the CLI does).
///
/// # Errors
/// Missing token file, refused connection, or terminal-settings failures.
pub async fn attach_interactive(socket_dir: &Path, terminal: &str) -> Result<()> {
    let token_path = socket_dir.join("token");
    let token = std::fs::read_to_string(&token_path).map_err(|e| {
        TerminalError::io(
            format!("cannot read the token file {}", token_path.display()),
            e,
        )
    })?;
    let token = token.trim();
    let mut conn = connect(socket_dir, terminal, token).await?;
    let mut control = control_events(socket_dir, token).await.ok();
    let _raw = RawMode::enable()?;
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .map_err(|e| TerminalError::io("cannot watch window-size changes", e))?;
    send_local_size(control.as_mut(), terminal).await;
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut in_buf = vec![0u8; 4096];
    let mut out_buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = conn.reader.read(&mut out_buf) => {
                let n = n.map_err(|e| TerminalError::io("lost the terminal connection", e))?;
                if n == 0 {
                    break;
                }
                stdout.write_all(&out_buf[..n]).await.map_err(|e| TerminalError::io("cannot write to stdout", e))?;
                stdout.flush().await.map_err(|e| TerminalError::io("cannot write to stdout", e))?;
            }
            n = stdin.read(&mut in_buf) => {
                let n = n.map_err(|e| TerminalError::io("cannot read stdin", e))?;
                if n == 0 {
                    break;
                }
                let input = &in_buf[..n];
                let (input, detach) = match input.iter().position(|&b| b == DETACH_KEY) {
                    Some(pos) => (&input[..pos], true),
                    None => (input, false),
                };
                conn.writer.write_all(input).await.map_err(|e| TerminalError::io("lost the terminal connection", e))?;
                if detach {
                    break;
                }
            }
            _ = winch.recv() => send_local_size(control.as_mut(), terminal).await,
        }
    }
    Ok(())
}
