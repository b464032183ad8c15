//! The fuzz targets' bodies, one function per target of `fuzz/` (cargo-fuzz), so that the
//! targets and `tests/fuzz_regressions.rs` run the very same code: the fuzzer over what it
//! finds, the test suite over the committed seeds and crash inputs of every target.
//!
//! Each function feeds its input to one parser of outside input, then checks what that
//! parser promises (an `assert!` is a finding, like a panic); a parser's refusal comes back
//! as its message, which must not be empty.

use std::io::Cursor;
use std::path::Path;

use crate::models::convert::{ct2::Ct2Model, ggml, vocab};
use crate::voice::tts::Speech;
use crate::voice::tts::ids::to_ids;
use crate::voice::tts::piper::VoiceSettings;

/// What a target did with one input: `Err` holds the parser's message.
pub type Outcome = Result<(), String>;

/// A target: its name and its body.
pub type Target = (&'static str, fn(&[u8]) -> Outcome);

/// Every target by name, as `fuzz/Cargo.toml` names its binaries.
pub const TARGETS: &[Target] = &[
    ("config", config),
    ("config_layers", config_layers),
    ("catalog", catalog),
    ("boards", boards),
    ("wav", wav),
    ("gguf", gguf),
    ("ct2", ct2),
    ("vocab", vocab),
    ("convert", convert),
    ("piper_settings", piper_settings),
];

/// The loaders read files with `read_to_string`: text that is not UTF-8 never reaches them.
fn text(data: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))
}

fn refused(e: impl std::fmt::Display) -> String {
    let msg = e.to_string();
    assert!(!msg.is_empty(), "a refusal with an empty message");
    msg
}

/// The configuration parser: one TOML document (the main file or a drop-in) checked on top
/// of the defaults, as `tutord` checks each layer before merging.
pub fn config(data: &[u8]) -> Outcome {
    crate::config::parse_toml("fuzz.toml", text(data)?)
        .map(drop)
        .map_err(refused)
}

