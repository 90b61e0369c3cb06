//! Steering a run from outside: abort, queued user messages, and closing the runtime.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

/// What the host can do to a run while it goes on.
pub(crate) struct RunControl {
    /// The current run's token; replaced by a fresh one when a run ends.
    cancel: Mutex<CancellationToken>,
    /// `run` calls in progress (including ones waiting to start), so `abort()` knows whether there is work to stop.
    active_runs: AtomicUsize,
    /// Messages for the model, added as `[USER MESSAGE]` at the start of the next step.
    inbox: Mutex<VecDeque<String>>,
    /// Set by `close()`; `run` refuses afterwards.
    closed: AtomicBool,
}

impl RunControl {
    pub(crate) fn new() -> Self {
        Self {
            cancel: Mutex::new(CancellationToken::new()),
            active_runs: AtomicUsize::new(0),
            inbox: Mutex::new(VecDeque::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// Counts a `run` call from its first instant, so an `abort()` racing with the start of a run is not lost.
    pub(crate) fn enter(&self) -> Entered<'_> {
        self.active_runs.fetch_add(1, Ordering::SeqCst);
        Entered(self)
    }

    /// Cancels the running task; does nothing when idle.
    pub(crate) fn abort(&self) {
        if self.active_runs.load(Ordering::SeqCst) > 0 {
            self.cancel_now();
        }
    }

    /// Cancels whatever runs now (the lease was lost).
    pub(crate) fn cancel_now(&self) {
        if let Ok(token) = self.cancel.lock() {
            token.cancel();
        }
    }

    pub(crate) fn queue(&self, text: String) {
        if let Ok(mut inbox) = self.inbox.lock() {
            inbox.push_back(text);
        }
    }

    /// Takes every queued message, oldest first.
    pub(crate) fn drain(&self) -> Vec<String> {
        match self.inbox.lock() {
            Ok(mut q) => q.drain(..).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Whether the host queued a message the model has not seen yet.
    pub(crate) fn has_unread(&self) -> bool {
        self.inbox.lock().is_ok_and(|q| !q.is_empty())
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A `run` in progress (see [`RunControl::enter`]).
pub(crate) struct Entered<'a>(&'a RunControl);

impl Entered<'_> {
    /// This run owns the session now: its token is the one in the slot (an `abort()` since `run` was called has
    /// already cancelled it). The next run gets a fresh token when the returned guard drops.
    pub(crate) fn own(&self) -> Owned<'_> {
        let token = match self.0.cancel.lock() {
            Ok(slot) => slot.clone(),
            Err(_) => CancellationToken::new(),
        };
        Owned {
            control: self.0,
            token,
        }
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.active_runs.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The run that holds the session, with its cancellation token.
pub(crate) struct Owned<'a> {
    control: &'a RunControl,
    pub(crate) token: CancellationToken,
}

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.control.cancel.lock() {
            *slot = CancellationToken::new();
        }
    }
}
