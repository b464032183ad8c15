//! Sample-rate conversion: Piper speaks at 22,050 Hz, whisper listens at 16 kHz. A windowed
//! sinc filter whose cut-off is the lower rate's Nyquist, so downsampling does not alias.

use std::f64::consts::PI;

/// Zero crossings of the sinc on each side: enough for speech, cheap for a sentence.
const HALF_TAPS: f64 = 16.0;

/// `samples` at `from` Hz, resampled to `to` Hz. A rate of 0 has no meaning: nothing comes
/// out (voice settings are checked for 8-48 kHz; this keeps a slip elsewhere from panicking).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == 0 || to == 0 {
        return Vec::new();
    }
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    let ratio = f64::from(to) / f64::from(from);
    // Filter in input samples: cut-off at the lower of the two Nyquist frequencies.
    let cutoff = ratio.min(1.0);
    let half = HALF_TAPS / cutoff;
    let out_len = (samples.len() as f64 * ratio).round() as usize;
    (0..out_len)
        .map(|n| {
            let t = n as f64 / ratio;
            let lo = (t - half).ceil().max(0.0) as usize;
            let hi = ((t + half).floor() as usize).min(samples.len() - 1);
            let mut acc = 0.0;
            for (k, &s) in samples.iter().enumerate().take(hi + 1).skip(lo) {
                let x = k as f64 - t;
                let w = 0.5 + 0.5 * (PI * x / half).cos(); // Hann window
                let arg = PI * x * cutoff;
                let sinc = if arg.abs() < 1e-9 {
                    1.0
                } else {
                    arg.sin() / arg
                };
                acc += f64::from(s) * cutoff * sinc * w;
            }
            acc as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_of_zero_gives_nothing_rather_than_a_panic() {
        assert!(resample(&[0.5; 100], 0, 16_000).is_empty());
        assert!(resample(&[0.5; 100], 22_050, 0).is_empty());
    }

    fn tone(freq: f64, rate: u32, secs: f64) -> Vec<f32> {
        (0..(f64::from(rate) * secs) as usize)
            .map(|i| (2.0 * PI * freq * i as f64 / f64::from(rate)).sin() as f32 * 0.5)
            .collect()
    }

    fn rms(s: &[f32]) -> f64 {
        (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    #[test]
    fn keeps_a_tone_below_nyquist_and_the_duration() {
        let out = resample(&tone(440.0, 22_050, 1.0), 22_050, 16_000);
        assert_eq!(out.len(), 16_000);
        let mid = &out[1000..15_000];
        assert!((rms(mid) - 0.5 / 2f64.sqrt()).abs() < 0.01, "{}", rms(mid));
    }

    #[test]
    fn removes_a_tone_above_the_new_nyquist() {
        // 10 kHz fits 22,050 Hz but not 16 kHz: it must not fold back as a 6 kHz alias.
        let out = resample(&tone(10_000.0, 22_050, 0.5), 22_050, 16_000);
        assert!(rms(&out[500..7500]) < 0.02, "{}", rms(&out[500..7500]));
    }

    #[test]
    fn same_rate_and_empty_are_unchanged() {
        assert_eq!(resample(&[0.1, 0.2], 16_000, 16_000), [0.1, 0.2]);
        assert!(resample(&[], 22_050, 16_000).is_empty());
    }
}
