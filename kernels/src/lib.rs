//! tutord's benchmark inner loops: memory streaming (read, copy, triad), arithmetic peaks (FP32 FMA,
//! INT8 dot) and a scalar dependency chain (the core's clock), vectorized for the CPU found at run time.
//!
//! The read kernel is what decoding does: stream every weight once, with loads that do not
//! depend on each other. It XORs loads into four accumulators so the compiler cannot drop
//! them, and so the loop is bound by the loads, not by the arithmetic.

use std::hint::black_box;

/// The instruction set the kernels use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Neon,
    Scalar,
}

impl Isa {
    /// The best this CPU has.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            // NEON (Advanced SIMD) is part of every ARMv8-A CPU Linux runs on.
            return Isa::Neon;
        }
        #[allow(unreachable_code)]
        Isa::Scalar
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Neon => "neon",
            Isa::Scalar => "scalar",
        }
    }
}

/// Reads every byte of `buf` once; returns a value that depends on all of them.
pub fn read(isa: Isa, buf: &[u64]) -> u64 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx512 is only chosen when the CPU reports avx512f.
        Isa::Avx512 => unsafe { x86::read_avx512(buf) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2 is only chosen when the CPU reports avx2 and fma.
        Isa::Avx2 => unsafe { x86::read_avx2(buf) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64.
        Isa::Neon => unsafe { arm::read_neon(buf) },
        _ => read_scalar(buf),
    }
}

fn read_scalar(buf: &[u64]) -> u64 {
    let mut acc = [0u64; 4];
    let mut chunks = buf.chunks_exact(4);
    for c in &mut chunks {
        for k in 0..4 {
            acc[k] ^= c[k];
        }
    }
    chunks
        .remainder()
        .iter()
        .fold(acc[0] ^ acc[1] ^ acc[2] ^ acc[3], |a, b| a ^ b)
}

/// Writes `v` to every word: the first touch of a new buffer.
pub fn fill(buf: &mut [u64], v: u64) {
    buf.fill(v);
}

/// `dst = src`, through the C library's memcpy (what a program copying memory gets).
pub fn copy(dst: &mut [u64], src: &[u64]) {
    dst.copy_from_slice(src);
}

/// STREAM's triad: `a = b + s × c`.
pub fn triad(isa: Isa, a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `read`: the ISA was detected.
        Isa::Avx512 => unsafe { x86::triad_avx512(a, b, c, s) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `read`: the ISA was detected.
        Isa::Avx2 => unsafe { x86::triad_avx2(a, b, c, s) },
        _ => triad_plain(a, b, c, s),
    }
}

#[inline(always)]
fn triad_plain(a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
    for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
        *a = b + s * c;
    }
}

/// Runs `iters` rounds of independent FP32 fused multiply-adds; returns the FLOPs done
/// (2 per lane per FMA).
pub fn fp32_fma(isa: Isa, iters: u64) -> f64 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `read`: the ISA was detected.
        Isa::Avx512 => unsafe { x86::fma_avx512(iters) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `read`: the ISA was detected.
        Isa::Avx2 => unsafe { x86::fma_avx2(iters) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64.
        Isa::Neon => unsafe { arm::fma_neon(iters) },
        _ => fma_scalar(iters),
    }
}

fn fma_scalar(iters: u64) -> f64 {
    let mut acc = [0.0f32; 8];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999, 0.001);
        }
    }
    black_box(acc);
    iters as f64 * 8.0 * 2.0
}

/// Runs `iters` rounds of a chain of scalar integer operations, each needing the result of
/// the one before; returns the operations done (3 a round on x86-64: shift, xor, add).
/// Nothing runs in parallel, so the rate is the core's clock times its one-cycle ALU latency,
/// whatever its vector units: a matrix row's fixed cost in a dot product (the loop's start,
/// the horizontal sum, the scale) is such a chain, and it does not grow with FMA ports or
/// vector width, which the FP32 probe measures. Comparable between CPUs of one architecture
/// only (aarch64 folds the shift into the xor).
pub fn scalar_chain(iters: u64) -> f64 {
    let mut x = black_box(1u64);
    for _ in 0..iters {
        x = (x ^ (x >> 7)).wrapping_add(0x9E37_79B9);
    }
    black_box(x);
    iters as f64 * 3.0
}

