//! The daemon's side of the LLM: supervises one `tutord-engine` worker process.
//!
//! One task owns the worker: it starts it (pinned to the placement's cores), loads the model,
//! feeds it one turn at a time from a bounded queue, pings it, and when the worker dies it
//! ends the turn in flight with a failure, restarts the worker with backoff and loads the
//! model again. A model that fails to load is not retried: the file will not get better. Nor
//! is one that killed the worker on two answers in a row (`CRASHES_BEFORE_GIVING_UP`).

pub mod slot;
#[cfg(test)]
pub mod stand_in;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
pub use tutord_protocol::{
    BackendKind, ChatMessage, GenStats, LoadSpec, ModelInfo, Placement, Sampling,
};
use tutord_protocol::{Event, Request};

pub use slot::{Availability, Slot, SlotError, Switch, TurnGuard};

/// Turns that may wait behind the running one; one more is refused with `Busy`.
pub const MAX_QUEUED_TURNS: usize = 4;
/// The longest an abort may take before the worker counts as wedged.
const ABORT_DEADLINE: Duration = Duration::from_secs(10);

/// How often the worker is pinged.
const PING_EVERY: Duration = Duration::from_secs(2);
/// A worker that has not answered a ping for this long is considered hung.
const PING_DEADLINE: Duration = Duration::from_secs(10);
/// The same deadline in pings: the supervisor counts the pings it sent since the last pong,
/// not the seconds, so a supervisor that itself got no CPU for a while (a loaded host, a call
/// storm's 16 MiB message being parsed) does not blame the worker for the pongs it has not
/// read yet. CI saw a worker killed that way while both were starved.
const PINGS_BEFORE_HUNG: u32 = (PING_DEADLINE.as_secs() / PING_EVERY.as_secs()) as u32;
/// Workers in a row that were killed for a missed heartbeat before the engine counts as hung
/// for the watchdog. One hang is the supervisor's to mend (kill, start another); when the
/// replacement hangs too, a new worker does not help (a runtime wedged in a driver, a stuck
/// NPU), so the daemon stops pinging the watchdog and systemd restarts the whole service.
const HANGS_BEFORE_WATCHDOG: u32 = 2;
/// Answers in a row during which the worker died before the model is given up. One death
/// may be the machine's (the OOM killer, a stray signal); the same model killing the next
/// answer too is the model (llama.cpp aborting on its vocabulary with a C++ exception Rust
/// cannot catch), and reloading it would only lose every later question the same way. A
/// death while idle, or a worker killed for a missed heartbeat (the watchdog's business,
/// `HANGS_BEFORE_WATCHDOG`), neither counts nor resets the count.
const CRASHES_BEFORE_GIVING_UP: u32 = 2;
/// How long `EngineHandle::count` waits for the worker's answer.
const COUNT_TIMEOUT: Duration = Duration::from_secs(2);
/// Restart backoff: doubles from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The slowest read a model load is allowed, bytes/s: a class-10 SD card's floor. A load
/// slower than this is not slow but blocked (a hung network mount, a failing card), and the
/// worker's reader thread would go on answering pings for ever while it waits.
const SLOWEST_LOAD_READ: u64 = 10_000_000;
/// Time for everything in a load that is not reading (mapping, warm-up, NPU set-up).
const LOAD_SETUP: Duration = Duration::from_secs(120);

/// How long loading a `file_bytes` model may take before the worker is killed and the load
/// fails: `LOAD_SETUP` plus the file read at `SLOWEST_LOAD_READ` (a 4.8 GB 7B: 10 min).
pub fn load_deadline(file_bytes: u64) -> Duration {
    LOAD_SETUP + Duration::from_secs(file_bytes / SLOWEST_LOAD_READ)
}

/// What went wrong with the engine; each message says what to look at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineFailure {
    #[error("cannot start the engine worker: {0}")]
    Spawn(String),
    #[error("cannot load the model: {0}")]
    Load(String),
    #[error("the engine worker died: {0}")]
    Died(String),
    #[error("{0}")]
    Generate(String),
    #[error("no model is loaded: {0}")]
    NotLoaded(String),
    /// The model killed the worker on `CRASHES_BEFORE_GIVING_UP` answers in a row.
    #[error("{0}")]
    Crashed(String),
    #[error("{queued} questions are already waiting; try again when one is answered")]
    Busy { queued: usize },
}

