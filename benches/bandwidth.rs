//! tutord's boot memory benchmark beside the reference tools, in one run on the same cores:
//! likwid-bench (`load_avx`, `copy_avx`, 1 GB working set) and mbw (memcpy).
//!
//!     cargo bench -p tutord --bench bandwidth          (scripts/bench.sh installs the tools)
//!
//! Environment: TUTORD_BENCH_CPUS (a CPU list, default: this process's CPUs),
//! TUTORD_BENCH_BUDGET_MS (default 1000, as at boot), TUTORD_BENCH_RUNS (default 3).
//!
//! Bytes are counted as STREAM counts them: copy = read + written. likwid-bench counts the
//! same way; mbw reports the bytes copied once, so its figure is shown doubled beside ours.
//! Goal (issue 4): tutord's read ≥ 0.95 × likwid-bench's load, within the 1.0 s budget.

use std::process::Command;
use std::time::Duration;

use tutord::bench::{self, Setup};
use tutord::platform::Paths;
use tutord::platform::profile::Profiles;
use tutord::platform::topology::{allowed_cpus, format_cpu_list, parse_cpu_list};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs a tool and returns its stdout, or why not.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e} (apt-get install likwid mbw)"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// likwid-bench's `MByte/s:` figure, in bytes/s.
fn likwid(test: &str, threads: usize) -> Result<f64, String> {
    let w = format!("S0:1GB:{threads}");
    let out = run("likwid-bench", &["-t", test, "-w", &w])?;
    out.lines()
        .find_map(|l| l.strip_prefix("MByte/s:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|mb| mb * 1e6)
        .ok_or_else(|| format!("likwid-bench {test}: no MByte/s line"))
}

/// mbw's average memcpy figure (MiB/s of bytes copied), in bytes/s copied once.
fn mbw() -> Result<f64, String> {
    let out = run("mbw", &["-q", "-n", "5", "-t", "0", "512"])?;
    out.lines()
        .find(|l| l.starts_with("AVG") && l.contains("MEMCPY"))
        .and_then(|l| l.split("Copy:").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|mib| mib * 1024.0 * 1024.0)
        .ok_or_else(|| "mbw: no AVG MEMCPY line".to_string())
}

fn gb(x: f64) -> String {
    format!("{:>7.2}", x / 1e9)
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let cpus = std::env::var("TUTORD_BENCH_CPUS")
        .ok()
        .and_then(|s| parse_cpu_list(&s).ok())
        .unwrap_or_else(allowed_cpus);
    let budget = Duration::from_millis(env_or("TUTORD_BENCH_BUDGET_MS", 1000));
    let runs: usize = env_or("TUTORD_BENCH_RUNS", 3);
    let paths = Paths::new("/");
    let profile = Profiles::builtin().detect(&paths).clone();
    let setup = Setup::read(&paths, &profile, &cpus);
    let threads = cpus.len();
    println!(
        "memory bandwidth on CPUs {} ({threads} threads), board {}, GB/s (1e9 bytes/s)",
        format_cpu_list(&cpus),
        profile.name
    );

    let mut best: Option<bench::Measurement> = None;
    for _ in 0..runs {
        let m = bench::run(&setup, budget, Duration::from_millis(300));
        if best
            .as_ref()
            .is_none_or(|b| m.bandwidth.read > b.bandwidth.read)
        {
            best = Some(m);
        }
    }
    let m = best.expect("at least one run");
    let b = &m.bandwidth;
    let load = likwid("load_avx", threads);
    let copy = likwid("copy_avx", threads);
    let memcpy = mbw();

    println!();
    println!("{:<44} {:>7} {:>7} {:>7}", "", "read", "copy", "triad");
    println!(
        "{:<44} {} {} {}",
        format!(
            "tutord ({}, best of {runs}, {:.2} s/run)",
            b.isa, m.wall_seconds
        ),
        gb(b.read),
        gb(b.copy),
        gb(b.triad)
    );
    let show = |r: &Result<f64, String>| r.as_ref().map_or("      -".to_string(), |v| gb(*v));
    println!(
        "{:<44} {} {:>7} {:>7}",
        "likwid-bench load_avx / copy_avx (1 GB)",
        show(&load),
        show(&copy),
        ""
    );
    println!(
        "{:<44} {:>7} {} {:>7}",
        "mbw memcpy, 1 thread (x2: read + write)",
        "",
        show(&memcpy.as_ref().map(|v| v * 2.0).map_err(Clone::clone)),
        ""
    );
    for e in [&load, &copy, &memcpy]
        .into_iter()
        .filter_map(|r| r.as_ref().err())
    {
        println!("  ({e})");
    }
    println!();
    println!(
        "working set {} MiB ({}); setup {:.3} s; repetitions read/copy/triad {:?}",
        b.working_set_bytes >> 20,
        m.working_set_rule,
        b.setup_seconds,
        b.repetitions
    );
    if let Some(t) = m.theoretical {
        println!(
            "theoretical {} GB/s: read is {:.0} %",
            gb(t).trim(),
            100.0 * b.read / t
        );
    }
    if let Ok(l) = load {
        let ratio = b.read / l;
        println!(
            "tutord read / likwid-bench load = {ratio:.3} (goal >= 0.95: {})",
            if ratio >= 0.95 { "met" } else { "NOT met" }
        );
    }
    if let Ok(c) = copy {
        println!("tutord copy / likwid-bench copy = {:.3}", b.copy / c);
    }
    println!(
        "compute: {:.0} GOP/s INT8, {:.0} GFLOP/s FP32 on these cores",
        m.compute_ops() / 1e9,
        m.compute_fp32() / 1e9
    );
    // What the planner divides by (scripts/row-cost.sh reads this line).
    let t = m.typical();
    println!(
        "typical (the planner's): read {:.2} GB/s, scalar chain {:.2} Gop/s",
        t.read / 1e9,
        t.scalar / 1e9
    );
}
