use super::*;

/// Qwen2.5 7B at INT4: 4.8 GB of weights, 28 layers, 4 KV heads of 128.
fn qwen7b() -> ModelFacts {
    ModelFacts {
        name: "qwen2.5-7b-q4".into(),
        backend: "cpu".into(),
        file_bytes: 4_800_000_000,
        streamed_bytes: 4_800_000_000,
        parameters: 7_615_616_512,
        layers: 28,
        kv_heads: 4,
        head_dim: 128,
        row_work: 1_542_656.0,
        present: true,
        code: false,
    }
}

fn rk3588() -> Machine {
    Machine {
        // The worked example's theoretical figure, as if measured.
        bandwidth: 33_792_000_000.0,
        cpu_ops: 4.0 * 2.4e9 * 64.0, // 4 A76, 4 × 16 int8 MACs... per cycle: plenty
        cpu_fp32: 4.0 * 2.4e9 * 16.0, // 2 × 4-lane FMA a cycle
        cpu_scalar: 4.0 * 2.4e9,     // one dependent op a cycle
        npu_ops: 6e12,
        gpu_ops: 0.0,
        mem_available: 14 << 30,
        npu_domain_bytes: 4 << 30,
    }
}

fn targets() -> Targets {
    Targets {
        tokens_per_second: 5.0,
        time_to_first_token: 3.0,
        first_audio: 60.0,
        prompt_tokens: 0,
        context_length: 4096,
        stt_bytes: 0,
        tts_bytes: 0,
        reserve_bytes: 0,
    }
}

/// A voice that costs nothing: the model's own figures decide.
fn no_voice() -> VoiceCosts {
    VoiceCosts {
        stt_seconds: 0.0,
        tts_seconds: 0.0,
        samples: 0,
    }
}

fn no_overhead(memory: f64) -> Efficiencies {
    Efficiencies {
        memory,
        compute: 0.3,
        prefill: 0.3,
        overhead_per_row: 0.0,
        samples: 0,
    }
}

#[test]
fn worked_example_7_04_ceiling_and_5_28_at_75_percent() {
    let t = targets();
    let ceiling = predict(&qwen7b(), &rk3588(), &no_overhead(1.0), &no_voice(), &t);
    assert_eq!(format!("{:.2}", ceiling.tokens_per_second), "7.04");
    assert_eq!(ceiling.binding, Roof::Bandwidth);
    let p = predict(&qwen7b(), &rk3588(), &no_overhead(0.75), &no_voice(), &t);
    assert_eq!(format!("{:.2}", p.tokens_per_second), "5.28");
    assert!(p.meets_speed);
}

#[test]
fn kv_cache_for_an_architecture_and_context() {
    // 2 (K, V) × 28 layers × 4096 tokens × 4 heads × 128 × 2 bytes = 224 MiB.
    assert_eq!(qwen7b().kv_cache_bytes(4096), 234_881_024);
    // SmolLM2-135M: 30 layers, 3 KV heads of 64, 2048 tokens = 45 MiB.
    let smol = ModelFacts {
        layers: 30,
        kv_heads: 3,
        head_dim: 64,
        ..qwen7b()
    };
    assert_eq!(smol.kv_cache_bytes(2048), 47_185_920);
    let p = predict(
        &qwen7b(),
        &rk3588(),
        &no_overhead(0.75),
        &no_voice(),
        &targets(),
    );
    assert_eq!(p.memory_needed, 4_800_000_000 + 234_881_024);
}

#[test]
fn a_token_reads_the_streamed_weights_and_the_kv_cache_at_its_depth() {
    // Qwen2.5-0.5B Q4_K_M's shape: 24 layers, 2 KV heads of 64 = 12 KiB of KV per token.
    let m = ModelFacts {
        file_bytes: 491_400_032,
        streamed_bytes: 355_000_000,
        parameters: 494_032_768,
        layers: 24,
        kv_heads: 2,
        head_dim: 64,
        ..qwen7b()
    };
    assert_eq!(m.kv_cache_bytes(1), 12_288);
    assert_eq!(m.bytes_per_token(0), 355_000_000.0);
    // At 1000 tokens into the conversation: + 12 MB of KV cache.
    assert_eq!(m.bytes_per_token(1000), 355_000_000.0 + 12_288_000.0);
    // Memory counts the whole file, decoding only what it streams.
    let t = Targets {
        prompt_tokens: 1000,
        context_length: 4096,
        ..targets()
    };
    let p = predict(&m, &rk3588(), &no_overhead(0.75), &no_voice(), &t);
    assert_eq!(p.bytes_per_token, 367_288_000.0);
    assert_eq!(p.memory_needed, 491_400_032 + 4096 * 12_288);
}

