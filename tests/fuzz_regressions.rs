//! Inputs the fuzz targets (`fuzz/`, `scripts/fuzz.sh`) once crashed on, kept under
//! `tests/fuzz_regressions/<target>/`, and the targets' seeds (`fuzz/seeds/<target>/`), fed
//! through the same entry points as the fuzz targets, so a fixed crash stays fixed without
//! nightly flags or a fuzzer. A regression must give a named error; a seed may parse or
//! fail, but never panic.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use tutord::voice::convert::{ct2::Ct2Model, ggml, vocab};
use tutord::voice::tts::Speech;
use tutord::voice::tts::piper::VoiceSettings;

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

/// Each target's entry point: what its fuzz target calls, the error as text.
type Entry = fn(&[u8]) -> Result<(), String>;

fn text(data: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))
}

fn config(data: &[u8]) -> Result<(), String> {
    tutord::config::parse_toml("fuzz.toml", text(data)?)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Main file, environment and drop-ins as `fuzz/fuzz_targets/config_layers.rs` reads them.
fn config_layers(data: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let sources = tutord::config::layers::write(dir.path(), text(data)?).unwrap();
    tutord::config::load(&sources)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn catalog(data: &[u8]) -> Result<(), String> {
    tutord::models::Catalog::parse("models.toml", text(data)?)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn boards(data: &[u8]) -> Result<(), String> {
    tutord::platform::profile::Profiles::parse("boards.toml", text(data)?)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn wav(data: &[u8]) -> Result<(), String> {
    tutord::voice::wav::parse("the recording", data, 120)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn ct2(data: &[u8]) -> Result<(), String> {
    let mut m =
        Ct2Model::read(Path::new("model.bin"), Cursor::new(data)).map_err(|e| e.to_string())?;
    for var in m.variables.clone() {
        m.data(&var).map_err(|e| e.to_string())?;
    }
    ggml::hparams(&mut m).map(drop).map_err(|e| e.to_string())
}

fn vocab(data: &[u8]) -> Result<(), String> {
    vocab::parse(Path::new("vocabulary.txt"), text(data)?)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A little-endian u32 length, `model.bin`, then `vocabulary.txt`.
fn convert(data: &[u8]) -> Result<(), String> {
    let (len, rest) = data
        .split_first_chunk::<4>()
        .ok_or("shorter than 4 bytes")?;
    let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (model_bin, vocabulary) = rest.split_at(len);
    let vocabulary = text(vocabulary)?;
    let mut m = Ct2Model::read(Path::new("model.bin"), Cursor::new(model_bin))
        .map_err(|e| e.to_string())?;
    let v = vocab::parse(Path::new("vocabulary.txt"), vocabulary).map_err(|e| e.to_string())?;
    ggml::write(&mut m, &v, &mut Vec::new(), Path::new("model.ggml"))
        .map(drop)
        .map_err(|e| e.to_string())
}

fn piper_settings(data: &[u8]) -> Result<(), String> {
    let s = VoiceSettings::parse(Path::new("voice.onnx.json"), text(data)?)
        .map_err(|e| e.to_string())?;
    let speech = Speech {
        samples: vec![0.25; 2_205],
        sample_rate: s.audio.sample_rate,
    };
    assert!(speech.resampled(16_000).samples.len() <= 2_205 * 16);
    Ok(())
}

const TARGETS: &[(&str, Entry)] = &[
    ("config", config),
    ("config_layers", config_layers),
    ("catalog", catalog),
    ("boards", boards),
    ("wav", wav),
    ("ct2", ct2),
    ("vocab", vocab),
    ("convert", convert),
    ("piper_settings", piper_settings),
];

#[test]
fn every_crashing_input_is_a_named_error() {
    for (target, entry) in TARGETS {
        for (path, data) in files(&format!("tests/fuzz_regressions/{target}")) {
            match entry(&data) {
                Ok(()) => panic!("{}: accepted", path.display()),
                Err(e) => assert!(!e.is_empty(), "{}: an empty error", path.display()),
            }
        }
    }
}

#[test]
fn every_seed_goes_through_without_a_panic() {
    for (target, entry) in TARGETS {
        let seeds = files(&format!("fuzz/seeds/{target}"));
        assert!(!seeds.is_empty(), "no seeds for {target}");
        // At least one seed gets all the way through, so the fuzzer starts from inputs that
        // reach the deepest checks.
        let parsed = seeds.iter().filter(|(_, data)| entry(data).is_ok()).count();
        assert!(parsed > 0, "no seed of {target} parses");
    }
}
