//! The daemon: composes the domains and owns the process's lifetime. Nothing else happens
//! here.
//!
//! - start: store, platform, the domains' handles (plan, voice, tutor), the bus;
//! - boot: detect the board, tune, benchmark, plan, load the model, load the voice, READY —
//!   raced against SIGTERM/SIGINT, so a stop during the benchmark or a long model load ends
//!   the boot at once;
//! - serve: the watchdog, until SIGTERM/SIGINT;
//! - shutdown, always: STOPPING, undo tuning (units started again, governors restored),
//!   record the clean stop, release the bus name.
//!
//! Each boot step sends a `STATUS=` line, updates the published status and logs.

mod availability;
mod facts;
mod live;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use zbus::Connection;
use zbus::fdo::{RequestNameFlags, RequestNameReply};

use crate::bus::{self, Handles, Tutor1};
use crate::cli::BusChoice;
use crate::config::{Config, HistoryConfig};
use crate::engine::{Sampling, Slot};
use crate::events;
use crate::logging::LogControl;
use crate::models::Catalog;
use crate::notify::Notifier;
use crate::plan::planner::Planner;
use crate::platform::Paths;
use crate::platform::profile::{BoardProfile, Profiles};
use crate::state::{Activity, State, Status};
use crate::store::{Store, StoreError};
use crate::sync::lock;
use crate::tuning::Tuner;
use crate::tutor::Conversation;

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

/// Publishes boot progress to systemd, the published status and the journal in one go.
struct Reporter {
    status: watch::Sender<Status>,
    notifier: Notifier,
}

impl Reporter {
    fn step(&self, state: State, text: &str, progress: f64) {
        self.notifier.status(text);
        tracing::info!(tutord_state = state.as_str(), "{text}");
        self.status.send_modify(|s| {
            s.state = state;
            s.status_text = text.to_string();
            s.progress = progress;
        });
    }
}

/// The domains, composed.
struct Daemon {
    config: Config,
    bus: BusChoice,
    profile: BoardProfile,
    store: Arc<Mutex<Store>>,
    plan: crate::plan::service::Service,
    voice: crate::voice::Voice,
    tutor: crate::tutor::Service,
    slot: Arc<Slot>,
    status: watch::Sender<Status>,
    activity: watch::Receiver<Activity>,
    reporter: Reporter,
    /// Why this run keeps nothing (its state directory could not be written at start).
    not_storing: Option<Arc<str>>,
}

