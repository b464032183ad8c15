//! Boot and shutdown: the one place that owns the daemon's lifetime.
//!
//! Boot: config (done by `main`) → store → bus name → platform → READY. Each step sends a
//! `STATUS=` line, updates the `State`/`StatusText` properties and logs. Later steps (tuning,
//! benchmark, model load, voice) slot in between platform and READY.
//!
//! Shutdown (SIGTERM/SIGINT): `STOPPING=1`, record a clean stop, release the bus name, exit 0.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use zbus::Connection;
use zbus::fdo::{RequestNameFlags, RequestNameReply};
use zbus::object_server::InterfaceRef;

use crate::bus::{self, Status, Tutor};
use crate::cli::BusChoice;
use crate::config::{Config, LogLevel};
use crate::diagnostics::Value;
use crate::engine::{
    BackendKind, EngineConfig, EngineHandle, EngineStatus, LoadSpec, ModelInfo, Sampling,
};
use crate::events;
use crate::logging::LogControl;
use crate::models::Catalog;
use crate::models::resolve::{ResolveError, resolve};
use crate::notify::Notifier;
use crate::platform::Paths;
use crate::platform::profile::Profiles;
use crate::state::State;
use crate::store::{Store, StoreError};
use crate::tutor::Tutor as Conversation;

/// Why the daemon could not start or run. `main` maps each to an exit status.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot connect to the {bus}: {source}")]
    BusConnect { bus: BusChoice, source: zbus::Error },
    #[error(
        "cannot own {name} on the {bus}: {source} (is another tutord running, and does the D-Bus \
         policy /usr/share/dbus-1/system.d/org.tutord.Tutor1.conf allow this user to own it?)"
    )]
    BusName {
        name: &'static str,
        bus: BusChoice,
        source: zbus::Error,
    },
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    #[error("cannot install a signal handler: {0}")]
    Signals(std::io::Error),
}

impl DaemonError {
    /// The process exit status, from sysexits(3) so systemd and people can tell kinds apart.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Store(_) => 73, // EX_CANTCREAT
            DaemonError::BusConnect { .. } | DaemonError::BusName { .. } => 69, // EX_UNAVAILABLE
            DaemonError::Bus(_) | DaemonError::Signals(_) => 70, // EX_SOFTWARE
        }
    }
}

/// What the daemon was started with.
pub struct Options {
    pub config: Config,
    pub bus: BusChoice,
    /// Where the config was read from, for diagnostics.
    pub config_path: PathBuf,
}

/// Shared, read-mostly state the bus adapters read from.
pub struct Context {
    pub config: Config,
    pub config_path: PathBuf,
    pub bus: BusChoice,
    pub notifier: Notifier,
    log: LogControl,
    log_level: Mutex<String>,
    store: Arc<Mutex<Store>>,
    started: Instant,
    /// Benchmark, predictions, choice, calibration (see `planning`).
    planner: Mutex<crate::plan::service::Planner>,
    /// The catalog model the engine runs and its backend, for calibration.
    current_model: Mutex<Option<(String, String)>>,
    /// The tutoring session questions go to (see `tutor::session`).
    session: Mutex<Option<crate::store::SessionRow>>,
    /// Turn id → its row in the store, while the turn runs.
    turn_rows: Mutex<std::collections::HashMap<String, i64>>,
    /// Speech recognition, once loaded (or why not).
    stt: Mutex<Result<Arc<dyn crate::voice::stt::Transcriber>, String>>,
    /// Speech synthesis, once loaded (or why not).
    tts: Mutex<Result<Arc<dyn crate::voice::tts::Synthesizer>, String>>,
    /// The microphone loop and the loudspeaker, once opened (or why not).
    audio: Mutex<crate::voice::live::Devices>,
    /// What the tutor is doing; `State` follows it (see `state::Activity`).
    activity: tokio::sync::watch::Sender<crate::state::Activity>,
    pub tutor: Arc<Conversation>,
    pub catalog: Catalog,
    iface: OnceLock<InterfaceRef<Tutor>>,
    /// What tuning changed (issue 5), for diagnostics.
    pub tuning: crate::tuning::Shared,
}

