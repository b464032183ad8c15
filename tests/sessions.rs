//! Tutoring sessions through the daemon with the real small model: every turn is in the
//! store as it happens, `History` returns it, a restart resumes the open session with its
//! conversation, and bad calls get named errors.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use zbus::OwnedVariant;

fn call<B>(bus: &Bus, method: &str, body: &B) -> Result<zbus::Message, zbus::Error>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    call_tutor(bus, method, body)
}

/// The newest page of 100 turns: every turn of these sessions.
fn history(bus: &Bus, id: &str) -> Vec<HashMap<String, OwnedVariant>> {
    call(bus, "History", &(id, 0u32, 0u32))
        .unwrap()
        .body()
        .deserialize()
        .unwrap()
}

fn session_prop(bus: &Bus) -> String {
    text(&tutor_property(bus, "Session"))
}

/// Asks through tutorctl (the UI's path); returns its output.
fn ask(bus: &Bus, q: &str) -> String {
    let out = tutorctl(bus, &["ask", q]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    small_model_config(dir, 24, "")
}

#[test]
fn turns_are_stored_and_the_open_session_is_resumed_after_a_restart() {
    engine_binary();
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = config(cfg_dir.path());
    let daemon = Daemon::start_with_config(&bus, Some(&notify.path), &cfg, &[]);
    assert!(notify.wait_for("READY=1", Duration::from_secs(60)));
    assert_eq!(
        session_prop(&bus),
        "",
        "no session before the first question"
    );

    let id: String = call(&bus, "StartSession", &("fractions",))
        .unwrap()
        .body()
        .deserialize()
        .unwrap();
    assert_eq!(session_prop(&bus), id);
    ask(&bus, "What is one half plus one quarter?");
    ask(&bus, "And minus one eighth?");
    let turns = history(&bus, &id);
    assert_eq!(turns.len(), 2, "{turns:?}");
    assert_eq!(
        text(&turns[0]["question"]),
        "What is one half plus one quarter?"
    );
    assert!(!text(&turns[1]["answer"]).is_empty());
    assert!(turns.iter().all(|t| t.contains_key("finished_at")));

    // A restart: the session is resumed with its conversation.
    let mut notify2 = NotifySocket::new();
    let _daemon = daemon.restart(&bus, Some(&notify2.path), &cfg, &[]);
    assert!(notify2.wait_for("READY=1", Duration::from_secs(60)));
    assert_eq!(session_prop(&bus), id, "resumed");
    assert_eq!(history(&bus, &id).len(), 2, "nothing lost");
    ask(&bus, "Thank you.");
    let turns = history(&bus, &id);
    assert_eq!(turns.len(), 3, "the same session goes on");
    // Turn ids go on across the restart: each names one turn for good.
    let ids: Vec<String> = turns.iter().map(|t| text(&t["turn_id"])).collect();
    assert_eq!(ids, ["turn-1", "turn-2", "turn-3"], "{turns:?}");

    // Bad calls get named errors; nothing is lost.
    let e = call(&bus, "History", &("no-such-session", 0u32, 0u32)).unwrap_err();
    assert!(e.to_string().contains("InvalidArgument"), "{e}");
    let e = call(&bus, "History", &("99999", 0u32, 0u32)).unwrap_err();
    assert!(e.to_string().contains("no session 99999"), "{e}");
    // Paged back from the newest turn; a limit over the bound is named.
    let page: Vec<HashMap<String, OwnedVariant>> =
        call(&bus, "History", &(id.as_str(), 1u32, 1u32))
            .unwrap()
            .body()
            .deserialize()
            .unwrap();
    let ids: Vec<String> = page.iter().map(|t| text(&t["turn_id"])).collect();
    assert_eq!(ids, ["turn-2"]);
    let e = call(&bus, "History", &(id.as_str(), 0u32, 501u32)).unwrap_err();
    assert!(e.to_string().contains("InvalidArgument"), "{e}");
    assert!(e.to_string().contains("at most 500"), "{e}");
    let long = "x".repeat(300);
    let e = call(&bus, "StartSession", &(long.as_str(),)).unwrap_err();
    assert!(e.to_string().contains("at most 200 bytes"), "{e}");

    call(&bus, "EndSession", &()).unwrap();
    assert_eq!(session_prop(&bus), "");
    assert_eq!(
        history(&bus, &id).len(),
        3,
        "an ended session keeps its turns"
    );
    ask(&bus, "Hello");
    let next = session_prop(&bus);
    assert!(!next.is_empty() && next != id, "a new session: {next}");
}
