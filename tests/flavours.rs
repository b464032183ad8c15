//! The board images ship the models their board would choose: each image/flavours/*.conf
//! with a FLAVOUR_BOARD lists, as its language models, exactly what the planner picks for that
//! board from its nominal figures (the largest meeting the speed target, then one size
//! smaller), and every flavour's models fit the image size it states. `tutorctl plan --board`
//! shows the same plan without a daemon.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{REPO, TUTORCTL};
use tutord::config::Config;
use tutord::models::{Catalog, Kind};
use tutord::plan::nominal::board_plan;
use tutord::platform::profile::Profiles;

/// What Debian, the kernel, the package and ext4's own share take beside the models in an
/// image, MiB: qemu-arm64's image measured 1181 MiB with 248 MiB of models on 2026-12-06.
const SYSTEM_MIB: u64 = 1024;

/// The `KEY=value` lines of a flavour file (quotes removed).
fn settings(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

fn flavours() -> Vec<(String, BTreeMap<String, String>)> {
    let mut out: Vec<_> = std::fs::read_dir(Path::new(REPO).join("image/flavours"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, settings(&p))
        })
        .collect();
    out.sort();
    out
}

fn catalog() -> Catalog {
    Catalog::load(&Path::new(REPO).join("config/models.toml")).unwrap()
}

#[test]
fn board_flavours_ship_the_largest_model_meeting_the_target_and_one_smaller() {
    let catalog = catalog();
    let profiles = Profiles::builtin();
    let mut boards = Vec::new();
    for (flavour, s) in flavours() {
        let Some(board) = s.get("FLAVOUR_BOARD") else {
            continue;
        };
        let profile = profiles
            .get(board)
            .unwrap_or_else(|| panic!("{flavour}: FLAVOUR_BOARD={board} is not in boards.toml"));
        let plan = board_plan(&Config::default(), profile, &catalog, None).unwrap();
        let want = plan.image_models();
        assert_eq!(
            want.len(),
            2,
            "{flavour}: the plan for {board} picks {want:?}"
        );
        let shipped: Vec<&str> = s["FLAVOUR_MODELS"]
            .split_whitespace()
            .filter(|n| {
                catalog
                    .models
                    .iter()
                    .any(|m| m.name == *n && m.kind == Kind::Llm)
            })
            .collect();
        assert_eq!(
            shipped, want,
            "image/flavours/{flavour}.conf ships {shipped:?} but `tutorctl plan --board {board}` \
             picks {want:?}: update its FLAVOUR_MODELS"
        );
        // The choice is the product's point: a board image ships more than a test model.
        let largest = &plan.predictions[plan.largest.unwrap()];
        assert!(largest.meets_speed && largest.fits());
        assert!(
            largest.bytes_per_token > 1e9,
            "{flavour}: {}",
            largest.model
        );
        boards.push(board.clone());
    }
    assert_eq!(boards, ["orin-nano", "rk3588"]);
}

#[test]
fn every_flavours_models_fit_the_image_size_it_states() {
    let catalog = catalog();
    for (flavour, s) in flavours() {
        let max: u64 = s
            .get("IMAGE_MAX_MIB")
            .unwrap_or_else(|| panic!("{flavour} states no IMAGE_MAX_MIB"))
            .parse()
            .unwrap();
        // A flavour without a list ships the catalog's default set (image/build.sh).
        let names: Vec<String> = match s.get("FLAVOUR_MODELS") {
            Some(list) => list.split_whitespace().map(String::from).collect(),
            None => catalog
                .models
                .iter()
                .filter(|m| m.default)
                .map(|m| m.name.clone())
                .collect(),
        };
        let mut bytes = 0;
        for n in &names {
            let m = catalog
                .models
                .iter()
                .find(|m| m.name == *n)
                .unwrap_or_else(|| panic!("{flavour}: model {n} is not in the catalog"));
            bytes += m.file_bytes;
        }
        // image/build.sh gives the models 3 % of ext4 room beside them.
        let models_mib = (bytes * 103 / 100) >> 20;
        assert!(
            models_mib + SYSTEM_MIB <= max,
            "{flavour}: {models_mib} MiB of models + {SYSTEM_MIB} MiB of system exceed \
             IMAGE_MAX_MIB={max}"
        );
    }
}

#[test]
fn tutorctl_plans_a_board_without_a_daemon() {
    let catalog = Path::new(REPO).join("config/models.toml");
    let run = |board: &str| {
        Command::new(TUTORCTL)
            .args(["plan", "--board", board, "--catalog"])
            .arg(&catalog)
            .output()
            .unwrap()
    };
    let out = run("rk3588");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("33.8 GB/s theoretical, 25.3 GB/s read"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Image models: llama-3.2-3b-instruct-q4_k_m qwen2.5-1.5b-instruct-q4_k_m"),
        "{stdout}"
    );
    // The 7B misses 5 tok/s on the Rock 5B's bus.
    let seven = stdout
        .lines()
        .find(|l| l.starts_with("qwen2.5-7b-instruct-q4_k_m"))
        .unwrap();
    assert!(seven.ends_with("no"), "{seven}");

    for (board, says) in [
        ("nosuch", "board 'nosuch' is not in the board profiles"),
        ("generic", "states no nominal_ddr_clock_mhz"),
    ] {
        let out = run(board);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{board}: {stderr}");
    }
}