impl Context {
    /// Builds the `Diagnostics()` answer.
    pub fn diagnostics(&self, status: &Status) -> Vec<(String, Value)> {
        let mut d: Vec<(String, Value)> = vec![
            ("version".into(), crate::VERSION.into()),
            ("pid".into(), std::process::id().into()),
            (
                "uptime_seconds".into(),
                self.started.elapsed().as_secs_f64().into(),
            ),
            ("state".into(), status.state.as_str().into()),
            ("status_text".into(), status.status_text.clone().into()),
            ("board".into(), status.board.clone().into()),
            (
                "config_file".into(),
                self.config_path.display().to_string().into(),
            ),
            (
                "state_dir".into(),
                self.config.daemon.state_dir.display().to_string().into(),
            ),
            ("bus".into(), self.bus.to_string().into()),
            (
                "log_sink".into(),
                format!("{:?}", self.log.sink).to_lowercase().into(),
            ),
            ("log_level".into(), lock(&self.log_level).clone().into()),
            (
                "watchdog_usec".into(),
                self.notifier
                    .watchdog_timeout()
                    .map_or(0, |d| d.as_micros() as u64)
                    .into(),
            ),
        ];
        match self.tutor.engine() {
            None => {
                d.push(("engine".into(), "none".into()));
                if let Some(why) = self.tutor.no_engine_reason() {
                    d.push(("engine_error".into(), why.into()));
                }
            }
            Some(e) => {
                let s = e.status();
                d.push((
                    "engine".into(),
                    if s.model.is_some() {
                        "loaded"
                    } else if s.gave_up {
                        "failed"
                    } else {
                        "loading"
                    }
                    .into(),
                ));
                if let Some(m) = &s.model {
                    d.push(("model".into(), m.path.display().to_string().into()));
                    d.push(("model_bytes".into(), m.file_bytes.into()));
                    d.push(("backend".into(), m.backend.as_str().into()));
                    d.push(("engine_runtime".into(), m.runtime.clone().into()));
                    d.push(("context_length".into(), m.context_length.into()));
                }
                if let Some(pid) = s.worker_pid {
                    d.push(("engine_pid".into(), pid.into()));
                }
                d.push(("engine_restarts".into(), s.restarts.into()));
                if let Some(err) = &s.last_error {
                    d.push(("engine_error".into(), err.clone().into()));
                }
            }
        }
        let store = lock(&self.store);
        d.push(("database".into(), store.path().display().to_string().into()));
        d.push(("boot_id".into(), store.boot_id().into()));
        d.push((
            "previous_boot_unclean".into(),
            store.previous_boot_unclean().into(),
        ));
        if let Some(p) = store.recovered_from() {
            d.push((
                "database_recovered_to".into(),
                p.display().to_string().into(),
            ));
        }
        // A store error must not hide the rest of the diagnostics: report it in place.
        match store.schema_version() {
            Ok(v) => d.push(("schema_version".into(), v.into())),
            Err(e) => d.push(("store_error".into(), e.to_string().into())),
        }
        match store.boots_total() {
            Ok(n) => d.push(("boots_total".into(), n.into())),
            Err(e) => d.push(("store_error".into(), e.to_string().into())),
        }
        drop(store);
        // tuning (issue 5): stopped units, governors, affinity, throttling
        let tuning = self
            .tuning
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        d.extend(tuning.entries());
        d
    }

    /// The loaded model, if any.
    pub fn model(&self) -> Option<ModelInfo> {
        self.tutor.engine().and_then(|e| e.status().model)
    }

    /// Resolves a model name or path and starts an engine for it (loading in the background),
    /// on the backend the plan gives it.
    pub fn engine_for(&self, model: &str) -> Result<EngineHandle, ResolveError> {
        self.start_engine(model, None)
    }