/// Opens the store in the state directory. When that cannot be written (a full disk, a
/// read-only or missing directory), exiting would only make systemd restart tutord into the
/// same error until its start limit, and the appliance would stay silent: answer with a
/// store in memory instead, saying so. A database from a newer tutord still stops the start
/// (it must not be used, and memory would hide that).
fn open_store(
    dir: &std::path::Path,
    busy: Duration,
) -> Result<(Store, Option<Arc<str>>), DaemonError> {
    match Store::open(dir, busy) {
        Ok(store) => Ok((store, None)),
        Err(e @ StoreError::TooNew { .. }) => Err(e.into()),
        Err(e) => {
            tracing::error!(
                message_id = events::STORE_UNAVAILABLE,
                state_dir = %dir.display(),
                "{e}: answering without storing until the next start (free space in {}, \
                 then systemctl restart tutord); nothing of this run is kept",
                dir.display()
            );
            Ok((Store::in_memory()?, Some(e.to_string().into())))
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

    // ---- start: store, platform, domains, bus
    notifier.status("Opening the database");
    let busy = Duration::from_millis(opts.config.store.busy_timeout_ms.into());
    let (store, not_storing) = open_store(&opts.config.daemon.state_dir, busy)?;
    if store.previous_boot_unclean() {
        tracing::warn!(
            database = %store.path().display(),
            "the previous run did not stop cleanly (crash, kill or power cut)"
        );
    }
    let store = Arc::new(Mutex::new(store));
    let paths = Paths::new(&opts.config.platform.root);
    let profiles = Profiles::load(&opts.config.platform.boards).unwrap_or_else(|e| {
        tracing::warn!("{e}: using the built-in board profiles");
        Profiles::builtin()
    });
    let profile = profiles.detect(&paths).clone();
    // The cores are chosen now, so that this process's threads and the engine worker run on
    // them from the start.
    let tuning_report = crate::tuning::Shared::default();
    let mut tuner = Tuner::new(&opts.config, profile.clone(), tuning_report.clone());
    if opts.config.llm.cpus.is_empty()
        && let Some(cpus) = tuner.engine_cpus()
    {
        opts.config.llm.cpus = cpus;
    }
    tuner.pin_process();
    let catalog = load_catalog(&opts.config.models.catalog);

    let status = watch::Sender::new(Status::default());
    if let Some(why) = &not_storing {
        status.send_modify(|s| s.last_error = format!("answering without storing: {why}"));
    }
    let activity = watch::Sender::new(Activity::default());
    let mut d = compose(
        &opts,
        &profile,
        store.clone(),
        catalog,
        status.clone(),
        &activity,
        notifier.clone(),
    );
    d.not_storing = not_storing;
    let facts = Arc::new(facts::Facts {
        config: opts.config.clone(),
        config_path: opts.config_path.clone(),
        bus: opts.bus.clone(),
        notifier: notifier.clone(),
        log,
        log_level: Mutex::new(opts.config.daemon.log_level.as_str().to_string()),
        store: store.clone(),
        slot: d.slot.clone(),
        status: status.subscribe(),
        tuning: tuning_report,
        started: boot_started,
    });

    notifier.status("Connecting to D-Bus");
    let handles = Handles {
        tutor: d.tutor.clone(),
        plan: d.plan.clone(),
        voice: d.voice.clone(),
        status: status.subscribe(),
        daemon: facts,
        admin_group: opts.config.daemon.admin_group.clone(),
        models_dir: opts.config.models.dir.clone(),
    };
    let conn = connect(&opts.bus, Tutor1::new(handles)).await?;
    let iface = conn
        .object_server()
        .interface::<_, Tutor1>(bus::PATH)
        .await?;
    tokio::spawn(bus::signals::forward_events(
        iface.clone(),
        d.tutor.events(),
    ));
    tokio::spawn(bus::signals::forward_properties(
        iface.clone(),
        status.subscribe(),
        d.plan.watch(),
    ));
    tokio::spawn(follow_answers(status.clone(), d.tutor.events()));
    tokio::spawn(follow_spoken(d.plan.clone(), d.tutor.events()));

    // ---- boot, raced against the stop signals
    let mut thermal = None;
    let stopped_by = {
        let boot = d.boot(&mut tuner, &mut thermal, boot_started);
        tokio::select! {
            () = boot => None,
            _ = sigterm.recv() => Some("SIGTERM"),
            _ = sigint.recv() => Some("SIGINT"),
        }
    };
    let signal_name = match stopped_by {
        Some(name) => {
            tracing::warn!(
                message_id = events::STOPPING,
                signal = name,
                "{name} during boot: the boot ends here"
            );
            name
        }
        None => serve(&conn, &notifier, &d.slot, &mut sigterm, &mut sigint).await,
    };

    // ---- shutdown, always
    let stop_started = Instant::now();
    notifier.stopping("Stopping");
    tracing::info!(
        message_id = events::STOPPING,
        signal = signal_name,
        "stopping on {signal_name}"
    );
    // Start the stopped units again, restore the governors.
    if let Some(t) = thermal {
        t.abort();
    }
    tuner.stop(&*store).await;
    if let Err(e) = lock(&store).record_clean_stop() {
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

/// Builds the domains' handles and wires them: the tutor tells the planner of every answer
/// (calibration); both share the engine slot.
fn compose(
    opts: &Options,
    profile: &BoardProfile,
    store: Arc<Mutex<Store>>,
    catalog: Catalog,
    status: watch::Sender<Status>,
    activity: &watch::Sender<Activity>,
    notifier: Notifier,
) -> Daemon {
    let config = &opts.config;
    let slot = Slot::new(Err(if config.llm.model.is_empty() {
        "none is configured ([llm] model in tutord.toml)".to_string()
    } else {
        "the model is chosen and loaded after the boot benchmark".to_string()
    }));
    // The benchmark runs on the cores inference will use.
    let bench_cpus = if config.llm.cpus.is_empty() {
        crate::platform::topology::allowed_cpus()
    } else {
        config.llm.cpus.clone()
    };
    let plan = crate::plan::service::Service::new(
        Planner::new(config, profile.clone(), bench_cpus),
        store.clone(),
        catalog.clone(),
        config.llm.clone(),
        config.models.dir.clone(),
        slot.clone(),
    );
    let voice = crate::voice::Voice::new(
        config.voice.clone(),
        catalog,
        config.models.dir.clone(),
        activity.clone(),
    );
    let llm = &config.llm;
    let sampling = Sampling {
        temperature: llm.temperature as f32,
        max_tokens: llm.max_tokens,
        ..Sampling::default()
    };
    let conversation = Conversation::new(
        slot.clone(),
        crate::tutor::persona::system_prompt(llm, &config.tutor, &config.tutor.subject),
        sampling,
        llm.context_length,
    );
    let calibrate = plan.clone();
    let tutor = crate::tutor::Service::new(
        conversation,
        store.clone(),
        config.llm.clone(),
        config.tutor.clone(),
        voice.clone(),
        Box::new(move |stats| calibrate.calibrate(stats)),
        activity.clone(),
    );
    Daemon {
        config: config.clone(),
        bus: opts.bus.clone(),
        profile: profile.clone(),
        store,
        plan,
        voice,
        tutor,
        slot,
        reporter: Reporter {
            status: status.clone(),
            notifier,
        },
        status,
        activity: activity.subscribe(),
        not_storing: None,
    }
}

impl Daemon {
    /// Board, tuning, benchmark, plan, model, voice, READY. Cancelled by a stop signal at
    /// any await: what tuning did is journaled in the store before it is done, and the
    /// shutdown undoes it.
    async fn boot(
        &self,
        tuner: &mut Tuner,
        thermal: &mut Option<tokio::task::JoinHandle<()>>,
        boot_started: Instant,
    ) {
        let r = &self.reporter;
        r.step(State::Booting, "Detecting the board", 0.5);
        let board = self.profile.name.clone();
        self.status.send_modify(|s| s.board = board.clone());
        tracing::info!(
            board = %board,
            board_family = self.profile.board().as_str(),
            "board: {board}"
        );

        // Tuning is there to free the bus: when it will change something, measure before it
        // too (cached like any result), so the journal shows what it gained.
        let t = &self.config.tuning;
        let tuning_may_change = t.mode == crate::config::TuningMode::Apply
            && (self.profile.board() != crate::platform::Board::Generic
                || !t.stop_units.is_empty()
                || t.swap == crate::config::SwapChoice::Off);
        if tuning_may_change {
            r.step(
                State::Benchmarking,
                "Measuring memory bandwidth before tuning",
                0.55,
            );
            self.plan.benchmark(false).await;
        }
        r.step(State::Tuning, "Tuning the system for the model", 0.6);
        // Undo what a crashed run left, then stop units and pin clocks.
        tuner.start(&*self.store).await;
        *thermal = tuner.spawn_thermal();
        {
            let shared = tuner.report();
            let report = crate::tuning::report::lock(&shared);
            self.plan
                .set_tuned(!report.stopped_units.is_empty() || !report.writes.is_empty());
        }

        r.step(State::Benchmarking, "Measuring memory bandwidth", 0.65);
        self.plan.benchmark(false).await;

        // Speech recognition and the voice load beside the LLM; spoken questions wait for
        // them (NotReady). The microphone and loudspeaker open once there is something to
        // hear and say with.
        {
            let (voice, host) = (self.voice.clone(), live::Host::new(self.tutor.clone()));
            tokio::spawn(async move {
                voice.load().await;
                crate::voice::live::start(voice, Arc::new(host)).await;
            });
        }

        r.step(State::Benchmarking, "Choosing the model", 0.7);
        if !self.config.llm.model.is_empty() {
            r.step(State::Loading, "Loading the language model", 0.75);
        }
        let notifier = r.notifier.clone();
        // Keeps systemd's start timeout ahead of a long load, and the watchdog fed.
        let keepalive = move || {
            notifier.extend_timeout(Duration::from_secs(30));
            notifier.watchdog();
        };
        // tutord's memory limit follows the plan of the model that serves (root's
        // tutord-memory@.service sets it; `tuning::memory`).
        tokio::spawn(limit_memory(self.plan.watch(), self.config.clone()));
        let load = self.plan.load_at_boot(&keepalive).await;
        if let Some(why) = load.error {
            // Serving without a tutor, or not with the model the plan wanted: the UI should
            // know why. Diagnostics and the rest still serve.
            self.status.send_modify(|s| s.last_error = why);
        }
        // A model given up while serving gives way to the plan's choice.
        tokio::spawn(self.plan.clone().guard());
        // With the engine in place: take the open session up again.
        self.tutor.resume_session();
        // With the session in use known (it is never removed): old sessions go now and daily.
        if !self.config.history.keeps_everything() {
            tokio::spawn(prune_history_daily(
                self.tutor.clone(),
                self.config.history.clone(),
            ));
        }

        let boot_ms = boot_started.elapsed().as_millis() as u64;
        if let Err(e) = lock(&self.store).record_ready() {
            tracing::error!("{e}");
        }
        // "ready" only with a model that answers; else "degraded", saying why.
        let (state, text) = availability::published(
            &self.activity.borrow(),
            &self.slot.availability(),
            self.not_storing.as_deref(),
        );
        r.step(state, &text, 1.0);
        r.notifier.ready(&text);
        tokio::spawn(availability::follow(
            self.status.clone(),
            self.activity.clone(),
            self.slot.clone(),
            r.notifier.clone(),
            self.not_storing.clone(),
        ));
        tracing::info!(
            message_id = events::READY,
            boot_ms,
            board = board.as_str(),
            "tutord ready on the {} after {boot_ms} ms",
            self.bus
        );
    }
}

/// Serves until SIGTERM/SIGINT, pinging the watchdog at half of WATCHDOG_USEC, and only
/// after a round trip through the bus and our own object server succeeded and the engine
/// worker answers its heartbeat, so a wedged connection or engine stops the pings and
/// systemd restarts us. Returns the signal's name.
async fn serve(
    conn: &Connection,
    notifier: &Notifier,
    slot: &Slot,
    sigterm: &mut tokio::signal::unix::Signal,
    sigint: &mut tokio::signal::unix::Signal,
) -> &'static str {
    // Without a watchdog the tick is effectively never.
    let interval = notifier
        .watchdog_interval()
        .unwrap_or(Duration::from_secs(24 * 3600));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = sigterm.recv() => return "SIGTERM",
            _ = sigint.recv() => return "SIGINT",
            _ = tick.tick() => {
                if notifier.watchdog_interval().is_none() {
                    continue;
                }
                let check = match self_check(conn, interval / 2).await {
                    Ok(()) if slot.engine().is_some_and(|e| !e.alive()) => {
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
    }
}

/// `[history]` applied now and then every 24 hours, on a blocking thread: the first pass
/// over years of sessions is a long SQLite delete. The tutor logs what went.
/// Keeps tutord's `MemoryHigh=`/`MemoryMax=` on what the loaded model's plan needs, as the
/// model changes (boot, `SelectModel`, a fallback). Only with tuning on `apply` and when
/// tutord runs as tutord.service: a development run has no unit to limit.
async fn limit_memory(mut figures: watch::Receiver<crate::plan::service::Figures>, config: Config) {
    use crate::tuning::memory::{LIMITED_UNIT, Limiter, own_unit};
    let paths = Paths::new(&config.platform.root);
    if config.tuning.mode != crate::config::TuningMode::Apply
        || own_unit(&paths).as_deref() != Some(LIMITED_UNIT)
    {
        return;
    }
    let units = match crate::tuning::Systemd::connect().await {
        Ok(u) => Some(u),
        Err(e) => {
            tracing::warn!("memory limit not set: {e}");
            return;
        }
    };
    let mut limiter = Limiter::new(units, &paths);
    loop {
        let need = figures.borrow_and_update().memory_needed;
        limiter.apply(need).await;
        if figures.changed().await.is_err() {
            return;
        }
    }
}

async fn prune_history_daily(tutor: crate::tutor::Service, keep: HistoryConfig) {
    let mut daily = tokio::time::interval(Duration::from_secs(24 * 60 * 60));
    daily.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        daily.tick().await;
        let (tutor, keep) = (tutor.clone(), keep.clone());
        let pass = move || tutor.prune_history(&keep, SystemTime::now());
        // A failed pass is in the journal already; the next day tries again.
        let _ = tokio::task::spawn_blocking(pass).await;
    }
}

/// Every spoken turn's voice timings into the plan: what first audio costs beside the model.
async fn follow_spoken(
    plan: crate::plan::service::Service,
    mut events: tokio::sync::broadcast::Receiver<crate::tutor::Event>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(crate::tutor::Event::Finished { report, .. }) => {
                let (o, heard) = (&report.outcome, &report.heard);
                let (Some(h), Some(to_first_token), Some(to_audio)) = (
                    heard,
                    report.end_of_speech_to_first_token(),
                    report.end_of_speech_to_first_audio(),
                ) else {
                    continue;
                };
                if o.error.is_none() && !o.stats.aborted && o.stats.decode_tokens_per_second > 0.0 {
                    plan.spoken(
                        h.to_transcript.as_secs_f64(),
                        to_audio - to_first_token,
                        o.stats.decode_tokens_per_second,
                    );
                }
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// Every answer's figures (or its error) into the published status.
async fn follow_answers(
    status: watch::Sender<Status>,
    mut events: tokio::sync::broadcast::Receiver<crate::tutor::Event>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(crate::tutor::Event::Finished { report, .. }) => {
                let o = &report.outcome;
                status.send_modify(|s| {
                    if let Some(e) = &o.error {
                        s.last_error = e.to_string();
                    } else if !o.stats.aborted {
                        s.last_tokens_per_second = o.stats.decode_tokens_per_second;
                        s.last_time_to_first_token = o.time_to_first_token;
                    }
                });
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
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

/// Connects, serves the interface and takes the well-known name.
async fn connect(bus_choice: &BusChoice, tutor: Tutor1) -> Result<Connection, DaemonError> {
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
