#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::mpsc;
use std::thread::ThreadId;
use std::time::Duration;
use std::time::Instant;

use pretty_assertions::assert_eq;

use super::Finish;
use super::Pool;

/// Generous: the machine is slow and shared. Only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(30);

/// Each test gets its own pool so tests running in parallel cannot take each other's workers.
fn pool(max_idle: usize, idle_timeout: Duration) -> &'static Pool {
    Box::leak(Box::new(Pool::new(max_idle, idle_timeout)))
}

/// Runs a job that reports its thread and (after `then`) lets the caller go on; returns the
/// thread it ran on once the job has fully finished (the worker is parked, if reusable).
fn run(pool: &'static Pool, reusable: bool) -> ThreadId {
    let (tx, rx) = mpsc::channel();
    pool.execute(Box::new(move || {
        let me = std::thread::current();
        assert_eq!(me.name(), Some("codepilot-script"));
        Finish {
            reusable,
            then: Box::new(move || tx.send(me.id()).unwrap()),
        }
    }))
    .unwrap();
    rx.recv_timeout(PATIENCE).unwrap()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PATIENCE,
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_finished_worker_runs_the_next_job() {
    let pool = pool(2, Duration::from_secs(600));
    let first = run(pool, true);
    assert_eq!(pool.idle_count(), 1);
    let second = run(pool, true);
    assert_eq!(second, first);
    assert_eq!(pool.idle_count(), 1);
}

#[test]
fn a_worker_its_job_calls_unfit_is_not_reused() {
    let pool = pool(2, Duration::from_secs(600));
    let first = run(pool, false);
    assert_eq!(pool.idle_count(), 0);
    let second = run(pool, true);
    assert_ne!(second, first);
}

#[test]
fn a_panicking_job_ends_its_worker_and_the_pool_keeps_working() {
    let pool = pool(2, Duration::from_secs(600));
    let parked = run(pool, true);
    let (tx, rx) = mpsc::channel::<()>();
    pool.execute(Box::new(move || -> Finish {
        let _keep = tx;
        panic!("a bug past the job's own guard");
    }))
    .unwrap();
    // The job's sender is dropped while its thread unwinds.
    assert_eq!(
        rx.recv_timeout(PATIENCE),
        Err(mpsc::RecvTimeoutError::Disconnected)
    );
    // The panicking job ran on the parked worker, which then ended instead of parking again.
    wait_until("the panicked worker is gone", || pool.idle_count() == 0);
    let next = run(pool, true);
    assert_ne!(next, parked);
}

#[test]
fn a_busy_worker_is_never_handed_a_job() {
    let pool = pool(2, Duration::from_secs(600));
    let idle = run(pool, true);
    let (release, blocked) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel();
    pool.execute(Box::new(move || {
        started_tx.send(std::thread::current().id()).unwrap();
        // Stands in for a cancelled block that keeps running.
        blocked.recv_timeout(PATIENCE).unwrap();
        Finish {
            reusable: true,
            then: Box::new(|| ()),
        }
    }))
    .unwrap();
    let busy = started.recv_timeout(PATIENCE).unwrap();
    assert_eq!(busy, idle);
    // The only worker is busy: this job must get a new one, and finish while the other still runs.
    let fresh = run(pool, true);
    assert_ne!(fresh, busy);
    release.send(()).unwrap();
    wait_until("the released worker parks", || pool.idle_count() == 2);
}

#[test]
fn at_most_max_idle_workers_are_kept() {
    let pool = pool(2, Duration::from_secs(600));
    let (release, _) = tokio::sync::broadcast::channel::<()>(1);
    let (done_tx, done) = mpsc::channel();
    for _ in 0..3 {
        let mut go = release.subscribe();
        let done_tx = done_tx.clone();
        pool.execute(Box::new(move || {
            go.blocking_recv().unwrap();
            Finish {
                reusable: true,
                then: Box::new(move || done_tx.send(()).unwrap()),
            }
        }))
        .unwrap();
    }
    release.send(()).unwrap();
    for _ in 0..3 {
        done.recv_timeout(PATIENCE).unwrap();
    }
    assert_eq!(pool.idle_count(), 2);
}

#[test]
fn an_idle_worker_exits_after_the_idle_timeout() {
    let pool = pool(2, Duration::from_millis(50));
    let first = run(pool, true);
    wait_until("the idle worker leaves", || pool.idle_count() == 0);
    let second = run(pool, true);
    assert_ne!(second, first);
}
