//! Memory bandwidth: one thread per chosen core, pinned, each streaming its own part of a
//! buffer it touched first (so its pages are local to it); best of several repetitions.
//!
//! Bytes are counted the way STREAM counts them: read = the bytes read; copy = bytes read +
//! bytes written; triad = two arrays read + one written. The extra read a cache does before
//! writing a line (write-allocate) is not counted, so copy and triad show less than the bus
//! carried; read has no such gap, and it is what decoding does.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::kernels::{self, Isa};
use super::pin_current_thread;

/// What the memory benchmark measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bandwidth {
    /// Best read bandwidth over the repetitions, bytes/s.
    pub read: f64,
    /// The median repetition's read bandwidth (the first, warming pass left out), bytes/s:
    /// what a minute of decoding sees on a host whose neighbours take turns with it, where
    /// the best repetition sees its quietest moment. None in results cached before it was
    /// measured (read now runs at least three times, so a new result always has it).
    #[serde(default)]
    pub read_median: Option<f64>,
    pub copy: f64,
    pub triad: f64,
    pub threads: usize,
    /// Bytes each kernel streams per repetition, over all threads.
    pub working_set_bytes: u64,
    pub repetitions: [u32; 3],
    /// Time to allocate and first-touch the buffer.
    pub setup_seconds: f64,
    pub isa: String,
}

/// How big and how long.
#[derive(Debug, Clone)]
pub struct MemoryOptions {
    pub cpus: Vec<usize>,
    pub working_set_bytes: u64,
    /// Wall time for everything: setup (allocating and touching the buffer) and kernels.
    /// Each kernel still runs twice if setup took it all.
    pub budget: Duration,
    /// Paging the working set in stops at this much of the budget (never below
    /// `min_working_set_bytes`): where pages come slowly the working set is cut instead.
    pub setup_share: f64,
    pub min_working_set_bytes: u64,
}

/// A message to the workers: which kernel to run next.
#[derive(Clone, Copy, PartialEq)]
enum Job {
    Read,
    Copy,
    Triad,
    Quit,
}

