//! Faults, with the real daemon, a real dbus-daemon, real SQLite and the real small model
//! (SmolLM2-135M): tutord killed with SIGKILL at random moments during turns, a full state
//! directory, an unreadable config drop-in, and a hung engine that must stop the watchdog
//! pings. The same hang under real systemd (the watchdog restarting tutord) is in the nspawn
//! tier (tests/nspawn/watchdog.sh); so is the tuning restore after kill -9
//! (tests/nspawn/tuning.sh), which is not repeated here.
//!
//! `TUTORD_FAULTS_SEED=<n>` replays the kill moments of a run (the seed is printed).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use zbus::{OwnedVariant, Variant};

const READY: Duration = Duration::from_secs(60);

/// A turn the client saw finish: it must be in History after any crash.
struct Seen {
    session: String,
    turn: String,
    question: String,
    answer: String,
}

/// Every seen turn is in its session's History with its question and answer.
async fn check_history(conn: &zbus::Connection, seen: &[Seen]) {
    let mut by_session: HashMap<&str, Vec<HashMap<String, OwnedVariant>>> = HashMap::new();
    for s in seen {
        if !by_session.contains_key(s.session.as_str()) {
            let rows = history(conn, &s.session).await;
            by_session.insert(&s.session, rows);
        }
        // The turn id, the question and the answer, all three as the client saw them.
        let found = by_session[s.session.as_str()].iter().any(|r| {
            r.get("question").map(text).as_deref() == Some(s.question.as_str())
                && r.get("turn_id").map(text).as_deref() == Some(s.turn.as_str())
                && r.get("answer").map(text).as_deref() == Some(s.answer.as_str())
        });
        assert!(
            found,
            "{} ({:?}, answer {:?}) finished before the kill but is not in History({})",
            s.turn, s.question, s.answer, s.session
        );
    }
}

