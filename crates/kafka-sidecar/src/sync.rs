//! Locking helpers shared by the modules that keep small bits of state behind a std `Mutex`.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking the data even if a panicking thread poisoned it: every value guarded this
/// way (counters, rings, caches) stays consistent between statements, so a panic elsewhere must
/// not take the produce path down with it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
