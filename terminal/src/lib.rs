//! Persistent bash sessions in PTYs with reliable command completion, and a multiplexer
//! humans can attach to.
//!
//! A [`TerminalManager`] owns named terminals. Each is an interactive `bash --norc
//! --noprofile` in its own PTY (220×50 by default) and session, with a normalised environment
//! (see [`config::normalised_env`]: API keys and other secrets removed, `TERM=xterm-256color`,
//! `PAGER=cat`). Commands complete on a shell-integration marker that carries a per-command
//! nonce, so a command is never credited with another command's output:
//! `PROMPT_COMMAND` prints `ESC]6973;D;<nonce>;$?;$PWD BEL`, reading the nonce the agent wrote
//! to a private file just before sending the command (as one bracketed paste), and `PS0`
//! prints `ESC]6973;C BEL` where the command's output starts. Nothing is sent before the
//! shell's first prompt. Output is ANSI-stripped, and long output keeps its head and tail
//! within a fixed memory bound.
//!
//! ```no_run
//! # async fn demo() -> codepilot_terminal::Result<()> {
//! use std::time::Duration;
//! use codepilot_terminal::TerminalConfig;
//! use codepilot_terminal::TerminalManager;
//!
//! let manager = TerminalManager::new(TerminalConfig::new("/work")).await?;
//! let main = manager.create("main").await?;
//! let result = main.execute("ls", Duration::from_secs(10)).await?;
//! println!("{}", result.render());
//! manager.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Humans attach through the multiplexer ([`mux`] describes the wire protocol,
//! [`client::attach_interactive`] is the ready-made client), and commands they run while the
//! agent is idle are reported by [`TerminalManager::take_human_input`].
#![deny(missing_docs, clippy::print_stdout, clippy::print_stderr)]

pub mod client;
pub mod config;
mod control;
mod error;
mod manager;
pub mod mux;
mod output;
pub mod procs;
mod registry;
mod scan;
mod sweep;
mod terminal;

pub use config::TerminalConfig;
pub use control::ControlEvent;
pub use error::Result;
pub use error::TerminalError;
pub use manager::TerminalHandle;
pub use manager::TerminalManager;
pub use manager::TerminateReport;
pub use mux::Hello;
pub use output::CommandResult;
pub use output::CommandStatus;
pub use output::clean;
pub use terminal::HumanInput;
pub use terminal::TerminalInfo;
pub use terminal::TerminalState;
