//! [`lock`]: the one way every CodePilot crate takes a `std::sync::Mutex`.

use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::PoisonError;

/// Locks `m`, going on with the data if a thread panicked while holding it.
///
/// Every mutex in CodePilot guards data that stays consistent between statements (a queue, a slot, a counter), so
/// a panic elsewhere must not turn every later lock into a second panic — in a library embedded in someone
/// else's process, that would take the host down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    #[test]
    fn a_poisoned_mutex_still_locks() {
        let m = Mutex::new(1);
        let _ = std::panic::catch_unwind(|| {
            let _guard = m.lock();
            panic!("poison it");
        });
        assert!(m.is_poisoned());
        *super::lock(&m) += 1;
        assert_eq!(*super::lock(&m), 2);
    }
}
