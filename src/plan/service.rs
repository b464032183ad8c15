//! The planner as the daemon runs it, behind one handle: the benchmark (at boot and on
//! `Rebenchmark()`), the plan, the model the engine runs (one `select` for boot and
//! `SelectModel`), calibration from every answer, and the figures the D-Bus properties show.
//! The logic is in `bench`, `plan` and `planner`; this owns the state and the order of steps.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::planner::Planner;
use crate::bench::{self, Origin};
use crate::config::{BackendChoice, LlmConfig};
use crate::diagnostics::Value;
use crate::engine::{
    BackendKind, EngineConfig, EngineHandle, EngineStatus, GenStats, LoadSpec, ModelInfo, Slot,
    SlotError,
};
use crate::events;
use crate::models::Catalog;
use crate::models::resolve::resolve;
use crate::store::Store;
use crate::sync::lock;

/// What the journal and `Diagnostics()` say of a model without a chat template.
pub const BASE_MODEL_WARNING: &str = "it has no chat template (a base model, not tuned for \
     chat): it is asked in the plain Student:/Tutor: transcript format and answers less \
     reliably than an instruct model (docs/models.md)";

/// Key/value entries as `Diagnostics()` and `Plan()` send them.
pub type Entries = Vec<(String, Value)>;

/// What the D-Bus properties show of the plan and the loaded model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub bandwidth_measured: f64,
    pub bandwidth_theoretical: f64,
    pub predicted_tokens_per_second: f64,
    /// The loaded model's file ("" when none), its size and backend ("" when none).
    pub model: String,
    pub model_bytes: u64,
    pub backend: String,
    /// What the loaded model's plan needs beside the OS (weights + KV cache + STT + TTS),
    /// bytes; 0 when none is loaded. tutord's memory limit follows it.
    pub memory_needed: u64,
}

/// Why a model could not be selected. `Busy` and `Unknown` change nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    Busy(SlotError),
    #[error("{0}")]
    Unknown(String),
    #[error("{0}")]
    Failed(String),
}

/// What the boot's load came to, for `LastError`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BootLoad {
    /// The model that serves, when one does.
    pub loaded: Option<String>,
    /// Why the tutor serves without a model, or not with the one the plan wanted.
    pub error: Option<String>,
}

/// Lock order, everywhere: `planner`, then `store`; `current` is never held with another.
struct Inner {
    planner: Mutex<Planner>,
    /// The model the engine runs (catalog name, or the path given) and its backend.
    current: Mutex<Option<(String, String)>>,
    store: Arc<Mutex<Store>>,
    catalog: Catalog,
    llm: LlmConfig,
    models_dir: PathBuf,
    slot: Arc<Slot>,
    published: watch::Sender<Figures>,
    /// Starts an engine for a resolved model (the real worker; a stand-in in tests).
    start: Box<dyn Fn(EngineConfig) -> EngineHandle + Send + Sync>,
}