/// Runs `iters` rounds of INT8 multiply-accumulate (the work of quantized matrix products);
/// returns the operations done (2 per multiply-add), or None when the CPU has no INT8 dot
/// instruction worth reporting.
pub fn int8_dot(isa: Isa, iters: u64) -> Option<f64> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if std::arch::is_x86_feature_detected!("avx512vnni") => {
            // SAFETY: avx512f and avx512vnni were detected.
            Some(unsafe { x86::dot_vnni512(iters) })
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx2 was detected.
        Isa::Avx512 | Isa::Avx2 => Some(unsafe { x86::dot_avx2(iters) }),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if std::arch::is_aarch64_feature_detected!("dotprod") => {
            // SAFETY: the CPU reports the dot-product extension (A76, A78, A55 r1+).
            Some(unsafe { arm::dot_sdot(iters) })
        }
        _ => None,
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::hint::black_box;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn read_avx512(buf: &[u64]) -> u64 {
        let mut acc = [_mm512_setzero_si512(); 4];
        let mut chunks = buf.chunks_exact(32);
        for c in &mut chunks {
            let p = c.as_ptr() as *const __m512i;
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: the chunk holds 32 u64 = 4 × 64 bytes; unaligned loads are allowed.
                *a = _mm512_xor_si512(*a, unsafe { _mm512_loadu_si512(p.add(k)) });
            }
        }
        let v = _mm512_xor_si512(
            _mm512_xor_si512(acc[0], acc[1]),
            _mm512_xor_si512(acc[2], acc[3]),
        );
        let mut out = [0u64; 8];
        // SAFETY: out is 64 bytes.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr() as *mut __m512i, v) };
        out.iter().chain(chunks.remainder()).fold(0, |a, b| a ^ b)
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn read_avx2(buf: &[u64]) -> u64 {
        let mut acc = [_mm256_setzero_si256(); 4];
        let mut chunks = buf.chunks_exact(16);
        for c in &mut chunks {
            let p = c.as_ptr() as *const __m256i;
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: the chunk holds 16 u64 = 4 × 32 bytes; unaligned loads are allowed.
                *a = _mm256_xor_si256(*a, unsafe { _mm256_loadu_si256(p.add(k)) });
            }
        }
        let v = _mm256_xor_si256(
            _mm256_xor_si256(acc[0], acc[1]),
            _mm256_xor_si256(acc[2], acc[3]),
        );
        let mut out = [0u64; 4];
        // SAFETY: out is 32 bytes.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, v) };
        out.iter().chain(chunks.remainder()).fold(0, |a, b| a ^ b)
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn triad_avx512(a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
        // The plain loop, compiled with AVX-512 enabled: the compiler vectorizes it.
        super::triad_plain(a, b, c, s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn triad_avx2(a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
        super::triad_plain(a, b, c, s)
    }

    // Twelve independent chains: enough to cover the FMA latency (4 cycles) on two ports.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_avx512(iters: u64) -> f64 {
        let mut acc = [_mm512_set1_ps(0.0); 12];
        let (m, k) = (_mm512_set1_ps(0.999), _mm512_set1_ps(0.001));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, m, k);
            }
        }
        black_box(acc);
        iters as f64 * 12.0 * 16.0 * 2.0
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_avx2(iters: u64) -> f64 {
        let mut acc = [_mm256_set1_ps(0.0); 12];
        let (m, k) = (_mm256_set1_ps(0.999), _mm256_set1_ps(0.001));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, m, k);
            }
        }
        black_box(acc);
        iters as f64 * 12.0 * 8.0 * 2.0
    }

    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn dot_vnni512(iters: u64) -> f64 {
        let mut acc = [_mm512_setzero_si512(); 12];
        let (x, y) = (_mm512_set1_epi8(3), _mm512_set1_epi8(-2));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_dpbusd_epi32(*a, x, y);
            }
        }
        black_box(acc);
        // 64 byte products per instruction.
        iters as f64 * 12.0 * 64.0 * 2.0
    }

    // llama.cpp's path without VNNI: u8×i8 pairs summed to i16, then to i32.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_avx2(iters: u64) -> f64 {
        let mut acc = [_mm256_setzero_si256(); 8];
        let (x, y, ones) = (
            _mm256_set1_epi8(3),
            _mm256_set1_epi8(-2),
            _mm256_set1_epi16(1),
        );
        for _ in 0..iters {
            for a in acc.iter_mut() {
                let p = _mm256_maddubs_epi16(x, y);
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(p, ones));
            }
        }
        black_box(acc);
        iters as f64 * 8.0 * 32.0 * 2.0
    }
}

