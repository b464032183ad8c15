//! Load, with the real daemon, a real dbus-daemon and the real small model (SmolLM2-135M):
//! 50 clients asking at once, 10,000 random D-Bus calls, and resident memory over many turns
//! (the 500-turn run is `scripts/soak.sh`; a short one runs here).
//!
//! `TUTORD_LOAD_SEED=<n>` replays the random calls of a run (the seed is printed).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::*;
use zbus::{OwnedVariant, Variant};

const READY: Duration = Duration::from_secs(60);
/// No call and no answer may take longer than this: past it, the daemon counts as hung.
const BOUND: Duration = Duration::from_secs(120);

fn start(max_tokens: u32) -> (Bus, Daemon, StderrLog, tempfile::TempDir) {
    engine_binary();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = small_model_config(cfg_dir.path(), max_tokens, "");
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start_with_config(&bus, Some(&notify.path), &cfg, &[]);
    assert!(notify.wait_for("READY=1", READY), "{}", daemon.stderr());
    let log = daemon.drain_stderr();
    (bus, daemon, log, cfg_dir)
}

async fn call<B: serde::Serialize + zbus::zvariant::DynamicType>(
    conn: &zbus::Connection,
    iface: &str,
    method: &str,
    body: &B,
) -> zbus::Result<zbus::Message> {
    match tokio::time::timeout(
        BOUND,
        conn.call_method(Some(DEST), PATH, Some(iface), method, body),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => panic!("{iface}.{method} got no reply within {BOUND:?}: tutord hangs"),
    }
}

async fn tutor<B: serde::Serialize + zbus::zvariant::DynamicType>(
    conn: &zbus::Connection,
    method: &str,
    body: &B,
) -> zbus::Result<zbus::Message> {
    call(conn, DEST, method, body).await
}

/// Waits for `turn`'s AnswerFinished, at most BOUND: longer is a hang.
async fn finished_within_bound(
    stream: &mut zbus::MessageStream,
    turn: &str,
) -> HashMap<String, OwnedVariant> {
    wait_finished(stream, turn, Instant::now() + BOUND)
        .await
        .unwrap_or_else(|| panic!("{turn}: no AnswerFinished within {BOUND:?}"))
}

/// Asks one question and waits for its answer, which must be ok.
async fn ask_ok(conn: &zbus::Connection, question: &str, new_session: bool) {
    let (turn, stats) = ask_and_wait(conn, question, new_session, BOUND).await;
    assert!(flag(&stats, "ok"), "{turn}: {stats:?}");
}

/// One loaded daemon at a time: on CI's two cores three daemons answering at once starve
/// each other's engine threads (ggml spins at barriers), and the bounds would measure that.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn fifty_clients_asking_at_once_each_get_an_answer_or_busy() {
    let _one = one_at_a_time();
    const CLIENTS: usize = 50;
    let (bus, mut daemon, log, _cfg) = start(8);
    let started = Instant::now();
    let outcomes: Vec<Result<(), String>> = rt().block_on(async {
        // Every client its own connection, subscribed before anyone asks.
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let conn = connect_to(&bus).await;
            let stream = answer_finished_stream(&conn).await;
            clients.push((conn, stream));
        }
        let mut asks = tokio::task::JoinSet::new();
        for (i, (conn, mut stream)) in clients.into_iter().enumerate() {
            asks.spawn(async move {
                let q = format!("Client {i}: name a number.");
                let opts = HashMap::<&str, Variant<'_>>::new();
                match tutor(&conn, "Ask", &(q.as_str(), opts)).await {
                    Ok(reply) => {
                        let turn: String = reply.body().deserialize().unwrap();
                        let stats = finished_within_bound(&mut stream, &turn).await;
                        assert!(flag(&stats, "ok"), "{turn}: {stats:?}");
                        Ok(())
                    }
                    Err(e) => Err(error_name(&e).unwrap_or_else(|| panic!("client {i}: {e}"))),
                }
            });
        }
        asks.join_all().await
    });
    let answered = outcomes.iter().filter(|o| o.is_ok()).count();
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for e in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        *refused.entry(e.clone()).or_default() += 1;
    }
    eprintln!(
        "{CLIENTS} concurrent clients: {answered} answered, refused {refused:?}, all done in \
         {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(answered >= 1, "{refused:?}");
    assert_eq!(
        refused.keys().collect::<Vec<_>>(),
        vec!["org.tutord.Tutor1.Error.Busy"],
        "only Busy may refuse a question"
    );
    assert_eq!(answered + refused.values().sum::<usize>(), CLIENTS);
    assert!(daemon.child.try_wait().unwrap().is_none(), "{}", log.text());
}