#[test]
fn a_small_model_on_a_fast_core_is_compute_bound() {
    let m = Machine {
        bandwidth: 20e9,
        cpu_ops: 20e9,
        ..rk3588()
    };
    let small = ModelFacts {
        file_bytes: 100_000_000,
        streamed_bytes: 100_000_000,
        parameters: 135_000_000,
        ..qwen7b()
    };
    let p = predict(&small, &m, &no_overhead(0.75), &no_voice(), &targets());
    // bandwidth: 1e8 / 15e9 = 6.7 ms; compute: 2.7e8 / 6e9 = 45 ms.
    assert_eq!(p.binding, Roof::Compute);
    assert_eq!(format!("{:.1}", p.tokens_per_second), "22.2");
}

fn tiers() -> Vec<ModelFacts> {
    [("small", 1u64), ("medium", 2), ("large", 4)]
        .into_iter()
        .map(|(n, gb)| ModelFacts {
            name: n.into(),
            file_bytes: gb * 1_000_000_000,
            streamed_bytes: gb * 1_000_000_000,
            parameters: gb * 2_000_000_000,
            ..qwen7b()
        })
        .collect()
}

fn plan(models: &[ModelFacts], m: &Machine, t: &Targets) -> Vec<Prediction> {
    models
        .iter()
        .map(|f| predict(f, m, &no_overhead(0.75), &no_voice(), t))
        .collect()
}

#[test]
fn picks_the_largest_that_meets_the_target() {
    // 33.8 × 0.75 = 25.3 GB/s: 25.3, 12.7 and 6.3 tok/s.
    let t = targets();
    let preds = plan(&tiers(), &rk3588(), &t);
    let c = choose(&preds, &t, None);
    assert_eq!(preds[c.chosen.unwrap()].model, "large");
    assert!(c.warning.is_none());
    let t = Targets {
        tokens_per_second: 10.0,
        ..targets()
    };
    let c = choose(&plan(&tiers(), &rk3588(), &t), &t, None);
    assert_eq!(c.chosen, Some(1), "{c:?}");
    assert!(c.reason.contains("medium"), "{}", c.reason);
}

#[test]
fn a_model_that_failed_to_load_is_passed_over_for_the_next_smaller() {
    let t = targets();
    let mut preds = plan(&tiers(), &rk3588(), &t);
    preds[2].load_failed = Some("large.gguf: not a GGUF file".into());
    let c = choose(&preds, &t, None);
    assert_eq!(preds[c.chosen.unwrap()].model, "medium", "{c:?}");
    preds[1].load_failed = Some("medium.gguf: truncated".into());
    preds[0].load_failed = Some("small.gguf: truncated".into());
    let c = choose(&preds, &t, None);
    assert_eq!(c.chosen, None);
    assert!(c.reason.contains("failed to load"), "{}", c.reason);
    // A pinned model is what the user asked for: it is not passed over.
    assert_eq!(choose(&preds, &t, Some("large")).chosen, Some(2));
}

