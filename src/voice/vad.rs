//! Voice activity detection with an endpoint: frame energy against an adaptive noise floor.
//!
//! 30 ms frames of 16 kHz mono audio. A frame is speech when its energy is `margin_db` above
//! the noise floor (tracked as a slowly rising minimum, so a fan or a hum raises it) and
//! above an absolute floor. Speech starts after `start_frames` speech frames in a row and
//! ends after `silence` without speech — 0.7 s by default, as Home Assistant's pipeline
//! uses: long enough for a pause between words, short enough to answer promptly. The
//! utterance keeps `preroll` of audio from before the start, so a soft first consonant is
//! not cut. An utterance longer than `max_utterance` is ended there (bounded memory).

use std::collections::VecDeque;
use std::time::Duration;

/// Samples per second the detector expects.
pub const RATE: u32 = 16_000;
/// 30 ms.
pub const FRAME: usize = 480;

/// Tunables.
#[derive(Debug, Clone, PartialEq)]
pub struct VadConfig {
    pub silence: Duration,
    pub preroll: Duration,
    pub max_utterance: Duration,
    pub margin_db: f32,
    pub floor_dbfs: f32,
    pub start_frames: usize,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            silence: Duration::from_millis(700),
            preroll: Duration::from_millis(210),
            max_utterance: Duration::from_secs(30),
            margin_db: 12.0,
            floor_dbfs: -50.0,
            start_frames: 3,
        }
    }
}

/// One detected utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// Samples from the (pre-rolled) start to the last speech frame.
    pub samples: Vec<f32>,
    /// Where it starts and ends in the input, in samples (start includes the pre-roll).
    pub start: usize,
    pub end: usize,
    /// Ended by `max_utterance`, not by silence.
    pub truncated: bool,
}

/// What `push` reports.
#[derive(Debug, Clone, PartialEq)]
pub enum VadEvent {
    /// Speech began at this sample (barge-in uses this to stop playback at once).
    SpeechStart(usize),
    /// The utterance ended (the endpoint).
    Utterance(Utterance),
}

/// The detector; feed it audio in any chunk sizes.
pub struct Vad {
    cfg: VadConfig,
    /// Samples not yet making a whole frame.
    partial: Vec<f32>,
    /// Recent frames kept for the pre-roll.
    recent: VecDeque<Vec<f32>>,
    noise_db: Option<f32>,
    /// Samples consumed so far (position of the next frame).
    pos: usize,
    run: usize,
    speech: Option<Speech>,
}

struct Speech {
    start: usize,
    samples: Vec<f32>,
    /// Length of `samples` at the last speech frame.
    last_voiced_len: usize,
    silent_frames: usize,
}

impl Vad {
    pub fn new(cfg: VadConfig) -> Self {
        Self {
            cfg,
            partial: Vec::with_capacity(FRAME),
            recent: VecDeque::new(),
            noise_db: None,
            pos: 0,
            run: 0,
            speech: None,
        }
    }

    fn frames(&self, d: Duration) -> usize {
        (d.as_secs_f64() * f64::from(RATE) / FRAME as f64).ceil() as usize
    }

    /// Whether speech is going on now.
    pub fn in_speech(&self) -> bool {
        self.speech.is_some()
    }

    /// Feeds samples; returns what happened, in order.
    pub fn push(&mut self, samples: &[f32]) -> Vec<VadEvent> {
        let mut events = Vec::new();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (FRAME - self.partial.len()).min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() == FRAME {
                let frame = std::mem::replace(&mut self.partial, Vec::with_capacity(FRAME));
                self.frame(frame, &mut events);
            }
        }
        events
    }

    /// Ends the input: an utterance in progress ends here.
    pub fn finish(&mut self) -> Option<Utterance> {
        let s = self.speech.take()?;
        Some(self.close(s, false))
    }

    fn frame(&mut self, frame: Vec<f32>, events: &mut Vec<VadEvent>) {
        let db = energy_dbfs(&frame);
        // The floor follows quiet frames down at once and rises slowly (~3 dB/s), so speech
        // does not drag it up but a new steady noise is learnt in a few seconds.
        let noise = match self.noise_db {
            None => db,
            Some(n) if db < n => db,
            Some(n) => n + 0.1,
        };
        self.noise_db = Some(noise);
        let threshold = (noise + self.cfg.margin_db).max(self.cfg.floor_dbfs);
        let voiced = db > threshold;
        let at = self.pos;
        self.pos += FRAME;

        if let Some(mut s) = self.speech.take() {
            s.samples.extend_from_slice(&frame);
            if voiced {
                s.silent_frames = 0;
                s.last_voiced_len = s.samples.len();
            } else {
                s.silent_frames += 1;
            }
            let too_long =
                s.samples.len() as f64 >= self.cfg.max_utterance.as_secs_f64() * f64::from(RATE);
            if s.silent_frames >= self.frames(self.cfg.silence) {
                events.push(VadEvent::Utterance(self.close(s, false)));
            } else if too_long {
                events.push(VadEvent::Utterance(self.close(s, true)));
            } else {
                self.speech = Some(s);
            }
            return;
        }
        self.run = if voiced { self.run + 1 } else { 0 };
        self.recent.push_back(frame);
        let keep = self.frames(self.cfg.preroll) + self.cfg.start_frames;
        while self.recent.len() > keep {
            self.recent.pop_front();
        }
        if self.run >= self.cfg.start_frames {
            let start = at + FRAME - self.recent.len() * FRAME;
            let samples: Vec<f32> = self.recent.drain(..).flatten().collect();
            events.push(VadEvent::SpeechStart(start));
            self.run = 0;
            self.speech = Some(Speech {
                start,
                last_voiced_len: samples.len(),
                samples,
                silent_frames: 0,
            });
        }
    }

    fn close(&mut self, mut s: Speech, truncated: bool) -> Utterance {
        s.samples.truncate(s.last_voiced_len);
        self.recent.clear();
        Utterance {
            start: s.start,
            end: s.start + s.samples.len(),
            samples: s.samples,
            truncated,
        }
    }
}

