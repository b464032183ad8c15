//! Locking and cancelling shared by every domain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Locks a mutex, taking the data even if a panicking thread poisoned it: the guarded data
/// are plain values that stay consistent, and the daemon must keep serving.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A cancel shared by the stages of one piece of work (the answer's generation, its speech
/// synthesis, its playback): set once by whoever interrupts it (a barge-in, `StopSpeaking`),
/// seen by blocking code between its steps (`is_cancelled`, e.g. between 20 ms of audio
/// written to the card) and awaited by async code (`cancelled`), so a stage that is waiting
/// for its input stops at once instead of at its next poll.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    set: AtomicBool,
    notify: Notify,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels: every `cancelled()` returns, every later `is_cancelled()` is true.
    pub fn cancel(&self) {
        self.0.set.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }

    /// Returns once cancelled (at once if it already is).
    pub async fn cancelled(&self) {
        let notified = self.0.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read: a cancel between the read and the wait is
        // not missed (`notify_waiters` wakes only registered waiters).
        notified.as_mut().enable();
        if self.is_cancelled() {
            return;
        }
        notified.await;
    }

    /// Whether `other` is this same cancel (a clone of it), not another with the same state.
    pub fn same(&self, other: &Cancel) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_cancel_wakes_a_waiter_and_one_set_before_the_wait() {
        let cancel = Cancel::new();
        assert!(!cancel.is_cancelled());
        let waiter = tokio::spawn({
            let c = cancel.clone();
            async move { c.cancelled().await }
        });
        // The waiter is parked on the notify, not polling: it only returns after the cancel.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        cancel.clone().cancel();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter woke")
            .unwrap();
        assert!(cancel.is_cancelled());
        // Already cancelled: returns at once.
        tokio::time::timeout(Duration::from_millis(100), cancel.cancelled())
            .await
            .expect("no wait once cancelled");
        assert!(cancel.same(&cancel.clone()));
        assert!(!cancel.same(&Cancel::new()));
    }
}
