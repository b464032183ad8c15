//! The microphone and the loudspeaker, through ALSA (alsa-lib, the `alsa` crate).
//!
//! Devices are ALSA PCM names from `[voice] capture_device` / `playback_device`, so anything
//! alsa-lib can open works: `default`, `plughw:CARD=Device,DEV=0`, or a PCM an
//! `asound.conf` defines. The tests define PCMs with alsa-lib's own `file` plugin over
//! FIFOs (no sound card on the test machines); the board uses its codec through `plughw`.
//!
//! Capture runs on a thread of its own in blocking mode and hands 30 ms chunks of 16 kHz
//! mono to the voice loop; playback writes 20 ms chunks so an interruption (barge-in) takes
//! effect within one chunk, then drops what the card still holds.

use std::ffi::CString;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};
use tokio::sync::mpsc;

use super::vad;
use crate::sync::{Cancel, lock};

/// Why a sound device failed; every variant names the device.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AudioError {
    #[error("sound device name {0:?} contains a NUL byte")]
    BadName(String),
    #[error("cannot open the {role} '{device}': {source} (is it in `arecord -L` / `aplay -L`?)")]
    Open {
        role: &'static str,
        device: String,
        source: alsa::Error,
    },
    #[error("the {role} '{device}' refuses {what}: {source}")]
    Params {
        role: &'static str,
        device: String,
        what: String,
        source: alsa::Error,
    },
    #[error(
        "the microphone '{device}' records at {offered} Hz, not 16000 Hz: use its plughw: name"
    )]
    Rate { device: String, offered: u32 },
    #[error("cannot start the capture thread for '{device}': {reason}")]
    Thread { device: String, reason: String },
    #[error("the {role} '{device}' failed: {source}")]
    Io {
        role: &'static str,
        device: String,
        source: alsa::Error,
    },
}

/// Samples per capture chunk: one VAD frame (30 ms at 16 kHz).
const CHUNK: usize = vad::FRAME;
/// Chunks queued for the voice loop (~2 s); older audio is dropped when it falls behind.
const QUEUE: usize = 64;
/// Playback buffer and chunk: small enough that stopping is prompt, large enough not to
/// underrun on a loaded board.
const BUFFER_US: u32 = 200_000;
const PLAY_CHUNK_MS: u32 = 20;

fn open(device: &str, dir: Direction, role: &'static str) -> Result<PCM, AudioError> {
    let name = CString::new(device).map_err(|_| AudioError::BadName(device.into()))?;
    PCM::open(&name, dir, false).map_err(|source| AudioError::Open {
        role,
        device: device.into(),
        source,
    })
}

/// Sets mono S16 interleaved at `rate` (alsa-lib resamples when the card cannot) and a
/// short buffer; returns the rate granted.
fn configure(pcm: &PCM, device: &str, role: &'static str, rate: u32) -> Result<u32, AudioError> {
    let err = |what: &str| {
        let what = what.to_string();
        move |source| AudioError::Params {
            role,
            device: device.into(),
            what: what.clone(),
            source,
        }
    };
    let hw = HwParams::any(pcm).map_err(err("any parameters"))?;
    hw.set_access(Access::RWInterleaved)
        .map_err(err("interleaved access"))?;
    hw.set_format(Format::s16())
        .map_err(err("16-bit samples"))?;
    hw.set_channels(1).map_err(err("mono"))?;
    hw.set_rate_resample(true).map_err(err("resampling"))?;
    hw.set_rate(rate, ValueOr::Nearest)
        .map_err(err(&format!("{rate} Hz")))?;
    hw.set_buffer_time_near(BUFFER_US, ValueOr::Nearest)
        .map_err(err("a 200 ms buffer"))?;
    pcm.hw_params(&hw).map_err(err("these parameters"))?;
    let granted = hw.get_rate().map_err(err("its rate"))?;
    Ok(granted)
}

/// The microphone: a capture thread delivering 30 ms chunks of 16 kHz mono audio.
pub struct Microphone {
    pub device: String,
    pub chunks: mpsc::Receiver<Vec<f32>>,
    stop: Arc<AtomicBool>,
}

