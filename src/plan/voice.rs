//! The voice's share of end of speech → first audio: speech recognition before the model's
//! first token, and the first chunk's synthesis after the model wrote it. Derived from the
//! FP32 probe until spoken turns measure them.

use serde::{Deserialize, Serialize};

use super::smooth;

/// The voice's part of end of speech → first audio for a typical spoken question: what the
/// plan adds to the model's time to first token and first chunk.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VoiceCosts {
    /// End of speech → transcript.
    pub stt_seconds: f64,
    /// Synthesizing the answer's first chunk.
    pub tts_seconds: f64,
    /// Spoken turns the figures come from; 0 = derived from the compute probe.
    pub samples: u32,
}

/// Tokens the model writes before the speaker has its first chunk: the speaker cuts it after
/// 12 words at the latest (`voice::speaker::FIRST_CHUNK_MAX_WORDS`), ~1.3 tokens a word.
pub const FIRST_CHUNK_TOKENS: u32 = 16;

/// Speech recognition of a typical question (a few seconds of speech: whisper tiny.en encodes
/// 512 frames) and synthesis of a first chunk (Piper medium, up to 12 words), in operations of
/// the FP32 probe: the defaults before the first spoken turn measures them, scaled by the
/// probe. Fitted with `scripts/voice-bench.sh` on the x86-64 development VM (FP32 probe 203
/// GFLOP/s): 0.23 s to the transcript of a 1 s question (0.25 s taken: a longer question
/// encodes the same 512 frames and decodes a few more tokens) and 0.41 s to synthesize the
/// first chunk (docs/benchmarks.md, "Voice").
pub const STT_PROBE_FLOPS: f64 = 5.0e10;
pub const TTS_PROBE_FLOPS: f64 = 8.0e10;

impl VoiceCosts {
    /// Before any spoken turn: from the CPU's measured FP32 peak, FLOP/s.
    pub fn from_probe(cpu_fp32: f64) -> Self {
        let flops = cpu_fp32.max(1e9);
        Self {
            stt_seconds: STT_PROBE_FLOPS / flops,
            tts_seconds: TTS_PROBE_FLOPS / flops,
            samples: 0,
        }
    }

    /// The TTS share of one spoken turn: what followed its first token, less the first
    /// chunk's decoding at the turn's own speed.
    pub fn tts_of_turn(after_first_token: f64, tokens_per_second: f64) -> f64 {
        let decode = f64::from(FIRST_CHUNK_TOKENS - 1) / tokens_per_second.max(1e-3);
        (after_first_token - decode).max(0.0)
    }

    /// Folds one spoken turn's figures in (the same smoothing as decode calibration).
    pub fn merge(self, stt_seconds: f64, tts_seconds: f64) -> Self {
        if self.samples == 0 {
            return Self {
                stt_seconds,
                tts_seconds,
                samples: 1,
            };
        }
        Self {
            stt_seconds: smooth(self.stt_seconds, stt_seconds, self.samples),
            tts_seconds: smooth(self.tts_seconds, tts_seconds, self.samples),
            samples: self.samples.saturating_add(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_costs_come_from_the_probe_then_from_spoken_turns() {
        let probe = VoiceCosts::from_probe(1e12);
        assert_eq!(
            (probe.stt_seconds, probe.tts_seconds, probe.samples),
            (STT_PROBE_FLOPS / 1e12, TTS_PROBE_FLOPS / 1e12, 0)
        );
        // 1.0 s from first token to first audio at 30 tok/s: 15 tokens take 0.5 s, TTS 0.5 s.
        assert!((VoiceCosts::tts_of_turn(1.0, 30.0) - 0.5).abs() < 1e-12);
        // Faster than the decode could explain: never negative.
        assert_eq!(VoiceCosts::tts_of_turn(0.1, 30.0), 0.0);
        // The first turn replaces the probe's figures; the second is averaged in.
        let one = probe.merge(2.0, 0.6);
        assert_eq!(
            (one.stt_seconds, one.tts_seconds, one.samples),
            (2.0, 0.6, 1)
        );
        let two = one.merge(1.0, 0.4);
        assert!((two.stt_seconds - 1.5).abs() < 1e-12 && (two.tts_seconds - 0.5).abs() < 1e-12);
        assert_eq!(two.samples, 2);
    }
}
