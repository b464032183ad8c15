//! The engine the tutor answers with, shared by the conversation (which takes it for each
//! question) and the planner's service (which swaps it for another model).
//!
//! One lock guards the engine, the questions holding it and a switch in progress, so a swap
//! cannot slip in under a pending question, nor a question in during a swap: `SelectModel`
//! and `Ask` each get a clear answer at once, whichever comes first.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::{EngineHandle, EngineStatus, MAX_QUEUED_TURNS};

/// Why the slot refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SlotError {
    #[error("no model is loaded: {0}")]
    NotReady(String),
    #[error("{0} questions are already waiting; try again when one is answered")]
    Busy(usize),
}

/// Whether the tutor can answer now, and why not: what `State` is derived from once booted,
/// so the daemon never says "ready" without a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// A model is loaded and answers (the file's path).
    Serving(String),
    /// A model is loading: a switch, the boot's load, or a worker restarting after it died.
    Loading(String),
    /// No model, and none is coming by itself: why (a failed load, a model given up).
    Absent(String),
}

impl Availability {
    /// What an engine's status says (the slot holds this engine, no switch runs).
    fn of_engine(s: &EngineStatus) -> Self {
        match (&s.model, s.gave_up) {
            (Some(m), _) => Availability::Serving(m.path.display().to_string()),
            (None, true) => Availability::Absent(
                s.last_error
                    .clone()
                    .unwrap_or_else(|| "the model failed to load".into()),
            ),
            (None, false) => Availability::Loading(match &s.last_error {
                Some(e) if s.restarts > 0 => format!("restarting the engine worker after: {e}"),
                _ => "loading the model".into(),
            }),
        }
    }
}

struct Inner {
    /// The engine, or why there is none (no model configured, unknown name, not fetched).
    engine: Result<EngineHandle, String>,
    /// Questions asked and not yet finished (running + waiting).
    pending: usize,
    /// Set while a model switch runs: what is being loaded.
    switching: Option<String>,
}

/// The shared engine slot.
pub struct Slot {
    inner: Mutex<Inner>,
    /// Bumped whenever the engine in the slot or a switch changes (see `changes`).
    changes: watch::Sender<u64>,
}

/// A question's hold on the slot: released (pending count down) when dropped.
pub struct TurnGuard {
    slot: Arc<Slot>,
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        let mut i = self.slot.lock();
        i.pending = i.pending.saturating_sub(1);
    }
}

/// A switch in progress: questions get `NotReady` until it is dropped.
pub struct Switch {
    slot: Arc<Slot>,
}

impl Switch {
    /// Puts `engine` (or why there is none) in the slot; the switch goes on until dropped.
    pub fn install(&self, engine: Result<EngineHandle, String>) {
        self.slot.lock().engine = engine;
        self.slot.changed();
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.slot.lock().switching = None;
        self.slot.changed();
    }
}

impl Slot {
    pub fn new(engine: Result<EngineHandle, String>) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                engine,
                pending: 0,
                switching: None,
            }),
            changes: watch::Sender::new(0),
        })
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes when the engine in the slot or a switch changes; with each engine's own status
    /// (`EngineHandle::watch`) that is everything `availability` reads.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether the tutor can answer now, and why not.
    pub fn availability(&self) -> Availability {
        let i = self.lock();
        if let Some(m) = &i.switching {
            return Availability::Loading(format!("switching to the model {m}"));
        }
        match &i.engine {
            Ok(e) => Availability::of_engine(&e.status()),
            Err(why) => Availability::Absent(why.clone()),
        }
    }

    /// The data are plain values that stay consistent: a poisoned lock is taken anyway, so
    /// the daemon keeps serving.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The engine, when there is one (also while it loads).
    pub fn engine(&self) -> Option<EngineHandle> {
        self.lock().engine.as_ref().ok().cloned()
    }

    /// Why there is no engine to answer with, when there is none.
    pub fn no_engine_reason(&self) -> Option<String> {
        let i = self.lock();
        if let Some(m) = &i.switching {
            return Some(format!("switching to the model {m}"));
        }
        i.engine.as_ref().err().cloned()
    }

    /// Questions pending (being answered or waiting).
    pub fn pending(&self) -> usize {
        self.lock().pending
    }

    /// A question takes the engine: `NotReady` when there is none, it failed to load or a
    /// switch is running; `Busy` when `MAX_QUEUED_TURNS` already wait behind the running one.
    pub fn take_turn(self: &Arc<Self>) -> Result<(EngineHandle, TurnGuard), SlotError> {
        let mut i = self.lock();
        if let Some(m) = &i.switching {
            return Err(SlotError::NotReady(format!("switching to the model {m}")));
        }
        let engine = match &i.engine {
            Ok(e) => e.clone(),
            Err(why) => return Err(SlotError::NotReady(why.clone())),
        };
        let status = engine.status();
        if status.gave_up {
            return Err(SlotError::NotReady(
                status
                    .last_error
                    .unwrap_or_else(|| "the model failed to load".into()),
            ));
        }
        if i.pending > MAX_QUEUED_TURNS {
            return Err(SlotError::Busy(i.pending - 1));
        }
        i.pending += 1;
        Ok((engine, TurnGuard { slot: self.clone() }))
    }

    /// Starts a switch to `label`: refused with `Busy` while questions are pending. The old
    /// engine leaves the slot now (its worker stops when its last handle is dropped), so the
    /// new model never shares memory with it.
    pub fn begin_switch(self: &Arc<Self>, label: &str) -> Result<Switch, SlotError> {
        let mut i = self.lock();
        if i.pending > 0 {
            return Err(SlotError::Busy(i.pending));
        }
        if let Some(m) = &i.switching {
            return Err(SlotError::NotReady(format!(
                "already switching to the model {m}"
            )));
        }
        i.switching = Some(label.to_string());
        i.engine = Err(format!("switching to the model {label}"));
        drop(i);
        self.changed();
        Ok(Switch { slot: self.clone() })
    }
}
