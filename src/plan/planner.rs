//! The planner as the daemon runs it: the benchmark result, the catalog's candidates on this
//! board, their predictions, the choice, and calibration from every real answer.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::{
    Choice, Efficiencies, Machine, ModelFacts, Prediction, Targets, VoiceCosts, choose, fit,
    predict, rows,
};
use crate::bench::{self, Measurement, Origin};
use crate::config::{BackendChoice, Config};
use crate::engine::GenStats;
use crate::models::{Backend, Catalog, Presence, presence};
use crate::platform::Paths;
use crate::platform::memory::MemInfo;
use crate::platform::profile::BoardProfile;
use crate::store::Store;
use tutord_protocol::gguf::meta::{self, Gguf};

/// Answers shorter than this say more about the first token than about decoding.
const MIN_CALIBRATION_TOKENS: u32 = 8;

/// The planner's state.
pub struct Planner {
    pub profile: BoardProfile,
    paths: Paths,
    /// The cores inference runs on (the benchmark's threads).
    pub cpus: Vec<usize>,
    backend_choice: BackendChoice,
    pub targets: Targets,
    memory_budget: Duration,
    compute_budget: Duration,
    max_age: Duration,
    max_working_set: u64,
    pub measurement: Option<(Measurement, Origin)>,
    /// Tuning changed the system before the benchmark (see `bench::Setup::tuned`).
    pub tuned: bool,
    /// The read bandwidth measured before tuning, when tuning changed anything.
    pub untuned_read: Option<f64>,
    /// Answers since the engine last loaded a model (the first one does not calibrate).
    pub answers_since_load: u32,
    pub facts: Vec<ModelFacts>,
    pub machine: Option<Machine>,
    pub efficiencies: BTreeMap<String, Efficiencies>,
    /// STT and TTS time of spoken turns since tutord started (None before the first: then
    /// derived from the compute probe).
    pub voice: Option<VoiceCosts>,
    pub predictions: Vec<Prediction>,
    pub choice: Option<Choice>,
    /// Models whose file failed to load since tutord started, and why: passed over by the
    /// plan until a restart (a model fetched again is tried again then).
    pub failed: BTreeMap<String, String>,
}

impl Planner {
    pub fn new(config: &Config, profile: BoardProfile, cpus: Vec<usize>) -> Self {
        let p = &config.plan;
        let mib = |m: u32| u64::from(m) << 20;
        Self {
            profile,
            paths: Paths::new(&config.platform.root),
            cpus,
            backend_choice: config.llm.backend,
            targets: Targets {
                tokens_per_second: p.target_tokens_per_second,
                time_to_first_token: p.first_token_target(),
                first_audio: p.target_first_audio_seconds,
                prompt_tokens: p.prompt_tokens,
                context_length: config.llm.context_length,
                stt_bytes: mib(p.stt_mib),
                tts_bytes: mib(p.tts_mib),
                reserve_bytes: mib(p.reserve_mib),
            },
            memory_budget: Duration::from_millis(config.bench.budget_ms.into()),
            compute_budget: Duration::from_millis(config.bench.compute_budget_ms.into()),
            max_age: Duration::from_secs(u64::from(config.bench.max_age_days) * 24 * 3600),
            max_working_set: mib(config.bench.max_working_set_mib),
            measurement: None,
            tuned: false,
            untuned_read: None,
            answers_since_load: 0,
            facts: Vec::new(),
            machine: None,
            efficiencies: BTreeMap::new(),
            voice: None,
            predictions: Vec::new(),
            choice: None,
            failed: BTreeMap::new(),
        }
    }

    /// What the benchmark runs with, read from the machine now.
    pub fn setup(&self) -> bench::Setup {
        let mut s = bench::Setup::read(&self.paths, &self.profile, &self.cpus);
        s.max_working_set = self.max_working_set;
        s.tuned = self.tuned;
        s
    }

    /// The budgets `bench::obtain` needs: cache age, memory, compute.
    pub fn budgets(&self) -> (Duration, Duration, Duration) {
        (self.max_age, self.memory_budget, self.compute_budget)
    }

