//! The daemon keeps answering while a model loads, and stops when told to, whatever it is
//! doing: the real small model, the real worker, a private bus. The worker's test fault
//! `slow-load` makes every load take 4 s longer, as a 7B model read from eMMC would.
//!
//! One test at a time in this binary (a lock): the boot benchmark of one must not starve the
//! timings of the other on a 2-core machine.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use zbus::Variant;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn named_error(e: zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, msg, _) => format!("{name}: {}", msg.unwrap_or_default()),
        other => panic!("expected a named error, got {other:?}"),
    }
}

fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    engine_binary();
    small_model_config(dir, 16, extra)
}

#[test]
fn calls_during_a_model_switch_answer_at_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start_with_config(
        &bus,
        Some(&notify.path),
        &cfg,
        &[("TUTORD_TEST_FAULT", "slow-load")],
    );
    assert!(
        notify.wait_for("READY=1", Duration::from_secs(90)),
        "no READY=1: {:?}",
        notify.lines()
    );
    rt().block_on(async {
        let conn = connect_to(&bus).await;
        let model = small_model().display().to_string();
        let switching = {
            let conn = conn.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let r = tutor_call(&conn, "SelectModel", &(model.as_str(),)).await;
                (r.map(drop), t.elapsed())
            })
        };
        // The switch is under way (the load alone takes 4 s).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut worst = (Duration::ZERO, String::new());
        let props = [
            "State",
            "Model",
            "Backend",
            "ModelBytes",
            "BandwidthMeasured",
        ];
        for i in 0..20 {
            let name = props[i % props.len()];
            let t = Instant::now();
            let _ = property(&conn, name).await;
            let took = t.elapsed();
            if took > worst.0 {
                worst = (took, format!("Get({name})"));
            }
        }
        let t = Instant::now();
        let d = diagnostics(&conn).await;
        if t.elapsed() > worst.0 {
            worst = (t.elapsed(), "Diagnostics()".into());
        }
        assert!(d.contains_key("engine"), "{d:?}");
        let t = Instant::now();
        let err = named_error(
            tutor_call(
                &conn,
                "Ask",
                &("What is 2+2?", HashMap::<&str, Variant<'_>>::new()),
            )
            .await
            .unwrap_err(),
        );
        let ask_took = t.elapsed();
        assert!(
            err.starts_with("org.tutord.Tutor1.Error.NotReady") && err.contains("switching"),
            "{err}"
        );
        let (result, switch_took) = switching.await.unwrap();
        result.unwrap();
        println!(
            "during a {:.1} s model switch: worst of 20 property reads and Diagnostics() {} ms \
             ({}); Ask answered NotReady in {} ms",
            switch_took.as_secs_f64(),
            worst.0.as_millis(),
            worst.1,
            ask_took.as_millis()
        );
        // The reads really happened during the switch.
        assert!(switch_took > Duration::from_secs(3), "{switch_took:?}");
        assert!(worst.0 < Duration::from_millis(100), "{worst:?}");
        assert!(ask_took < Duration::from_millis(100), "{ask_took:?}");
        // And after it the new engine answers.
        let model = property(&conn, "Model").await;
        assert!(
            matches!(&*model, Variant::Str(s) if s.as_str().ends_with(".gguf")),
            "{model:?}"
        );
    });
    let (status, _) = daemon
        .signal_and_wait("TERM", Duration::from_secs(20))
        .expect("tutord stops on SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// Starts tutord, waits for `status` on the notify socket, sends SIGTERM `after` it and
/// checks that it ends cleanly within 5 s, before READY, saying why.
fn sigterm_during(status: &str, env: &[(&str, &str)], after: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start_with_config(&bus, Some(&notify.path), &cfg, env);
    assert!(
        notify.wait_for(&format!("STATUS={status}"), Duration::from_secs(60)),
        "no STATUS={status}: {:?}",
        notify.lines()
    );
    std::thread::sleep(after);
    let t = Instant::now();
    let (exit, stderr) = daemon
        .signal_and_wait("TERM", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("tutord did not stop within 5 s of SIGTERM during '{status}'"));
    let took = t.elapsed();
    println!(
        "SIGTERM during '{status}': stopped in {} ms",
        took.as_millis()
    );
    assert!(exit.success(), "{exit:?}\n{stderr}");
    assert!(
        !notify.lines().iter().any(|l| l == "READY=1"),
        "READY came after all: {:?}",
        notify.lines()
    );
    for want in ["SIGTERM during boot: the boot ends here", "tutord stopped"] {
        assert!(stderr.contains(want), "stderr lacks {want:?}:\n{stderr}");
    }
}

#[test]
fn sigterm_during_the_boot_benchmark_or_a_model_load_stops_within_5_s() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // An 8 s benchmark: the stop comes half a second into it.
    sigterm_during(
        "Measuring memory bandwidth",
        &[("TUTORD_BENCH__BUDGET_MS", "8000")],
        Duration::from_millis(500),
    );
    // A 4 s longer load: the stop comes while the worker loads.
    sigterm_during(
        "Loading the language model",
        &[("TUTORD_TEST_FAULT", "slow-load")],
        Duration::from_millis(500),
    );
}
