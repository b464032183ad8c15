//! CPU affinity of tutord's own threads: every thread that exists is moved to the chosen
//! cores, and threads created later (tokio's blocking pool, whisper, TTS) inherit the mask of
//! the thread that creates them. The engine worker is placed by `engine::worker` before it
//! runs (through `[llm] cpus`). Checked through `/proc/self/task/*/status`.

use std::path::Path;

use super::TuningError;
use crate::platform::topology::{format_cpu_list, parse_cpu_list};

/// Pins every thread of this process to `cpus`; returns how many threads were pinned.
pub fn pin_process(cpus: &[usize]) -> Result<usize, TuningError> {
    let set = cpu_set(cpus);
    // Twice: a thread created while the first pass ran may have inherited the old mask.
    let mut pinned = 0;
    for _ in 0..2 {
        pinned = 0;
        for tid in thread_ids(Path::new("/proc/self/task")) {
            // SAFETY: `set` is a valid cpu_set_t of the size passed; tid is a thread of
            // this process (it may have exited since: then the call fails with ESRCH).
            let rc = unsafe {
                libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
            };
            if rc == 0 {
                pinned += 1;
                continue;
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                return Err(TuningError::Affinity {
                    tid,
                    cpus: format_cpu_list(cpus),
                    source: err,
                });
            }
        }
    }
    Ok(pinned)
}

fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|c| **c < libc::CPU_SETSIZE as usize) {
        // SAFETY: cpu is below CPU_SETSIZE, the set's capacity.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    set
}

fn thread_ids(task_dir: &Path) -> Vec<i32> {
    std::fs::read_dir(task_dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// One thread's name and allowed CPUs, from `<task_dir>/<tid>/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadAffinity {
    pub tid: i32,
    pub name: String,
    pub cpus: Vec<usize>,
}

/// The allowed CPUs of every thread under `task_dir` (`/proc/<pid>/task`).
pub fn threads(task_dir: &Path) -> Vec<ThreadAffinity> {
    let mut out: Vec<ThreadAffinity> = thread_ids(task_dir)
        .into_iter()
        .filter_map(|tid| {
            let status =
                std::fs::read_to_string(task_dir.join(tid.to_string()).join("status")).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
            };
            Some(ThreadAffinity {
                tid,
                name: field("Name:").unwrap_or_default(),
                cpus: parse_cpu_list(&field("Cpus_allowed_list:")?).ok()?,
            })
        })
        .collect();
    out.sort_by_key(|t| t.tid);
    out
}

/// `12 threads, all on CPUs 4-7`, or which threads are elsewhere.
pub fn summary(threads: &[ThreadAffinity], want: Option<&[usize]>) -> String {
    let mut lists: Vec<String> = threads.iter().map(|t| format_cpu_list(&t.cpus)).collect();
    lists.sort();
    lists.dedup();
    match want {
        Some(want) => {
            let want_list = format_cpu_list(want);
            let off: Vec<String> = threads
                .iter()
                .filter(|t| format_cpu_list(&t.cpus) != want_list)
                .map(|t| format!("{} {} on {}", t.tid, t.name, format_cpu_list(&t.cpus)))
                .collect();
            if off.is_empty() {
                format!("{} threads, all on CPUs {want_list}", threads.len())
            } else {
                format!(
                    "{} of {} threads not on CPUs {want_list}: {}",
                    off.len(),
                    threads.len(),
                    off.join(", ")
                )
            }
        }
        None => format!(
            "{} threads on CPUs {} (not pinned)",
            threads.len(),
            lists.join(" / ")
        ),
    }
}