#[test]
fn an_unfetched_larger_model_that_meets_the_target_is_named_with_its_prediction() {
    // 25.3 GB/s: small 25.3, medium 12.7, large 6.3 tok/s; only small is fetched.
    let t = targets();
    let mut preds = plan(&tiers(), &rk3588(), &t);
    preds[1].present = false;
    preds[2].present = false;
    let c = choose(&preds, &t, None);
    assert_eq!(c.chosen, Some(0));
    assert_eq!(
        fetch_hint(&preds, &c).unwrap(),
        "fetch large for 6.3 tok/s, 0.16 s to first token and 2.53 s to first audio on cpu \
         (`tutorctl models fetch large`)"
    );
    // At 10 tok/s the large one misses: medium is the one to fetch.
    let t10 = Targets {
        tokens_per_second: 10.0,
        ..targets()
    };
    let mut preds = plan(&tiers(), &rk3588(), &t10);
    preds[1].present = false;
    preds[2].present = false;
    let c = choose(&preds, &t10, None);
    assert!(
        fetch_hint(&preds, &c)
            .unwrap()
            .starts_with("fetch medium for 12.7 tok/s")
    );
    // The choice is already the largest that meets it: nothing to fetch, not even a model of
    // the same parameters whose catalog size (an upper bound) is above the header's bytes.
    let mut preds = plan(&tiers(), &rk3588(), &t);
    let mut twin = preds[2].clone();
    twin.model = "large-twin".into();
    twin.present = false;
    twin.bytes_per_token *= 1.05;
    preds.push(twin);
    assert_eq!(fetch_hint(&preds, &choose(&preds, &t, None)), None);
    // Nothing fetched and nothing meets 100 tok/s: the fastest that fits.
    let t100 = Targets {
        tokens_per_second: 100.0,
        ..targets()
    };
    let mut preds = plan(&tiers(), &rk3588(), &t100);
    preds.iter_mut().for_each(|p| p.present = false);
    let c = choose(&preds, &t100, None);
    assert_eq!(c.chosen, None);
    assert!(
        fetch_hint(&preds, &c)
            .unwrap()
            .starts_with("fetch small for 25.3 tok/s")
    );
}

#[test]
fn nothing_meets_the_target_so_the_fastest_that_fits_with_a_warning() {
    let t = Targets {
        tokens_per_second: 100.0,
        ..targets()
    };
    let c = choose(&plan(&tiers(), &rk3588(), &t), &t, None);
    assert_eq!(c.chosen, Some(0));
    assert!(c.warning.unwrap().contains("no model meets"));
}

#[test]
fn nothing_fits() {
    let m = Machine {
        mem_available: 500_000_000,
        ..rk3588()
    };
    let preds = plan(&tiers(), &m, &targets());
    assert!(
        preds[0]
            .does_not_fit
            .as_ref()
            .unwrap()
            .contains("available")
    );
    let c = choose(&preds, &targets(), None);
    assert_eq!(c.chosen, None);
    assert_eq!(c.reason, "no model fits in the available memory");
    let c = choose(&[], &targets(), None);
    assert!(
        c.reason.starts_with("no catalog model can run"),
        "{}",
        c.reason
    );
    // The reserve counts: 1 GB model + 3 GB of speech and OS do not fit in 3.5 GB.
    let t = Targets {
        stt_bytes: 1 << 30,
        tts_bytes: 1 << 30,
        reserve_bytes: 1 << 30,
        ..targets()
    };
    let m = Machine {
        mem_available: 3_500_000_000,
        ..rk3588()
    };
    assert!(!predict(&tiers()[0], &m, &no_overhead(0.75), &no_voice(), &t).fits());
}

#[test]
fn ties_go_to_the_faster_then_absent_models_are_skipped() {
    let mut models = tiers();
    models.push(ModelFacts {
        name: "large-npu".into(),
        backend: "npu".into(),
        ..models[2].clone()
    });
    // Same bytes: the NPU copy is compute-faster, so it wins the tie.
    let m = Machine {
        cpu_ops: 1e11,
        ..rk3588()
    };
    let t = Targets {
        tokens_per_second: 1.0,
        time_to_first_token: 100.0,
        ..targets()
    };
    let preds = plan(&models, &m, &t);
    assert_eq!(choose(&preds, &t, None).chosen, Some(3));
    models[3].present = false;
    models[2].present = false;
    let preds = plan(&models, &m, &t);
    assert_eq!(choose(&preds, &t, None).chosen, Some(1));
    // NPU: over 4 GiB of weights + KV does not fit its memory domain.
    let big = ModelFacts {
        file_bytes: 4_500_000_000,
        streamed_bytes: 4_500_000_000,
        ..models[3].clone()
    };
    let p = predict(&big, &m, &no_overhead(0.75), &no_voice(), &t);
    assert!(p.does_not_fit.unwrap().contains("NPU"));
}

#[test]
fn a_pinned_model_wins_with_a_warning_when_it_misses() {
    let t = Targets {
        tokens_per_second: 10.0,
        ..targets()
    };
    let preds = plan(&tiers(), &rk3588(), &t);
    let c = choose(&preds, &t, Some("large"));
    assert_eq!(c.chosen, Some(2));
    assert!(c.warning.unwrap().contains("pinned model large"));
    let c = choose(&preds, &t, Some("small"));
    assert_eq!((c.chosen, c.warning), (Some(0), None));
    assert_eq!(choose(&preds, &t, Some("nope")).chosen, None);
}