#[test]
fn kill_9_at_random_moments_loses_no_finished_turn_and_keeps_the_database_sound() {
    const KILLS: usize = 32;
    let mut rng = Rng::from_env("TUTORD_FAULTS_SEED");
    engine_binary();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = small_model_config(cfg_dir.path(), 8, "");
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start_with_config(&bus, Some(&notify.path), &cfg, &[]);
    let mut seen: Vec<Seen> = Vec::new();
    let mut engine_pids: Vec<u32> = Vec::new();
    let (mut mid_turn, mut while_booting, mut between_turns) = (0, 0, 0);
    let mut asked = 0usize;
    let started = Instant::now();
    for cycle in 0..KILLS {
        // One kill in six lands during the boot (store open, migration, boot record, load).
        if rng.chance(1, 6) {
            std::thread::sleep(Duration::from_millis(rng.below(400)));
            if !notify.seen("READY=1") {
                while_booting += 1;
            }
        } else {
            assert!(
                notify.wait_for("READY=1", READY),
                "cycle {cycle}: no READY=1: {}",
                daemon.stderr()
            );
            let _log = daemon.drain_stderr();
            // 0, 1 or 2 answers are seen whole, then the kill comes at a random moment of
            // the next stretch, scaled by how long an answer took: a debug build answers in
            // 1.8 s on a quiet machine and in 5 s or more on a busy one.
            let whole = rng.below(3) as usize;
            let fraction = rng.below(1200) as f64 / 1000.0;
            let in_turn = rt().block_on(async {
                let conn = connect_to(&bus).await;
                check_history(&conn, &seen).await;
                let d: HashMap<String, OwnedVariant> = tutor_call(&conn, "Diagnostics", &())
                    .await
                    .unwrap()
                    .body()
                    .deserialize()
                    .unwrap();
                // Diagnostics gives whole numbers as t (u64).
                if let Some(Variant::U64(pid)) = d.get("engine_pid").map(|v| &**v) {
                    engine_pids.push(*pid as u32);
                }
                let mut finished = answer_finished_stream(&conn).await;
                let mut typical = Duration::from_secs(2);
                let mut deadline = Instant::now() + 2 * READY;
                for i in 0.. {
                    if i == whole {
                        deadline = Instant::now() + typical.mul_f64(fraction);
                    }
                    asked += 1;
                    let question = format!("Question {asked}: name a colour.");
                    let mut opts: HashMap<&str, Variant<'_>> = HashMap::new();
                    // A new session per cycle: the resumed conversation would otherwise grow
                    // with every cycle, and its prompt with it.
                    opts.insert("new_session", Variant::from(i == 0));
                    let asked_at = Instant::now();
                    let reply = match tokio::time::timeout_at(
                        deadline.into(),
                        tutor_call(&conn, "Ask", &(question.as_str(), opts)),
                    )
                    .await
                    {
                        Err(_) => return true, // killed while Ask was in flight
                        Ok(r) => r.unwrap_or_else(|e| panic!("Ask: {e}")),
                    };
                    let turn: String = reply.body().deserialize().unwrap();
                    let session = text(&property(&conn, "Session").await);
                    match wait_finished(&mut finished, &turn, deadline).await {
                        None if i < whole => panic!("{turn} did not finish in {:?}", 2 * READY),
                        None => return true,
                        Some(stats) => {
                            assert!(flag(&stats, "ok"), "{turn}: {stats:?}");
                            typical = asked_at.elapsed();
                            seen.push(Seen {
                                session,
                                turn,
                                question,
                                answer: text(&stats["answer"]),
                            });
                        }
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                false
            });
            if in_turn {
                mid_turn += 1;
            } else {
                between_turns += 1;
            }
        }
        daemon.kill9();
        let check = integrity_check(daemon.state_dir.path());
        assert_eq!(check, "ok", "cycle {cycle}: integrity_check after kill -9");
        notify = NotifySocket::new();
        daemon = daemon.kill9_and_restart(&bus, Some(&notify.path), &cfg, &[]);
    }
    assert!(
        notify.wait_for("READY=1", READY),
        "no READY=1 after the last kill: {}",
        daemon.stderr()
    );
    rt().block_on(async {
        let conn = connect_to(&bus).await;
        check_history(&conn, &seen).await;
        let d: HashMap<String, OwnedVariant> = tutor_call(&conn, "Diagnostics", &())
            .await
            .unwrap()
            .body()
            .deserialize()
            .unwrap();
        assert!(flag(&d, "previous_boot_unclean"), "{d:?}");
    });
    // The workers of killed daemons end by themselves (their socket closes); none is left.
    let orphans = |pids: &[u32]| -> Vec<u32> {
        pids.iter()
            .copied()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("tutord-engine"))
            })
            .collect()
    };
    let end = Instant::now() + Duration::from_secs(10);
    while !orphans(&engine_pids).is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        orphans(&engine_pids),
        Vec::<u32>::new(),
        "engine workers left running"
    );
    assert!(seen.len() >= 10, "only {} turns finished", seen.len());
    assert!(engine_pids.len() >= KILLS / 2, "{engine_pids:?}");
    eprintln!(
        "kill -9: {KILLS} kills survived ({mid_turn} during a turn, {between_turns} between \
         turns, {while_booting} while booting) in {:.1} s; {asked} questions asked, {} \
         finished turns all in History; integrity_check ok after every kill",
        started.elapsed().as_secs_f64(),
        seen.len()
    );
}

/// Mounts a tmpfs of `size` on `dir`; false (the caller skips) when this is not possible.
fn mount_tmpfs(dir: &Path, size: &str) -> Result<(), String> {
    if effective_uid() != Some(0) {
        return Err("needs root to mount a small tmpfs as the state directory".into());
    }
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
        .arg("tutord-full-disk")
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Unmounts on drop, so that a failing test leaves no mount behind.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes zeros into `path` until the file system is full.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // The last partial blocks: byte by byte is too slow, halve instead.
    let mut size = block.len() / 2;
    while size > 0 {
        match f.write(&block[..size]) {
            Ok(n) if n > 0 => written += n as u64,
            _ => size /= 2,
        }
    }
    written
}