/// What happens during one turn, in order: pieces, then one `Finished` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    Piece(String),
    Finished(GenStats),
    Failed(EngineFailure),
}

/// How to run the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The `tutord-engine` binary.
    pub program: PathBuf,
    pub spec: LoadSpec,
    /// How long an answer may go without a piece before the worker counts as wedged
    /// (`[llm] stall_seconds`); an abort gets at most `ABORT_DEADLINE` of it.
    pub stall: Duration,
    /// How long the model may take to load (`load_deadline`).
    pub load_deadline: Duration,
}

/// Why the engine gave its model up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaveUp {
    /// The model did not load (or the worker died while loading it).
    Load,
    /// The model loaded but killed the worker on answers in a row.
    Crashes,
}

/// What the rest of the daemon can see of the engine.
#[derive(Debug, Clone, Default)]
pub struct EngineStatus {
    pub model: Option<ModelInfo>,
    /// Why there is no model (load failed, given up), or the last worker death.
    pub last_error: Option<String>,
    /// Set when the model failed to load or was given up after crashes: the engine will not
    /// come back by itself.
    pub gave_up: bool,
    /// Why, when `gave_up` is set.
    pub gave_up_because: Option<GaveUp>,
    /// Answers in a row during which the worker died; 0 again at the next answer it ended.
    pub crashes_in_a_row: u32,
    pub worker_pid: Option<u32>,
    pub restarts: u32,
    /// Pings sent to the worker since its last pong: over `PINGS_BEFORE_HUNG`, it is hung.
    pub pings_unanswered: u32,
    /// Workers killed in a row for a missed heartbeat; 0 again at the next answered ping.
    pub hangs_in_a_row: u32,
}

enum Command {
    Generate {
        turn: u64,
        chat: Vec<ChatMessage>,
        sampling: Sampling,
        events: mpsc::UnboundedSender<TurnEvent>,
    },
    AbortAll,
    Reset,
    Count {
        text: String,
        reply: oneshot::Sender<Result<u32, EngineFailure>>,
    },
}

/// A cheap handle to the supervisor task.
#[derive(Clone)]
pub struct EngineHandle {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<EngineStatus>,
    queued: Arc<AtomicUsize>,
}

