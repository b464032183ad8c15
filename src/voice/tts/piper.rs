//! Piper voices: a VITS model in ONNX Runtime (loaded at run time from the library PyPI's
//! `onnxruntime` wheel ships), fed espeak-ng's phonemes as the voice's `phoneme_id_map`
//! numbers them.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;

use super::ids::{IdMap, to_ids};
use super::{Speech, Synthesizer, TtsError, espeak};

/// Bounds of a voice's sample rate: telephone speech to studio audio.
const MIN_SAMPLE_RATE: u32 = 8_000;
const MAX_SAMPLE_RATE: u32 = 48_000;
/// Bound of the inference scales: Piper's voices use 0.3 to 1.5; ten times slower speech
/// is already unusable.
const MAX_SCALE: f32 = 10.0;

/// The parts of a voice's `.onnx.json` synthesis needs.
#[derive(Debug, Clone, Deserialize)]
pub struct VoiceSettings {
    pub audio: Audio,
    pub espeak: EspeakVoice,
    pub inference: Inference,
    pub phoneme_id_map: IdMap,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Audio {
    pub sample_rate: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EspeakVoice {
    pub voice: String,
}

/// VITS's noise and duration controls, as the voice was tuned.
#[derive(Debug, Clone, Deserialize)]
pub struct Inference {
    pub noise_scale: f32,
    pub length_scale: f32,
    pub noise_w: f32,
}

impl VoiceSettings {
    /// Reads `path` (a voice's `.onnx.json`).
    pub fn read(path: &Path) -> Result<Self, TtsError> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TtsError::VoiceMissing {
                path: path.to_path_buf(),
            },
            _ => TtsError::VoiceSettings {
                path: path.to_path_buf(),
                reason: e.to_string(),
            },
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks a voice's settings; `path` names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TtsError> {
        let bad = |reason: String| TtsError::VoiceSettings {
            path: path.to_path_buf(),
            reason,
        };
        let s: Self = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        // BOS, pad and EOS frame every utterance: a voice without them is not Piper's.
        for key in ["^", "_", "$"] {
            if s.phoneme_id_map.get(key).is_none_or(Vec::is_empty) {
                return Err(bad(format!("phoneme_id_map has no '{key}'")));
            }
        }
        // The rate sizes every buffer made from the voice's output (resampling to whisper's
        // 16 kHz, the speaker): 0 would make the resampler's output endless and 1 Hz
        // enormous. Piper voices speak at 16 or 22.05 kHz.
        let rate = s.audio.sample_rate;
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
            return Err(bad(format!(
                "audio.sample_rate {rate} is out of range {MIN_SAMPLE_RATE}..={MAX_SAMPLE_RATE}"
            )));
        }
        // Fed to the model as they are: NaN or infinite scales make noise, or (length_scale)
        // ask for endless audio.
        let inf = &s.inference;
        for (key, v) in [
            ("noise_scale", inf.noise_scale),
            ("length_scale", inf.length_scale),
            ("noise_w", inf.noise_w),
        ] {
            if !(0.0..=MAX_SCALE).contains(&v) {
                return Err(bad(format!(
                    "inference.{key} {v} is out of range 0..={MAX_SCALE}"
                )));
            }
        }
        if inf.length_scale == 0.0 {
            return Err(bad(
                "inference.length_scale is 0: the voice would say nothing".into(),
            ));
        }
        Ok(s)
    }
}

/// A loaded Piper voice.
pub struct Piper {
    // `Session::run` takes `&mut`: one synthesis at a time per voice.
    session: Mutex<Session>,
    pub settings: VoiceSettings,
    pub model: PathBuf,
}

