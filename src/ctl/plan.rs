//! `tutorctl plan` and `tutorctl bench`: the answer of `Plan()` read into plain structs and
//! printed as tables. The keys are those of `Context::plan_report` (docs/dbus.md).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use zbus::{OwnedVariant, Variant};

use super::render::diagnostics_json;

/// One dictionary of `Plan()`'s answer.
pub type Dict = HashMap<String, OwnedVariant>;

/// The calibrated figures of one backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Efficiency {
    pub memory: f64,
    pub compute: f64,
    pub prefill: f64,
    /// Per token and matrix row.
    pub overhead_per_row_seconds: f64,
    /// Answers the figures come from; 0 = the first boot's, from the compute probe.
    pub samples: u64,
}

/// What the benchmark measured; absent from `Plan()` until the benchmark ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bench {
    /// Bytes/s, counted as STREAM does.
    pub read: f64,
    pub copy: f64,
    pub triad: f64,
    /// Bytes/s; 0 when the board does not tell its DDR clock.
    pub theoretical: f64,
    /// Op/s of the inference cores (INT8 dot where the CPU has it) and FP32 flop/s.
    pub compute_ops: f64,
    pub compute_fp32: f64,
    /// The median runs' read bandwidth, FP32 and quantized rates: what the planner divides
    /// by (the figures above are each kernel's best run); 0 from a daemon without them.
    pub typical_read: f64,
    pub typical_fp32: f64,
    pub typical_ops: f64,
    /// The scalar chain's op/s on the inference cores (their clocks): what the first boot
    /// scales a matrix row's cost by; 0 when not measured.
    pub typical_scalar: f64,
    pub threads: u64,
    pub cpus: String,
    pub isa: String,
    pub working_set: u64,
    pub seconds: f64,
    pub measured_unix: i64,
    pub cached: bool,
    pub ddr_floating: bool,
}

/// The machine half of `Plan()`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Machine {
    pub board: String,
    pub bench: Option<Bench>,
    /// Bytes; 0 = unknown.
    pub mem_available: u64,
    pub target_tokens_per_second: f64,
    pub target_first_token_seconds: f64,
    pub target_first_audio_seconds: f64,
    /// The voice's share of first audio: speech recognition and the first chunk's synthesis,
    /// seconds, and the spoken turns they come from (0 = derived from the compute probe).
    pub voice: Option<(f64, f64, u64)>,
    pub efficiencies: BTreeMap<String, Efficiency>,
    pub reason: Option<String>,
    pub warning: Option<String>,
    /// A larger catalog model not yet fetched that would meet the targets.
    pub fetch: Option<String>,
}

/// One (model, backend) candidate of `Plan()`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidate {
    pub model: String,
    pub backend: String,
    /// The file is fetched.
    pub present: bool,
    /// The model that answers now (the daemon never marks one it did not load).
    pub chosen: bool,
    /// The plan's own choice, loaded or not (it differs after a failed load).
    pub planned: bool,
    pub bytes_per_token: f64,
    pub ops_per_token: f64,
    /// Seconds per token under each roof, efficiencies applied.
    pub bandwidth_seconds: f64,
    pub compute_seconds: f64,
    pub binding: String,
    pub tokens_per_second: f64,
    pub first_token_seconds: f64,
    pub first_audio_seconds: f64,
    /// Bytes.
    pub memory_needed: u64,
    pub fits: bool,
    pub does_not_fit: Option<String>,
    /// Why the model failed to load since the daemon started (it is passed over).
    pub load_failed: Option<String>,
}

impl Candidate {
    /// Operations per byte read, per decoded token: the roofline's x.
    pub fn intensity(&self) -> f64 {
        self.ops_per_token / self.bytes_per_token
    }
}

/// `Plan()`'s answer, read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanView {
    pub machine: Machine,
    pub candidates: Vec<Candidate>,
}

impl PlanView {
    pub fn from_dicts(machine: &Dict, candidates: &[Dict]) -> Self {
        Self {
            machine: read_machine(machine),
            candidates: candidates.iter().map(read_candidate).collect(),
        }
    }

    pub fn chosen(&self) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.chosen)
    }
}

/// `Plan()`'s answer as `{"machine": {…}, "candidates": [{…}, …]}`, keys sorted.
pub fn json(machine: &Dict, candidates: &[Dict]) -> serde_json::Value {
    serde_json::json!({
        "machine": diagnostics_json(machine),
        "candidates": candidates.iter().map(diagnostics_json).collect::<Vec<_>>(),
    })
}

