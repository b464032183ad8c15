//! `tutorctl plan` and `tutorctl bench` against the real tutord on a private bus, with the
//! repository's catalog and an empty models folder: the three catalog models are the
//! candidates, none fetched, so none is chosen and no engine starts.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const BOOT: Duration = Duration::from_secs(20);
const MODELS: [&str; 3] = [
    "smollm2-135m-q4_1",
    "qwen2.5-coder-0.5b-q4_k_m",
    "qwen2.5-coder-1.5b-q4_k_m",
];

/// A ready tutord with the catalog and an empty models folder (kept alive by the result).
fn start(bus: &Bus) -> (Daemon, NotifySocket, tempfile::TempDir) {
    let models = tempfile::tempdir().unwrap();
    let catalog = Path::new(REPO).join("config/models.toml");
    let mut notify = NotifySocket::new();
    let d = Daemon::start(
        bus,
        Some(&notify.path),
        &[
            ("TUTORD_MODELS__CATALOG", catalog.to_str().unwrap()),
            ("TUTORD_MODELS__DIR", models.path().to_str().unwrap()),
        ],
    );
    assert!(
        notify.wait_for("READY=1", BOOT),
        "no READY=1: {:?}",
        notify.lines()
    );
    (d, notify, models)
}

fn stdout_of(bus: &Bus, args: &[&str]) -> String {
    let out = tutorctl(bus, args);
    assert!(out.status.success(), "tutorctl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn plan_shows_the_machine_and_every_catalog_model() {
    let bus = Bus::open();
    let (_d, _n, _models) = start(&bus);

    let table = stdout_of(&bus, &["plan"]);
    for want in [
        "   Bandwidth: read ",
        "     Compute: ",
        "  Efficiency: cpu: ",
    ] {
        assert!(table.contains(want), "lacks {want:?}:\n{table}");
    }
    for model in MODELS {
        let row = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(model))
            .unwrap_or_else(|| panic!("no row for {model}:\n{table}"));
        // Not fetched, so not chosen (a chosen row starts with `*`).
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1..3], ["cpu", "no"], "{row}");
        assert!(row.ends_with(" MiB"), "{row}");
    }
    assert!(!table.lines().any(|l| l.starts_with('*')), "{table}");
    assert!(table.contains("\nChoice: "), "{table}");

    let json: serde_json::Value = serde_json::from_str(&stdout_of(&bus, &["plan", "--json"]))
        .expect("tutorctl plan --json prints JSON");
    assert!(json["machine"]["bandwidth_read"].as_f64().unwrap() > 0.0);
    assert_eq!(json["machine"]["board"], "generic");
    let candidates = json["candidates"].as_array().unwrap();
    for model in MODELS {
        let c = candidates
            .iter()
            .find(|c| c["model"] == model)
            .unwrap_or_else(|| panic!("no candidate {model}: {json:#}"));
        assert_eq!(c["present"], false);
        assert_eq!(c["chosen"], false);
        assert!(c["tokens_per_second"].as_f64().unwrap() > 0.0, "{c}");
    }
}

#[test]
fn bench_rerun_measures_again_and_draws_the_roofline() {
    let bus = Bus::open();
    let (_d, _n, _models) = start(&bus);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("out.svg");

    let out = stdout_of(&bus, &["bench", "--rerun", "--svg", svg.to_str().unwrap()]);
    assert!(out.starts_with("Benchmarked again in "), "{out}");
    // A rerun is never the cached result.
    assert!(out.contains("    Measured: now on CPUs "), "{out}");
    assert!(out.contains("Roofline written to "), "{out}");

    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<?xml"), "{picture}");
    assert!(picture.trim_end().ends_with("</svg>"), "{picture}");
    for model in MODELS {
        assert!(picture.contains(model), "the picture lacks {model}");
    }
    assert!(picture.contains("bandwidth roof (cpu)"));
    assert!(picture.contains("compute roof (cpu)"));

    let measured = rt().block_on(async {
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .build()
            .await
            .unwrap();
        let proxy = tutord::ctl::TutorProxy::new(&conn).await.unwrap();
        proxy.bandwidth_measured().await.unwrap()
    });
    assert!(measured > 0.0, "BandwidthMeasured = {measured}");

    // A file that cannot be written is an error naming it, not a silent success.
    let bad = dir.path().join("missing/out.svg");
    let out = tutorctl(&bus, &["bench", "--svg", bad.to_str().unwrap()]);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot write {}", bad.display())),
        "{err}"
    );
}