    pub(crate) fn planner(&self) -> std::sync::MutexGuard<'_, crate::plan::service::Planner> {
        lock(&self.planner)
    }

    pub(crate) fn store_lock(&self) -> std::sync::MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn store_handle(&self) -> Arc<Mutex<Store>> {
        self.store.clone()
    }

    pub(crate) fn session_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<crate::store::SessionRow>> {
        lock(&self.session)
    }

    pub(crate) fn turn_rows_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, i64>> {
        lock(&self.turn_rows)
    }

    pub(crate) fn stt_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, Result<Arc<dyn crate::voice::stt::Transcriber>, String>> {
        lock(&self.stt)
    }

    pub(crate) fn tts_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, Result<Arc<dyn crate::voice::tts::Synthesizer>, String>> {
        lock(&self.tts)
    }

    pub(crate) fn audio_lock(&self) -> std::sync::MutexGuard<'_, crate::voice::live::Devices> {
        lock(&self.audio)
    }

    /// Changes what the tutor is doing; a task publishes the resulting `State`.
    pub fn activity(&self, change: impl FnOnce(&mut crate::state::Activity)) {
        self.activity.send_modify(change);
    }

    pub(crate) fn watch_activity(&self) -> tokio::sync::watch::Receiver<crate::state::Activity> {
        self.activity.subscribe()
    }

    pub(crate) fn current_model_lock(&self) -> std::sync::MutexGuard<'_, Option<(String, String)>> {
        lock(&self.current_model)
    }

    /// The D-Bus interface object, once the bus is up.
    pub fn iface(&self) -> Option<InterfaceRef<Tutor>> {
        self.iface.get().cloned()
    }

    /// Changes the log level at run time.
    pub fn set_log_level(&self, level: LogLevel) -> Result<(), String> {
        self.log.set_level(level)?;
        *lock(&self.log_level) = level.as_str().to_string();
        tracing::info!("log level set to {}", level.as_str());
        Ok(())
    }
}

/// Locks a mutex, taking the data even if a panicking thread poisoned it: the data are plain
/// values that stay consistent, and the daemon must keep serving.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Publishes boot progress to systemd, D-Bus and the journal in one go.
struct Reporter {
    iface: InterfaceRef<Tutor>,
    notifier: Notifier,
}

impl Reporter {
    async fn step(&self, state: State, text: &str, progress: f64) {
        self.notifier.status(text);
        tracing::info!(tutord_state = state.as_str(), "{text}");
        self.update(|s| {
            s.state = state;
            s.status_text = text.to_string();
            s.progress = progress;
        })
        .await;
    }

    async fn set_board(&self, board: &str) {
        self.update(|s| s.board = board.to_string()).await;
    }

    async fn set_last_error(&self, error: String) {
        self.update(|s| s.last_error = error).await;
    }