    /// The backends this board offers, restricted by `[llm] backend`.
    fn backends(&self) -> Vec<Backend> {
        let mut have = vec![Backend::Cpu];
        if self.profile.gpu_tflops_fp16 > 0.0 {
            have.push(Backend::Cuda);
        }
        if self.profile.npu_tops_int8 > 0.0 {
            have.push(Backend::Npu);
        }
        have.retain(|b| match self.backend_choice {
            BackendChoice::Auto => true,
            BackendChoice::Cpu => *b == Backend::Cpu,
            BackendChoice::Cuda => *b == Backend::Cuda,
            BackendChoice::Npu => *b == Backend::Npu,
        });
        have
    }

    /// The catalog's (model, backend) pairs this board can run, as the catalog describes
    /// them: none fetched, bytes bounded by the file's size (what an image for the board is
    /// planned from, `nominal`).
    pub fn catalog_facts(&self, catalog: &Catalog) -> Vec<ModelFacts> {
        let backends = self.backends();
        let mut out = Vec::new();
        for m in &catalog.models {
            let on_board = m
                .boards
                .iter()
                .any(|b| *b == self.profile.name || *b == self.profile.family);
            if !on_board {
                continue;
            }
            for b in m.backends.iter().filter(|b| backends.contains(b)) {
                out.push(ModelFacts {
                    name: m.name.clone(),
                    backend: b.as_str().to_string(),
                    file_bytes: m.file_bytes,
                    streamed_bytes: m.file_bytes,
                    parameters: m.parameters,
                    layers: m.layers,
                    kv_heads: m.kv_heads,
                    head_dim: m.head_dim,
                    row_work: rows::nominal(
                        &rows::Nominal {
                            matrix_rows: m.matrix_rows,
                            parameters: m.parameters,
                            layers: m.layers,
                            quantization: &m.quantization,
                            widths: m.widths,
                        },
                        *b == Backend::Cpu,
                    ),
                    present: false,
                    code: m.code,
                });
            }
        }
        out
    }

    /// The catalog's (model, backend) pairs this board can run, with their presence.
    pub fn candidates(&self, catalog: &Catalog, models_dir: &Path) -> Vec<ModelFacts> {
        let mut out = self.catalog_facts(catalog);
        // A model has one entry per backend; its file is looked at once for all of them: is
        // it there, and its header (a 151k-token vocabulary makes that megabytes).
        let mut files: BTreeMap<String, (bool, Option<Gguf>)> = BTreeMap::new();
        for f in &mut out {
            let Some(m) = catalog.models.iter().find(|m| m.name == f.name) else {
                continue;
            };
            let (present, header) = files.entry(m.name.clone()).or_insert_with(|| {
                let present = matches!(
                    presence(m, models_dir, false),
                    Ok(Presence::Verified | Presence::Unverified | Presence::Rechecked)
                );
                // A fetched GGUF says what a token reads and multiplies; otherwise the
                // catalog's size bounds the bytes, and its row count stands.
                let header = present
                    .then(|| meta::read_file(&models_dir.join(&m.file)).ok())
                    .flatten();
                (present, header)
            });
            f.present = *present;
            if let Some(g) = header {
                f.streamed_bytes = g.streamed_bytes();
                f.row_work = rows::of_header(g, f.backend == Backend::Cpu.as_str());
            }
        }
        out
    }