fn read_machine(d: &Dict) -> Machine {
    let bench = d.contains_key("bandwidth_read").then(|| Bench {
        read: num(d, "bandwidth_read"),
        copy: num(d, "bandwidth_copy"),
        triad: num(d, "bandwidth_triad"),
        theoretical: num(d, "bandwidth_theoretical"),
        compute_ops: num(d, "compute_ops"),
        compute_fp32: num(d, "compute_fp32"),
        typical_read: num(d, "typical_read"),
        typical_fp32: num(d, "typical_fp32"),
        typical_ops: num(d, "typical_ops"),
        typical_scalar: num(d, "typical_scalar"),
        threads: num(d, "bench_threads") as u64,
        cpus: text(d, "bench_cpus").unwrap_or_default(),
        isa: text(d, "bench_isa").unwrap_or_default(),
        working_set: num(d, "bench_working_set") as u64,
        seconds: num(d, "bench_seconds"),
        measured_unix: num(d, "bench_measured_unix") as i64,
        cached: flag(d, "bench_cached"),
        ddr_floating: flag(d, "ddr_floating"),
    });
    let efficiencies = d
        .keys()
        .filter_map(|k| k.strip_prefix("efficiency_memory_"))
        .map(|b| {
            let e = Efficiency {
                memory: num(d, &format!("efficiency_memory_{b}")),
                compute: num(d, &format!("efficiency_compute_{b}")),
                prefill: num(d, &format!("efficiency_prefill_{b}")),
                overhead_per_row_seconds: num(d, &format!("overhead_per_row_seconds_{b}")),
                samples: num(d, &format!("calibration_samples_{b}")) as u64,
            };
            (b.to_string(), e)
        })
        .collect();
    Machine {
        board: text(d, "board").unwrap_or_default(),
        bench,
        mem_available: num(d, "mem_available") as u64,
        target_tokens_per_second: num(d, "target_tokens_per_second"),
        target_first_token_seconds: num(d, "target_first_token_seconds"),
        target_first_audio_seconds: num(d, "target_first_audio_seconds"),
        voice: d.contains_key("voice_stt_seconds").then(|| {
            (
                num(d, "voice_stt_seconds"),
                num(d, "voice_tts_seconds"),
                num(d, "voice_samples") as u64,
            )
        }),
        efficiencies,
        reason: text(d, "choice_reason"),
        warning: text(d, "choice_warning"),
        fetch: text(d, "choice_fetch"),
    }
}

fn read_candidate(d: &Dict) -> Candidate {
    Candidate {
        model: text(d, "model").unwrap_or_default(),
        backend: text(d, "backend").unwrap_or_default(),
        present: flag(d, "present"),
        chosen: flag(d, "chosen"),
        planned: flag(d, "planned"),
        bytes_per_token: num(d, "bytes_per_token"),
        ops_per_token: num(d, "ops_per_token"),
        bandwidth_seconds: num(d, "bandwidth_seconds"),
        compute_seconds: num(d, "compute_seconds"),
        binding: text(d, "binding").unwrap_or_default(),
        tokens_per_second: num(d, "tokens_per_second"),
        first_token_seconds: num(d, "first_token_seconds"),
        first_audio_seconds: num(d, "first_audio_seconds"),
        memory_needed: num(d, "memory_needed") as u64,
        fits: flag(d, "fits"),
        does_not_fit: text(d, "does_not_fit"),
        load_failed: text(d, "load_failed"),
    }
}

/// A number of any D-Bus numeric type; 0 when absent (an older or a not yet benchmarked
/// daemon).
fn num(d: &Dict, key: &str) -> f64 {
    match d.get(key).map(|v| &**v) {
        Some(Variant::F64(n)) => *n,
        Some(Variant::U64(n)) => *n as f64,
        Some(Variant::I64(n)) => *n as f64,
        Some(Variant::U32(n)) => f64::from(*n),
        Some(Variant::I32(n)) => f64::from(*n),
        _ => 0.0,
    }
}

fn flag(d: &Dict, key: &str) -> bool {
    matches!(d.get(key).map(|v| &**v), Some(Variant::Bool(true)))
}

