//! Locking shared by every domain.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, taking the data even if a panicking thread poisoned it: the guarded data
/// are plain values that stay consistent, and the daemon must keep serving.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
