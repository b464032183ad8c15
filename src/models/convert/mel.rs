//! The mel filterbank whisper's front end uses, as the ggml header carries it.
//!
//! Computed here rather than taken from openai-whisper's `assets/mel_filters.npz`: that
//! package is published as a source distribution only, which the fetcher refuses to take
//! (it takes wheels, never running a package's build), and the table is a pure function of
//! three numbers. It is librosa's `filters.mel(sr, n_fft, n_mels)` with its defaults (Slaney
//! mel scale, Slaney area normalisation, fmin 0, fmax sr/2), which is what whisper's table
//! was made with; computed in f64 and rounded to f32 where librosa does. Checked against
//! `mel_filters.npz` of openai-whisper 20250625: equal bit for bit for 80 and 128 mels
//! (the tests keep a few of its values).

/// Row-major `n_mels × (n_fft/2 + 1)` weights.
pub fn filters(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let bins = n_fft / 2 + 1;
    let sr = f64::from(sample_rate);
    // FFT bin centres and the n_mels + 2 band edges, evenly spaced on the mel scale.
    let fft: Vec<f64> = (0..bins).map(|i| i as f64 * sr / n_fft as f64).collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    // numpy's linspace: start + i * step, and the last point exactly the end.
    let step = (hi - lo) / (n_mels + 1) as f64;
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| {
            mel_to_hz(if i == n_mels + 1 {
                hi
            } else {
                lo + i as f64 * step
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n_mels * bins);
    for m in 0..n_mels {
        let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
        // Slaney normalisation: each triangle has the same area.
        let norm = 2.0 / (right - left);
        for &f in &fft {
            // Spelled as librosa computes it, down to the sign of zero: the first weight
            // is -0.0 in whisper's table, and this gives the table bit for bit.
            let rising = -(left - f) / (centre - left);
            let falling = (right - f) / (right - centre);
            let tri = if rising < falling { rising } else { falling };
            let tri = if 0.0 > tri { 0.0 } else { tri };
            // librosa stores the triangle in its f32 array, then scales it in place.
            out.push((f64::from(tri as f32) * norm) as f32);
        }
    }
    out
}

// The Slaney mel scale: linear below 1 kHz, logarithmic above.
const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(f: f64) -> f64 {
    if f >= MIN_LOG_HZ {
        MIN_LOG_MEL + (f / MIN_LOG_HZ).ln() / log_step()
    } else {
        f / F_SP
    }
}

fn mel_to_hz(m: f64) -> f64 {
    if m >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (m - MIN_LOG_MEL)).exp()
    } else {
        F_SP * m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries of openai-whisper 20250625's `mel_filters.npz` (`mel_80`, float32), read
    /// from the package: (row, column, value).
    const NPZ_80: [(usize, usize, f32); 8] = [
        (0, 1, 0.024_862_595),
        (1, 1, 0.001_990_822),
        (1, 2, 0.022_871_772),
        (2, 2, 0.003_981_644),
        (40, 42, 0.005_411_104_8),
        (40, 43, 0.014_735_566),
        (79, 196, 0.001_795_036),
        (79, 199, 0.000_448_759),
    ];

    #[test]
    fn matches_whispers_own_table() {
        let f = filters(16_000, 400, 80);
        assert_eq!(f.len(), 80 * 201);
        for (r, c, want) in NPZ_80 {
            let got = f[r * 201 + c];
            // Bit for bit: the literal is the npz's f32, printed shortest.
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "[{r}][{c}] = {got}, npz {want}"
            );
        }
        // The npz has 391 non-zero weights; the largest is 0.025880683.
        assert_eq!(f.iter().filter(|&&v| v != 0.0).count(), 391);
        let max = f.iter().copied().fold(0.0f32, f32::max);
        assert_eq!(max, 0.025_880_683);
        // librosa leaves the sign of its first zero negative; so does this.
        assert_eq!(f[0].to_bits(), (-0.0f32).to_bits());
    }
}
