use super::*;
use crate::platform::profile::Profiles;

const SHA: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// One catalog entry of the given shape (the shipped Q4_K_M files' figures), runnable on
/// every board with the CPU and CUDA.
fn entry(name: &str, params: u64, bytes: u64, shape: (u32, u32, u32, u64), code: bool) -> String {
    let (layers, kv_heads, head_dim, rows) = shape;
    format!(
        r#"
[[model]]
name = "{name}"
family = "test"
parameters = {params}
format = "gguf"
quantization = "Q4_K_M"
file = "{name}.gguf"
file_bytes = {bytes}
sha256 = "{SHA}"
context_length = 32768
layers = {layers}
kv_heads = {kv_heads}
head_dim = {head_dim}
matrix_rows = {rows}
boards = ["generic", "rk3588", "orin-nano"]
backends = ["cpu", "cuda"]
code = {code}

[[model.source]]
url = "https://example.invalid/{name}.gguf"
"#
    )
}

/// 0.5B, 1.5B, a 3B code model, 3B and 7B, shaped like the shipped Qwen2.5 / Llama 3.2 files.
fn catalog() -> Catalog {
    let text = [
        entry(
            "m-7b",
            7_615_616_512,
            4_683_074_240,
            (28, 4, 128, 1_542_656),
            false,
        ),
        entry(
            "m-3b-code",
            3_085_938_688,
            1_929_903_264,
            (36, 2, 128, 1_146_880),
            true,
        ),
        entry(
            "m-3b",
            3_212_749_824,
            2_019_377_696,
            (28, 8, 128, 902_400),
            false,
        ),
        entry(
            "m-1.5b",
            1_543_714_304,
            1_117_320_736,
            (28, 2, 128, 797_056),
            false,
        ),
        entry(
            "m-0.5b",
            494_032_768,
            491_400_032,
            (24, 2, 64, 456_064),
            false,
        ),
    ]
    .concat();
    Catalog::parse("test catalog", &text).unwrap()
}

fn board(name: &str) -> BoardProfile {
    Profiles::builtin().get(name).unwrap().clone()
}

fn tps(plan: &BoardPlan, model: &str, backend: &str) -> f64 {
    plan.predictions
        .iter()
        .find(|p| p.model == model && p.backend == backend)
        .unwrap()
        .tokens_per_second
}

#[test]
fn rock5b_at_33_8_gb_s_ships_the_3b_and_the_1_5b() {
    let plan = board_plan(&Config::default(), &board("rk3588"), &catalog(), None).unwrap();
    assert_eq!(plan.theoretical, 33.792e9);
    assert_eq!(plan.read, 25.344e9);
    assert_eq!(plan.mem_available, 7168 << 20);
    // bytes ÷ (25.344 GB/s × 0.88) + 13.2 ns × rows' worth; the 7B reads 4.690 GB a token
    // (weights and the KV cache of a 128-token prompt) and multiplies 1.54 M rows of 7.6 G
    // parameters in Q4_K_M blocks (6.7 M rows' worth more), and its attention over 128 cells
    // of 28 layers costs 32 rows' worth each (1.514 ms): 3.12 tok/s.
    assert!((tps(&plan, "m-7b", "cpu") - 3.1208).abs() < 1e-3);
    assert!((tps(&plan, "m-3b", "cpu") - 7.0494).abs() < 1e-3);
    assert!((tps(&plan, "m-1.5b", "cpu") - 12.4711).abs() < 1e-3);
    // The RK3588 profile has no GPU: CPU only.
    assert!(plan.predictions.iter().all(|p| p.backend == "cpu"));
    // The 7B misses 5 tok/s; the 3B code model is passed over for the general 3B.
    assert_eq!(plan.image_models(), ["m-3b", "m-1.5b"]);
    let text = text(&plan);
    assert!(
        text.contains("33.8 GB/s theoretical, 25.3 GB/s read"),
        "{text}"
    );
    assert!(text.contains("Image models: m-3b m-1.5b"), "{text}");
}

#[test]
fn memory_rules_out_what_does_not_fit() {
    // 3B: 1926 MiB of weights + 224 MiB KV cache at 2048 tokens + 912 MiB voice and
    // reserve = 3061 MiB, the 3B code model 2824; with 2500 available the 1.5B (2033 MiB)
    // is the largest.
    let plan = board_plan(
        &Config::default(),
        &board("rk3588"),
        &catalog(),
        Some(2500 << 20),
    )
    .unwrap();
    let p3 = plan.predictions.iter().find(|p| p.model == "m-3b").unwrap();
    assert_eq!(p3.memory_needed >> 20, 3061);
    assert!(!p3.fits());
    let code = plan
        .predictions
        .iter()
        .find(|p| p.model == "m-3b-code")
        .unwrap();
    assert_eq!(code.memory_needed >> 20, 2824);
    assert!(!code.fits());
    assert_eq!(plan.image_models(), ["m-1.5b", "m-0.5b"]);
}

#[test]
fn orin_nano_at_68_gb_s_takes_the_7b_and_one_size_smaller() {
    let plan = board_plan(&Config::default(), &board("orin-nano"), &catalog(), None).unwrap();
    assert_eq!(plan.theoretical, 68.256e9);
    // The GPU and the CPU share the bus: both backends are planned. The CPU also pays each
    // row's blocks (`rows`), which the GPU multiplies in parallel: only it reaches 5 tok/s.
    assert!(tps(&plan, "m-7b", "cuda") > 5.0);
    assert!(tps(&plan, "m-7b", "cpu") < 5.0);
    let names = plan.image_models();
    assert_eq!(names, ["m-7b", "m-3b"]);
}

#[test]
fn nothing_meets_the_target_ships_nothing() {
    let mut config = Config::default();
    config.plan.target_tokens_per_second = 100.0;
    let plan = board_plan(&config, &board("rk3588"), &catalog(), None).unwrap();
    assert!(plan.image_models().is_empty());
    assert!(text(&plan).contains("Image models: none: no catalog model meets 100.0 tok/s"));
}

#[test]
fn a_board_without_nominal_figures_is_refused_by_name() {
    let e = board_plan(&Config::default(), &board("generic"), &catalog(), None).unwrap_err();
    assert_eq!(e, NominalError::NoClock("generic".into()));
    assert!(e.to_string().contains("nominal_ddr_clock_mhz"));
    let mut rk = board("rk3588");
    rk.nominal_mem_available_mib = 0;
    let e = board_plan(&Config::default(), &rk, &catalog(), None).unwrap_err();
    assert_eq!(e, NominalError::NoMemory("rk3588".into()));
    // A memory figure given on the command line stands in for the profile's.
    assert!(board_plan(&Config::default(), &rk, &catalog(), Some(8 << 30)).is_ok());
}