impl EngineHandle {
    /// Starts the supervisor task; the first load begins at once.
    pub fn start(config: EngineConfig) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(EngineStatus::default());
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(supervise(config, rx, status_tx, queued.clone()));
        Self {
            commands,
            status,
            queued,
        }
    }

    /// Queues a turn. Events arrive on the returned receiver.
    pub fn generate(
        &self,
        turn: u64,
        chat: Vec<ChatMessage>,
        sampling: Sampling,
    ) -> Result<mpsc::UnboundedReceiver<TurnEvent>, EngineFailure> {
        let status = self.status.borrow().clone();
        if status.gave_up {
            return Err(EngineFailure::NotLoaded(
                status.last_error.unwrap_or_else(|| "load failed".into()),
            ));
        }
        // Count the running turn too: MAX_QUEUED_TURNS wait behind it.
        let in_flight = self.queued.load(Ordering::SeqCst);
        if in_flight > MAX_QUEUED_TURNS {
            return Err(EngineFailure::Busy {
                queued: in_flight - 1,
            });
        }
        self.queued.fetch_add(1, Ordering::SeqCst);
        let (events, rx) = mpsc::unbounded_channel();
        self.commands
            .send(Command::Generate {
                turn,
                chat,
                sampling,
                events,
            })
            .map_err(|_| EngineFailure::Died("the supervisor stopped".into()))?;
        Ok(rx)
    }

    /// How many tokens `text` is for the loaded model's tokenizer (plain text, no chat
    /// template). The worker answers at once, also while it generates; fails when no model is
    /// loaded, the backend cannot count (RKLLM), the worker dies meanwhile or does not
    /// answer within 2 s.
    pub async fn count(&self, text: &str) -> Result<u32, EngineFailure> {
        let (reply, answer) = oneshot::channel();
        let text = text.to_string();
        self.commands
            .send(Command::Count { text, reply })
            .map_err(|_| EngineFailure::Died("the supervisor stopped".into()))?;
        match tokio::time::timeout(COUNT_TIMEOUT, answer).await {
            Ok(Ok(counted)) => counted,
            Ok(Err(_)) => Err(EngineFailure::Died(
                "the worker went away before it counted".into(),
            )),
            Err(_) => Err(EngineFailure::Generate(format!(
                "the worker did not count within {COUNT_TIMEOUT:?}"
            ))),
        }
    }

    /// Stops the running answer and drops the waiting ones (each ends `aborted`).
    pub fn abort_all(&self) {
        let _ = self.commands.send(Command::AbortAll);
    }

    /// Forgets the kept conversation in the worker.
    pub fn reset(&self) {
        let _ = self.commands.send(Command::Reset);
    }

    pub fn status(&self) -> EngineStatus {
        self.status.borrow().clone()
    }

    /// The status as it changes from now on: the receiver has seen the current value, so
    /// `changed()` waits for the next change. (A plain clone of the kept receiver would carry
    /// its old "seen" mark, and a loop that takes a fresh one each time — the daemon's
    /// availability follower did — would wake at once, for ever: a core burnt at idle.)
    pub fn watch(&self) -> watch::Receiver<EngineStatus> {
        let mut rx = self.status.clone();
        rx.mark_unchanged();
        rx
    }

    /// Waits until the model is loaded or loading gave up.
    pub async fn wait_settled(&mut self) -> EngineStatus {
        let settled = self
            .status
            .wait_for(|s| s.model.is_some() || s.gave_up)
            .await
            .map(|s| s.clone());
        settled.unwrap_or_else(|_| self.status.borrow().clone())
    }

    /// For the systemd watchdog: false when a worker is running but has stopped answering
    /// pings, or when the last `HANGS_BEFORE_WATCHDOG` workers all hung. An engine that gave
    /// up is not a hang: the daemon serves without it.
    pub fn alive(&self) -> bool {
        let s = self.status.borrow();
        if s.hangs_in_a_row >= HANGS_BEFORE_WATCHDOG {
            return false;
        }
        s.worker_pid.is_none() || s.pings_unanswered <= PINGS_BEFORE_HUNG
    }
}

struct Pending {
    turn: u64,
    chat: Vec<ChatMessage>,
    sampling: Sampling,
    events: mpsc::UnboundedSender<TurnEvent>,
}

