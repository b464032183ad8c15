//! Reading a recording for speech to text: 16 kHz mono 16-bit PCM WAV, what whisper takes
//! and what `tutorctl listen --wav` is given. Anything else is refused with what the file
//! is and what it should be, rather than resampled behind the user's back.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The sample rate whisper works at.
pub const SAMPLE_RATE: u32 = 16_000;

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("{path}: cannot read as WAV: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(
        "{path}: {found}; speech input must be 16000 Hz mono 16-bit PCM \
         (e.g. `ffmpeg -i IN -ar 16000 -ac 1 -c:a pcm_s16le OUT.wav`)"
    )]
    Format { path: PathBuf, found: String },
    #[error("{path}: holds no samples")]
    Empty { path: PathBuf },
    #[error("{path}: {seconds:.1} s long; at most {max} s is accepted")]
    TooLong {
        path: PathBuf,
        seconds: f64,
        max: u32,
    },
    #[error("{path}: cannot write WAV: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Writes `samples` (in [-1, 1], clipped beyond) as mono 16-bit PCM at `rate` Hz: what
/// the tutor says, for a person to listen to.
pub fn write(path: &Path, samples: &[f32], rate: u32) -> Result<(), WavError> {
    let write_err = |e: hound::Error| WavError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(write_err)?;
    for &s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16)
            .map_err(write_err)?;
    }
    w.finalize().map_err(write_err)
}

/// Samples in [-1, 1), and how long they last.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcm {
    pub samples: Vec<f32>,
}

impl Pcm {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(SAMPLE_RATE))
    }
}

/// Reads `path`, refusing a recording longer than `max_seconds` before reading its samples.
pub fn read(path: &Path, max_seconds: u32) -> Result<Pcm, WavError> {
    let file = std::fs::File::open(path).map_err(|e| WavError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    read_from(path, std::io::BufReader::new(file), max_seconds)
}

/// Reads a WAV held in memory (sent over D-Bus); `origin` names it in errors.
pub fn parse(origin: &str, bytes: &[u8], max_seconds: u32) -> Result<Pcm, WavError> {
    read_from(Path::new(origin), std::io::Cursor::new(bytes), max_seconds)
}

fn read_from<R: std::io::Read>(path: &Path, input: R, max_seconds: u32) -> Result<Pcm, WavError> {
    let read_err = |e: hound::Error| WavError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let reader = hound::WavReader::new(input).map_err(read_err)?;
    let spec = reader.spec();
    if spec.sample_rate != SAMPLE_RATE
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(WavError::Format {
            path: path.to_path_buf(),
            found: format!(
                "{} Hz, {} channel{}, {}-bit {}",
                spec.sample_rate,
                spec.channels,
                if spec.channels == 1 { "" } else { "s" },
                spec.bits_per_sample,
                match spec.sample_format {
                    hound::SampleFormat::Int => "PCM",
                    hound::SampleFormat::Float => "float",
                }
            ),
        });
    }
    // The header's count: checked before anything is allocated for it.
    let count = reader.len();
    if count == 0 {
        return Err(WavError::Empty {
            path: path.to_path_buf(),
        });
    }
    let seconds = f64::from(count) / f64::from(SAMPLE_RATE);
    if seconds > f64::from(max_seconds) {
        return Err(WavError::TooLong {
            path: path.to_path_buf(),
            seconds,
            max: max_seconds,
        });
    }
    let samples = reader
        .into_samples::<i16>()
        .map(|s| s.map(|v| f32::from(v) / 32768.0))
        .collect::<Result<Vec<f32>, _>>()
        .map_err(read_err)?;
    Ok(Pcm { samples })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, rate: u32, channels: u16, bits: u16, samples: &[i32]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn reads_16k_mono_pcm16_as_floats() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        write(&p, 16_000, 1, 16, &[0, 16384, -32768, 32767]);
        let pcm = read(&p, 10).unwrap();
        assert_eq!(pcm.samples, [0.0, 0.5, -1.0, 32767.0 / 32768.0]);
        assert_eq!(pcm.duration(), Duration::from_micros(250));
    }

    #[test]
    fn wrong_rate_channels_depth_empty_long_and_garbage_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.wav");
        write(&p, 44_100, 2, 16, &[0, 0]);
        let e = read(&p, 10).unwrap_err().to_string();
        assert!(
            e.contains("b.wav: 44100 Hz, 2 channels, 16-bit PCM; speech input must be"),
            "{e}"
        );
        write(&p, 16_000, 1, 8, &[0]);
        let e = read(&p, 10).unwrap_err().to_string();
        assert!(e.contains("16000 Hz, 1 channel, 8-bit PCM"), "{e}");
        write(&p, 16_000, 1, 16, &[]);
        assert!(matches!(read(&p, 10), Err(WavError::Empty { .. })));
        write(&p, 16_000, 1, 16, &vec![0; 32_001]);
        let e = read(&p, 2).unwrap_err().to_string();
        assert!(
            e.ends_with("b.wav: 2.0 s long; at most 2 s is accepted"),
            "{e}"
        );
        std::fs::write(&p, b"RIFF\x10\0\0\0WAVEjunk").unwrap();
        assert!(matches!(read(&p, 10), Err(WavError::Read { .. })));
        let e = read(&dir.path().join("none.wav"), 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.wav: cannot read as WAV"), "{e}");
    }
}