/// The whole configuration load: main file, environment and drop-ins in the layout of
/// `config::layers` (separated by NUL), written to real files and loaded as on the board.
pub fn config_layers(data: &[u8]) -> Outcome {
    let text = text(data)?;
    // A folder per input: slower than one per run, but no state crosses inputs.
    let dir = std::env::temp_dir().join(format!(
        "tutord-fuzz-layers-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let sources = crate::config::layers::write(&dir, text).expect("write the layers");
    let result = crate::config::load(&sources).map(drop).map_err(refused);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The model catalog (`models.toml`): syntax, then every entry's fields and sources, and
/// what `tutorctl models fetch` does next with the names it is given.
pub fn catalog(data: &[u8]) -> Outcome {
    let catalog = crate::models::Catalog::parse("models.toml", text(data)?).map_err(refused)?;
    let _ = catalog.select(&[]);
    if let Err(e) = catalog.select(&["whisper-tiny.en".into()]) {
        refused(e);
    }
    for m in &catalog.models {
        let _ = m.path_in(Path::new("/var/lib/tutord/models"));
        for s in &m.sources {
            for p in &s.parts {
                let _ = p.to_string();
            }
        }
    }
    Ok(())
}

/// Board profiles (`[platform] boards`, laid out like `config/boards.toml`).
pub fn boards(data: &[u8]) -> Outcome {
    let p =
        crate::platform::profile::Profiles::parse("boards.toml", text(data)?).map_err(refused)?;
    // Parse promises a `generic` board: detection falls back on it.
    assert!(p.get("generic").is_some(), "no generic board");
    for b in &p.boards {
        let _ = b.board();
    }
    Ok(())
}

/// The daemon's limit for a spoken question (`voice::pipeline::MAX_QUESTION_SECONDS`).
const MAX_SECONDS: u32 = 120;

/// The WAV reader, as the daemon meets it: bytes sent over D-Bus by `ListenWav`.
pub fn wav(data: &[u8]) -> Outcome {
    let pcm = crate::voice::wav::parse("the recording", data, MAX_SECONDS).map_err(refused)?;
    assert!(!pcm.samples.is_empty(), "a recording with no samples");
    assert!(pcm.duration().as_secs() <= u64::from(MAX_SECONDS));
    Ok(())
}

/// The GGUF header check `tutord-engine` runs before llama.cpp maps a model (it is handed
/// the first 24 bytes, fewer when the file is shorter, and the file's length), then the
/// whole header as the planner reads it.
pub fn gguf(data: &[u8]) -> Outcome {
    let head = &data[..data.len().min(24)];
    let h = tutord_protocol::gguf::parse_header(head, data.len() as u64).map_err(refused)?;
    assert!((2..=3).contains(&h.version));
    assert!(h.tensors >= 1 && h.tensors <= 1 << 20);
    // The whole header, as the planner reads a model given by path: a damaged one is
    // refused with a reason, never a panic or a huge allocation.
    if let Ok(g) = tutord_protocol::gguf::meta::read(&mut &data[..], data.len() as u64) {
        assert!(g.data_offset <= data.len() as u64);
        assert_eq!(g.tensor_bytes().len(), g.tensors.len());
        let _ = g.shape();
    }
    Ok(())
}

/// CTranslate2's `model.bin` reader: the index, then every variable's bytes and the Whisper
/// sizes, as the converter asks for them.
pub fn ct2(data: &[u8]) -> Outcome {
    let mut model = Ct2Model::read(Path::new("model.bin"), Cursor::new(data)).map_err(refused)?;
    for var in model.variables.clone() {
        let bytes = model
            .data(&var)
            .expect("sizes were checked when the index was read");
        assert_eq!(bytes.len() as u64, var.bytes);
        if let Err(e) = model.scalar(&var.name) {
            refused(e);
        }
    }
    ggml::hparams(&mut model).map(drop).map_err(refused)
}

/// faster-whisper's `vocabulary.txt`, as the converter reads it (whole, then as UTF-8).
pub fn vocab(data: &[u8]) -> Outcome {
    let v = vocab::parse(Path::new("vocabulary.txt"), text(data)?).map_err(refused)?;
    assert!(v.tokens.len() < v.total);
    Ok(())
}

/// The whole faster-whisper → ggml conversion, in memory: a little-endian `u32` length, that
/// many bytes of `model.bin`, then `vocabulary.txt`; whisper.cpp's file out.
pub fn convert(data: &[u8]) -> Outcome {
    let (len, rest) = data
        .split_first_chunk::<4>()
        .ok_or("shorter than 4 bytes")?;
    let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (model_bin, vocabulary) = rest.split_at(len);
    let vocabulary = text(vocabulary)?;
    let mut m = Ct2Model::read(Path::new("model.bin"), Cursor::new(model_bin)).map_err(refused)?;
    let v = vocab::parse(Path::new("vocabulary.txt"), vocabulary).map_err(refused)?;
    let mut out = Vec::new();
    let written = ggml::write(&mut m, &v, &mut out, Path::new("model.ggml")).map_err(refused)?;
    assert_eq!(written.bytes, out.len() as u64);
    Ok(())
}

/// A Piper voice's `.onnx.json` settings, and what synthesis does with them before ONNX
/// Runtime runs: phonemes to ids, and the voice's rate to whisper's 16 kHz.
pub fn piper_settings(data: &[u8]) -> Outcome {
    let settings =
        VoiceSettings::parse(Path::new("voice.onnx.json"), text(data)?).map_err(refused)?;
    // espeak-ng's phonemes for "Hello, world."
    let ids = to_ids(
        &["həlˈoʊ".into(), "wˈɜːld".into()],
        &settings.phoneme_id_map,
    );
    assert!(ids.len() >= 3);
    // What the model gives for a short word: as many samples whatever rate the settings
    // claim, resampled to 16 kHz as `tutorctl say --rate 16000` does. The settings' rate
    // decides how big the result is.
    let speech = Speech {
        samples: vec![0.25; 2_205],
        sample_rate: settings.audio.sample_rate,
    };
    assert!(speech.resampled(16_000).samples.len() <= 2_205 * 16);
    Ok(())
}
