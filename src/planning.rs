//! The daemon's side of the benchmark and the plan: run the benchmark at boot (or on
//! `Rebenchmark()`), plan, start the engine for the chosen model, and calibrate from every
//! answer. The D-Bus adapter and `daemon::run` call these; the logic lives in `bench` and
//! `plan`.

use crate::bench::{self, Origin};
use crate::config::BackendChoice;
use crate::daemon::Context;
use crate::diagnostics::Value;
use crate::engine::{BackendKind, EngineHandle, GenStats};
use crate::events;
use crate::models::resolve::ResolveError;

/// Key/value entries as `Diagnostics()` and `Plan()` send them.
pub type Entries = Vec<(String, Value)>;

/// What the D-Bus properties show of the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    pub bandwidth_measured: f64,
    pub bandwidth_theoretical: f64,
    pub predicted_tokens_per_second: f64,
}

impl Context {
    /// Runs (or reuses) the benchmark on a blocking thread and logs it.
    pub async fn benchmark(&self, force: bool) {
        let (setup, budgets) = {
            let p = self.planner();
            (p.setup(), p.budgets())
        };
        let store = self.store_handle();
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
            bench_cpus = %crate::platform::topology::format_cpu_list(&m.cpus),
            bench_working_set = b.working_set_bytes,
            bench_seconds = m.wall_seconds,
            bench_cached = origin == Origin::Cached,
            "memory bandwidth {}: read {}, copy {}, triad {} on CPUs {} ({} threads, {}, {} MiB, \
             {}); theoretical {theoretical}; compute {:.0} GOP/s INT8, {:.0} GFLOP/s FP32",
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
    }