    async fn update(&self, change: impl FnOnce(&mut Status)) {
        // A failed PropertiesChanged emission (bus hiccup) must not stop the boot; the
        // properties themselves are still right when read.
        if let Err(e) = Tutor::update(&self.iface, change).await {
            tracing::warn!("cannot emit PropertiesChanged: {e}");
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT. Returns after cleanup.
pub async fn run(mut opts: Options, log: LogControl) -> Result<(), DaemonError> {
    let boot_started = Instant::now();
    let notifier = Notifier::from_env();
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    tracing::info!(
        message_id = events::STARTED,
        tutord_version = crate::VERSION,
        config_file = %opts.config_path.display(),
        state_dir = %opts.config.daemon.state_dir.display(),
        "tutord {} starting",
        crate::VERSION
    );

    notifier.status("Opening the database");
    let busy = Duration::from_millis(opts.config.store.busy_timeout_ms.into());
    let store = Store::open(&opts.config.daemon.state_dir, busy)?;
    if store.previous_boot_unclean() {
        tracing::warn!(
            database = %store.path().display(),
            "the previous run did not stop cleanly (crash, kill or power cut)"
        );
    }

    let paths = Paths::new(&opts.config.platform.root);
    let profiles = Profiles::load(&opts.config.platform.boards).unwrap_or_else(|e| {
        tracing::warn!("{e}: using the built-in board profiles");
        Profiles::builtin()
    });
    let profile = profiles.detect(&paths).clone();

    // ---- tuning (issue 5): the cores are chosen now, so that this process's threads and the
    // engine worker (started next) run on them from the start.
    let tuning_report = crate::tuning::Shared::default();
    let mut tuner: crate::tuning::Tuner =
        crate::tuning::Tuner::new(&opts.config, profile.clone(), tuning_report.clone());
    if opts.config.llm.cpus.is_empty()
        && let Some(cpus) = tuner.engine_cpus()
    {
        opts.config.llm.cpus = cpus;
    }
    tuner.pin_process();
    // ---- end tuning

    let catalog = load_catalog(&opts.config.models.catalog);
    // The benchmark runs on the cores inference will use.
    let bench_cpus = if opts.config.llm.cpus.is_empty() {
        crate::platform::topology::allowed_cpus()
    } else {
        opts.config.llm.cpus.clone()
    };
    let planner = crate::plan::service::Planner::new(&opts.config, profile.clone(), bench_cpus);
    // The model is chosen and loaded after tuning and the benchmark, so that the benchmark
    // measures a quiet bus and the load does not compete with it.
    let engine = if opts.config.llm.model.is_empty() {
        tracing::info!("no model configured ([llm] model): serving without a tutor");
        Err("none is configured ([llm] model in tutord.toml)".to_string())
    } else {
        Err("the model is chosen and loaded after the boot benchmark".to_string())
    };
    let llm = &opts.config.llm;
    let sampling = Sampling {
        temperature: llm.temperature as f32,
        max_tokens: llm.max_tokens,
        ..Sampling::default()
    };
    let tutor = Arc::new(Conversation::new(
        engine,
        crate::tutor::persona::system_prompt(llm, &opts.config.tutor, &opts.config.tutor.subject),
        sampling,
    ));
    match store.last_turn_number() {
        Ok(n) => tutor.number_turns_after(n),
        Err(e) => tracing::error!("{e}; turn ids start again at turn-1"),
    }
    let ctx = Arc::new(Context {
        tutor,
        catalog,
        iface: OnceLock::new(),
        log_level: Mutex::new(opts.config.daemon.log_level.as_str().to_string()),
        config: opts.config,
        config_path: opts.config_path,
        bus: opts.bus.clone(),
        notifier: notifier.clone(),
        log,
        store: Arc::new(Mutex::new(store)),
        planner: Mutex::new(planner),
        current_model: Mutex::new(None),
        session: Mutex::new(None),
        turn_rows: Mutex::new(std::collections::HashMap::new()),
        stt: Mutex::new(crate::voice::pipeline::not_loaded()),
        tts: Mutex::new(Err("the voice is still loading".into())),
        audio: Mutex::new(crate::voice::live::Devices::default()),
        activity: tokio::sync::watch::Sender::new(crate::state::Activity::default()),
        tuning: tuning_report,
        started: boot_started,
    });

    notifier.status("Connecting to D-Bus");
    let conn = connect(&opts.bus, Tutor::new(ctx.clone())).await?;
    let iface = conn
        .object_server()
        .interface::<_, Tutor>(bus::PATH)
        .await?;
    let _ = ctx.iface.set(iface.clone());
    tokio::spawn(crate::bus::publish_activity(ctx.clone(), iface.clone()));
    let reporter = Reporter {
        iface: iface.clone(),
        notifier: notifier.clone(),
    };

    reporter
        .step(State::Booting, "Detecting the board", 0.5)
        .await;
    let board = profile.name.clone();
    reporter.set_board(&board).await;
    tracing::info!(
        board = %board,
        board_family = profile.board().as_str(),
        "board: {board} ({} profile)",
        profiles.origin
    );

    // Tuning is there to free the bus: when it will change something, measure before it too
    // (cached like any result), so the journal shows what it gained.
    let tuning_may_change = ctx.config.tuning.mode == crate::config::TuningMode::Apply
        && (profile.board() != crate::platform::Board::Generic
            || !ctx.config.tuning.stop_units.is_empty()
            || ctx.config.tuning.swap == crate::config::SwapChoice::Off);
    if tuning_may_change {
        reporter
            .step(
                State::Benchmarking,
                "Measuring memory bandwidth before tuning",
                0.55,
            )
            .await;
        ctx.benchmark(false).await;
    }

    // ---- tuning (issue 5): undo what a crashed run left, then stop units and pin clocks.
    reporter
        .step(State::Tuning, "Tuning the system for the model", 0.6)
        .await;
    tuner.start(&*ctx.store).await;
    let thermal = tuner.spawn_thermal();
    // ---- end tuning
    {
        let r = crate::tuning::report::lock(&ctx.tuning);
        ctx.planner().tuned = !r.stopped_units.is_empty() || !r.writes.is_empty();
    }

    reporter
        .step(State::Benchmarking, "Measuring memory bandwidth", 0.65)
        .await;
    ctx.benchmark(false).await;
    publish_figures(&iface).await;
    reporter
        .step(State::Benchmarking, "Choosing the model", 0.7)
        .await;
    let planned = ctx.plan();
    let mut loading = None;
    if planned.is_some() {
        loading = start_planned(&ctx, planned);
    } else if ctx.config.llm.model == "auto" {
        let why = ctx
            .planner()
            .choice
            .as_ref()
            .map_or("no plan".to_string(), |c| c.reason.clone());
        let _ = ctx
            .tutor
            .replace_engine(Err(format!("the planner chose no model: {why}")));
    }
    publish_figures(&iface).await;
    // After the engine is in place (replacing it starts a fresh conversation).
    ctx.resume_session();
    // Speech recognition loads beside the LLM; spoken questions wait for it (NotReady).
    {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            ctx.load_stt().await;
            // The microphone and loudspeaker once there is something to hear and say with.
            let host = Arc::new(crate::bus::voice::BusHost { ctx: ctx.clone() });
            crate::voice::live::start(ctx, host).await;
        });
    }

    if !ctx.config.llm.model.is_empty()
        && let Some(why) = ctx.tutor.no_engine_reason()
    {
        reporter.set_last_error(why).await;
    }
    if let Some(mut engine) = ctx.tutor.engine() {
        reporter
            .step(State::Loading, "Loading the language model", 0.75)
            .await;
        let mut status = settle(&ctx, &notifier, &mut engine).await;
        // A model that does not load (a corrupt or truncated file, a runtime that rejects
        // it): in auto mode the plan passes it over and the next smaller model loads.
        let mut fell_back = None;
        while status.gave_up
            && let (Some(model), Some(error)) = (loading.as_deref(), status.last_error.as_deref())
            && let Some(next) = ctx.fall_back(model, error)
        {
            fell_back = Some(format!(
                "{model} failed to load ({error}); fell back to {}",
                next.0
            ));
            loading = start_planned(&ctx, Some(next));
            // The replaced engine started a fresh conversation: take the open session up
            // again.
            ctx.resume_session();
            let Some(mut next) = ctx.tutor.engine() else {
                break;
            };
            status = settle(&ctx, &notifier, &mut next).await;
        }
        {
            let this = iface.get().await;
            let emitter = iface.signal_emitter();
            for r in [
                this.backend_changed(emitter).await,
                this.model_changed(emitter).await,
                this.model_bytes_changed(emitter).await,
            ] {
                if let Err(e) = r {
                    tracing::warn!("cannot emit PropertiesChanged: {e}");
                }
            }
        }
        if let Some(err) = status.last_error.filter(|_| status.gave_up) {
            // The appliance stays up without a tutor: diagnostics and the rest still serve.
            reporter.set_last_error(err).await;
        } else if let Some(why) = fell_back {
            // Serving, but not with the model the plan wanted: the UI should know why.
            reporter.set_last_error(why).await;
        }
    }

    let boot_ms = boot_started.elapsed().as_millis() as u64;
    if let Err(e) = lock(&ctx.store).record_ready() {
        tracing::error!("{e}");
    }
    reporter.step(State::Ready, "Ready", 1.0).await;
    notifier.ready("Ready");
    tracing::info!(
        message_id = events::READY,
        boot_ms,
        board = board.as_str(),
        "tutord ready on the {} after {boot_ms} ms",
        opts.bus
    );

    // Watchdog: ping at half of WATCHDOG_USEC, and only after a round trip through the bus
    // and our own object server succeeded, so a wedged connection stops the pings and
    // systemd restarts us. Without a watchdog the tick is effectively never.
    let interval = notifier
        .watchdog_interval()
        .unwrap_or(Duration::from_secs(24 * 3600));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let signal_name = loop {
        tokio::select! {
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            _ = tick.tick() => {
                if notifier.watchdog_interval().is_none() {
                    continue;
                }
                let check = match self_check(&conn, interval / 2).await {
                    Ok(()) if ctx.tutor.engine().is_some_and(|e| !e.alive()) => {
                        Err("the engine worker stopped answering its heartbeat".to_string())
                    }
                    other => other,
                };
                match check {
                    Ok(()) => notifier.watchdog(),
                    Err(e) => tracing::warn!(
                        message_id = events::WATCHDOG_SKIPPED,
                        "liveness check failed, not pinging the watchdog: {e}"
                    ),
                }
            }
        }
    };

    let stop_started = Instant::now();
    notifier.stopping("Stopping");
    tracing::info!(
        message_id = events::STOPPING,
        signal = signal_name,
        "stopping on {signal_name}"
    );
    // ---- tuning (issue 5): start the stopped units again, restore the governors.
    if let Some(t) = thermal {
        t.abort();
    }
    tuner.stop(&*ctx.store).await;
    // ---- end tuning
    if let Err(e) = lock(&ctx.store).record_clean_stop() {
        tracing::error!("{e}");
    }
    // Give the name back before exiting so a restarted tutord can take it at once.
    if let Err(e) = conn.release_name(bus::NAME).await {
        tracing::debug!("releasing {}: {e}", bus::NAME);
    }
    drop(conn);
    tracing::info!(
        message_id = events::STOPPED,
        stop_ms = stop_started.elapsed().as_millis() as u64,
        "tutord stopped"
    );
    Ok(())
}

/// Starts the engine for the plan's choice (`planned`: model and backend) and puts it in
/// place, falling back while the model cannot even be resolved; returns the model being
/// loaded, or None when no engine could be started (the tutor then says why).
fn start_planned(ctx: &Context, mut planned: Option<(String, Option<String>)>) -> Option<String> {
    while let Some((model, backend)) = planned {
        let engine = ctx.start_engine(&model, backend.as_deref());
        let failed = engine.as_ref().err().map(|e| e.to_string());
        if let Some(e) = &failed {
            tracing::error!(
                message_id = events::ENGINE_FAILED,
                "cannot load the model {model}: {e}"
            );
        }
        // Nothing is queued at boot, so the replacement cannot be refused.
        let _ = ctx.tutor.replace_engine(engine.map_err(|e| e.to_string()));
        match failed {
            None => return Some(model),
            Some(e) => planned = ctx.fall_back(&model, &e),
        }
    }
    None
}

/// Waits until the engine's model is loaded or loading gave up, keeping systemd's start
/// timeout ahead of the load and the watchdog fed, however long the model takes to read.
async fn settle(ctx: &Context, notifier: &Notifier, engine: &mut EngineHandle) -> EngineStatus {
    let settle = engine.wait_settled();
    tokio::pin!(settle);
    let mut extend = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            s = &mut settle => break s,
            // ...but not when worker after worker hangs while loading: then systemd's
            // start timeout or watchdog restarts tutord.
            _ = extend.tick() => {
                if ctx.tutor.engine().is_none_or(|e| e.alive()) {
                    notifier.extend_timeout(Duration::from_secs(30));
                    notifier.watchdog();
                }
            }
        }
    }
}