fn sample(name: &str, bytes: f64, ops: f64, seconds: f64) -> Sample {
    Sample {
        model: name.into(),
        bytes_per_token: bytes,
        ops_per_token: ops,
        bandwidth: 20e9,
        compute: 100e9,
        seconds_per_token: seconds,
        prefill_seconds_per_token: Some(ops / (100e9 * 0.2)),
        depth: None,
        count: 5,
    }
}

fn first_boot() -> Efficiencies {
    Efficiencies::default()
}

#[test]
fn calibration_moves_toward_the_measured_efficiency() {
    let prior = first_boot();
    assert_eq!(fit(&[], &prior), prior);
    // A bandwidth-bound model measured at 50 % of 20 GB/s: 1 GB → 0.1 s per token.
    let s = [(sample("big", 1e9, 2e7, 0.1), 0.0)];
    let e = fit(&s, &prior);
    assert!((e.memory - 0.5).abs() < 0.02, "{e:?}");
    assert!((e.prefill - 0.2).abs() < 1e-9, "{e:?}");
    assert_eq!(e.samples, 5);
}

#[test]
fn calibration_finds_the_per_row_overhead_and_the_compute_roof_from_three_models() {
    // Truth: em 0.6, ec 0.05, 30 ns a matrix row; the models have 205k, 456k and 797k rows.
    let truth =
        |b: f64, w: f64, rows: f64| (b / (20e9 * 0.6)).max(w / (100e9 * 0.05)) + 30e-9 * rows;
    let s: Vec<(Sample, f64)> = [
        (1e8, 2.7e8, 205e3),
        (5e8, 1e9, 456e3),
        (1.1e9, 3.1e9, 797e3),
    ]
    .iter()
    .enumerate()
    .map(|(i, (b, w, rows))| (sample(&i.to_string(), *b, *w, truth(*b, *w, *rows)), *rows))
    .collect();
    let e = fit(&s, &first_boot());
    for (x, rows) in &s {
        let pred = (x.bytes_per_token / (x.bandwidth * e.memory))
            .max(x.ops_per_token / (x.compute * e.compute))
            + e.overhead_per_row * rows;
        let err = (pred - x.seconds_per_token).abs() / x.seconds_per_token;
        assert!(err < 0.03, "model {}: {err} {e:?}", x.model);
    }
    assert!((e.overhead_per_row - 30e-9).abs() < 6e-9, "{e:?}");
}

#[test]
fn the_overhead_is_the_rows_a_token_multiplies() {
    // Qwen2.5 7B: 1,542,656 rows' worth at the first boot's 13.2 ns = 20.4 ms; on the RK3588
    // worked example (25.3 GB/s) 189.4 + 20.4 ms a token.
    let eff = Efficiencies {
        overhead_per_row: first_boot().overhead_per_row,
        ..no_overhead(0.75)
    };
    let p = predict(&qwen7b(), &rk3588(), &eff, &no_voice(), &targets());
    assert_eq!(format!("{:.2}", p.overhead_seconds * 1e3), "20.36");
    assert_eq!(format!("{:.2}", p.tokens_per_second), "4.77");
}