    /// A model file given by path, planned from its GGUF header alone: the tensor list gives
    /// what a token reads (`streamed_bytes`), the metadata the shape (layers, K/V heads, head
    /// size; parameters counted from the tensors). One entry per llama.cpp backend the board
    /// has.
    pub fn path_facts(&self, path: &Path) -> Result<Vec<ModelFacts>, String> {
        let gguf = meta::read_file(path)?;
        let bytes = gguf.header.file_bytes;
        let streamed = gguf.streamed_bytes();
        let shape = gguf
            .shape()
            .ok_or("its header does not give the model's shape")?;
        Ok(self
            .backends()
            .into_iter()
            .filter(|b| *b != Backend::Npu) // the NPU runs .rkllm files, not GGUF
            .map(|b| ModelFacts {
                name: path.display().to_string(),
                backend: b.as_str().to_string(),
                file_bytes: bytes,
                streamed_bytes: streamed,
                parameters: shape.parameters,
                layers: shape.layers,
                kv_heads: shape.kv_heads,
                head_dim: shape.head_dim,
                row_work: rows::of_header(&gguf, b == Backend::Cpu),
                present: true,
                code: false,
            })
            .collect())
    }

    /// Takes a benchmark result and rebuilds the machine figures from it.
    pub fn set_measurement(&mut self, m: Measurement, origin: Origin) {
        let mem_available = MemInfo::read(&self.paths).map_or(0, |i| i.available);
        // The typical (median) figures, not the best: a plan is for minutes of decoding.
        let typical = m.typical();
        self.machine = Some(Machine {
            bandwidth: typical.read,
            cpu_ops: typical.ops,
            cpu_fp32: typical.fp32,
            cpu_scalar: typical.scalar,
            npu_ops: self.profile.npu_tops_int8 * 1e12,
            gpu_ops: self.profile.gpu_tflops_fp16 * 1e12,
            mem_available,
            npu_domain_bytes: self.profile.npu_memory_domain_bytes,
        });
        self.measurement = Some((m, origin));
    }

    /// Re-reads the calibration, predicts every candidate and chooses. `pinned` is a catalog
    /// name or a model file's path from the configuration, if one is pinned; `paths` are
    /// model files outside the catalog (the configured one, the one loaded) planned too.
    pub fn replan(
        &mut self,
        catalog: &Catalog,
        models_dir: &Path,
        store: Option<&Store>,
        pinned: Option<&str>,
        paths: &[&Path],
    ) {
        self.facts = self.candidates(catalog, models_dir);
        for path in paths {
            match self.path_facts(path) {
                Ok(f) => self.facts.extend(f),
                Err(e) => tracing::debug!("plan: {} is not planned: {e}", path.display()),
            }
        }
        self.load_calibration(store);
        self.predict_all();
        self.choice = Some(choose(&self.predictions, &self.targets, pinned));
    }

