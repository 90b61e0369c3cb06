//! Ctrl-C, `SIGTERM` (`systemctl stop`, `docker stop`) and `SIGHUP` (the terminal closed) all stop a run the same
//! way: the task is aborted, the last step is checkpointed, the terminals and their process trees are killed,
//! and the CLI exits with code 4. A second signal quits at once.

use tokio::signal::unix::Signal;
use tokio::signal::unix::SignalKind;
use tokio::signal::unix::signal;

/// Which signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Ctrl-C (`SIGINT`).
    Interrupt,
    /// `SIGTERM`.
    Terminate,
    /// `SIGHUP`.
    Hangup,
}

impl Stop {
    /// What the CLI says when the signal arrives during a task.
    pub(crate) fn notice(self) -> &'static str {
        match self {
            Stop::Interrupt => {
                "codepilot: interrupted — aborting the task (Ctrl-C again to quit at once)"
            }
            Stop::Terminate => "codepilot: terminated (SIGTERM) — aborting the task",
            Stop::Hangup => "codepilot: hangup (SIGHUP) — aborting the task",
        }
    }

    /// Whether the whole program should end (not just the task in a chat).
    pub(crate) fn ends_program(self) -> bool {
        match self {
            Stop::Interrupt => false,
            Stop::Terminate | Stop::Hangup => true,
        }
    }
}

/// The stop signals, listened to from the moment this is created.
pub(crate) struct Signals {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
    hangup: Option<Signal>,
}

impl Signals {
    pub(crate) fn new() -> Self {
        let listen = |kind: SignalKind| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot listen for {kind:?}: {e}");
                None
            }
        };
        Self {
            interrupt: listen(SignalKind::interrupt()),
            terminate: listen(SignalKind::terminate()),
            hangup: listen(SignalKind::hangup()),
        }
    }

    /// The next stop signal.
    pub(crate) async fn next(&mut self) -> Stop {
        async fn recv(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    if s.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.interrupt) => Stop::Interrupt,
            () = recv(&mut self.terminate) => Stop::Terminate,
            () = recv(&mut self.hangup) => Stop::Hangup,
        }
    }
}
