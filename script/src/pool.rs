//! A small process-global pool of big-stack interpreter threads.
//!
//! Spawning (and joining) a thread with a 256 MiB stack costs about 0.05 ms, a fair share of a
//! block's fixed overhead, so finished interpreter threads wait for the next block instead of
//! exiting. The pool is deliberately small and lazy:
//!
//! - no thread exists before the first block; a block that finds no idle worker spawns a new one,
//!   so the number of *busy* workers is unbounded (concurrent blocks never wait for each other);
//! - at most [`MAX_IDLE`] finished workers are kept; any more exit at once;
//! - an idle worker blocks on its own channel (no CPU) and exits after [`IDLE_TIMEOUT`] without
//!   work, so a library user's process does not keep the threads (and the stack pages they touched)
//!   forever;
//! - only a worker whose job says so goes back: a job that panicked, or whose result nobody was
//!   waiting for any more (a cancelled block that kept running), ends its thread. A worker that is
//!   still running a job is never in the idle list, so it can never be handed another block.
//!
//! Every job owns its reply channel; if a job is ever dropped without running, the waiting side
//! sees the channel close instead of hanging.

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::PoisonError;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

/// Stack of an interpreter thread. Only touched pages are committed, so this costs address space.
const STACK_BYTES: usize = 256 * 1024 * 1024;
/// How many finished workers wait for the next block.
const MAX_IDLE: usize = 2;
/// How long an idle worker waits for a block before its thread exits.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Name of the worker threads.
const THREAD_NAME: &str = "codepilot-script";

/// What a finished job tells its worker.
pub(crate) struct Finish {
    /// Whether the thread is fit to run another job.
    pub reusable: bool,
    /// The job's last step (delivering its result), run once the worker is back in the idle list,
    /// so that whoever the result wakes up can reuse this worker straight away.
    pub then: Box<dyn FnOnce() + Send>,
}

/// One unit of work for a worker thread.
pub(crate) type Job = Box<dyn FnOnce() -> Finish + Send>;

/// An idle worker: the sending end of its private job channel.
struct Idle {
    id: u64,
    jobs: mpsc::Sender<Job>,
}

/// A pool of worker threads.
pub(crate) struct Pool {
    /// Idle workers, most recently parked last (popped first: its stack is warmest).
    idle: Mutex<Vec<Idle>>,
    next_id: AtomicU64,
    max_idle: usize,
    idle_timeout: Duration,
}

/// The pool every block runs on.
pub(crate) static POOL: Pool = Pool::new(MAX_IDLE, IDLE_TIMEOUT);

impl Pool {
    /// A pool keeping up to `max_idle` finished workers, each for up to `idle_timeout`.
    pub(crate) const fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            max_idle,
            idle_timeout,
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        // Nothing panics while the lock is held; recover the list rather than propagate a poison.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many workers are idle right now.
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.idle().len()
    }

    /// Runs `job` on an idle worker, or on a newly spawned one if none is idle.
    ///
    /// # Errors
    /// The OS refused to create a thread.
    pub(crate) fn execute(&'static self, mut job: Job) -> std::io::Result<()> {
        loop {
            let Some(worker) = self.idle().pop() else {
                break;
            };
            match worker.jobs.send(job) {
                Ok(()) => return Ok(()),
                // The worker is gone (it died after parking); try the next one.
                Err(mpsc::SendError(back)) => job = back,
            }
        }
        self.spawn(job)
    }

    fn spawn(&'static self, first: Job) -> std::io::Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (jobs, inbox) = mpsc::channel();
        std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .stack_size(STACK_BYTES)
            .spawn(move || self.work(id, &jobs, &inbox, first))
            .map(drop)
    }

    /// The worker loop: run a job, park, wait for the next one or for the idle timeout.
    fn work(&self, id: u64, jobs: &mpsc::Sender<Job>, inbox: &mpsc::Receiver<Job>, first: Job) {
        let mut job = first;
        loop {
            let Ok(finish) = std::panic::catch_unwind(AssertUnwindSafe(job)) else {
                // The job panicked past its own guard: its state is suspect, end the thread.
                return;
            };
            let parked = finish.reusable && self.park(id, jobs);
            (finish.then)();
            if !parked {
                return;
            }
            match self.wait(id, inbox) {
                Some(next) => job = next,
                None => return,
            }
        }
    }

    /// Puts the worker in the idle list unless it is full.
    fn park(&self, id: u64, jobs: &mpsc::Sender<Job>) -> bool {
        let mut idle = self.idle();
        if idle.len() >= self.max_idle {
            return false;
        }
        idle.push(Idle {
            id,
            jobs: jobs.clone(),
        });
        true
    }

    /// Waits for the next job; `None` once the worker has left the idle list after the timeout.
    fn wait(&self, id: u64, inbox: &mpsc::Receiver<Job>) -> Option<Job> {
        loop {
            match inbox.recv_timeout(self.idle_timeout) {
                Ok(job) => return Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let mut idle = self.idle();
                    if let Some(at) = idle.iter().position(|w| w.id == id) {
                        // Removed under the lock: nobody can pick this worker any more.
                        idle.remove(at);
                        return None;
                    }
                    // Someone popped this worker just now and is sending it a job: wait for it.
                }
                // Unreachable while the worker holds its own sender, but ending is the safe answer.
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