// Written for the boards (Cortex-A76/A78). Run against the scalar loops under qemu-user
// (`scripts/test-arm64.sh`: `-cpu max` with dotprod, `-cpu cortex-a53` without), and on a
// board by the boot benchmark.
#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;
    use std::hint::black_box;

    #[target_feature(enable = "neon")]
    pub unsafe fn read_neon(buf: &[u64]) -> u64 {
        let mut acc = [vdupq_n_u64(0); 4];
        let mut chunks = buf.chunks_exact(8);
        for c in &mut chunks {
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: the chunk holds 8 u64 = 4 × 16 bytes.
                *a = veorq_u64(*a, unsafe { vld1q_u64(c.as_ptr().add(2 * k)) });
            }
        }
        let v = veorq_u64(veorq_u64(acc[0], acc[1]), veorq_u64(acc[2], acc[3]));
        let x = vgetq_lane_u64::<0>(v) ^ vgetq_lane_u64::<1>(v);
        chunks.remainder().iter().fold(x, |a, b| a ^ b)
    }

    #[target_feature(enable = "neon")]
    pub unsafe fn fma_neon(iters: u64) -> f64 {
        // SAFETY: the caller's: NEON is baseline on aarch64.
        black_box(unsafe { fma_neon_lanes(iters) });
        iters as f64 * 12.0 * 4.0 * 2.0
    }

    /// The 12 accumulators' 48 lanes after `iters` rounds of a = a × 0.999 + 0.001.
    #[target_feature(enable = "neon")]
    pub unsafe fn fma_neon_lanes(iters: u64) -> [f32; 48] {
        let mut acc = [vdupq_n_f32(0.0); 12];
        let (m, k) = (vdupq_n_f32(0.999), vdupq_n_f32(0.001));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = vfmaq_f32(k, *a, m);
            }
        }
        let mut out = [0.0f32; 48];
        for (i, a) in acc.iter().enumerate() {
            // SAFETY: out has room for 4 lanes at 4 × i.
            unsafe { vst1q_f32(out.as_mut_ptr().add(4 * i), *a) };
        }
        out
    }

    #[target_feature(enable = "neon,dotprod")]
    pub unsafe fn dot_sdot(iters: u64) -> f64 {
        let mut acc = [vdupq_n_s32(0); 8];
        let (x, y) = (vdupq_n_s8(3), vdupq_n_s8(-2));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                // SAFETY: register-only instruction; the caller checked for dotprod.
                unsafe {
                    std::arch::asm!(
                        "sdot {a:v}.4s, {x:v}.16b, {y:v}.16b",
                        a = inout(vreg) *a,
                        x = in(vreg) x,
                        y = in(vreg) y,
                        options(pure, nomem, nostack)
                    );
                }
            }
        }
        black_box(acc);
        // 16 byte products per instruction.
        iters as f64 * 8.0 * 16.0 * 2.0
    }

    /// One `sdot` as `dot_sdot` issues it: lane i of `acc` plus the products of bytes
    /// 4i..4i+3 of `x` and `y`. For the tests: the benchmark only counts its operations.
    #[cfg(test)]
    #[target_feature(enable = "neon,dotprod")]
    pub unsafe fn sdot_once(acc: [i32; 4], x: [i8; 16], y: [i8; 16]) -> [i32; 4] {
        // SAFETY: each array holds exactly one 128-bit register's lanes.
        let (mut a, x, y) = unsafe {
            (
                vld1q_s32(acc.as_ptr()),
                vld1q_s8(x.as_ptr()),
                vld1q_s8(y.as_ptr()),
            )
        };
        // SAFETY: register-only instruction; the caller checked for dotprod.
        unsafe {
            std::arch::asm!(
                "sdot {a:v}.4s, {x:v}.16b, {y:v}.16b",
                a = inout(vreg) a,
                x = in(vreg) x,
                y = in(vreg) y,
                options(pure, nomem, nostack)
            );
        }
        let mut out = [0i32; 4];
        // SAFETY: out has room for the 4 lanes.
        unsafe { vst1q_s32(out.as_mut_ptr(), a) };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_agrees_with_the_plain_loop() {
        let buf: Vec<u64> = (0..10_007u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let want = buf.iter().fold(0, |a, b| a ^ b);
        let isa = Isa::detect();
        assert_eq!(read(isa, &buf), want, "{isa:?}");
        assert_eq!(read(Isa::Scalar, &buf), want);
        let b: Vec<f64> = (0..1001).map(f64::from).collect();
        let c: Vec<f64> = (0..1001).map(|i| f64::from(i) * 0.5).collect();
        let mut a = vec![0.0; 1001];
        triad(isa, &mut a, &b, &c, 3.0);
        assert_eq!(a[1000], 1000.0 + 3.0 * 500.0);
        let mut d = vec![0u64; 10_007];
        copy(&mut d, &buf);
        assert_eq!(d, buf);
        assert_eq!(fp32_fma(isa, 10), fp32_fma(isa, 20) / 2.0);
        assert_eq!(scalar_chain(10), 30.0);
    }
}

/// The NEON kernels against the scalar loops, on aarch64 (under qemu-user on the x86-64
/// machines: `scripts/test-arm64.sh`).
#[cfg(all(test, target_arch = "aarch64"))]
mod arm_tests {
    use super::*;

    #[test]
    fn neon_is_what_detect_picks_and_its_read_matches_scalar_at_every_length() {
        assert_eq!(Isa::detect(), Isa::Neon);
        for n in [0usize, 1, 7, 8, 9, 15, 16, 17, 1000, 10_007] {
            let buf: Vec<u64> = (0..n as u64)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xa5)
                .collect();
            assert_eq!(read(Isa::Neon, &buf), read(Isa::Scalar, &buf), "{n} words");
        }
    }

    #[test]
    fn neon_fma_lanes_follow_the_scalar_fused_recurrence() {
        for iters in [0u64, 1, 2, 37, 1000] {
            let mut want = 0.0f32;
            for _ in 0..iters {
                want = want.mul_add(0.999, 0.001);
            }
            // SAFETY: NEON is baseline on aarch64.
            let lanes = unsafe { arm::fma_neon_lanes(iters) };
            for (i, got) in lanes.iter().enumerate() {
                assert_eq!(got.to_bits(), want.to_bits(), "lane {i} after {iters}");
            }
        }
        assert_eq!(fp32_fma(Isa::Neon, 10), 10.0 * 12.0 * 4.0 * 2.0);
    }

    #[test]
    fn sdot_sums_each_lanes_four_byte_products_like_the_scalar_loop() {
        let dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
        // The probe reports INT8 compute exactly when the CPU has the instruction.
        assert_eq!(int8_dot(Isa::Neon, 10).is_some(), dotprod);
        if !dotprod {
            println!("no dotprod on this CPU: sdot itself is checked under -cpu max");
            return;
        }
        let x: [i8; 16] = [
            1, -2, 3, -4, 5, -6, 7, -8, 127, -128, 9, 10, -11, 12, 13, -14,
        ];
        let y: [i8; 16] = [
            -128, 127, 2, 3, -5, 8, 13, -21, 127, -128, 1, 1, -1, 1, 1, -1,
        ];
        let acc = [1000, -1000, 7, i32::MAX - 100_000];
        let mut want = acc;
        for (lane, w) in want.iter_mut().enumerate() {
            for b in 4 * lane..4 * lane + 4 {
                *w = w.wrapping_add(i32::from(x[b]) * i32::from(y[b]));
            }
        }
        // SAFETY: dotprod was detected above.
        let got = unsafe { arm::sdot_once(acc, x, y) };
        assert_eq!(got, want);
    }
}