// ---- random calls

/// A method of the interface and its input signature, from the live introspection.
struct Method {
    name: String,
    signature: String,
}

/// The methods of org.tutord.Tutor1 in the introspection XML (a plain scan: the XML is
/// zbus's own, one element per line).
fn methods_of(xml: &str) -> Vec<Method> {
    let start = xml
        .find("<interface name=\"org.tutord.Tutor1\">")
        .expect("org.tutord.Tutor1 in the introspection");
    let end = start + xml[start..].find("</interface>").unwrap();
    let mut out: Vec<Method> = Vec::new();
    for line in xml[start..end].lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("<method name=\"") {
            let name = rest.split('"').next().unwrap().to_string();
            out.push(Method {
                name,
                signature: String::new(),
            });
        } else if line.starts_with("<signal") || line.starts_with("<property") {
            // Signals' args are not inputs; stop attributing args to the last method.
            out.push(Method {
                name: String::new(),
                signature: String::new(),
            });
        } else if line.starts_with("<arg ") && line.contains("direction=\"in\"") {
            let t = line.split("type=\"").nth(1).unwrap().split('"').next();
            out.last_mut().unwrap().signature.push_str(t.unwrap());
        }
    }
    out.retain(|m| !m.name.is_empty());
    out
}

fn random_string(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => String::new(),
        1 => " \t\n ".into(),
        2 => "x".repeat(1 + rng.below(300_000) as usize), // huge
        3 => "é€🦀".repeat(1 + rng.below(3000) as usize),
        4 => rng
            .pick(&["trace", "debug", "info", "warn", "error", "chatty"])
            .to_string(),
        5 => rng
            .pick(&[
                "no-such-model",
                "../../etc/passwd",
                "/etc/passwd",
                "auto",
                "smollm2",
            ])
            .to_string(),
        6 => rng
            .pick(&["1", "0", "-1", "99999999999999999999", "1e3"])
            .to_string(),
        7 => format!("{}", rng.next_u64()),
        8 => "Name a colour.".into(),
        _ => {
            let n = rng.below(40) as usize;
            (0..n)
                .map(|_| char::from(32 + rng.below(95) as u8))
                .collect()
        }
    }
}

fn random_options(rng: &mut Rng) -> HashMap<String, OwnedVariant> {
    let mut o = HashMap::new();
    for _ in 0..rng.below(4) {
        let key = rng
            .pick(&["new_session", "max_tokens", "temperature", "voice", ""])
            .to_string();
        let value: OwnedVariant = match rng.below(6) {
            0 => OwnedVariant::from(rng.chance(1, 2)),
            1 => OwnedVariant::from(rng.below(20) as u32),
            2 => OwnedVariant::from(u32::MAX),
            3 => OwnedVariant::from(rng.below(400) as f64 / 100.0 - 1.0),
            4 => OwnedVariant::from(f64::NAN),
            _ => OwnedVariant::from(zbus::Str::from(random_string(rng))),
        };
        o.insert(key, value);
    }
    o
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    match rng.below(4) {
        0 => Vec::new(),
        1 => b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec(),
        _ => (0..rng.below(5000)).map(|_| rng.next_u64() as u8).collect(),
    }
}