/// `path.onnx` → `path.onnx.json`, where Piper keeps a voice's settings.
pub fn settings_path(model: &Path) -> PathBuf {
    let mut s = model.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

impl Piper {
    /// Loads the voice `model` (with its `.onnx.json` beside it) into ONNX Runtime from
    /// `runtime` (`libonnxruntime.so.*`), running on `threads` threads.
    pub fn load(model: &Path, runtime: &Path, threads: usize) -> Result<Self, TtsError> {
        if !model.is_file() {
            return Err(TtsError::VoiceMissing {
                path: model.to_path_buf(),
            });
        }
        let settings = VoiceSettings::read(&settings_path(model))?;
        if !runtime.is_file() {
            return Err(TtsError::RuntimeMissing {
                path: runtime.to_path_buf(),
            });
        }
        let runtime_err = |reason: String| TtsError::Runtime {
            path: runtime.to_path_buf(),
            reason,
        };
        // The first library loaded serves the whole process (ort keeps it).
        let _ = ort::init_from(runtime)
            .map_err(|e| runtime_err(e.to_string()))?
            .with_name("tutord")
            .commit();
        let model_err = |reason: String| TtsError::Model {
            path: model.to_path_buf(),
            reason,
        };
        let session = Session::builder()
            .and_then(|b| Ok(b.with_intra_threads(threads)?))
            .and_then(|mut b| b.commit_from_file(model))
            .map_err(|e| model_err(e.to_string()))?;
        Ok(Self {
            session: Mutex::new(session),
            settings,
            model: model.to_path_buf(),
        })
    }

    /// The phoneme ids Piper feeds the model for `text`.
    pub fn ids(&self, text: &str) -> Result<Vec<i64>, TtsError> {
        let clauses = espeak::phonemes(text, &self.settings.espeak.voice)?;
        Ok(to_ids(&clauses, &self.settings.phoneme_id_map))
    }
}

impl Synthesizer for Piper {
    fn synthesize(&self, text: &str) -> Result<Speech, TtsError> {
        let ids = self.ids(text)?;
        let rate = self.settings.audio.sample_rate;
        // BOS, pad, EOS only: nothing to say.
        if ids.len() <= 3 {
            return Ok(Speech {
                samples: Vec::new(),
                sample_rate: rate,
            });
        }
        let err = |e: ort::Error| TtsError::Model {
            path: self.model.clone(),
            reason: e.to_string(),
        };
        let n = ids.len();
        let inf = &self.settings.inference;
        let input = Tensor::from_array(([1usize, n], ids)).map_err(err)?;
        let lengths = Tensor::from_array(([1usize], vec![n as i64])).map_err(err)?;
        let scales = Tensor::from_array((
            [3usize],
            vec![inf.noise_scale, inf.length_scale, inf.noise_w],
        ))
        .map_err(err)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs![
                "input" => input,
                "input_lengths" => lengths,
                "scales" => scales,
            ])
            .map_err(err)?;
        let (_, audio) = outputs[0].try_extract_tensor::<f32>().map_err(err)?;
        Ok(Speech {
            samples: audio.iter().map(|s| s.clamp(-1.0, 1.0)).collect(),
            sample_rate: rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOICE: &str = r#"{"audio": {"sample_rate": 22050}, "espeak": {"voice": "en-us"},
        "inference": {"noise_scale": 0.667, "length_scale": 1, "noise_w": 0.8},
        "phoneme_id_map": {"_": [0], "^": [1], "$": [2], "a": [14]}}"#;

    fn err(text: &str) -> String {
        VoiceSettings::parse(Path::new("v.onnx.json"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn settings_parse_and_their_bounds_are_named() {
        let s = VoiceSettings::parse(Path::new("v.onnx.json"), VOICE).unwrap();
        assert_eq!(s.audio.sample_rate, 22050);
        // Found by fuzzing: a repeated key leaves EOS without ids.
        let e = err(&VOICE.replace(r#""a": [14]"#, r#""$": []"#));
        assert!(e.ends_with("phoneme_id_map has no '$'"), "{e}");
        let e = err(&VOICE.replace("22050", "0"));
        assert!(
            e.contains("v.onnx.json: not a Piper voice's settings: audio.sample_rate 0 is out of range 8000..=48000"),
            "{e}"
        );
        let e = err(&VOICE.replace(r#""length_scale": 1"#, r#""length_scale": 0"#));
        assert!(e.contains("length_scale is 0"), "{e}");
        let e = err(&VOICE.replace("0.667", "-1"));
        assert!(
            e.contains("inference.noise_scale -1 is out of range 0..=10"),
            "{e}"
        );
    }
}