fn text(d: &Dict, key: &str) -> Option<String> {
    match d.get(key).map(|v| &**v) {
        Some(Variant::Str(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// Bytes/s as GB/s (10⁹, as bandwidth is quoted).
fn gbps(b: f64) -> String {
    format!("{:.1} GB/s", b / 1e9)
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

/// How long ago a Unix time was, roughly, for "cached, measured 3 h ago".
fn age(measured_unix: i64, now_unix: i64) -> String {
    let s = (now_unix - measured_unix).max(0);
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The machine's rows (`tutorctl bench`, and the head of `tutorctl plan`).
pub fn machine_text(m: &Machine) -> String {
    machine_text_at(m, now_unix())
}

fn machine_text_at(m: &Machine, now: i64) -> String {
    let mut rows: Vec<(&str, String)> = vec![("Board", m.board.clone())];
    match &m.bench {
        None => rows.push(("Bandwidth", "not measured yet".into())),
        Some(b) => {
            rows.push((
                "Bandwidth",
                format!(
                    "read {}, copy {}, triad {} (STREAM counting)",
                    gbps(b.read),
                    gbps(b.copy),
                    gbps(b.triad)
                ),
            ));
            rows.push((
                "Theoretical",
                if b.theoretical > 0.0 {
                    format!(
                        "{}; read is {:.0} % of it",
                        gbps(b.theoretical),
                        100.0 * b.read / b.theoretical
                    )
                } else {
                    "unknown (the board does not tell its DDR clock)".into()
                },
            ));
            rows.push((
                "Compute",
                format!(
                    "{:.1} GOP/s (INT8 dot or best), {:.1} GFLOP/s FP32",
                    b.compute_ops / 1e9,
                    b.compute_fp32 / 1e9
                ),
            ));
            if b.typical_read > 0.0 {
                rows.push((
                    "Typical",
                    format!(
                        "read {}, {:.1} GOP/s, {:.1} GFLOP/s FP32, scalar chain {:.1} Gop/s \
                         (median runs: what the plan divides by)",
                        gbps(b.typical_read),
                        b.typical_ops / 1e9,
                        b.typical_fp32 / 1e9,
                        b.typical_scalar / 1e9
                    ),
                ));
            }
            rows.push((
                "Measured",
                format!(
                    "{} on CPUs {} ({} threads, {}, {}) in {:.2} s",
                    if b.cached {
                        format!("cached, {} ago,", age(b.measured_unix, now))
                    } else {
                        "now".into()
                    },
                    b.cpus,
                    b.threads,
                    b.isa,
                    mib(b.working_set),
                    b.seconds
                ),
            ));
            if b.ddr_floating {
                rows.push((
                    "Warning",
                    "the DDR clock is not pinned: bandwidth can swing between runs".into(),
                ));
            }
        }
    }
    for (backend, e) in &m.efficiencies {
        rows.push((
            "Efficiency",
            format!(
                "{backend}: memory {:.2}, compute {:.3}, prefill {:.2}, overhead {:.1} ns/row; {}",
                e.memory,
                e.compute,
                e.prefill,
                e.overhead_per_row_seconds * 1e9,
                match e.samples {
                    0 => "first boot's, from the compute probe (no answer yet)".to_string(),
                    1 => "calibrated from 1 answer".to_string(),
                    n => format!("calibrated from {n} answers"),
                }
            ),
        ));
    }
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{k:>12}: {v}");
    }
    out
}

/// The table of `tutorctl plan`: the machine, one row per candidate, the choice.
pub fn plan_text(p: &PlanView) -> String {
    plan_text_at(p, now_unix())
}

fn plan_text_at(p: &PlanView, now: i64) -> String {
    let m = &p.machine;
    let mut out = machine_text_at(m, now);
    let _ = writeln!(
        out,
        "{:>12}: {}",
        "Available",
        if m.mem_available > 0 {
            mib(m.mem_available)
        } else {
            "unknown".into()
        }
    );
    if let Some((stt, tts, samples)) = m.voice {
        let _ = writeln!(
            out,
            "{:>12}: {stt:.2} s to a transcript, {tts:.2} s to synthesize a first chunk ({})",
            "Voice",
            if samples == 0 {
                "from the compute probe".to_string()
            } else {
                format!("{samples} spoken turns")
            }
        );
    }
    let _ = writeln!(
        out,
        "{:>12}: {:.1} tokens/s, first token within {:.1} s, first audio within {:.1} s\n",
        "Target",
        m.target_tokens_per_second,
        m.target_first_token_seconds,
        m.target_first_audio_seconds
    );
    out.push_str(&candidates_table(&p.candidates));
    if let Some(r) = &m.reason {
        let _ = writeln!(out, "\nChoice: {r}");
    }
    if let Some(w) = &m.warning {
        let _ = writeln!(out, "Warning: {w}");
    }
    if let Some(f) = &m.fetch {
        let _ = writeln!(out, "Better: {f}");
    }
    let unfit: Vec<_> = p
        .candidates
        .iter()
        .filter_map(|c| Some((c, c.does_not_fit.as_ref()?)))
        .collect();
    for (c, why) in unfit {
        let _ = writeln!(out, "{} ({}) does not fit: {why}", c.model, c.backend);
    }
    for c in &p.candidates {
        if let Some(why) = &c.load_failed {
            let _ = writeln!(out, "{} ({}) failed to load: {why}", c.model, c.backend);
        }
    }
    out
}

fn candidates_table(cs: &[Candidate]) -> String {
    if cs.is_empty() {
        return "No candidates: no catalog model runs on this board.\n".into();
    }
    let head = [
        "",
        "MODEL",
        "BACKEND",
        "FETCHED",
        "FITS",
        "TOK/S",
        "1ST TOKEN",
        "1ST AUDIO",
        "BOUND BY",
        "MEMORY",
    ];
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let rows: Vec<[String; 10]> = cs
        .iter()
        .map(|c| {
            [
                match (c.chosen, c.planned) {
                    (true, _) => "*",
                    (false, true) => "+",
                    (false, false) => "",
                }
                .to_string(),
                c.model.clone(),
                c.backend.clone(),
                yes(c.present),
                yes(c.fits),
                format!("{:.1}", c.tokens_per_second),
                format!("{:.2} s", c.first_token_seconds),
                format!("{:.2} s", c.first_audio_seconds),
                c.binding.clone(),
                mib(c.memory_needed),
            ]
        })
        .collect();
    let mut width = head.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Numbers read best right-aligned.
    let right = [
        false, false, false, false, false, true, true, true, false, true,
    ];
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let w = width[i];
            if right[i] {
                let _ = write!(l, "{cell:>w$}  ");
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(&head.map(String::from));
    for r in &rows {
        out.push_str(&line(r));
    }
    out.push_str("(* = chosen and loaded)\n");
    if cs.iter().any(|c| c.planned && !c.chosen) {
        out.push_str("(+ = the plan's choice, not loaded: see why above)\n");
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use zbus::Str;

    fn s(v: &str) -> OwnedVariant {
        OwnedVariant::from(Str::from(v.to_string()))
    }

    /// A `Plan()` answer like the daemon's: RK3588-like figures, two candidates.
    pub(crate) fn sample() -> (Dict, Vec<Dict>) {
        let mut m = Dict::new();
        m.insert("board".into(), s("rk3588"));
        m.insert("target_tokens_per_second".into(), 5.0.into());
        m.insert("target_first_token_seconds".into(), 2.0.into());
        m.insert("target_first_audio_seconds".into(), 4.0.into());
        m.insert("voice_stt_seconds".into(), 0.8.into());
        m.insert("voice_tts_seconds".into(), 0.35.into());
        m.insert("voice_samples".into(), 2u64.into());
        m.insert("bandwidth_read".into(), 20e9.into());
        m.insert("bandwidth_copy".into(), 15e9.into());
        m.insert("bandwidth_triad".into(), 16e9.into());
        m.insert("bandwidth_theoretical".into(), 33.79e9.into());
        m.insert("compute_ops".into(), 100e9.into());
        m.insert("compute_fp32".into(), 50e9.into());
        m.insert("typical_read".into(), 18e9.into());
        m.insert("typical_fp32".into(), 45e9.into());
        m.insert("typical_ops".into(), 90e9.into());
        m.insert("typical_scalar".into(), 9.6e9.into());
        m.insert("bench_threads".into(), 4u64.into());
        m.insert("bench_cpus".into(), s("4-7"));
        m.insert("bench_isa".into(), s("neon"));
        m.insert("bench_working_set".into(), (256u64 << 20).into());
        m.insert("bench_seconds".into(), 0.95.into());
        m.insert("bench_measured_unix".into(), 1_000i64.into());
        m.insert("bench_cached".into(), true.into());
        m.insert("ddr_floating".into(), false.into());
        m.insert("mem_available".into(), (6000u64 << 20).into());
        m.insert(
            "choice_reason".into(),
            s("big is the largest that meets 5 tok/s"),
        );
        m.insert("efficiency_memory_cpu".into(), 0.75.into());
        m.insert("efficiency_compute_cpu".into(), 0.5.into());
        m.insert("efficiency_prefill_cpu".into(), 0.4.into());
        m.insert("overhead_per_row_seconds_cpu".into(), 25e-9.into());
        m.insert("calibration_samples_cpu".into(), 3u64.into());
        let cand = |model: &str, bytes: f64, ops: f64, tps: f64, chosen: bool| {
            let mut c = Dict::new();
            c.insert("model".into(), s(model));
            c.insert("backend".into(), s("cpu"));
            c.insert("present".into(), chosen.into());
            c.insert("chosen".into(), chosen.into());
            c.insert("bytes_per_token".into(), bytes.into());
            c.insert("ops_per_token".into(), ops.into());
            c.insert("bandwidth_seconds".into(), (bytes / 15e9).into());
            c.insert("compute_seconds".into(), (ops / 50e9).into());
            c.insert("binding".into(), s("bandwidth"));
            c.insert("tokens_per_second".into(), tps.into());
            c.insert("first_token_seconds".into(), 0.5.into());
            c.insert(
                "first_audio_seconds".into(),
                (1.65 + 15.0 / tps.min(100.0)).into(),
            );
            c.insert("memory_needed".into(), (1500u64 << 20).into());
            c.insert("fits".into(), true.into());
            c
        };
        let cands = vec![
            cand("small<&>", 1e8, 2.7e8, 140.0, false),
            cand("big", 4.8e9, 14e9, 3.1, true),
        ];
        (m, cands)
    }

    #[test]
    fn reads_every_key_of_plan() {
        let (m, c) = sample();
        let p = PlanView::from_dicts(&m, &c);
        let b = p.machine.bench.as_ref().unwrap();
        assert_eq!((b.read, b.theoretical, b.threads), (20e9, 33.79e9, 4));
        assert!(b.cached);
        assert_eq!(p.machine.efficiencies["cpu"].samples, 3);
        assert_eq!(p.chosen().unwrap().model, "big");
        assert!((p.candidates[0].intensity() - 2.7).abs() < 1e-12);
        // Before the benchmark ran the machine has no bandwidth keys.
        let bare = PlanView::from_dicts(&Dict::new(), &[]);
        assert_eq!(bare.machine.bench, None);
        assert!(machine_text(&bare.machine).contains("not measured yet"));
    }

    #[test]
    fn plan_table_has_the_machine_a_row_per_candidate_and_the_choice() {
        let (m, c) = sample();
        let t = plan_text_at(&PlanView::from_dicts(&m, &c), 1_000 + 3 * 3600);
        for want in [
            "   Bandwidth: read 20.0 GB/s, copy 15.0 GB/s, triad 16.0 GB/s (STREAM counting)\n",
            " Theoretical: 33.8 GB/s; read is 59 % of it\n",
            "     Compute: 100.0 GOP/s (INT8 dot or best), 50.0 GFLOP/s FP32\n",
            "     Typical: read 18.0 GB/s, 90.0 GOP/s, 45.0 GFLOP/s FP32, scalar chain 9.6 Gop/s \
             (median runs: what the plan divides by)\n",
            "    Measured: cached, 3 h ago, on CPUs 4-7 (4 threads, neon, 256 MiB) in 0.95 s\n",
            "  Efficiency: cpu: memory 0.75, compute 0.500, prefill 0.40, overhead 25.0 ns/row; \
             calibrated from 3 answers\n",
            "   Available: 6000 MiB\n",
            "       Voice: 0.80 s to a transcript, 0.35 s to synthesize a first chunk (2 spoken turns)\n",
            "      Target: 5.0 tokens/s, first token within 2.0 s, first audio within 4.0 s\n",
            "Choice: big is the largest that meets 5 tok/s\n",
        ] {
            assert!(t.contains(want), "lacks {want:?}:\n{t}");
        }
        let rows: Vec<&str> = t.lines().filter(|l| l.contains(" cpu ")).collect();
        assert_eq!(
            rows,
            [
                "   small<&>  cpu      no       yes   140.0     0.50 s     1.80 s  bandwidth  1500 MiB",
                "*  big       cpu      yes      yes     3.1     0.50 s     6.49 s  bandwidth  1500 MiB",
            ],
            "{t}"
        );
    }

    #[test]
    fn json_keeps_both_halves() {
        let (m, c) = sample();
        let j = json(&m, &c);
        assert_eq!(j["machine"]["board"], "rk3588");
        assert_eq!(j["candidates"][1]["model"], "big");
        assert_eq!(j["candidates"].as_array().unwrap().len(), 2);
    }
}