#[test]
fn a_full_state_directory_still_answers_reports_the_store_error_and_corrupts_nothing() {
    engine_binary();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = small_model_config(cfg_dir.path(), 12, "");
    let state = tempfile::tempdir().unwrap();
    if let Err(why) = mount_tmpfs(state.path(), "8m") {
        skip("a_full_state_directory_still_answers", &why);
        return;
    }
    let _mounted = Mounted(state.path().to_path_buf());
    let state_path = state.path().to_path_buf();
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start_in_dir(&bus, Some(&notify.path), &cfg, state, &[]);
    assert!(notify.wait_for("READY=1", READY), "{}", daemon.stderr());
    let log = daemon.drain_stderr();
    let filler = state_path.join("filler");
    rt().block_on(async {
        let conn = connect_to(&bus).await;
        // A turn with room on the disk: stored.
        let (before_turn, before) =
            ask_and_wait(&conn, "Before: name a fruit.", false, READY).await;
        assert!(flag(&before, "ok"), "{before:?}");
        let session = text(&property(&conn, "Session").await);

        let filled = fill(&filler);
        eprintln!("filled the state directory with {filled} bytes");
        // Answers go on with the disk full.
        let mut answered = 0;
        for i in 0..3 {
            let q = format!("Full {i}: name an animal.");
            let (_, stats) = ask_and_wait(&conn, &q, false, READY).await;
            assert!(flag(&stats, "ok"), "{stats:?}");
            assert!(!text(&stats["answer"]).is_empty());
            answered += 1;
        }
        // A new session needs a row: the store's error is named on the bus.
        let err = tutor_call(&conn, "StartSession", &("geography",))
            .await
            .expect_err("StartSession with the disk full");
        let name = error_name(&err);
        eprintln!("StartSession with the disk full: {err}");
        assert_eq!(
            name.as_deref(),
            Some("org.tutord.Tutor1.Error.StoreFailed"),
            "{err}"
        );
        assert!(err.to_string().contains("tutord.db"), "{err}");
        // ...and nothing changed: the old session (and its conversation) goes on.
        assert_eq!(text(&property(&conn, "Session").await), session);
        // History still reads what was stored before.
        let rows = history(&conn, &session).await;
        assert!(
            rows.iter()
                .any(|r| r.get("turn_id").map(text).as_ref() == Some(&before_turn)),
            "{rows:?}"
        );
        eprintln!("{answered} answers with the disk full");
    });
    // The journal (stderr here) names the failure and the file.
    let text_log = log.text();
    let store_lines: Vec<&str> = text_log
        .lines()
        .filter(|l| l.contains("cannot store") && l.contains("tutord.db"))
        .collect();
    assert!(
        !store_lines.is_empty(),
        "no 'cannot store' line naming tutord.db in:\n{text_log}"
    );
    eprintln!("logged: {}", store_lines[0]);

    if let Some(st) = daemon.child.try_wait().unwrap() {
        panic!("tutord exited with the disk full ({st:?}):\n{}", log.text());
    }
    // Free the space, stop, check the file, start again: it serves and stores.
    std::fs::remove_file(&filler).unwrap();
    let (status, _) = daemon
        .signal_and_wait("TERM", Duration::from_secs(20))
        .expect("tutord stops on SIGTERM with a full disk behind it");
    assert!(status.success(), "{status:?}");
    assert_eq!(integrity_check(&state_path), "ok");
    let state = std::mem::replace(&mut daemon.state_dir, tempfile::tempdir().unwrap());
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start_in_dir(&bus, Some(&notify.path), &cfg, state, &[]);
    assert!(notify.wait_for("READY=1", READY), "{}", daemon.stderr());
    rt().block_on(async {
        let conn = connect_to(&bus).await;
        let (_, stats) = ask_and_wait(&conn, "After: name a tree.", false, READY).await;
        let session = text(&property(&conn, "Session").await);
        let rows = history(&conn, &session).await;
        assert!(
            rows.iter()
                .any(|r| r.get("answer").map(text) == Some(text(&stats["answer"]))),
            "the answer after freeing space is stored: {rows:?}"
        );
    });
    drop(daemon);
}