    /// Predicts every candidate and chooses; logs the plan. Returns the model to load (a
    /// catalog name or a path) and its backend, or None for no model.
    pub fn plan(&self) -> Option<(String, Option<String>)> {
        let configured = self.config.llm.model.clone();
        let pinned = (configured != "auto" && !configured.contains('/') && !configured.is_empty())
            .then_some(configured.as_str());
        let mut p = self.planner();
        {
            let store = self.store_lock();
            p.replan(&self.catalog, &self.config.models.dir, Some(&store), pinned);
        }
        for pr in &p.predictions {
            tracing::debug!(
                "plan: {} on {}: {:.1} tok/s predicted ({}-bound: bandwidth {:.1} ms, compute \
                 {:.1} ms, overhead {:.1} ms per token), first token {:.2} s, needs {} MiB{}{}",
                pr.model,
                pr.backend,
                pr.tokens_per_second,
                pr.binding.as_str(),
                pr.bandwidth_seconds * 1e3,
                pr.compute_seconds * 1e3,
                pr.overhead_seconds * 1e3,
                pr.time_to_first_token,
                pr.memory_needed >> 20,
                if pr.present { "" } else { ", not fetched" },
                pr.does_not_fit
                    .as_deref()
                    .map(|w| format!(", does not fit: {w}"))
                    .unwrap_or_default()
            );
        }
        let choice = p.choice.clone()?;
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
                plan_binding = c.binding.as_str(),
                plan_candidates = p.predictions.len(),
                "plan: {} (predicted {:.1} tok/s, first token {:.2} s, {}-bound)",
                choice.reason,
                c.tokens_per_second,
                c.time_to_first_token,
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

    /// After `model` failed to load with `error`: when the plan chooses (`[llm] model =
    /// "auto"`), passes that model over and plans again, returning the next choice (the next
    /// smaller model that meets the targets, else the fastest that fits). A pinned model or
    /// a path has no fallback: the user asked for that file.
    pub fn fall_back(&self, model: &str, error: &str) -> Option<(String, Option<String>)> {
        if self.config.llm.model != "auto" {
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
        let next = self.plan();
        match &next {
            Some((m, _)) => tracing::warn!(
                message_id = events::ENGINE_FAILED,
                plan_model = %m,
                failed_model = %model,
                "{model} failed to load; falling back to {m}"
            ),
            None => tracing::error!(
                message_id = events::ENGINE_FAILED,
                failed_model = %model,
                "{model} failed to load and no other model can be loaded"
            ),
        }
        next
    }

    /// Starts an engine for `model` (a catalog name or a path) on `backend` (the plan's
    /// choice; `[llm] backend` overrides it when not `auto`).
    pub fn start_engine(
        &self,
        model: &str,
        backend: Option<&str>,
    ) -> Result<EngineHandle, ResolveError> {
        let backend = match self.config.llm.backend {
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
        let engine = crate::daemon::engine_for(&self.config, &self.catalog, model, backend)?;
        *self.current_model_lock() =
            (!model.contains('/')).then(|| (model.to_string(), backend.as_str().to_string()));
        self.planner().answers_since_load = 0;
        Ok(engine)
    }

    /// Calibrates from one finished answer; logs how the prediction moved.
    pub fn calibrate(&self, stats: &GenStats) {
        let Some((model, backend)) = self.current_model_lock().clone() else {
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
            let store = self.store_lock();
            self.planner()
                .record_answer(&store, &model, &backend, stats)
        };
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

    /// The figures the D-Bus properties show.
    pub fn figures(&self) -> Figures {
        let p = self.planner();
        let current = self.current_model_lock().clone();
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
                .and_then(|(m, b)| p.prediction(&m, &b).map(|x| x.tokens_per_second))
                .unwrap_or(0.0),
        }
    }

    /// For `ListModels()`: each catalog model's prediction (its first backend that the plan
    /// has) and why it was or was not chosen.
    pub fn model_verdicts(&self, model: &str) -> Entries {
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
            .is_some_and(|c| c.model == pr.model && c.backend == pr.backend);
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
            ("binding".into(), pr.binding.as_str().into()),
            ("memory_needed".into(), pr.memory_needed.into()),
            ("fits".into(), pr.fits().into()),
            ("chosen".into(), is_chosen.into()),
            ("why".into(), why.into()),
        ]
    }

    /// `Plan()`: the machine and one entry per candidate.
    pub fn plan_report(&self) -> (Entries, Vec<Entries>) {
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
        ];
        if let Some((m, origin)) = &p.measurement {
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
        }
        for (backend, e) in &p.efficiencies {
            machine.push((format!("efficiency_memory_{backend}"), e.memory.into()));
            machine.push((format!("efficiency_compute_{backend}"), e.compute.into()));
            machine.push((format!("efficiency_prefill_{backend}"), e.prefill.into()));
            machine.push((
                format!("overhead_seconds_{backend}"),
                e.overhead_seconds.into(),
            ));
            machine.push((
                format!("calibration_samples_{backend}"),
                u64::from(e.samples).into(),
            ));
        }
        let chosen = p.choice.as_ref().and_then(|c| c.chosen);
        let candidates = p
            .predictions
            .iter()
            .enumerate()
            .map(|(i, pr)| {
                let mut e: Vec<(String, Value)> = vec![
                    ("model".into(), pr.model.clone().into()),
                    ("backend".into(), pr.backend.clone().into()),
                    ("present".into(), pr.present.into()),
                    ("chosen".into(), (chosen == Some(i)).into()),
                    ("bytes_per_token".into(), pr.bytes_per_token.into()),
                    ("ops_per_token".into(), pr.ops_per_token.into()),
                    ("bandwidth_seconds".into(), pr.bandwidth_seconds.into()),
                    ("compute_seconds".into(), pr.compute_seconds.into()),
                    ("overhead_seconds".into(), pr.overhead_seconds.into()),
                    ("binding".into(), pr.binding.as_str().into()),
                    ("tokens_per_second".into(), pr.tokens_per_second.into()),
                    ("first_token_seconds".into(), pr.time_to_first_token.into()),
                    ("memory_needed".into(), pr.memory_needed.into()),
                    ("fits".into(), pr.fits().into()),
                    ("meets_speed".into(), pr.meets_speed.into()),
                    ("meets_first_token".into(), pr.meets_first_token.into()),
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
