//! Every fuzz target's body (`tutord::fuzzing`, the code `fuzz/fuzz_targets/*` call) over
//! its committed seeds (`fuzz/seeds/<target>/`) and the inputs it once crashed on
//! (`tests/fuzz_regressions/<target>/`): a fixed crash stays fixed without nightly flags or a
//! fuzzer, and a target whose checks no longer hold fails here first. A regression must give
//! a named error; a seed may parse or fail, but never panic, and at least one seed of each
//! target parses all the way through.

use std::path::{Path, PathBuf};

use tutord::fuzzing::TARGETS;

/// The files of `dir` relative to the repository, in name order; none when it is absent.
fn files(dir: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn every_target_of_the_fuzz_crate_is_here() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .unwrap();
    let bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "tutord-fuzz")
        .collect();
    let ours: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        bins, ours,
        "fuzz/Cargo.toml's targets and tutord::fuzzing::TARGETS"
    );
}

#[test]
fn every_crashing_input_is_a_named_error() {
    let mut seen = 0;
    for (target, entry) in TARGETS {
        for (path, data) in files(&format!("tests/fuzz_regressions/{target}")) {
            match entry(&data) {
                Ok(()) => panic!("{}: accepted", path.display()),
                Err(e) => assert!(!e.is_empty(), "{}: an empty error", path.display()),
            }
            seen += 1;
        }
    }
    assert!(
        seen > 0,
        "no regression inputs found under tests/fuzz_regressions/"
    );
}

#[test]
fn every_seed_goes_through_without_a_panic() {
    for (target, entry) in TARGETS {
        let seeds = files(&format!("fuzz/seeds/{target}"));
        assert!(seeds.len() >= 2, "fewer than two seeds for {target}");
        // At least one seed gets all the way through, so the fuzzer starts from inputs that
        // reach the deepest checks.
        let parsed = seeds.iter().filter(|(_, data)| entry(data).is_ok()).count();
        assert!(parsed > 0, "no seed of {target} parses");
    }
}