async fn supervise(
    config: EngineConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    status: watch::Sender<EngineStatus>,
    queued: Arc<AtomicUsize>,
) {
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut backoff = BACKOFF_FIRST;
    loop {
        let outcome = run_worker(&config, &mut commands, &status, &mut queue, &queued).await;
        match outcome {
            Outcome::Shutdown => return,
            Outcome::LoadFailed(e) => {
                give_up(e, GaveUp::Load, &mut commands, &status, &mut queue, &queued).await;
                return;
            }
            Outcome::Crashed(e) => {
                give_up(
                    e,
                    GaveUp::Crashes,
                    &mut commands,
                    &status,
                    &mut queue,
                    &queued,
                )
                .await;
                return;
            }
            Outcome::Died(e) => {
                tracing::error!(
                    message_id = crate::events::ENGINE_FAILED,
                    "{e}; restarting it in {backoff:?}"
                );
                status.send_modify(|s| {
                    s.model = None;
                    s.worker_pid = None;
                    s.restarts += 1;
                    s.last_error = Some(e.to_string());
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Outcome::Healthy => backoff = BACKOFF_FIRST,
        }
    }
}

/// The model is not coming back: says why (journal, status), fails the waiting turns, and
/// answers every later one with `NotLoaded` until the daemon drops the handle.
async fn give_up(
    e: EngineFailure,
    because: GaveUp,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    status: &watch::Sender<EngineStatus>,
    queue: &mut VecDeque<Pending>,
    queued: &AtomicUsize,
) {
    tracing::error!(message_id = crate::events::ENGINE_FAILED, "{e}");
    status.send_modify(|s| {
        s.gave_up = true;
        s.gave_up_because = Some(because);
        s.model = None;
        s.worker_pid = None;
        s.last_error = Some(e.to_string());
    });
    let not_loaded = || EngineFailure::NotLoaded(e.to_string());
    for p in queue.drain(..) {
        queued.fetch_sub(1, Ordering::SeqCst);
        let _ = p.events.send(TurnEvent::Failed(not_loaded()));
    }
    while let Some(cmd) = commands.recv().await {
        match cmd {
            Command::Generate { events, .. } => {
                queued.fetch_sub(1, Ordering::SeqCst);
                let _ = events.send(TurnEvent::Failed(not_loaded()));
            }
            Command::Count { reply, .. } => {
                let _ = reply.send(Err(not_loaded()));
            }
            Command::AbortAll | Command::Reset => {}
        }
    }
}

enum Outcome {
    Shutdown,
    LoadFailed(EngineFailure),
    /// The model killed the worker on `CRASHES_BEFORE_GIVING_UP` answers in a row.
    Crashed(EngineFailure),
    Died(EngineFailure),
    /// The worker served for a while before dying: restart without growing the backoff.
    Healthy,
}

/// Runs one worker from start to death.
async fn run_worker(
    config: &EngineConfig,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    status: &watch::Sender<EngineStatus>,
    queue: &mut VecDeque<Pending>,
    queued: &AtomicUsize,
) -> Outcome {
    let started = Instant::now();
    let mut w = match worker::spawn(&config.program, &config.spec.placement.cpus) {
        Ok(w) => w,
        Err(e) => return Outcome::Died(e),
    };
    let pid = w.child.id();
    status.send_modify(|s| {
        s.worker_pid = pid;
        s.pings_unanswered = 0;
    });
    tracing::info!(worker_pid = pid, model = %config.spec.model_path.display(), "engine worker started, loading the model");
    // Events are read by their own task: reading a frame is not cancel-safe in a select!.
    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let mut reader = w.reader;
    let reader_task = tokio::spawn(async move {
        loop {
            match worker::recv(&mut reader).await {
                Ok(ev) => {
                    if ev_tx.send(Ok(ev)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = ev_tx.send(Err(e));
                    break;
                }
            }
        }
    });
    let _reader_guard = AbortOnDrop(reader_task);
    let mut writer = w.writer;
    if let Err(e) = worker::send(&mut writer, &Request::Load(config.spec.clone())).await {
        return Outcome::Died(EngineFailure::Died(format!(
            "cannot send the load request: {e}"
        )));
    }

    let mut loaded = false;
    // Killed by us for a missed heartbeat, not dead by itself (see the end of this function).
    let mut hung = false;
    let mut active: Option<Pending> = None;
    // When the active turn last moved (sent, or a piece came) and when it was asked to
    // abort: a worker whose reader answers pings while its generation is stuck in a driver
    // call would otherwise hold the turn, and every question after it, for ever.
    let mut progress = Instant::now();
    let mut abort_sent: Option<Instant> = None;
    let mut ping = tokio::time::interval(PING_EVERY);
    // A late supervisor sends its next ping a period after it woke, not a burst of the
    // missed ones: each counted ping is one the worker had PING_EVERY to answer.
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    // Counts asked of this worker and not answered yet; dropped with it (the askers then
    // hear that it went away).
    let mut counts: HashMap<u64, oneshot::Sender<Result<u32, EngineFailure>>> = HashMap::new();
    let mut count_id = 0u64;
    // Why the worker is gone, in words (wrapped in EngineFailure::Died once, below).
    let death: String = loop {
        // Feed the next turn when idle.
        if loaded
            && active.is_none()
            && let Some(p) = queue.pop_front()
        {
            let req = Request::Generate {
                turn: p.turn,
                chat: p.chat.clone(),
                sampling: p.sampling.clone(),
            };
            if let Err(e) = worker::send(&mut writer, &req).await {
                queue.push_front(p);
                break format!("cannot send to the worker: {e}");
            }
            active = Some(p);
            progress = Instant::now();
            abort_sent = None;
        }
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => return Outcome::Shutdown,
                Some(Command::Generate { turn, chat, sampling, events }) => {
                    queue.push_back(Pending { turn, chat, sampling, events });
                }
                Some(Command::AbortAll) => {
                    for p in queue.drain(..) {
                        queued.fetch_sub(1, Ordering::SeqCst);
                        let _ = p.events.send(TurnEvent::Finished(GenStats { aborted: true, ..GenStats::default() }));
                    }
                    if let Some(a) = &active {
                        let _ = worker::send(&mut writer, &Request::Abort { turn: a.turn }).await;
                        abort_sent.get_or_insert_with(Instant::now);
                    }
                }
                Some(Command::Reset) => {
                    let _ = worker::send(&mut writer, &Request::Reset).await;
                }
                Some(Command::Count { text, reply }) => {
                    if !loaded {
                        let _ = reply.send(Err(EngineFailure::NotLoaded("the model is loading".into())));
                    } else {
                        count_id += 1;
                        let req = Request::Count { id: count_id, text };
                        if worker::send(&mut writer, &req).await.is_ok() {
                            counts.insert(count_id, reply);
                        }
                    }
                }
            },
            ev = events.recv() => match ev {
                Some(Ok(Event::Loaded { info })) => {
                    tracing::info!(
                        message_id = crate::events::MODEL_LOADED,
                        model = %info.path.display(),
                        backend = info.backend.as_str(),
                        model_bytes = info.file_bytes,
                        load_ms = started.elapsed().as_millis() as u64,
                        "model {} loaded on {} in {} ms",
                        info.path.display(), info.backend.as_str(), started.elapsed().as_millis()
                    );
                    loaded = true;
                    status.send_modify(|s| {
                        s.model = Some(info);
                        s.last_error = None;
                    });
                }
                Some(Ok(Event::LoadFailed { error })) => {
                    let _ = w.child.start_kill();
                    return Outcome::LoadFailed(EngineFailure::Load(error));
                }
                Some(Ok(Event::Piece { turn, text })) => {
                    if let Some(a) = active.as_ref().filter(|a| a.turn == turn) {
                        progress = Instant::now();
                        let _ = a.events.send(TurnEvent::Piece(text));
                    }
                }
                Some(Ok(Event::Finished { turn, stats })) => {
                    if let Some(a) = active.take_if(|a| a.turn == turn) {
                        survived_a_turn(status);
                        queued.fetch_sub(1, Ordering::SeqCst);
                        let _ = a.events.send(TurnEvent::Finished(stats));
                    }
                }
                Some(Ok(Event::Failed { turn, error })) => {
                    if let Some(a) = active.take_if(|a| a.turn == turn) {
                        survived_a_turn(status);
                        queued.fetch_sub(1, Ordering::SeqCst);
                        let _ = a.events.send(TurnEvent::Failed(EngineFailure::Generate(error)));
                    }
                }
                Some(Ok(Event::Counted { id, tokens })) => {
                    if let Some(reply) = counts.remove(&id) {
                        let _ = reply.send(Ok(tokens));
                    }
                }
                Some(Ok(Event::CountFailed { id, error })) => {
                    if let Some(reply) = counts.remove(&id) {
                        let _ = reply.send(Err(EngineFailure::Generate(error)));
                    }
                }
                Some(Ok(Event::Pong { .. })) => {
                    status.send_modify(|s| {
                        s.pings_unanswered = 0;
                        s.hangs_in_a_row = 0;
                    });
                }
                Some(Err(e)) => break format!("connection lost: {e}"),
                None => break "connection lost".into(),
            },
            _ = ping.tick() => {
                seq += 1;
                if worker::send(&mut writer, &Request::Ping { seq }).await.is_err() {
                    break "the worker does not read its socket".into();
                }
                status.send_modify(|s| s.pings_unanswered += 1);
                if !loaded && started.elapsed() > config.load_deadline {
                    let _ = w.child.start_kill();
                    return Outcome::LoadFailed(EngineFailure::Load(format!(
                        "the model did not load within {} s (a read that never ends: a hung \
                         mount or a failing card?): stopped the worker",
                        config.load_deadline.as_secs()
                    )));
                }
                if active.is_some() {
                    let abort_limit = config.stall.min(ABORT_DEADLINE);
                    let wedged = if abort_sent.is_some_and(|t| t.elapsed() > abort_limit) {
                        Some(format!("the answer did not stop within {} s of an abort", abort_limit.as_secs()))
                    } else if progress.elapsed() > config.stall {
                        Some(format!("the answer made no progress for {} s", config.stall.as_secs()))
                    } else {
                        None
                    };
                    if let Some(why) = wedged {
                        // Not the model's crash (it is not counted toward giving the model
                        // up): a stuck driver call; the next worker may well answer.
                        hung = true;
                        let _ = w.child.start_kill();
                        break format!("{why} (the engine is wedged): killed it");
                    }
                }
                let stale = status.borrow().pings_unanswered > PINGS_BEFORE_HUNG;
                if stale {
                    status.send_modify(|s| s.hangs_in_a_row += 1);
                    hung = true;
                    let _ = w.child.start_kill();
                    break format!(
                        "no heartbeat for {PING_DEADLINE:?}: killed it ({PINGS_BEFORE_HUNG} pings unanswered)"
                    );
                }
            }
        }
    };
    // The worker is gone or going: reap it and say how it ended.
    let _ = w.child.start_kill();
    let how = match tokio::time::timeout(Duration::from_secs(5), w.child.wait()).await {
        Ok(Ok(st)) => describe_exit(st),
        _ => "did not exit".into(),
    };
    let failure = EngineFailure::Died(format!("{death} (worker {how})"));
    // Counted before the turn is failed, so whoever sees the failure sees the count.
    let mut crashes = 0;
    if active.is_some() && !hung {
        status.send_modify(|s| {
            s.crashes_in_a_row += 1;
            crashes = s.crashes_in_a_row;
        });
    }
    let given_up = (crashes >= CRASHES_BEFORE_GIVING_UP).then(|| {
        EngineFailure::Crashed(format!(
            "the model {} crashed the engine worker on {crashes} answers in a row ({death}; \
             worker {how}); given up",
            config.spec.model_path.display()
        ))
    });
    if let Some(a) = active.take() {
        queued.fetch_sub(1, Ordering::SeqCst);
        // The answer that made the engine give its model up fails with that reason: the
        // turn's error and the daemon's "no language model" then say the same, whichever
        // reaches `LastError` last.
        let why = given_up.clone().unwrap_or_else(|| failure.clone());
        let _ = a.events.send(TurnEvent::Failed(why));
    }
    if !loaded && !hung {
        // Died while loading: the model itself is the likely cause (a runtime crash on it).
        return Outcome::LoadFailed(EngineFailure::Load(format!(
            "the worker died while loading {}: {death} (worker {how})",
            config.spec.model_path.display()
        )));
    }
    if let Some(e) = given_up {
        return Outcome::Crashed(e);
    }
    // A worker that stopped answering while loading is not the model's fault (a stalled
    // machine, a wedged driver): it is restarted like any hung worker, and if the next one
    // hangs too the watchdog pings stop (`HANGS_BEFORE_WATCHDOG`). Giving up here would
    // leave the appliance without a tutor after one slow start.
    if started.elapsed() > BACKOFF_MAX {
        tracing::error!(
            message_id = crate::events::ENGINE_FAILED,
            "{failure}; restarting it"
        );
        status.send_modify(|s| {
            s.model = None;
            s.worker_pid = None;
            s.restarts += 1;
            s.last_error = Some(failure.to_string());
        });
        return Outcome::Healthy;
    }
    Outcome::Died(failure)
}

/// The worker ended a turn itself (answered or failed it): the crash count starts again.
fn survived_a_turn(status: &watch::Sender<EngineStatus>) {
    status.send_if_modified(|s| std::mem::replace(&mut s.crashes_in_a_row, 0) != 0);
}

fn describe_exit(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (_, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended".into(),
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests;