/// The planner's service: cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl Service {
    pub fn new(
        planner: Planner,
        store: Arc<Mutex<Store>>,
        catalog: Catalog,
        llm: LlmConfig,
        models_dir: PathBuf,
        slot: Arc<Slot>,
    ) -> Self {
        Self::with_starter(
            planner,
            store,
            catalog,
            llm,
            models_dir,
            slot,
            Box::new(EngineHandle::start),
        )
    }

    /// Like `new`, with engines started by `start` (tests give a stand-in).
    pub fn with_starter(
        planner: Planner,
        store: Arc<Mutex<Store>>,
        catalog: Catalog,
        llm: LlmConfig,
        models_dir: PathBuf,
        slot: Arc<Slot>,
        start: Box<dyn Fn(EngineConfig) -> EngineHandle + Send + Sync>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                planner: Mutex::new(planner),
                current: Mutex::new(None),
                store,
                catalog,
                llm,
                models_dir,
                slot,
                published: watch::Sender::new(Figures::default()),
                start,
            }),
        }
    }

    fn planner(&self) -> MutexGuard<'_, Planner> {
        lock(&self.inner.planner)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// Tells the benchmark whether tuning changed the system before it.
    pub fn set_tuned(&self, tuned: bool) {
        self.planner().tuned = tuned;
    }

    /// The figures, as they change (the D-Bus side turns changes into `PropertiesChanged`).
    pub fn watch(&self) -> watch::Receiver<Figures> {
        self.inner.published.subscribe()
    }

    /// Publishes the figures when they changed.
    fn publish(&self) {
        let now = self.figures();
        self.inner.published.send_if_modified(|f| {
            let changed = *f != now;
            *f = now;
            changed
        });
    }

    /// The loaded model, if any.
    pub fn model(&self) -> Option<ModelInfo> {
        self.inner.slot.engine().and_then(|e| e.status().model)
    }

    /// Resolves `model` (a catalog name or a path) and starts an engine for it on
    /// `backend` (the plan's; `[llm] backend` overrides it when not `auto`).
    fn start_engine(
        &self,
        model: &str,
        backend: Option<&str>,
    ) -> Result<(EngineHandle, BackendKind), String> {
        let backend = match self.inner.llm.backend {
            BackendChoice::Cpu => BackendKind::Cpu,
            BackendChoice::Cuda => BackendKind::Cuda,
            BackendChoice::Npu => BackendKind::Npu,
            BackendChoice::Auto => {
                let planned = backend.map(str::to_string).or_else(|| {
                    let p = self.planner();
                    p.facts
                        .iter()
                        .find(|f| f.name == model)
                        .map(|f| f.backend.clone())
                });
                match planned.as_deref() {
                    Some("npu") => BackendKind::Npu,
                    Some("cuda") => BackendKind::Cuda,
                    Some(_) => BackendKind::Cpu,
                    None if model.ends_with(".rkllm") => BackendKind::Npu,
                    None => BackendKind::Cpu,
                }
            }
        };
        let resolved = resolve(model, &self.inner.catalog, &self.inner.models_dir)
            .map_err(|e| e.to_string())?;
        let llm = &self.inner.llm;
        let program = if llm.engine_path.is_empty() {
            std::env::current_exe()
                .map(|p| p.with_file_name("tutord-engine"))
                .unwrap_or_else(|_| PathBuf::from("/usr/bin/tutord-engine"))
        } else {
            PathBuf::from(&llm.engine_path)
        };
        // Resolved to a regular file: its size bounds the load (a hung mount then fails the
        // load instead of holding SelectModel and the boot for ever).
        let file_bytes = std::fs::metadata(&resolved.path).map_or(0, |m| m.len());
        let engine = (self.inner.start)(EngineConfig {
            load_deadline: crate::engine::load_deadline(file_bytes),
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
            stall: Duration::from_secs(u64::from(llm.stall_seconds)),
        });
        Ok((engine, backend))
    }

    /// Switches the engine to `model`: refused with `Busy` while questions are pending and
    /// with `Unknown` when the model cannot be resolved, both before anything changes; then
    /// the old engine stops, the new one loads (`keepalive` is called every 10 s meanwhile,
    /// so systemd's start timeout and watchdog follow a long load), and only once it has
    /// loaded is it recorded as the current model (calibration and the properties follow
    /// it). A model that does not load leaves an engine that says why.
    async fn switch(
        &self,
        model: &str,
        backend: Option<&str>,
        keepalive: &(dyn Fn() + Sync),
    ) -> Result<ModelInfo, SelectError> {
        let pending = self.inner.slot.pending();
        if pending > 0 {
            return Err(SelectError::Busy(SlotError::Busy(pending)));
        }
        // Resolve before the old engine goes: a name that is not there changes nothing.
        resolve(model, &self.inner.catalog, &self.inner.models_dir)
            .map_err(|e| SelectError::Unknown(e.to_string()))?;
        let switch = self
            .inner
            .slot
            .begin_switch(model)
            .map_err(SelectError::Busy)?;
        // The old engine has left the slot: its worker stops before the new one loads.
        *lock(&self.inner.current) = None;
        self.publish();
        let (mut engine, backend) = match self.start_engine(model, backend) {
            Ok(e) => e,
            Err(why) => {
                switch.install(Err(why.clone()));
                return Err(SelectError::Failed(why));
            }
        };
        switch.install(Ok(engine.clone()));
        let settled = settle(&mut engine, keepalive).await;
        drop(switch);
        match settled.model {
            Some(info) => {
                *lock(&self.inner.current) =
                    Some((model.to_string(), backend.as_str().to_string()));
                self.planner().answers_since_load = 0;
                self.publish();
                tracing::info!(model = %info.path.display(), "model {model} loaded");
                if info.is_base_model() {
                    tracing::warn!("model {model}: {BASE_MODEL_WARNING}");
                }
                Ok(info)
            }
            None => {
                let why = settled
                    .last_error
                    .unwrap_or_else(|| "the model did not load".into());
                tracing::error!(
                    message_id = events::ENGINE_FAILED,
                    "cannot load the model {model}: {why}"
                );
                Err(SelectError::Failed(why))
            }
        }
    }

    /// `SelectModel`: switches to `name` (a catalog name or a model file's path); when it
    /// does not load, the model that served before is loaded again (a bad call must not
    /// leave the appliance without a tutor) and the error ends "; back on <model>".
    /// A path must name a regular file under `[models] dir` (`models::resolve::selectable_path`):
    /// a D-Bus caller cannot make tutord open any file it can read, nor block on a FIFO.
    pub async fn select(&self, name: &str) -> Result<(), SelectError> {
        if name.contains('/') {
            crate::models::resolve::selectable_path(name, &self.inner.models_dir)
                .map_err(|e| SelectError::Unknown(e.to_string()))?;
        }
        let serving = lock(&self.inner.current).clone().map(|(m, _)| m);
        match self.switch(name, None, &|| {}).await {
            Ok(_) => {
                if name.contains('/') {
                    self.plan(); // a file outside the catalog: plan it from its header
                }
                Ok(())
            }
            Err(SelectError::Failed(why)) => {
                let Some(serving) = serving else {
                    return Err(SelectError::Failed(why));
                };
                let back = self.switch(&serving, None, &|| {}).await.is_ok();
                tracing::warn!(
                    message_id = events::ENGINE_FAILED,
                    "the selected model did not load; {} {serving}",
                    if back { "back on" } else { "could not reload" }
                );
                Err(SelectError::Failed(if back {
                    format!("{why}; back on {serving}")
                } else {
                    why
                }))
            }
            Err(e) => Err(e),
        }
    }

    /// At boot: loads the plan's choice (or the pinned model, or the path); in auto mode a
    /// model that does not load is passed over and the next smaller one loads.
    pub async fn load_at_boot(&self, keepalive: &(dyn Fn() + Sync)) -> BootLoad {
        let mut planned = self.plan();
        if planned.is_none() {
            let why = if self.inner.llm.model.is_empty() {
                "none is configured ([llm] model in tutord.toml)".to_string()
            } else {
                let reason = self
                    .planner()
                    .choice
                    .as_ref()
                    .map_or("no plan".to_string(), |c| c.reason.clone());
                format!("the planner chose no model: {reason}")
            };
            let _ = self
                .inner
                .slot
                .begin_switch("none")
                .map(|s| s.install(Err(why.clone())));
            return BootLoad {
                loaded: None,
                error: (!self.inner.llm.model.is_empty()).then_some(why),
            };
        }
        let mut fell_back = None;
        while let Some((model, backend)) = planned {
            match self.switch(&model, backend.as_deref(), keepalive).await {
                Ok(_) => {
                    return BootLoad {
                        loaded: Some(model),
                        error: fell_back,
                    };
                }
                Err(SelectError::Busy(e)) => {
                    // Nothing is asked before the boot ends; say so should it happen.
                    return BootLoad {
                        loaded: None,
                        error: Some(e.to_string()),
                    };
                }
                Err(failure @ (SelectError::Unknown(_) | SelectError::Failed(_))) => {
                    let e = failure.to_string();
                    if matches!(failure, SelectError::Unknown(_)) {
                        // Never started: logged here (`switch` logs a failed load) and the
                        // slot says why (a failed load's engine does).
                        tracing::error!(
                            message_id = events::ENGINE_FAILED,
                            "cannot load the model {model}: {e}"
                        );
                        let _ = self
                            .inner
                            .slot
                            .begin_switch(&model)
                            .map(|s| s.install(Err(e.clone())));
                    }
                    planned = self.fall_back(&model, &e);
                    match &planned {
                        Some((next, _)) => {
                            fell_back =
                                Some(format!("{model} failed to load ({e}); fell back to {next}"))
                        }
                        None => {
                            return BootLoad {
                                loaded: None,
                                error: Some(e),
                            };
                        }
                    }
                }
            }
        }
        BootLoad::default()
    }

    /// Watches the engine that serves until the daemon stops: when it gives its model up
    /// (the model killed the engine worker on two answers in a row), the model is passed
    /// over and the plan's choice loads instead, as after a failed load at boot, unless
    /// `[llm] fallback = false` (the tutor is then "degraded", saying why).
    pub async fn guard(self) {
        let mut changes = self.inner.slot.changes();
        loop {
            changes.borrow_and_update();
            let given_up = match self.inner.slot.engine() {
                Some(engine) => {
                    let mut status = engine.watch();
                    tokio::select! {
                        s = status.wait_for(|s| s.gave_up) => s.ok().map(|s| s.clone()),
                        _ = changes.changed() => continue,
                    }
                }
                None => None,
            };
            // Only a model that was serving: a failed load is the switch's to handle. (An
            // engine whose supervisor ended gives no status: that is not a give-up, and what
            // serves must not be forgotten.)
            let serving = given_up
                .as_ref()
                .and_then(|_| lock(&self.inner.current).take());
            if let (Some(status), Some((model, _))) = (given_up, serving) {
                self.publish();
                let why = status
                    .last_error
                    .unwrap_or_else(|| "the engine gave it up".into());
                tracing::error!(
                    message_id = events::ENGINE_FAILED,
                    "the model {model} was given up: {why}"
                );
                if let Some((next, backend)) = self.fall_back(&model, &why) {
                    self.load_when_idle(&next, backend.as_deref()).await;
                }
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Loads `model` once no question holds the engine (those left fail quickly: the engine
    /// gave up), trying for a minute.
    async fn load_when_idle(&self, model: &str, backend: Option<&str>) {
        for _ in 0..60 {
            match self.switch(model, backend, &|| {}).await {
                Err(SelectError::Busy(_)) => tokio::time::sleep(Duration::from_secs(1)).await,
                Ok(_) => return,
                // `switch` has logged a load that failed.
                Err(SelectError::Failed(_)) => return,
                Err(e) => {
                    tracing::error!(
                        message_id = events::ENGINE_FAILED,
                        "cannot load the fallback model {model}: {e}"
                    );
                    return;
                }
            }
        }
        tracing::error!("the fallback model {model} was not loaded: questions kept the engine");
    }

    /// Runs (or reuses) the benchmark on a blocking thread and logs it.
    pub async fn benchmark(&self, force: bool) {
        let (setup, budgets) = {
            let p = self.planner();
            (p.setup(), p.budgets())
        };
        let store = self.inner.store.clone();
        let (max_age, memory, compute) = budgets;
        let (m, origin, store_err) = tokio::task::spawn_blocking(move || {
            bench::obtain(&store, &setup, force, max_age, memory, compute)
        })
        .await
        .expect("the benchmark thread does not panic");
        if let Some(e) = store_err {
            tracing::warn!("cannot keep the benchmark result: {e}");
        }
        let b = &m.bandwidth;
        let typical = m.typical();
        let theoretical =
            m.theoretical
                .map_or("unknown (no DDR clock for this board)".to_string(), |t| {
                    format!(
                        "{} ({:.0} % of it read)",
                        bench::gbps(t),
                        100.0 * b.read / t
                    )
                });
        tracing::info!(
            message_id = events::BENCHMARKED,
            bandwidth_read = b.read,
            bandwidth_copy = b.copy,
            bandwidth_triad = b.triad,
            bandwidth_theoretical = m.theoretical.unwrap_or(0.0),
            compute_ops = m.compute_ops(),
            compute_fp32 = m.compute_fp32(),
            bandwidth_read_typical = typical.read,
            compute_fp32_typical = typical.fp32,
            compute_scalar_typical = typical.scalar,
            bench_cpus = %crate::platform::topology::format_cpu_list(&m.cpus),
            bench_working_set = b.working_set_bytes,
            bench_seconds = m.wall_seconds,
            bench_cached = origin == Origin::Cached,
            "memory bandwidth {}: read {}, copy {}, triad {} on CPUs {} ({} threads, {}, {} MiB, \
             {}); theoretical {theoretical}; compute {:.0} GOP/s INT8, {:.0} GFLOP/s FP32; \
             typical (median run, what the plan uses): read {}, {:.0} GFLOP/s FP32, scalar chain \
             {:.1} Gop/s",
            if origin == Origin::Cached { "(cached)" } else { "measured" },
            bench::gbps(b.read),
            bench::gbps(b.copy),
            bench::gbps(b.triad),
            crate::platform::topology::format_cpu_list(&m.cpus),
            b.threads,
            b.isa,
            b.working_set_bytes >> 20,
            m.working_set_rule,
            m.compute_ops() / 1e9,
            m.compute_fp32() / 1e9,
            bench::gbps(typical.read),
            typical.fp32 / 1e9,
            typical.scalar / 1e9,
        );
        if m.ddr_floating && m.theoretical.is_some() {
            tracing::warn!(
                ddr_governor = m.ddr_governor.as_deref().unwrap_or(""),
                "the DDR clock is not pinned (governor {}, {} MHz): bandwidth can swing \
                 3-22 GB/s between runs on RK3588; tuning pins it",
                m.ddr_governor.as_deref().unwrap_or("?"),
                m.ddr_clock_hz / 1_000_000
            );
        }
        let mut p = self.planner();
        if !p.tuned {
            p.untuned_read = Some(b.read);
        } else if let Some(before) = p.untuned_read {
            tracing::info!(
                message_id = events::BENCHMARKED,
                bandwidth_before_tuning = before,
                bandwidth_after_tuning = b.read,
                "memory bandwidth before tuning {}, after {} ({:+.1} %)",
                bench::gbps(before),
                bench::gbps(b.read),
                100.0 * (b.read - before) / before
            );
        }
        p.set_measurement(m, origin);
        drop(p);
        self.publish();
    }

    /// Predicts every candidate and chooses; logs the plan. Returns the model to load (a
    /// catalog name or a path) and its backend, or None for no model.
    pub fn plan(&self) -> Option<(String, Option<String>)> {
        self.plan_as(&self.inner.llm.model.clone())
    }

    /// `plan` as if `[llm] model` were `configured` (a fallback plans as "auto").
    fn plan_as(&self, configured: &str) -> Option<(String, Option<String>)> {
        let configured = configured.to_string();
        let pinned =
            (configured != "auto" && !configured.is_empty()).then_some(configured.as_str());
        // Model files outside the catalog are planned from their header: the configured
        // one and the one loaded (`SelectModel(path)`).
        let current = lock(&self.inner.current).clone().map(|(m, _)| m);
        let mut paths: Vec<PathBuf> = [Some(configured.clone()), current]
            .into_iter()
            .flatten()
            .filter(|m| m.contains('/'))
            .map(PathBuf::from)
            .collect();
        paths.dedup();
        let paths: Vec<&std::path::Path> = paths.iter().map(PathBuf::as_path).collect();
        let mut p = self.planner();
        {
            let store = lock(&self.inner.store);
            p.replan(
                &self.inner.catalog,
                &self.inner.models_dir,
                Some(&store),
                pinned,
                &paths,
            );
        }
        for pr in &p.predictions {
            tracing::debug!(
                "plan: {} on {}: {:.1} tok/s predicted ({}-bound: bandwidth {:.1} ms, compute \
                 {:.1} ms, overhead {:.1} ms per token), first token {:.2} s, first audio {:.2} s, \
                 needs {} MiB{}{}",
                pr.model,
                pr.backend,
                pr.tokens_per_second,
                pr.binding.as_str(),
                pr.bandwidth_seconds * 1e3,
                pr.compute_seconds * 1e3,
                pr.overhead_seconds * 1e3,
                pr.time_to_first_token,
                pr.first_audio,
                pr.memory_needed >> 20,
                if pr.present { "" } else { ", not fetched" },
                pr.does_not_fit
                    .as_deref()
                    .map(|w| format!(", does not fit: {w}"))
                    .unwrap_or_default()
            );
        }
        let choice = p.choice.clone();
        drop(p);
        self.publish();
        let choice = choice?;
        let p = self.planner();
        let chosen = p.chosen().cloned();
        match &chosen {
            Some(c) => tracing::info!(
                message_id = events::PLANNED,
                model = %c.model,
                backend = %c.backend,
                bandwidth_gbps = p.machine.as_ref().map_or(0.0, |m| m.bandwidth / 1e9),
                predicted_tps = c.tokens_per_second,
                reason = %choice.reason,
                predicted_first_token_seconds = c.time_to_first_token,
                predicted_first_audio_seconds = c.first_audio,
                plan_binding = c.binding.as_str(),
                plan_candidates = p.predictions.len(),
                "plan: {} (predicted {:.1} tok/s, first token {:.2} s, first audio {:.2} s, \
                 {}-bound)",
                choice.reason,
                c.tokens_per_second,
                c.time_to_first_token,
                c.first_audio,
                c.binding.as_str()
            ),
            None => tracing::warn!(
                message_id = events::PLANNED,
                bandwidth_gbps = p.machine.as_ref().map_or(0.0, |m| m.bandwidth / 1e9),
                reason = %choice.reason,
                plan_candidates = p.predictions.len(),
                "plan: no model: {}",
                choice.reason
            ),
        }
        if let Some(w) = &choice.warning {
            tracing::warn!("plan: {w}");
        }
        if let Some(hint) = super::fetch_hint(&p.predictions, &choice) {
            tracing::info!("plan: {hint}");
        }
        match configured.as_str() {
            "" => None,
            "auto" => chosen.map(|c| (c.model, Some(c.backend))),
            // Pinned or a path: loaded whatever the plan says.
            other => Some((
                other.to_string(),
                chosen.filter(|c| c.model == other).map(|c| c.backend),
            )),
        }
    }

    /// After `model` failed to load with `error` (or was given up while serving): passes
    /// that model over and plans as "auto", returning the next choice (the next smaller
    /// model that meets the targets, else the fastest that fits). A pinned model or a path
    /// falls back the same way unless `[llm] fallback = false`; with no model configured
    /// there is nothing to fall back from.
    pub fn fall_back(&self, model: &str, error: &str) -> Option<(String, Option<String>)> {
        let configured = &self.inner.llm.model;
        if configured.is_empty() || (configured != "auto" && !self.inner.llm.fallback) {
            return None;
        }
        {
            let mut p = self.planner();
            if p.failed
                .insert(model.to_string(), error.to_string())
                .is_some()
            {
                return None; // already passed over: no loop between two bad files
            }
        }
        let next = self.plan_as("auto");
        match &next {
            Some((m, _)) => tracing::warn!(
                message_id = events::ENGINE_FAILED,
                plan_model = %m,
                failed_model = %model,
                "{model} failed ({error}); falling back to the plan's choice {m}{}",
                if self.inner.llm.model == "auto" {
                    ""
                } else {
                    " ([llm] fallback = false would stay without a tutor instead)"
                }
            ),
            None => tracing::error!(
                message_id = events::ENGINE_FAILED,
                failed_model = %model,
                "{model} failed to load and no other model can be loaded"
            ),
        }
        next
    }

    /// Calibrates from one finished answer; logs how the prediction moved.
    pub fn calibrate(&self, stats: &GenStats) {
        let Some((model, backend)) = lock(&self.inner.current).clone() else {
            return;
        };
        {
            // The first answer after a load pages the weights in from the file (the model is
            // mapped): it measures the disk, not the bus, so it does not calibrate.
            let mut p = self.planner();
            p.answers_since_load += 1;
            if p.answers_since_load == 1 {
                return;
            }
        }
        let moved = {
            // Lock order, everywhere: planner, then store.
            let mut p = self.planner();
            let store = lock(&self.inner.store);
            p.record_answer(&store, &model, &backend, stats)
        };
        self.publish();
        if let Some((before, after)) = moved {
            tracing::info!(
                message_id = events::CALIBRATED,
                plan_model = %model,
                measured_tokens_per_second = stats.decode_tokens_per_second,
                predicted_before = before,
                predicted_after = after,
                "calibration: {model} measured {:.1} tok/s; prediction {:.1} -> {:.1} tok/s",
                stats.decode_tokens_per_second,
                before,
                after
            );
        }
    }

    /// Folds a spoken turn's voice timings into the plan (end of speech → transcript, first
    /// token → first audio at the turn's decode speed); logs the voice's figures.
    pub fn spoken(&self, to_transcript: f64, after_first_token: f64, tokens_per_second: f64) {
        let v = {
            let mut p = self.planner();
            p.record_spoken(to_transcript, after_first_token, tokens_per_second);
            p.voice
        };
        self.publish();
        if let Some(v) = v {
            tracing::info!(
                voice_stt_seconds = v.stt_seconds,
                voice_tts_seconds = v.tts_seconds,
                "plan: the voice takes {:.2} s to a transcript and {:.2} s to synthesize a \
                 first chunk ({} spoken turns)",
                v.stt_seconds,
                v.tts_seconds,
                v.samples
            );
        }
    }

    /// The figures the D-Bus properties show.
    pub fn figures(&self) -> Figures {
        let model = self.model();
        let p = self.planner();
        let current = lock(&self.inner.current).clone();
        Figures {
            bandwidth_measured: p
                .measurement
                .as_ref()
                .map_or(0.0, |(m, _)| m.bandwidth.read),
            bandwidth_theoretical: p
                .measurement
                .as_ref()
                .and_then(|(m, _)| m.theoretical)
                .unwrap_or(0.0),
            predicted_tokens_per_second: current
                .as_ref()
                .and_then(|(m, b)| p.prediction(m, b).map(|x| x.tokens_per_second))
                .unwrap_or(0.0),
            memory_needed: current
                .as_ref()
                .and_then(|(m, b)| p.prediction(m, b))
                .map_or(0, |x| {
                    x.memory_needed.saturating_sub(p.targets.reserve_bytes)
                }),
            model: model
                .as_ref()
                .map(|m| m.path.display().to_string())
                .unwrap_or_default(),
            model_bytes: model.as_ref().map_or(0, |m| m.file_bytes),
            backend: model
                .as_ref()
                .map(|m| m.backend.as_str().to_string())
                .unwrap_or_default(),
        }
    }

    /// For `ListModels()`: each catalog model's prediction (its first backend that the plan
    /// has) and why it was or was not chosen.
    pub fn model_verdicts(&self, model: &str) -> Entries {
        let loaded = self.loaded();
        let p = self.planner();
        let chosen = p.chosen().cloned();
        let Some(pr) = p
            .predictions
            .iter()
            .find(|x| x.model == model && chosen.as_ref().is_some_and(|c| c.backend == x.backend))
            .or_else(|| p.predictions.iter().find(|x| x.model == model))
        else {
            let why = if p.predictions.is_empty() && p.measurement.is_none() {
                "not planned yet"
            } else {
                "not for this board or its backends"
            };
            return vec![("why".into(), why.into())];
        };
        let is_chosen = chosen
            .as_ref()
            .is_some_and(|c| c.model == pr.model && c.backend == pr.backend)
            && is_loaded(&loaded, &pr.model, &pr.backend);
        let t = &p.targets;
        let why = if is_chosen {
            p.choice
                .as_ref()
                .map_or(String::new(), |c| c.reason.clone())
        } else if let Some(e) = &pr.load_failed {
            format!("failed to load: {e}")
        } else if let Some(w) = &pr.does_not_fit {
            format!("does not fit: {w}")
        } else if !pr.present {
            format!("not fetched (`tutorctl models fetch {}`)", pr.model)
        } else if !pr.meets_speed {
            format!(
                "predicted {:.1} tok/s, under the target {:.1}",
                pr.tokens_per_second, t.tokens_per_second
            )
        } else if !pr.meets_first_token {
            format!(
                "first token predicted after {:.2} s, over the target {:.1} s",
                pr.time_to_first_token, t.time_to_first_token
            )
        } else if !pr.meets_first_audio {
            format!(
                "first audio predicted after {:.2} s, over the target {:.1} s",
                pr.first_audio, t.first_audio
            )
        } else {
            "meets the targets, but a larger one that does was chosen".to_string()
        };
        vec![
            ("backend".into(), pr.backend.clone().into()),
            (
                "predicted_tokens_per_second".into(),
                pr.tokens_per_second.into(),
            ),
            (
                "predicted_first_token_seconds".into(),
                pr.time_to_first_token.into(),
            ),
            (
                "predicted_first_audio_seconds".into(),
                pr.first_audio.into(),
            ),
            ("binding".into(), pr.binding.as_str().into()),
            ("memory_needed".into(), pr.memory_needed.into()),
            ("fits".into(), pr.fits().into()),
            ("chosen".into(), is_chosen.into()),
            ("why".into(), why.into()),
        ]
    }

    /// The model that answers now (catalog name or path) and its backend.
    fn loaded(&self) -> Option<(String, String)> {
        self.model()?;
        lock(&self.inner.current).clone()
    }

    /// `Plan()`: the machine and one entry per candidate.
    pub fn plan_report(&self) -> (Entries, Vec<Entries>) {
        let loaded = self.loaded();
        let p = self.planner();
        let mut machine: Vec<(String, Value)> = vec![
            ("board".into(), p.profile.name.clone().into()),
            (
                "target_tokens_per_second".into(),
                p.targets.tokens_per_second.into(),
            ),
            (
                "target_first_token_seconds".into(),
                p.targets.time_to_first_token.into(),
            ),
            (
                "target_first_audio_seconds".into(),
                p.targets.first_audio.into(),
            ),
        ];
        if let Some(v) = p.voice_costs() {
            machine.extend([
                ("voice_stt_seconds".to_string(), v.stt_seconds.into()),
                ("voice_tts_seconds".to_string(), v.tts_seconds.into()),
                ("voice_samples".to_string(), u64::from(v.samples).into()),
            ]);
        }
        if let Some((m, origin)) = &p.measurement {
            let typical = m.typical();
            let b = &m.bandwidth;
            machine.extend([
                ("bandwidth_read".to_string(), b.read.into()),
                ("bandwidth_copy".to_string(), b.copy.into()),
                ("bandwidth_triad".to_string(), b.triad.into()),
                (
                    "bandwidth_theoretical".to_string(),
                    m.theoretical.unwrap_or(0.0).into(),
                ),
                ("compute_ops".to_string(), m.compute_ops().into()),
                ("compute_fp32".to_string(), m.compute_fp32().into()),
                ("typical_read".to_string(), typical.read.into()),
                ("typical_fp32".to_string(), typical.fp32.into()),
                ("typical_ops".to_string(), typical.ops.into()),
                ("typical_scalar".to_string(), typical.scalar.into()),
                ("bench_threads".to_string(), (b.threads as u64).into()),
                (
                    "bench_cpus".to_string(),
                    crate::platform::topology::format_cpu_list(&m.cpus).into(),
                ),
                ("bench_isa".to_string(), b.isa.clone().into()),
                ("bench_working_set".to_string(), b.working_set_bytes.into()),
                ("bench_seconds".to_string(), m.wall_seconds.into()),
                ("bench_measured_unix".to_string(), m.measured_unix.into()),
                (
                    "bench_cached".to_string(),
                    (*origin == Origin::Cached).into(),
                ),
                ("ddr_floating".to_string(), m.ddr_floating.into()),
            ]);
        }
        if let Some(mach) = &p.machine {
            machine.push(("mem_available".into(), mach.mem_available.into()));
        }
        if let Some(c) = &p.choice {
            machine.push(("choice_reason".into(), c.reason.clone().into()));
            if let Some(w) = &c.warning {
                machine.push(("choice_warning".into(), w.clone().into()));
            }
            if let Some(hint) = super::fetch_hint(&p.predictions, c) {
                machine.push(("choice_fetch".into(), hint.into()));
            }
        }
        for (backend, e) in &p.efficiencies {
            machine.push((format!("efficiency_memory_{backend}"), e.memory.into()));
            machine.push((format!("efficiency_compute_{backend}"), e.compute.into()));
            machine.push((format!("efficiency_prefill_{backend}"), e.prefill.into()));
            machine.push((
                format!("overhead_per_row_seconds_{backend}"),
                e.overhead_per_row.into(),
            ));
            machine.push((
                format!("calibration_samples_{backend}"),
                u64::from(e.samples).into(),
            ));
        }
        let planned = p.choice.as_ref().and_then(|c| c.chosen);
        // "chosen" is the model that answers, never only the one the plan wanted.
        let candidates = p
            .predictions
            .iter()
            .enumerate()
            .map(|(i, pr)| {
                let mut e: Vec<(String, Value)> = vec![
                    ("model".into(), pr.model.clone().into()),
                    ("backend".into(), pr.backend.clone().into()),
                    ("present".into(), pr.present.into()),
                    (
                        "chosen".into(),
                        is_loaded(&loaded, &pr.model, &pr.backend).into(),
                    ),
                    ("planned".into(), (planned == Some(i)).into()),
                    ("bytes_per_token".into(), pr.bytes_per_token.into()),
                    ("ops_per_token".into(), pr.ops_per_token.into()),
                    ("bandwidth_seconds".into(), pr.bandwidth_seconds.into()),
                    ("compute_seconds".into(), pr.compute_seconds.into()),
                    ("overhead_seconds".into(), pr.overhead_seconds.into()),
                    ("binding".into(), pr.binding.as_str().into()),
                    ("tokens_per_second".into(), pr.tokens_per_second.into()),
                    ("first_token_seconds".into(), pr.time_to_first_token.into()),
                    ("first_audio_seconds".into(), pr.first_audio.into()),
                    ("memory_needed".into(), pr.memory_needed.into()),
                    ("fits".into(), pr.fits().into()),
                    ("meets_speed".into(), pr.meets_speed.into()),
                    ("meets_first_token".into(), pr.meets_first_token.into()),
                    ("meets_first_audio".into(), pr.meets_first_audio.into()),
                ];
                if let Some(w) = &pr.does_not_fit {
                    e.push(("does_not_fit".into(), w.clone().into()));
                }
                if let Some(w) = &pr.load_failed {
                    e.push(("load_failed".into(), w.clone().into()));
                }
                e
            })
            .collect();
        (machine, candidates)
    }
}

/// Whether `model` on `backend` is the one `loaded`.
fn is_loaded(loaded: &Option<(String, String)>, model: &str, backend: &str) -> bool {
    loaded
        .as_ref()
        .is_some_and(|(m, b)| m == model && b == backend)
}

/// Waits until the engine's model is loaded or loading gave up, calling `keepalive` every
/// 10 s while the worker is alive (so a worker that hangs while loading is left to systemd's
/// start timeout and watchdog).
async fn settle(engine: &mut EngineHandle, keepalive: &(dyn Fn() + Sync)) -> EngineStatus {
    let probe = engine.clone();
    let settle = engine.wait_settled();
    tokio::pin!(settle);
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    loop {
        tokio::select! {
            s = &mut settle => break s,
            _ = tick.tick() => {
                if probe.alive() {
                    keepalive();
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