/// A start on a full disk (issue 17, item 5): the boot record cannot be written. tutord used
/// to exit 73, be restarted every 2 s and stay down at systemd's start limit. Now it serves
/// from a store in memory: READY, State "degraded" and LastError saying why, questions
/// answered; and the database on disk is left as it was.
#[test]
fn a_start_on_a_full_disk_answers_without_storing_instead_of_exiting() {
    engine_binary();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = small_model_config(cfg_dir.path(), 12, "");
    let state = tempfile::tempdir().unwrap();
    if let Err(why) = mount_tmpfs(state.path(), "8m") {
        skip("a_start_on_a_full_disk_answers_without_storing", &why);
        return;
    }
    let _mounted = Mounted(state.path().to_path_buf());
    let state_path = state.path().to_path_buf();
    let bus = Bus::open();
    // A first run makes the database, then stops cleanly.
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start_in_dir(&bus, Some(&notify.path), &cfg, state, &[]);
    assert!(notify.wait_for("READY=1", READY), "{}", daemon.stderr());
    let (status, _) = daemon
        .signal_and_wait("TERM", Duration::from_secs(20))
        .expect("the first run stops");
    assert!(status.success(), "{status:?}");
    let filled = fill(&state_path.join("filler"));
    eprintln!("filled the state directory with {filled} bytes");

    let state = std::mem::replace(&mut daemon.state_dir, tempfile::tempdir().unwrap());
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start_in_dir(&bus, Some(&notify.path), &cfg, state, &[]);
    let ready = notify.wait_for("READY=1", READY);
    let log = daemon.drain_stderr();
    if let Some(st) = daemon.child.try_wait().unwrap() {
        panic!("tutord exited on a full disk ({st:?}):\n{}", log.text());
    }
    assert!(ready, "no READY=1 on a full disk:\n{}", log.text());
    rt().block_on(async {
        let conn = connect_to(&bus).await;
        let state = text(&property(&conn, "State").await);
        let last_error = text(&property(&conn, "LastError").await);
        let status_text = text(&property(&conn, "StatusText").await);
        eprintln!("State {state}, StatusText {status_text:?}, LastError {last_error:?}");
        assert_eq!(state, "degraded");
        assert!(
            last_error.contains("answering without storing") && last_error.contains("tutord.db"),
            "{last_error}"
        );
        assert!(status_text.contains("without storing"), "{status_text}");
        let (_, stats) = ask_and_wait(&conn, "Full at start: name a fruit.", false, READY).await;
        assert!(flag(&stats, "ok"), "{stats:?}");
        assert!(!text(&stats["answer"]).is_empty());
    });
    let text_log = log.text();
    assert!(
        text_log.contains("answering without storing until the next start"),
        "the journal does not say it: {text_log}"
    );
    let (status, _) = daemon
        .signal_and_wait("TERM", Duration::from_secs(20))
        .expect("tutord stops on SIGTERM on a full disk");
    assert!(status.success(), "{status:?}");
    std::fs::remove_file(state_path.join("filler")).unwrap();
    assert_eq!(integrity_check(&state_path), "ok");
}

#[test]
fn a_hung_engine_fails_its_turn_and_stops_the_watchdog_pings() {
    engine_binary();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = small_model_config(cfg_dir.path(), 8, "");
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    // WATCHDOG_USEC = 2 s: a ping every second while all is well.
    let mut daemon = Daemon::start_with_config(
        &bus,
        Some(&notify.path),
        &cfg,
        &[
            ("WATCHDOG_USEC", "2000000"),
            ("TUTORD_TEST_FAULT", "hang-engine"),
        ],
    );
    let started = Instant::now();
    assert!(notify.wait_for("READY=1", READY), "{}", daemon.stderr());
    let log = daemon.drain_stderr();
    assert!(
        notify.wait_for("WATCHDOG=1", Duration::from_secs(5)),
        "pings while the first worker is within its deadline: {:?}",
        notify.lines()
    );
    // The turn in the hung worker fails when the supervisor kills the worker (~10 s).
    rt().block_on(async {
        let conn = connect_to(&bus).await;
        let (_, stats) = ask_and_wait(&conn, "Name a colour.", false, READY).await;
        assert!(!flag(&stats, "ok"), "{stats:?}");
        assert!(text(&stats["error"]).contains("no heartbeat"), "{stats:?}");
    });
    // The replacement worker hangs too: the pings stop for good.
    let count = |n: &NotifySocket| n.lines().iter().filter(|l| *l == "WATCHDOG=1").count();
    let mut last = (count(&notify), Instant::now());
    let stopped = loop {
        notify.wait_for("NOT-A-LINE", Duration::from_millis(500));
        let now = count(&notify);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(8) {
            break true;
        }
        if started.elapsed() > Duration::from_secs(90) {
            break false;
        }
    };
    let text_log = log.text();
    assert!(
        stopped,
        "the watchdog pings went on: {} pings in {:?}\n{text_log}",
        last.0,
        started.elapsed()
    );
    assert!(
        text_log.contains("liveness check failed, not pinging the watchdog"),
        "{text_log}"
    );
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "tutord itself must not exit: the watchdog's owner (systemd) restarts it"
    );
    eprintln!(
        "hung engine: {} watchdog pings, then none from {:.1} s after the start",
        last.0,
        last.1.duration_since(started).as_secs_f64()
    );
}

