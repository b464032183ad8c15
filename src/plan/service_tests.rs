//! `select()` with stand-in engines: what a refused, unknown or failed switch leaves behind.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::engine::stand_in::{Asked, Script};
use crate::platform::profile::Profiles;

struct Fixture {
    plan: Service,
    slot: Arc<Slot>,
    dir: tempfile::TempDir,
}

/// Files named `bad…` fail to load; every other one loads.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a.gguf", "b.gguf", "bad.gguf"] {
        std::fs::write(dir.path().join(name), b"GGUF").unwrap();
    }
    let store = Store::open(dir.path(), Duration::from_millis(50)).unwrap();
    let config = Config::default();
    let profile = Profiles::builtin().get("generic").unwrap().clone();
    let slot = Slot::new(Err("not loaded yet".into()));
    let asked = Asked::default();
    let plan = Service::with_starter(
        Planner::new(&config, profile, vec![0]),
        Arc::new(Mutex::new(store)),
        Catalog::default(),
        config.llm.clone(),
        dir.path().to_path_buf(),
        slot.clone(),
        Box::new(move |cfg: EngineConfig| {
            let path = cfg.spec.model_path.display().to_string();
            let load = if path.contains("bad") {
                Err(format!("{path}: not a model"))
            } else {
                Ok(path)
            };
            EngineHandle::stand_in(
                Script {
                    load,
                    ..Script::answering("")
                },
                asked.clone(),
            )
        }),
    );
    Fixture { plan, slot, dir }
}

fn path(f: &Fixture, name: &str) -> String {
    f.dir.path().join(name).display().to_string()
}

#[tokio::test]
async fn select_loads_and_records_the_model_only_once_it_is_in() {
    let f = fixture();
    let mut figures = f.plan.watch();
    f.plan.select(&path(&f, "a.gguf")).await.unwrap();
    assert_eq!(f.plan.figures().model, path(&f, "a.gguf"));
    assert!(figures.has_changed().unwrap());
    assert_eq!(figures.borrow_and_update().model, path(&f, "a.gguf"));
    assert_eq!(
        lock(&f.plan.inner.current).clone().unwrap().0,
        path(&f, "a.gguf")
    );
    assert!(f.slot.no_engine_reason().is_none());
}

#[tokio::test]
async fn select_refuses_busy_before_anything_changes() {
    let f = fixture();
    f.plan.select(&path(&f, "a.gguf")).await.unwrap();
    f.plan.planner().answers_since_load = 3;
    let before = f.plan.figures();
    // A question holds the engine.
    let (_engine, guard) = f.slot.take_turn().unwrap();
    let err = f.plan.select(&path(&f, "b.gguf")).await.unwrap_err();
    assert!(
        matches!(err, SelectError::Busy(SlotError::Busy(1))),
        "{err}"
    );
    assert_eq!(f.plan.figures(), before);
    assert_eq!(f.plan.planner().answers_since_load, 3);
    assert_eq!(
        lock(&f.plan.inner.current).clone().unwrap().0,
        path(&f, "a.gguf")
    );
    drop(guard);
    f.plan.select(&path(&f, "b.gguf")).await.unwrap();
    assert_eq!(f.plan.figures().model, path(&f, "b.gguf"));
    assert_eq!(f.plan.planner().answers_since_load, 0);
}

#[tokio::test]
async fn an_unknown_model_changes_nothing() {
    let f = fixture();
    f.plan.select(&path(&f, "a.gguf")).await.unwrap();
    let err = f.plan.select("no-such-model").await.unwrap_err();
    assert!(
        matches!(&err, SelectError::Unknown(m) if m.contains("no-such-model")),
        "{err}"
    );
    assert_eq!(f.plan.figures().model, path(&f, "a.gguf"));
    assert!(f.slot.take_turn().is_ok());
}

#[tokio::test]
async fn a_model_that_does_not_load_puts_the_previous_one_back() {
    let f = fixture();
    f.plan.select(&path(&f, "a.gguf")).await.unwrap();
    let err = f.plan.select(&path(&f, "bad.gguf")).await.unwrap_err();
    let SelectError::Failed(why) = &err else {
        panic!("{err}");
    };
    assert!(why.contains("not a model"), "{why}");
    assert!(
        why.ends_with(&format!("; back on {}", path(&f, "a.gguf"))),
        "{why}"
    );
    assert_eq!(f.plan.figures().model, path(&f, "a.gguf"));
    assert!(f.slot.take_turn().is_ok());
}

#[tokio::test]
async fn questions_during_a_switch_are_not_ready_at_once() {
    let f = fixture();
    let switch = f.slot.begin_switch("b.gguf").unwrap();
    let err = f.slot.take_turn().err().unwrap();
    assert_eq!(
        err,
        SlotError::NotReady("switching to the model b.gguf".into())
    );
    drop(switch);
}

#[tokio::test]
async fn availability_says_whether_a_model_answers_and_why_not() {
    use crate::engine::Availability;
    let f = fixture();
    assert_eq!(
        f.slot.availability(),
        Availability::Absent("not loaded yet".into())
    );
    let changes = f.slot.changes();
    let switch = f.slot.begin_switch("b.gguf").unwrap();
    assert!(changes.has_changed().unwrap());
    assert_eq!(
        f.slot.availability(),
        Availability::Loading("switching to the model b.gguf".into())
    );
    drop(switch);
    f.plan.select(&path(&f, "a.gguf")).await.unwrap();
    assert_eq!(
        f.slot.availability(),
        Availability::Serving(path(&f, "a.gguf"))
    );
    // A model that does not load, with nothing to go back to: absent, saying why.
    let f = fixture();
    let err = f.plan.select(&path(&f, "bad.gguf")).await.unwrap_err();
    assert!(matches!(err, SelectError::Failed(_)), "{err}");
    match f.slot.availability() {
        Availability::Absent(why) => assert!(why.contains("not a model"), "{why}"),
        other => panic!("{other:?}"),
    }
}