/// Emits PropertiesChanged for the benchmark and plan figures.
/// The properties read the planner's figures live; this only tells clients they changed.
/// Not for use inside an interface method (see `Tutor::rebenchmark`).
pub(crate) async fn publish_figures(iface: &InterfaceRef<Tutor>) {
    let this = iface.get().await;
    let e = iface.signal_emitter();
    for r in [
        this.bandwidth_measured_changed(e).await,
        this.bandwidth_theoretical_changed(e).await,
        this.predicted_tokens_per_second_changed(e).await,
    ] {
        if let Err(err) = r {
            tracing::warn!("cannot emit PropertiesChanged: {err}");
        }
    }
}

/// Reads the model catalog; without one, only model paths can be loaded.
fn load_catalog(path: &std::path::Path) -> Catalog {
    match Catalog::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("{e}: only model paths can be loaded");
            Catalog {
                origin: path.display().to_string(),
                models: Vec::new(),
            }
        }
    }
}

/// Resolves `model` and starts an engine supervisor for it on `backend`.
pub(crate) fn engine_for(
    config: &Config,
    catalog: &Catalog,
    model: &str,
    backend: BackendKind,
) -> Result<EngineHandle, ResolveError> {
    let resolved = resolve(model, catalog, &config.models.dir)?;
    let llm = &config.llm;
    let program = if llm.engine_path.is_empty() {
        std::env::current_exe()
            .map(|p| p.with_file_name("tutord-engine"))
            .unwrap_or_else(|_| PathBuf::from("/usr/bin/tutord-engine"))
    } else {
        PathBuf::from(&llm.engine_path)
    };
    Ok(EngineHandle::start(EngineConfig {
        program,
        spec: LoadSpec {
            backend,
            model_path: resolved.path,
            context_length: llm.context_length,
            placement: crate::engine::Placement {
                cpus: llm.cpus.clone(),
            },
            runtime_library: None,
        },
    }))
}

