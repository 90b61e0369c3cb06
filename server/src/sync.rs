//! The daemon's lock: a poisoned mutex (a thread panicked holding it) still guards consistent data here — every
//! critical section is a few field updates — so it is used, not propagated as a panic.

use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::PoisonError;

/// Locks `m`, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