#[test]
fn first_boot_predicts_the_three_registry_models_as_measured_on_the_dev_vm() {
    // scripts/row-cost.sh on the x86-64 development VM (AMD EPYC, AVX2, typical read 21 GB/s,
    // 2 threads; docs/benchmarks.md, "Session 18"): llama-bench decoded SmolLM2-135M
    // Q4_1, Qwen2.5-Coder-0.5B and 1.5B Q4_K_M at 86.35, 24.14 and 12.26 tok/s (median of 3
    // interleaved rounds, tg32). The headers' streamed bytes and rows' worth of work
    // (`rows::of_header`): the 0.5B's fallback Q5_0 makes it 3.9 times SmolLM2's work for
    // 2.2 times its rows.
    let m = Machine {
        bandwidth: 21e9,
        cpu_ops: 3.276e12,
        mem_available: 0,
        ..rk3588()
    };
    let model = |streamed: u64, params: u64, work: f64| ModelFacts {
        streamed_bytes: streamed,
        parameters: params,
        row_work: work,
        ..qwen7b()
    };
    let t = Targets {
        prompt_tokens: 0,
        ..targets()
    };
    let measured = [86.35, 24.14, 12.26];
    let got: Vec<f64> = [
        model(96_576_768, 134_515_008, 380_781.4),
        model(391_859_712, 494_032_768, 1_486_249.5),
        model(980_097_536, 1_543_714_304, 2_151_896.4),
    ]
    .iter()
    .map(|f| predict(f, &m, &first_boot(), &no_voice(), &t).tokens_per_second)
    .collect();
    let shown: Vec<String> = got.iter().map(|p| format!("{p:.1}")).collect();
    // +12.9 %, +1.4 % and +0.2 %.
    assert_eq!(shown, ["97.5", "24.5", "12.3"]);
    for (p, m) in got.iter().zip(measured) {
        assert!((p / m - 1.0).abs() <= 0.2, "{p} against {m}");
    }
}

#[test]
fn smoothing_is_a_mean_first_then_follows() {
    assert_eq!(smooth(0.0, 1.0, 0), 1.0);
    assert_eq!(smooth(1.0, 2.0, 1), 1.5);
    assert!((smooth(1.0, 2.0, 10) - 1.3).abs() < 1e-12);
}