impl Microphone {
    /// Opens `device` and starts capturing. Returns once the device is open and configured
    /// (blocking: call it off the async threads).
    pub fn open(device: &str) -> Result<Microphone, AudioError> {
        let pcm = open(device, Direction::Capture, "microphone")?;
        let rate = configure(&pcm, device, "microphone", vad::RATE)?;
        if rate != vad::RATE {
            return Err(AudioError::Rate {
                device: device.into(),
                offered: rate,
            });
        }
        let (tx, chunks) = mpsc::channel(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let name = device.to_string();
        std::thread::Builder::new()
            .name("tutord-mic".into())
            .spawn(move || capture(pcm, &name, &tx, &thread_stop))
            .map_err(|e| AudioError::Thread {
                device: device.into(),
                reason: e.to_string(),
            })?;
        Ok(Microphone {
            device: device.into(),
            chunks,
            stop,
        })
    }
}

impl Drop for Microphone {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The capture loop: runs until the receiver goes away, `stop` is set, or the device fails
/// for good.
fn capture(pcm: PCM, device: &str, tx: &mpsc::Sender<Vec<f32>>, stop: &AtomicBool) {
    let io = match pcm.io_i16() {
        Ok(io) => io,
        Err(e) => {
            tracing::error!("microphone '{device}': {e}");
            return;
        }
    };
    let mut buf = [0i16; CHUNK];
    let started = Instant::now();
    let mut delivered = 0u64;
    let mut dropped = 0u64;
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) && !tx.is_closed() {
        match io.readi(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(10)),
            Ok(n) => {
                failures = 0;
                let chunk: Vec<f32> = buf[..n].iter().map(|&s| f32::from(s) / 32768.0).collect();
                delivered += n as u64;
                if tx.try_send(chunk).is_err() {
                    dropped += 1;
                    if dropped == 1 || dropped.is_power_of_two() {
                        tracing::warn!(
                            "microphone '{device}': the voice loop is behind, {dropped} chunks dropped"
                        );
                    }
                }
                // A device that delivers faster than real time (a plugin at the end of its
                // input file, a broken driver) must not spin a core: hold it to the clock.
                let ahead =
                    delivered as f64 / f64::from(vad::RATE) - started.elapsed().as_secs_f64();
                if ahead > 1.0 {
                    std::thread::sleep(Duration::from_secs_f64(ahead - 0.5));
                }
            }
            Err(e) => {
                // Overruns (we were late) are recovered by alsa-lib; anything else, a few
                // times in a row, ends capture (an unplugged USB microphone).
                failures += 1;
                if failures > 5 || pcm.try_recover(e, true).is_err() {
                    tracing::error!(
                        "microphone '{device}' stopped: {e}; spoken questions need ListenWav until tutord restarts"
                    );
                    return;
                }
            }
        }
    }
}

/// The loudspeaker. Opened for each answer (other programs may use the card between
/// answers) and closed when the answer has been played or interrupted.
pub struct Loudspeaker {
    pub device: String,
    pcm: Mutex<Option<(PCM, u32)>>,
}

impl Loudspeaker {
    /// Checks that `device` opens, then closes it again until there is something to say.
    pub fn open(device: &str) -> Result<Loudspeaker, AudioError> {
        let pcm = open(device, Direction::Playback, "loudspeaker")?;
        drop(pcm);
        Ok(Loudspeaker {
            device: device.into(),
            pcm: Mutex::new(None),
        })
    }

    /// Plays mono `samples` at `rate` Hz; blocking. Returns false when `cancel` was set
    /// (the rest is not played and the card's buffer is dropped).
    pub fn play(&self, samples: &[f32], rate: u32, cancel: &Cancel) -> Result<bool, AudioError> {
        let mut slot = lock(&self.pcm);
        if slot.as_ref().is_some_and(|(_, r)| *r != rate) {
            // A new voice rate: let the old audio finish first.
            if let Some((pcm, _)) = slot.take() {
                let _ = pcm.drain();
            }
        }
        if slot.is_none() {
            let pcm = open(&self.device, Direction::Playback, "loudspeaker")?;
            configure(&pcm, &self.device, "loudspeaker", rate)?;
            *slot = Some((pcm, rate));
        }
        let completed = write_all(
            slot.as_ref().map(|(p, _)| p).expect("opened above"),
            samples,
            rate,
            cancel,
        )
        .map_err(|source| AudioError::Io {
            role: "loudspeaker",
            device: self.device.clone(),
            source,
        })?;
        if !completed {
            // Interrupted: what the card still holds is dropped, not played out.
            drop_held(&mut slot);
        }
        Ok(completed)
    }

    /// Interrupted between sentences: drops what the card holds and closes it at once (the
    /// next `play` opens it again).
    pub fn stop(&self) {
        drop_held(&mut lock(&self.pcm));
    }

    /// The answer is over: waits until the card has played what it holds, then closes it.
    pub fn finish(&self) {
        let mut slot = lock(&self.pcm);
        if let Some((pcm, _)) = slot.take() {
            let _ = pcm.drain();
        }
    }
}

/// Drops what the open card holds (not played out) and closes it.
fn drop_held(slot: &mut Option<(PCM, u32)>) {
    if let Some((pcm, _)) = slot.take() {
        let _ = pcm.drop();
    }
}

/// Writes `samples` in short chunks, checking `cancel` between them; false when cancelled.
fn write_all(pcm: &PCM, samples: &[f32], rate: u32, cancel: &Cancel) -> alsa::Result<bool> {
    let io = pcm.io_i16()?;
    let pcm16: Vec<i16> = samples
        .iter()
        .map(|s| (s.clamp(-1.0, 1.0) * 32767.0).round() as i16)
        .collect();
    let chunk = (rate * PLAY_CHUNK_MS / 1000).max(1) as usize;
    let mut rest = &pcm16[..];
    while !rest.is_empty() {
        // Blocking code: the cancel is looked at between chunks (20 ms of audio each).
        if cancel.is_cancelled() {
            return Ok(false);
        }
        let n = rest.len().min(chunk);
        match io.writei(&rest[..n]) {
            Ok(done) => rest = &rest[done..],
            // An underrun (the voice was slower than the card): prepare and go on.
            Err(e) => pcm.try_recover(e, true)?,
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_is_named() {
        let e = Microphone::open("tutord_no_such_pcm")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("microphone 'tutord_no_such_pcm'"), "{e}");
        let e = Loudspeaker::open("tutord_no_such_pcm")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("loudspeaker 'tutord_no_such_pcm'"), "{e}");
    }

    #[test]
    fn a_nul_in_the_name_is_an_error_not_a_panic() {
        let e = Microphone::open("hw:0\0x").err().unwrap();
        assert!(matches!(e, AudioError::BadName(_)), "{e}");
    }
}