/// Runs the three kernels within the budget and returns the best figures.
pub fn measure(opts: &MemoryOptions) -> Bandwidth {
    let isa = Isa::detect();
    let threads = opts.cpus.len().max(1);
    // Per thread: a multiple of 3 × 8 u64 so copy halves and triad thirds line up, rounded
    // up: both sizes are promises of "at least" (a floor rounded down was 256 bytes short).
    let words_for =
        |bytes: u64| (bytes.div_ceil(8 * threads as u64).div_ceil(24) * 24).max(24) as usize;
    let wanted_words = words_for(opts.working_set_bytes);
    let floor_words = words_for(opts.min_working_set_bytes).min(wanted_words);
    let setup = Instant::now();
    let deadline = setup + opts.budget.mul_f64(opts.setup_share);
    let start = Arc::new(Barrier::new(threads + 1));
    let done = Arc::new(Barrier::new(threads + 1));
    let job = Arc::new(std::sync::Mutex::new(Job::Read));
    // What every thread touched in time; the kernels use the smallest, so all threads
    // stream the same amount.
    let touched = Arc::new(std::sync::Mutex::new(Vec::new()));
    let words = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..threads {
        let (start, done, job) = (start.clone(), done.clone(), job.clone());
        let (touched, words) = (touched.clone(), words.clone());
        let cpu = opts.cpus.get(i).copied();
        handles.push(std::thread::spawn(move || {
            if let Some(cpu) = cpu {
                // A failed pin (CPU gone offline) still measures, just less precisely.
                let _ = pin_current_thread(&[cpu]);
            }
            // First touch from the pinned thread: the pages land near it.
            let mut region = Region::new(wanted_words);
            let n = region.touch(floor_words, deadline);
            touched.lock().unwrap_or_else(|p| p.into_inner()).push(n);
            done.wait();
            let mut sink = 0u64;
            loop {
                start.wait();
                let per_thread_words = words.load(std::sync::atomic::Ordering::SeqCst);
                let buf = &mut region.words()[..per_thread_words];
                let j = *job.lock().unwrap_or_else(|p| p.into_inner());
                match j {
                    Job::Read => sink ^= kernels::read(isa, buf),
                    Job::Copy => {
                        let (a, b) = buf.split_at_mut(per_thread_words / 2);
                        kernels::copy(b, a);
                    }
                    Job::Triad => {
                        let third = per_thread_words / 3;
                        let (a, rest) = buf.split_at_mut(third);
                        let (b, c) = rest.split_at(third);
                        kernels::triad(isa, as_f64_mut(a), as_f64(b), as_f64(&c[..third]), 3.0);
                    }
                    Job::Quit => {
                        done.wait();
                        break;
                    }
                }
                done.wait();
            }
            std::hint::black_box(sink);
        }));
    }
    done.wait();
    let per_thread_words = touched
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .min()
        .map_or(24, |n| (n / 24 * 24).max(24));
    words.store(per_thread_words, std::sync::atomic::Ordering::SeqCst);
    let setup_seconds = setup.elapsed().as_secs_f64();
    let kernel_budget = opts.budget.saturating_sub(setup.elapsed());
    let bytes = (per_thread_words * threads * 8) as f64;

    let run = |j: Job| -> f64 {
        *job.lock().unwrap_or_else(|p| p.into_inner()) = j;
        let t = Instant::now();
        start.wait();
        done.wait();
        t.elapsed().as_secs_f64()
    };
    // Half the budget for read (the figure the planner uses), a quarter each for the others;
    // each kernel at least twice, the first pass warming the TLB and the clocks, and read at
    // least three times: its median (of the passes after the first) is what the planner
    // divides by, and on a busy host the page-in could leave room for two passes only.
    let mut best = [f64::MAX; 3];
    let mut reps = [0u32; 3];
    let mut read_times = Vec::new();
    for (k, (j, share)) in [(Job::Read, 0.5), (Job::Copy, 0.25), (Job::Triad, 0.25)]
        .into_iter()
        .enumerate()
    {
        let slot = kernel_budget.mul_f64(share);
        let begun = Instant::now();
        loop {
            let s = run(j);
            best[k] = best[k].min(s);
            if j == Job::Read {
                read_times.push(s);
            }
            reps[k] += 1;
            let spent = begun.elapsed();
            let next_fits = spent + Duration::from_secs_f64(s) <= slot;
            let least = if j == Job::Read { 3 } else { 2 };
            if reps[k] >= least && !next_fits || reps[k] >= 50 {
                break;
            }
        }
    }
    run(Job::Quit);
    for h in handles {
        let _ = h.join();
    }
    Bandwidth {
        read: bytes / best[0],
        read_median: (read_times.len() >= 3)
            .then(|| super::median(&read_times[1..]))
            .flatten()
            .map(|s| bytes / s),
        // Copy moves half the buffer: read it and write the other half (STREAM: 2 × n × 8).
        copy: bytes / best[1],
        // Triad reads two thirds and writes one third (STREAM: 3 × n × 8).
        triad: bytes / best[2],
        threads,
        working_set_bytes: bytes as u64,
        repetitions: reps,
        setup_seconds,
        isa: isa.as_str().to_string(),
    }
}

/// Anonymous memory asked to be backed by transparent huge pages: touching 2 MiB pages is
/// ~10x faster than 4 KiB ones (the setup is part of the boot budget), and fewer TLB misses
/// is what a model's mapped weights get too. Falls back to a plain vector.
struct Region {
    map: *mut libc::c_void,
    map_len: usize,
    words: *mut u64,
    len: usize,
    fallback: Vec<u64>,
}

// SAFETY: the region is owned by one thread at a time (moved, never shared).
unsafe impl Send for Region {}

impl Region {
    const HUGE: usize = 2 << 20;