/// One call of `method` with arguments of the right signature, or (`wrong`) of another.
async fn random_call(
    conn: &zbus::Connection,
    rng: &mut Rng,
    method: &str,
    signature: &str,
    wrong: bool,
) -> zbus::Result<zbus::Message> {
    let sig = if wrong {
        // A shape the method does not take (the bus or zbus must refuse it by name).
        *rng.pick(&[
            "u", "bx", "ss", "as", "d", "su", "a{ss}", "ay", "(su)", "s", "",
        ])
    } else {
        signature
    };
    match sig {
        "" => tutor(conn, method, &()).await,
        "s" => tutor(conn, method, &(random_string(rng),)).await,
        "sa{sv}" => {
            let body = (random_string(rng), random_options(rng));
            tutor(conn, method, &body).await
        }
        "aya{sv}" => {
            let body = (random_bytes(rng), random_options(rng));
            tutor(conn, method, &body).await
        }
        "u" => tutor(conn, method, &(rng.next_u64() as u32,)).await,
        "bx" => tutor(conn, method, &(true, rng.next_u64() as i64)).await,
        "ss" => tutor(conn, method, &(random_string(rng), random_string(rng))).await,
        "as" => tutor(conn, method, &(vec![random_string(rng), String::new()],)).await,
        "d" => tutor(conn, method, &(f64::INFINITY,)).await,
        "su" => tutor(conn, method, &(random_string(rng), 7u32)).await,
        // History(session, offset, limit): any page of any id, limits past the 500 cap too.
        "suu" => {
            let body = (
                random_string(rng),
                rng.next_u64() as u32,
                rng.below(1000) as u32,
            );
            tutor(conn, method, &body).await
        }
        "a{ss}" => {
            let m: HashMap<String, String> = [(random_string(rng), random_string(rng))].into();
            tutor(conn, method, &(m,)).await
        }
        "ay" => tutor(conn, method, &(random_bytes(rng),)).await,
        "(su)" => tutor(conn, method, &((random_string(rng), 3u32),)).await,
        other => panic!("no generator for signature {other} ({method}): add one"),
    }
}

/// A random property call: Get/GetAll/Set with real or made-up names and any value.
async fn random_property_call(
    conn: &zbus::Connection,
    rng: &mut Rng,
) -> zbus::Result<zbus::Message> {
    const PROPS: &str = "org.freedesktop.DBus.Properties";
    let iface = rng.pick(&[DEST, DEST, "org.example.Nope", ""]).to_string();
    let name = rng
        .pick(&[
            "State",
            "Model",
            "Session",
            "LastError",
            "Progress",
            "Nope",
            "",
        ])
        .to_string();
    match rng.below(3) {
        0 => call(conn, PROPS, "Get", &(iface, name)).await,
        1 => call(conn, PROPS, "GetAll", &(iface,)).await,
        _ => {
            let value = match rng.below(3) {
                0 => Variant::from(random_string(rng)),
                1 => Variant::from(rng.below(10) as f64),
                _ => Variant::from(true),
            };
            call(conn, PROPS, "Set", &(iface, name, value)).await
        }
    }
}