#[test]
fn an_unreadable_config_dropin_is_named_and_refused_with_ex_config() {
    // config_cli.rs covers drop-ins with bad values; these cannot be read at all. An
    // unreadable file is refused like an invalid one (exit 78, which the unit does not
    // restart): running on without an administrator's setting could undo what it was for.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tutord.toml");
    std::fs::write(&cfg, "").unwrap();
    let dropins = dir.path().join("tutord.toml.d");
    std::fs::create_dir(&dropins).unwrap();
    type Make<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, Make, &str); 3] = [
        (
            "30-gone.toml",
            &|p| std::os::unix::fs::symlink("/nonexistent/tutord-gone.toml", p).unwrap(),
            "No such file or directory",
        ),
        (
            "40-dir.toml",
            &|p| std::fs::create_dir(p).unwrap(),
            "Is a directory",
        ),
        (
            "50-binary.toml",
            &|p| std::fs::write(p, b"\xff\xfe[daemon]\n").unwrap(),
            "valid UTF-8",
        ),
    ];
    for (name, make, why) in cases {
        let path = dropins.join(name);
        make(&path);
        let out = std::process::Command::new(TUTORD)
            .arg("--bus")
            .arg("unix:path=/nonexistent/bus")
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--config")
            .arg(&cfg)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{}: cannot read", path.display())) && stderr.contains(why),
            "{name}: {stderr}"
        );
        if path.is_dir() {
            std::fs::remove_dir(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

#[test]
fn a_missing_voice_is_named_and_the_answer_is_spoken_with_espeak() {
    // tests/tts.rs covers the fallback in the library; this is the daemon: it starts, names
    // the missing file, and a spoken question gets a spoken answer all the same.
    engine_binary();
    small_model();
    fetch("whisper-tiny.en", "ggml-tiny.en.bin");
    let jfk = jfk();
    let cfg_dir = tempfile::tempdir().unwrap();
    let gone = cfg_dir.path().join("en_US-nobody-medium.onnx");
    let cfg = small_model_config(
        cfg_dir.path(),
        12,
        &format!(
            "[voice]\nstt_threads = 2\ntts_voice = \"{}\"\n",
            gone.display()
        ),
    );
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start_with_config(&bus, Some(&notify.path), &cfg, &[]);
    assert!(notify.wait_for("READY=1", READY), "{}", daemon.stderr());
    let log = daemon.drain_stderr();
    let answer_wav = cfg_dir.path().join("answer.wav");
    let out = listen_when_ready(&bus, &jfk, &answer_wav);
    assert!(out.status.success(), "{out:?}\n{}", log.text());
    let spoken = std::fs::metadata(&answer_wav).map_or(0, |m| m.len());
    assert!(spoken > 10_000, "the answer was not spoken: {spoken} bytes");
    let text_log = log.text();
    let warning = text_log
        .lines()
        .find(|l| l.contains(&*gone.to_string_lossy()) && l.contains("espeak-ng"))
        .unwrap_or_else(|| {
            panic!(
                "no warning naming {} and espeak-ng:\n{text_log}",
                gone.display()
            )
        });
    eprintln!("missing voice: {warning}");
    assert!(daemon.child.try_wait().unwrap().is_none());
}

#[test]
fn a_worker_hanging_while_loading_is_restarted_not_taken_for_a_bad_model() {
    // Before the fix a worker killed for a missed heartbeat during the load counted as a
    // load failure: the engine gave up for good after one stalled start. Now it is
    // restarted like any hung worker, and the boot stops feeding the watchdog once two in a
    // row hung.
    engine_binary();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = small_model_config(cfg_dir.path(), 8, "");
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start_with_config(
        &bus,
        Some(&notify.path),
        &cfg,
        &[
            ("WATCHDOG_USEC", "2000000"),
            ("TUTORD_TEST_FAULT", "hang-load"),
        ],
    );
    let log = daemon.drain_stderr();
    let started = Instant::now();
    let end = started + Duration::from_secs(60);
    while log.text().matches("no heartbeat for 10s").count() < 2 && Instant::now() < end {
        // Read the notifications as systemd would: a full datagram queue blocks the sender.
        notify.wait_for("NOT-A-LINE", Duration::from_millis(200));
    }
    let text_log = log.text();
    assert_eq!(
        text_log.matches("no heartbeat for 10s").count(),
        2,
        "two hung loads, each killed and restarted:\n{text_log}"
    );
    assert!(
        !text_log.contains("cannot load the model"),
        "a hang is not a bad model file:\n{text_log}"
    );
    // The boot loop fed the watchdog while the first workers were alive; after the second
    // hang it stops.
    notify.wait_for("NOT-A-LINE", Duration::from_millis(100));
    let before = notify.lines().iter().filter(|l| *l == "WATCHDOG=1").count();
    assert!(before >= 1, "{:?}", notify.lines());
    notify.wait_for("NOT-A-LINE", Duration::from_secs(12));
    let after = notify.lines().iter().filter(|l| *l == "WATCHDOG=1").count();
    assert_eq!(
        before,
        after,
        "pings after two hung loads: {:?}",
        notify.lines()
    );
    assert!(!notify.seen("READY=1"));
    assert!(daemon.child.try_wait().unwrap().is_none());
    eprintln!(
        "hung load: two workers killed and restarted, {before} boot pings, none after {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_model_that_kills_the_worker_on_two_answers_in_a_row_is_given_up_with_the_reason() {
    // Issue 16: a GGUF that makes llama.cpp abort while answering (a C++ exception Rust
    // cannot catch) killed the worker on every question, and each restart reloaded it for the
    // next question to kill again. `crash-generate` aborts the worker whenever it is asked to
    // answer, as such a model does.
    engine_binary();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = small_model_config(cfg_dir.path(), 8, "");
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start_with_config(
        &bus,
        Some(&notify.path),
        &cfg,
        &[
            ("TUTORD_TEST_FAULT", "crash-generate"),
            // Without a fallback the daemon stays without a tutor, so the reason stays in
            // view (the fallback itself is tests/model_fallback.rs's).
            ("TUTORD_LLM__FALLBACK", "false"),
        ],
    );
    assert!(notify.wait_for("READY=1", READY), "{}", daemon.stderr());
    let log = daemon.drain_stderr();
    const GIVEN_UP: &str = "crashed the engine worker on 2 answers in a row";
    rt().block_on(async {
        let conn = connect_to(&bus).await;
        let (_, first) = ask_and_wait(&conn, "Name a colour.", false, READY).await;
        assert!(!flag(&first, "ok"), "{first:?}");
        let error = text(&first["error"]);
        assert!(
            error.contains("the engine worker died") && error.contains("signal 6"),
            "{error}"
        );
        // One death is restarted like any other: the next question waits for the reloaded
        // model, which kills the worker again.
        let (_, second) = ask_and_wait(&conn, "Name a fruit.", false, READY).await;
        assert!(!flag(&second, "ok"), "{second:?}");
        // It fails with the reason the model is given up, as LastError then says.
        assert!(text(&second["error"]).contains(GIVEN_UP), "{second:?}");
        let end = Instant::now() + Duration::from_secs(10);
        while !text(&property(&conn, "LastError").await).contains(GIVEN_UP) {
            assert!(
                Instant::now() < end,
                "LastError: {:?}",
                property(&conn, "LastError").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let last_error = text(&property(&conn, "LastError").await);
        eprintln!("LastError: {last_error}");
        assert!(last_error.contains(SMALL_FILE), "{last_error}");
        assert_eq!(text(&property(&conn, "State").await), "degraded");
        let d = diagnostics(&conn).await;
        assert_eq!(text(&d["engine"]), "failed", "{d:?}");
        assert_eq!(text(&d["engine_given_up"]), "crashed answering", "{d:?}");
        // A later question is refused at once with the reason, not left waiting.
        let asked = Instant::now();
        let opts: HashMap<&str, Variant<'_>> = HashMap::new();
        let err = tutor_call(&conn, "Ask", &("Name a tree.", opts))
            .await
            .expect_err("Ask after the model was given up");
        assert_eq!(
            error_name(&err).as_deref(),
            Some("org.tutord.Tutor1.Error.NotReady"),
            "{err}"
        );
        assert!(err.to_string().contains(GIVEN_UP), "{err}");
        assert!(asked.elapsed() < Duration::from_secs(5));
    });
    let text_log = log.text();
    assert_eq!(
        text_log.matches("TUTORD_TEST_FAULT: aborting").count(),
        2,
        "two workers aborted, no third was started for another question:\n{text_log}"
    );
    assert!(
        text_log
            .lines()
            .any(|l| l.contains(GIVEN_UP) && l.contains("given up")),
        "{text_log}"
    );
    assert!(daemon.child.try_wait().unwrap().is_none());
}
