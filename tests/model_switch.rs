//! The daemon keeps answering while a model loads: the real small model, the real worker, a
//! private bus. The worker's test fault
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

// SIGTERM during the boot benchmark and during a model load is checked under real systemd
// (tests/nspawn/stop.sh): a benchmark here may finish before the signal can land.