/// Connects, serves the interface and takes the well-known name.
async fn connect(bus_choice: &BusChoice, tutor: Tutor) -> Result<Connection, DaemonError> {
    // Serve first, then ask for the name: a client that sees the name appear can call at once.
    let conn = bus_choice
        .builder()
        .serve_at(bus::PATH, tutor)
        .build()
        .await
        .map_err(|source| DaemonError::BusConnect {
            bus: bus_choice.clone(),
            source,
        })?;
    // DO_NOT_QUEUE: a second tutord must fail loudly, not wait silently in the name's queue.
    let reply = conn
        .request_name_with_flags(bus::NAME, RequestNameFlags::DO_NOT_QUEUE)
        .await;
    let taken = |source| DaemonError::BusName {
        name: bus::NAME,
        bus: bus_choice.clone(),
        source,
    };
    match reply {
        Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => Ok(conn),
        Ok(other) => Err(taken(zbus::Error::Failure(format!(
            "the bus answered {other:?}: another process owns the name"
        )))),
        Err(e) => Err(taken(e)),
    }
}

/// A `Peer.Ping` to ourselves through the bus daemon: proves the connection, the bus and our
/// object server's dispatch all work.
async fn self_check(conn: &Connection, timeout: Duration) -> Result<(), String> {
    let me = conn
        .unique_name()
        .ok_or("no unique name on the bus")?
        .to_owned();
    let call = conn.call_method(
        Some(me.as_str()),
        bus::PATH,
        Some("org.freedesktop.DBus.Peer"),
        "Ping",
        &(),
    );
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}