/// Every utterance of a recording (a WAV question), ends included.
pub fn utterances(samples: &[f32], cfg: &VadConfig) -> Vec<Utterance> {
    let mut vad = Vad::new(cfg.clone());
    let mut out: Vec<Utterance> = vad
        .push(samples)
        .into_iter()
        .filter_map(|e| match e {
            VadEvent::Utterance(u) => Some(u),
            VadEvent::SpeechStart(_) => None,
        })
        .collect();
    out.extend(vad.finish());
    out
}

/// Mean-square energy of a frame in dB relative to full scale.
fn energy_dbfs(frame: &[f32]) -> f32 {
    let ms = frame.iter().map(|s| s * s).sum::<f32>() / frame.len().max(1) as f32;
    10.0 * (ms + 1e-12).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence(secs: f32) -> Vec<f32> {
        vec![0.0; (secs * RATE as f32) as usize]
    }

    /// Noise of about `db` dBFS: a cheap deterministic generator.
    fn noise(secs: f32, db: f32, seed: &mut u32) -> Vec<f32> {
        let amp = 10f32.powf(db / 20.0) * 3f32.sqrt();
        (0..(secs * RATE as f32) as usize)
            .map(|_| {
                *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((*seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * amp
            })
            .collect()
    }

    /// A vowel-like tone at about -12 dBFS.
    fn tone(secs: f32) -> Vec<f32> {
        (0..(secs * RATE as f32) as usize)
            .map(|i| 0.35 * (i as f32 * 2.0 * std::f32::consts::PI * 220.0 / RATE as f32).sin())
            .collect()
    }

    fn cat(parts: &[Vec<f32>]) -> Vec<f32> {
        parts.concat()
    }

    #[test]
    fn one_utterance_with_its_bounds() {
        let audio = cat(&[silence(1.0), tone(1.0), silence(1.5)]);
        let u = utterances(&audio, &VadConfig::default());
        assert_eq!(
            u.len(),
            1,
            "{:?}",
            u.iter().map(|x| (x.start, x.end)).collect::<Vec<_>>()
        );
        let (start, end) = (u[0].start as f32 / 16_000.0, u[0].end as f32 / 16_000.0);
        // Starts within the pre-roll before 1.0 s, ends at 2.0 s (to the frame).
        assert!((0.75..=1.0).contains(&start), "start {start}");
        assert!((1.97..=2.04).contains(&end), "end {end}");
        assert!(!u[0].truncated);
    }

    #[test]
    fn a_short_pause_does_not_end_it_a_long_one_does() {
        let cfg = VadConfig::default();
        let audio = cat(&[
            silence(0.5),
            tone(0.5),
            silence(0.4),
            tone(0.5),
            silence(1.0),
        ]);
        assert_eq!(utterances(&audio, &cfg).len(), 1, "0.4 s < 0.7 s endpoint");
        let audio = cat(&[
            silence(0.5),
            tone(0.5),
            silence(1.0),
            tone(0.5),
            silence(1.0),
        ]);
        assert_eq!(utterances(&audio, &cfg).len(), 2, "1.0 s > 0.7 s endpoint");
    }

    #[test]
    fn steady_noise_is_not_speech_but_speech_over_it_is() {
        let mut seed = 7;
        let cfg = VadConfig::default();
        let hum = noise(3.0, -35.0, &mut seed);
        assert!(utterances(&hum, &cfg).is_empty());
        let mut speech = noise(1.0, -35.0, &mut seed);
        let t = tone(1.0);
        let mut over: Vec<f32> = noise(1.0, -35.0, &mut seed);
        for (o, s) in over.iter_mut().zip(&t) {
            *o += s;
        }
        speech.extend(over);
        speech.extend(noise(1.5, -35.0, &mut seed));
        assert_eq!(utterances(&speech, &cfg).len(), 1);
    }

    #[test]
    fn long_speech_is_cut_at_the_maximum_and_the_stream_is_chunk_independent() {
        let cfg = VadConfig {
            max_utterance: Duration::from_secs(2),
            ..VadConfig::default()
        };
        let audio = cat(&[silence(0.3), tone(5.0), silence(1.0)]);
        let u = utterances(&audio, &cfg);
        assert!(u.len() >= 2 && u[0].truncated, "{}", u.len());
        assert!(
            u.iter()
                .all(|x| x.samples.len() <= 2 * RATE as usize + FRAME)
        );
        // The same audio fed in odd chunk sizes gives the same events.
        let mut vad = Vad::new(cfg.clone());
        let mut events = Vec::new();
        for chunk in audio.chunks(123) {
            events.extend(vad.push(chunk));
        }
        let starts = events
            .iter()
            .filter(|e| matches!(e, VadEvent::SpeechStart(_)))
            .count();
        assert!(starts >= 2);
    }

    #[test]
    fn empty_and_silent_inputs_give_nothing() {
        assert!(utterances(&[], &VadConfig::default()).is_empty());
        assert!(utterances(&silence(2.0), &VadConfig::default()).is_empty());
    }
}