    fn load_calibration(&mut self, store: Option<&Store>) {
        let samples = match store.map(|s| s.calibration_samples(&self.profile.name)) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::warn!("calibration: {e}; planning with the default efficiencies");
                Vec::new()
            }
            None => Vec::new(),
        };
        self.efficiencies.clear();
        let cpu_scalar = self.machine.as_ref().map_or(0.0, |m| m.cpu_scalar);
        for b in self.backends() {
            let first_boot = match b {
                Backend::Cpu => Efficiencies::first_boot_cpu(cpu_scalar),
                _ => Efficiencies::default(),
            };
            // Each sample with its model's work in rows at the depth its answers decoded at
            // (the planned one for samples stored without it); a model no longer planned
            // (gone from the catalog) says nothing the fit can place.
            let of_backend: Vec<_> = samples
                .iter()
                .filter(|(backend, _)| backend == b.as_str())
                .filter_map(|(_, s)| {
                    let f = self.facts.iter().find(|f| f.name == s.model)?;
                    let depth = s.depth.map_or(self.targets.prompt_tokens, cells);
                    Some((s.clone(), f.work_rows(depth)))
                })
                .collect();
            self.efficiencies
                .insert(b.as_str().to_string(), fit(&of_backend, &first_boot));
        }
    }

    /// The voice's costs: measured by spoken turns, else derived from the compute probe.
    pub fn voice_costs(&self) -> Option<VoiceCosts> {
        self.voice
            .or_else(|| Some(VoiceCosts::from_probe(self.machine.as_ref()?.cpu_fp32)))
    }

    pub(super) fn predict_all(&mut self) {
        let (Some(machine), Some(voice)) = (&self.machine, self.voice_costs()) else {
            self.predictions.clear();
            return;
        };
        self.predictions = self
            .facts
            .iter()
            .map(|f| {
                let eff = self
                    .efficiencies
                    .get(&f.backend)
                    .copied()
                    .unwrap_or_default();
                let mut p = predict(f, machine, &eff, &voice, &self.targets);
                p.load_failed = self.failed.get(&f.name).cloned();
                p
            })
            .collect();
    }

    /// The chosen prediction, if any.
    pub fn chosen(&self) -> Option<&Prediction> {
        self.choice
            .as_ref()
            .and_then(|c| c.chosen)
            .and_then(|i| self.predictions.get(i))
    }

    pub fn prediction(&self, model: &str, backend: &str) -> Option<&Prediction> {
        self.predictions
            .iter()
            .find(|p| p.model == model && p.backend == backend)
    }

    /// Folds one spoken turn's voice figures in (end of speech → transcript; first token →
    /// first audio, at the turn's decode speed) and predicts again.
    pub fn record_spoken(&mut self, to_transcript: f64, after_first_token: f64, tps: f64) {
        let tts = VoiceCosts::tts_of_turn(after_first_token, tps);
        let old = self.voice.unwrap_or(VoiceCosts {
            stt_seconds: 0.0,
            tts_seconds: 0.0,
            samples: 0,
        });
        self.voice = Some(old.merge(to_transcript, tts));
        self.predict_all();
    }

    /// Folds a finished answer of `model` on `backend` into the calibration, refits and
    /// predicts again. Returns the model's prediction before and after, or None when the
    /// answer says nothing (aborted, too short, a model outside the catalog).
    pub fn record_answer(
        &mut self,
        store: &Store,
        model: &str,
        backend: &str,
        stats: &GenStats,
    ) -> Option<(f64, f64)> {
        if stats.aborted
            || stats.generated_tokens < MIN_CALIBRATION_TOKENS
            || stats.decode_tokens_per_second <= 0.0
        {
            return None;
        }
        let facts = self
            .facts
            .iter()
            .find(|f| f.name == model && f.backend == backend)?
            .clone();
        let machine = self.machine.clone()?;
        let before = self.prediction(model, backend)?.tokens_per_second;
        let compute = match backend {
            "npu" => machine.npu_ops,
            "cuda" => machine.gpu_ops,
            _ => machine.cpu_ops,
        };
        // The cache's depth halfway through the answer: what it held before (kept or
        // processed now) and half of what the answer added.
        let depth = f64::from(stats.prompt_tokens)
            + f64::from(stats.reused_tokens)
            + f64::from(stats.generated_tokens) / 2.0;
        let sample = super::Sample {
            model: model.to_string(),
            bytes_per_token: facts.bytes_per_token(cells(depth)),
            ops_per_token: facts.ops_per_token(),
            bandwidth: machine.bandwidth,
            compute,
            seconds_per_token: 1.0 / stats.decode_tokens_per_second,
            prefill_seconds_per_token: (stats.prompt_tokens >= 16
                && stats.prompt_tokens_per_second > 0.0)
                .then(|| 1.0 / stats.prompt_tokens_per_second),
            depth: Some(depth),
            count: 1,
        };
        let stored = store
            .calibration_samples(&self.profile.name)
            .map(|all| {
                all.into_iter()
                    .find(|(b, s)| b == backend && s.model == sample.model)
                    .map(|(_, s)| s)
            })
            .and_then(|old| {
                store.calibration_put(
                    &self.profile.name,
                    backend,
                    &super::calibrate::merge(old, &sample),
                )
            });
        if let Err(e) = stored {
            tracing::warn!("calibration: {e}");
            return None;
        }
        self.load_calibration(Some(store));
        self.predict_all();
        let after = self.prediction(model, backend)?.tokens_per_second;
        Some((before, after))
    }
}

/// A smoothed depth as whole KV cache cells.
fn cells(depth: f64) -> u32 {
    depth.round().clamp(0.0, f64::from(u32::MAX)) as u32
}