#[test]
fn ten_thousand_random_calls_give_only_named_errors_and_the_daemon_answers_after() {
    let _one = one_at_a_time();
    const CALLS: usize = 10_000;
    let mut rng = Rng::from_env("TUTORD_LOAD_SEED");
    let (bus, mut daemon, log, _cfg) = start(8);
    let pid = daemon.pid();
    let started = Instant::now();
    let mut ok = 0usize;
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_method: BTreeMap<String, usize> = BTreeMap::new();
    rt().block_on(async {
        let conn = connect_to(&bus).await;
        let xml: String = call(
            &conn,
            "org.freedesktop.DBus.Introspectable",
            "Introspect",
            &(),
        )
        .await
        .unwrap()
        .body()
        .deserialize()
        .unwrap();
        let methods = methods_of(&xml);
        assert!(methods.iter().any(|m| m.name == "Ask"), "{xml}");
        let (mut rebenchmarks, mut selects) = (0, 0);
        let mut i = 0;
        while i < CALLS {
            let r = match rng.below(20) {
                // Property calls and unknown members: the bus edge, not the methods.
                0 | 1 => {
                    *per_method.entry("Properties.*".into()).or_default() += 1;
                    random_property_call(&conn, &mut rng).await
                }
                2 => {
                    *per_method.entry("(unknown method)".into()).or_default() += 1;
                    tutor(&conn, "NoSuchMethod", &(random_string(&mut rng),)).await
                }
                // Abort storms: runs of Abort between the questions.
                3..=5 => {
                    *per_method.entry("Abort".into()).or_default() += 1;
                    tutor(&conn, "Abort", &()).await
                }
                _ => {
                    let m = rng.pick(&methods);
                    // Slow on purpose: a few at most. A valid model name reloads the engine.
                    if m.name == "Rebenchmark" && rebenchmarks >= 3 {
                        continue;
                    }
                    let wrong = rng.chance(1, 4);
                    if m.name == "SelectModel" && !wrong && rng.chance(1, 50) && selects < 3 {
                        selects += 1;
                        *per_method.entry("SelectModel(valid)".into()).or_default() += 1;
                        tutor(&conn, "SelectModel", &(SMALL,)).await
                    } else {
                        if m.name == "Rebenchmark" {
                            rebenchmarks += 1;
                        }
                        *per_method.entry(m.name.clone()).or_default() += 1;
                        random_call(&conn, &mut rng, &m.name, &m.signature, wrong).await
                    }
                }
            };
            match r {
                Ok(_) => ok += 1,
                Err(e) => {
                    let name = error_name(&e)
                        .unwrap_or_else(|| panic!("call {i}: not a named D-Bus error: {e}"));
                    assert!(
                        name.starts_with("org.tutord.Tutor1.Error.")
                            || name.starts_with("org.freedesktop.DBus.Error."),
                        "call {i}: error outside the named sets: {e}"
                    );
                    *errors.entry(name).or_default() += 1;
                }
            }
            if let Some(st) = daemon.child.try_wait().unwrap() {
                panic!("call {i}: tutord exited ({st:?}):\n{}", log.text());
            }
            i += 1;
        }
        // Afterwards: the same process, and it still answers a normal question (the last
        // random SelectModel may have named a file that is no model: select the real one).
        let d = diagnostics(&conn).await;
        let same = matches!(d.get("pid").map(|v| &**v), Some(Variant::U64(p)) if *p as i32 == pid);
        assert!(same, "Diagnostics pid differs from {pid}");
        tutor(&conn, "SetLogLevel", &("info",)).await.unwrap();
        tutor(&conn, "Abort", &()).await.unwrap();
        if tutor(&conn, "SelectModel", &(SMALL,)).await.is_ok() {
            let end = Instant::now() + READY;
            while !matches!(diagnostics(&conn).await.get("engine").map(|v| &**v),
                            Some(Variant::Str(s)) if s.as_str() == "loaded")
            {
                assert!(Instant::now() < end, "the model did not load again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // The storm's last questions may still be leaving the queue after Abort: a Busy
        // here is the queue bound doing its job, so wait for room, then the answer must come.
        let end = Instant::now() + READY;
        loop {
            let mut finished = answer_finished_stream(&conn).await;
            let mut opts: HashMap<&str, Variant<'_>> = HashMap::new();
            opts.insert("new_session", Variant::from(true));
            match tutor(&conn, "Ask", &("After the storm: name a colour.", opts)).await {
                Ok(m) => {
                    let turn: String = m.body().deserialize().unwrap();
                    let stats = finished_within_bound(&mut finished, &turn).await;
                    assert!(flag(&stats, "ok"), "{turn}: {stats:?}");
                    break;
                }
                Err(e) if e.to_string().contains("Error.Busy") && Instant::now() < end => {
                    tutor(&conn, "Abort", &()).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("the question after the storm: {e}"),
            }
        }
    });
    let failed: usize = errors.values().sum();
    eprintln!(
        "{CALLS} random calls in {:.1} s: {ok} succeeded, {failed} named errors {errors:?}; \
         calls per method {per_method:?}; same pid {pid}, answered a normal question after",
        started.elapsed().as_secs_f64()
    );
    assert!(daemon.child.try_wait().unwrap().is_none());
}

// ---- memory over many turns

/// Runs `turns` questions after `warm_up` ones; returns (tutord KiB after warm-up, at the
/// end, engine worker KiB after warm-up, at the end).
fn rss_over_turns(warm_up: usize, turns: usize) -> (u64, u64, u64, u64) {
    let (bus, daemon, log, _cfg) = start(12);
    let pid = daemon.pid() as u32;
    let started = Instant::now();
    let figures = rt().block_on(async {
        let conn = connect_to(&bus).await;
        let run = |from: usize, to: usize| {
            let conn = conn.clone();
            async move {
                for i in from..to {
                    // Sessions of 8 turns: the conversation (and the prompt) stays short, as
                    // with a pupil who starts a new topic now and then.
                    let q = format!("Question {i}: name a colour.");
                    ask_ok(&conn, &q, i % 8 == 0).await;
                }
            }
        };
        run(0, warm_up).await;
        let worker = engine_pid(&diagnostics(&conn).await).expect("engine_pid");
        let (d0, w0) = (rss_kib(pid).unwrap(), rss_kib(worker).unwrap());
        run(warm_up, warm_up + turns).await;
        let worker_end = engine_pid(&diagnostics(&conn).await).expect("engine_pid");
        assert_eq!(
            worker,
            worker_end,
            "the worker was restarted:\n{}",
            log.text()
        );
        (d0, rss_kib(pid).unwrap(), w0, rss_kib(worker).unwrap())
    });
    let drift = |a: u64, b: u64| (b as f64 - a as f64) / a as f64 * 100.0;
    eprintln!(
        "{turns} turns after {warm_up} warm-up turns in {:.1} s: tutord RSS {} -> {} KiB \
         ({:+.2} %), engine worker RSS {} -> {} KiB ({:+.2} %)",
        started.elapsed().as_secs_f64(),
        figures.0,
        figures.1,
        drift(figures.0, figures.1),
        figures.2,
        figures.3,
        drift(figures.2, figures.3)
    );
    figures
}

fn assert_drift(figures: (u64, u64, u64, u64), percent: f64) {
    let (d0, d1, w0, w1) = figures;
    assert!(
        (d1 as f64) <= d0 as f64 * (1.0 + percent / 100.0),
        "tutord grew from {d0} to {d1} KiB (more than {percent} %)"
    );
    assert!(
        (w1 as f64) <= w0 as f64 * (1.0 + percent / 100.0),
        "the engine worker grew from {w0} to {w1} KiB (more than {percent} %)"
    );
}

#[test]
fn resident_memory_stays_flat_over_a_short_run_of_turns() {
    let _one = one_at_a_time();
    // A short run: the bound is loose (a few turns move the allocator's high-water mark);
    // the 500-turn run in scripts/soak.sh holds it to 5 %.
    assert_drift(rss_over_turns(4, 12), 15.0);
}

/// 500 turns in a row: `scripts/soak.sh` runs it (`cargo test --test load -- --ignored`).
#[test]
#[ignore = "long (500 turns): run by scripts/soak.sh"]
fn resident_memory_drifts_at_most_5_percent_over_500_turns() {
    let turns = std::env::var("TUTORD_SOAK_TURNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    assert_drift(rss_over_turns(20, turns), 5.0);
}