    fn new(len: usize) -> Self {
        let map_len = len * 8 + Self::HUGE;
        // SAFETY: an anonymous private mapping with no address hint; checked for MAP_FAILED.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Self {
                map: std::ptr::null_mut(),
                map_len: 0,
                words: std::ptr::null_mut(),
                len,
                fallback: vec![0; len],
            };
        }
        let aligned = (map as usize).next_multiple_of(Self::HUGE);
        // SAFETY: [aligned, aligned + len*8) lies inside the mapping (HUGE bytes of slack);
        // madvise only advises, and failing is harmless.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, len * 8, libc::MADV_HUGEPAGE);
        }
        let words = aligned as *mut u64;
        Self {
            map,
            map_len,
            words,
            len,
            fallback: Vec::new(),
        }
    }

    /// Pages the region in (writes every word) in 4 MiB steps: at least `min` words, then
    /// until `deadline`. Returns how many words are touched. The pattern is 1.0 as an f64,
    /// so that the triad computes on normal numbers (denormals are ~100x slower).
    fn touch(&mut self, min: usize, deadline: Instant) -> usize {
        const STEP: usize = 512 * 1024;
        let all = self.words();
        let mut n = 0;
        while n < all.len() && (n < min || Instant::now() < deadline) {
            let end = (n + STEP).min(all.len());
            kernels::fill(&mut all[n..end], 1.0f64.to_bits());
            n = end;
        }
        n
    }

    fn words(&mut self) -> &mut [u64] {
        if self.map.is_null() {
            return &mut self.fallback;
        }
        // SAFETY: inside the live mapping; an anonymous mapping reads as zeros until written,
        // so every u64 is initialised; borrowed uniquely via &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.words, self.len) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if !self.map.is_null() {
            // SAFETY: unmapping exactly what `new` mapped; no slice outlives self.
            unsafe { libc::munmap(self.map, self.map_len) };
        }
    }
}

fn as_f64(w: &[u64]) -> &[f64] {
    // SAFETY: u64 and f64 have the same size and alignment, and every bit pattern is a valid
    // f64 (the values are only streamed, never interpreted).
    unsafe { std::slice::from_raw_parts(w.as_ptr() as *const f64, w.len()) }
}

fn as_f64_mut(w: &mut [u64]) -> &mut [f64] {
    // SAFETY: as in `as_f64`; the borrow is unique.
    unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr() as *mut f64, w.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_and_repetitions() {
        let b = measure(&MemoryOptions {
            cpus: vec![],
            working_set_bytes: 8 << 20,
            budget: Duration::from_millis(40),
            setup_share: 0.3,
            min_working_set_bytes: 8 << 20,
        });
        assert_eq!(b.threads, 1);
        // 8 MiB rounded up to whole 24-word groups.
        assert_eq!(b.working_set_bytes, (8u64 << 20).div_ceil(192) * 192);
        // Read at least three times (a median beside the warming pass), the others twice.
        assert!(b.repetitions[0] >= 3, "{b:?}");
        assert!(b.repetitions.iter().all(|r| *r >= 2), "{b:?}");
        assert!(b.read_median.is_some(), "{b:?}");
        for v in [b.read, b.copy, b.triad] {
            // Between 100 MB/s and 10 TB/s: a figure, not a unit slip.
            assert!((1e8..1e13).contains(&v), "{b:?}");
        }
    }

    #[test]
    fn a_cut_working_set_never_falls_below_its_floor() {
        // No time at all for paging in: the cut goes as low as it may, to the floor. Two
        // threads and a floor that does not divide into 24-word groups per thread: the case
        // that measured 256 bytes under a 256 MiB floor.
        let floor = (3 << 20) + 8;
        let b = measure(&MemoryOptions {
            cpus: vec![0, 0],
            working_set_bytes: 64 << 20,
            budget: Duration::from_millis(40),
            setup_share: 0.0,
            min_working_set_bytes: floor,
        });
        assert_eq!(b.threads, 2);
        assert!(b.working_set_bytes >= floor, "{b:?}");
        assert!(
            b.working_set_bytes < 64 << 20,
            "the cut did not happen: {b:?}"
        );
    }
}