/// A model given by path is planned from its header: a GGUF written here, a 4-layer llama
/// with 2 KV heads of 32 and an untied output, so a token streams all but the embedding.
#[test]
fn a_gguf_given_by_path_is_planned_from_its_header() {
    use tutord_protocol::gguf::Header;
    use tutord_protocol::gguf::meta::{Gguf, Tensor, Value};
    let meta = vec![
        (
            "general.architecture".to_string(),
            Value::Str("llama".into()),
        ),
        ("llama.block_count".to_string(), Value::U32(4)),
        ("llama.embedding_length".to_string(), Value::U32(256)),
        ("llama.attention.head_count".to_string(), Value::U32(8)),
        ("llama.attention.head_count_kv".to_string(), Value::U32(2)),
    ];
    let tensor = |name: &str, offset| Tensor {
        name: name.into(),
        dims: vec![256, 64],
        kind: 0,
        offset,
    };
    let g = Gguf {
        header: Header {
            version: 3,
            tensors: 3,
            metadata_entries: meta.len() as u64,
            file_bytes: 0,
        },
        metadata: meta,
        // 64 KiB each: F32 256 × 64.
        tensors: vec![
            tensor("token_embd.weight", 0),
            tensor("blk.0.attn_q.weight", 65_536),
            tensor("output.weight", 131_072),
        ],
        data_offset: 0,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    let mut bytes = tutord_protocol::gguf::write::header_bytes(&g);
    let head = bytes.len() as u64;
    bytes.resize(bytes.len() + 3 * 65_536, 0);
    std::fs::write(&path, &bytes).unwrap();

    let profile = crate::platform::profile::Profiles::builtin()
        .get("generic")
        .unwrap()
        .clone();
    let planner = planner::Planner::new(&crate::config::Config::default(), profile, vec![0]);
    let facts = planner.path_facts(&path).unwrap();
    assert_eq!(facts.len(), 1, "{facts:?}"); // the generic board: CPU only
    let f = &facts[0];
    assert_eq!(f.file_bytes, head + 196_608);
    assert_eq!(f.streamed_bytes, 131_072);
    assert_eq!((f.layers, f.kv_heads, f.head_dim), (4, 2, 32));
    assert_eq!(f.parameters, 3 * 256 * 64);
    // Two F32 matrices of 64 rows of 256 (8 blocks at 0.19 ns, a row's fixed cost 13.2).
    assert!((f.row_work - 128.0 * (1.0 + 8.0 * 0.19 / 13.2)).abs() < 1e-9);
    // + 2 × 4 layers × 2 heads × 32 × 2 bytes = 1 KiB of KV cache per token of depth.
    assert_eq!(f.bytes_per_token(100), 131_072.0 + 102_400.0);
    // Not a GGUF: a clear error, not a guess.
    std::fs::write(&path, b"not a model").unwrap();
    assert!(planner.path_facts(&path).is_err());
}

#[test]
fn first_audio_is_stt_first_token_the_first_chunk_and_its_synthesis() {
    // 5.28 tok/s (189.4 ms a token, no prompt): 1.0 s STT + 16 tokens (the first, and 15
    // more to the end of the first chunk) 3.03 s + 0.4 s TTS = 4.43 s.
    let voice = VoiceCosts {
        stt_seconds: 1.0,
        tts_seconds: 0.4,
        samples: 1,
    };
    let t = Targets {
        first_audio: 4.0,
        ..targets()
    };
    let p = predict(&qwen7b(), &rk3588(), &no_overhead(0.75), &voice, &t);
    assert_eq!(format!("{:.2}", p.first_audio), "4.43");
    assert!(p.meets_speed && p.meets_first_token && !p.meets_first_audio);
    // The tiers at 25.3, 12.7 and 6.3 tok/s: 1.4 s of voice + 16 tokens each. Within 4 s
    // all three speak and the largest is taken; within 3.5 s "large" does not, and the plan
    // takes "medium" though "large" meets the speed target.
    let preds: Vec<Prediction> = tiers()
        .iter()
        .map(|f| predict(f, &rk3588(), &no_overhead(0.75), &voice, &t))
        .collect();
    assert_eq!(
        preds
            .iter()
            .map(|p| format!("{:.2}", p.first_audio))
            .collect::<Vec<_>>(),
        ["2.03", "2.66", "3.93"]
    );
    assert_eq!(choose(&preds, &t, None).chosen, Some(2));
    let t = Targets {
        first_audio: 3.5,
        ..t
    };
    let preds: Vec<Prediction> = tiers()
        .iter()
        .map(|f| predict(f, &rk3588(), &no_overhead(0.75), &voice, &t))
        .collect();
    let c = choose(&preds, &t, None);
    assert_eq!(c.chosen, Some(1), "{c:?}");
    assert!(c.reason.contains("3.5 s to first audio"), "{}", c.reason);
}

#[test]
fn a_general_model_is_chosen_over_a_code_model_of_its_size_not_over_a_larger_one() {
    let t = targets();
    let facts = |name: &str, gb: u64, params: u64, code: bool| ModelFacts {
        name: name.into(),
        file_bytes: gb * 1_000_000_000,
        streamed_bytes: gb * 1_000_000_000,
        parameters: params,
        code,
        ..qwen7b()
    };
    // The code model streams more bytes (a larger vocabulary), same parameters ± 5 %.
    let models = [
        facts("coder-1.5b", 2, 1_540_000_000, true),
        facts("instruct-1.5b", 1, 1_470_000_000, false),
        facts("small", 1, 500_000_000, false),
    ];
    let c = choose(&plan(&models, &rk3588(), &t), &t, None);
    assert_eq!(c.chosen, Some(1), "{c:?}");
    // A code model twice the size is still the larger model: it is taken.
    let models = [
        facts("coder-3b", 2, 3_000_000_000, true),
        facts("instruct-1.5b", 1, 1_470_000_000, false),
    ];
    let c = choose(&plan(&models, &rk3588(), &t), &t, None);
    assert_eq!(c.chosen, Some(0), "{c:?}");
}

#[test]
fn the_first_boot_row_cost_follows_the_cores_clock() {
    // 13.2 ns a row with the scalar chain at 5.9 Gop/s (2 cores); cores that run it at 5.0
    // (slower clocks, or busy neighbours) pay 13.2 × 5.9 / 5.0 = 15.576 ns.
    let at = |scalar: f64| Efficiencies::first_boot_cpu(scalar).overhead_per_row;
    assert!((at(5.9e9) - 13.2e-9).abs() < 1e-15);
    assert!((at(5.0e9) - 15.576e-9).abs() < 1e-15, "{}", at(5.0e9));
    assert!((at(11.8e9) - 6.6e-9).abs() < 1e-15);
    // No probe (a board planned from its nominal figures): the fitted figure.
    assert_eq!(at(0.0), 13.2e-9);
    assert_eq!(at(f64::INFINITY), 13.2e-9);
    // Only the row cost moves.
    let d = Efficiencies::default();
    let s = Efficiencies::first_boot_cpu(5.0e9);
    assert_eq!(
        (s.memory, s.compute, s.prefill, s.samples),
        (d.memory, d.compute, d.prefill, 0)
    );
}

#[test]
fn the_planner_divides_by_the_typical_figures_not_the_best() {
    let profile = crate::platform::profile::Profiles::builtin()
        .get("generic")
        .unwrap()
        .clone();
    let mut planner = planner::Planner::new(&crate::config::Config::default(), profile, vec![4, 5]);
    let m = crate::bench::tests::measured(Some(15e9), Some(30e9));
    planner.set_measurement(m, crate::bench::Origin::Measured);
    let machine = planner.machine.clone().unwrap();
    // Median read 15 GB/s (best 20); 2 cores × 30 GFLOP/s (best 40) and × 120 GOP/s (best 160).
    assert_eq!(
        (machine.bandwidth, machine.cpu_fp32, machine.cpu_ops),
        (15e9, 60e9, 240e9)
    );
}

#[test]
fn attention_at_depth_costs_thirty_two_rows_per_layer_per_cell() {
    let m = qwen7b();
    // 1,542,656 rows' worth, + 32 × 28 layers × 128 cells = 114,688 at a 128-token prompt.
    assert_eq!(m.work_rows(0), 1_542_656.0);
    assert_eq!(m.work_rows(128), 1_657_344.0);
    // 25 ns a row, no bandwidth or compute cost: 38.566 ms a token with no context,
    // 41.434 ms at 128 tokens.
    let free = Machine {
        bandwidth: f64::INFINITY,
        cpu_ops: f64::INFINITY,
        ..rk3588()
    };
    let eff = Efficiencies {
        overhead_per_row: 25e-9,
        ..no_overhead(1.0)
    };
    let at = |prompt_tokens| {
        let t = Targets {
            prompt_tokens,
            ..targets()
        };
        predict(&m, &free, &eff, &no_voice(), &t)
    };
    assert!((at(0).overhead_seconds - 0.038_566_4).abs() < 1e-9);
    assert!((at(128).overhead_seconds - 0.041_433_6).abs() < 1e-9);
    assert_eq!(format!("{:.3}", at(128).tokens_per_second), "24.135");
}

#[test]
fn calibration_fits_each_answer_at_the_depth_it_decoded_at() {
    // A long lesson: Qwen2.5 7B's answers decoded with 1000 cells in the cache (40 new prompt
    // tokens, 936 kept, 48 generated), while the plan predicts at 128. The truth here is the
    // first boot's own figures, so a fit that prices each answer at its real depth has
    // nothing to move; priced at 128, the deeper answers' attention read as a slower board.
    let profile = crate::platform::profile::Profiles::builtin()
        .get("generic")
        .unwrap()
        .clone();
    let store = crate::store::Store::in_memory().unwrap();
    let mut planner = planner::Planner::new(&crate::config::Config::default(), profile, vec![4, 5]);
    planner.set_measurement(
        crate::bench::tests::measured(Some(15e9), Some(30e9)),
        crate::bench::Origin::Measured,
    );
    planner.facts = vec![qwen7b()];
    assert_eq!(planner.targets.prompt_tokens, 128);
    let tps_at = |planner: &mut planner::Planner, depth| {
        planner.targets.prompt_tokens = depth;
        planner.predict_all();
        planner
            .prediction("qwen2.5-7b-q4", "cpu")
            .unwrap()
            .tokens_per_second
    };
    let deep = tps_at(&mut planner, 1000);
    let before = tps_at(&mut planner, 128);
    // The attention of 872 more cells: 3.7 % slower.
    assert!((before / deep - 1.037).abs() < 0.002, "{before} {deep}");
    let stats = crate::engine::GenStats {
        prompt_tokens: 40,
        reused_tokens: 936,
        generated_tokens: 48,
        decode_tokens_per_second: deep,
        ..crate::engine::GenStats::default()
    };
    for _ in 0..3 {
        planner.record_answer(&store, "qwen2.5-7b-q4", "cpu", &stats);
    }
    let (_, s) = &store.calibration_samples("generic").unwrap()[0];
    assert_eq!((s.depth, s.count), (Some(1000.0), 3));
    let after = planner
        .prediction("qwen2.5-7b-q4", "cpu")
        .unwrap()
        .tokens_per_second;
    assert!((after / before - 1.0).abs() < 0.005, "{before} -> {after}");
}
