//! The control socket's messages: the events the server sends and the requests a client may send (the wire
//! protocol is in [`mux`](crate::mux)). A leaf: the terminals, the multiplexer and the manager all use it.

use std::path::PathBuf;

/// An event on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ControlEvent {
    /// A terminal was created (or existed when the client connected).
    TerminalCreated {
        /// Terminal name.
        terminal: String,
        /// Its shell's pid.
        pid: u32,
        /// Its socket path.
        socket: PathBuf,
    },
    /// A terminal's shell exited (or was terminated).
    TerminalExited {
        /// Terminal name.
        terminal: String,
        /// Its shell's pid.
        pid: u32,
        /// The shell's exit code.
        exit_code: i32,
    },
    /// A control request failed.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// A request a control client may send.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ControlRequest {
    /// Resize a terminal's PTY.
    Resize {
        /// Terminal name.
        terminal: String,
        /// New width.
        cols: u16,
        /// New height.
        rows: u16,
    },
}
