//! An async client of org.tutord.Tutor1 for the tests: method calls, properties, and the
//! `AnswerFinished` signal a turn ends with. One copy, so every test reads the daemon alike.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use zbus::{OwnedVariant, Variant};

use super::{Bus, tutorctl};

pub const DEST: &str = "org.tutord.Tutor1";
pub const PATH: &str = "/org/tutord/Tutor1";

/// `AnswerFinished`'s stats, `Diagnostics()`, a `History()` row.
pub type Dict = HashMap<String, OwnedVariant>;

/// Calls `method` of org.tutord.Tutor1 on `conn`.
pub async fn tutor_call<B>(
    conn: &zbus::Connection,
    method: &str,
    body: &B,
) -> zbus::Result<zbus::Message>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    conn.call_method(Some(DEST), PATH, Some(DEST), method, body)
        .await
}

/// Reads property `name` of org.tutord.Tutor1.
pub async fn property(conn: &zbus::Connection, name: &str) -> OwnedVariant {
    conn.call_method(
        Some(DEST),
        PATH,
        Some("org.freedesktop.DBus.Properties"),
        "Get",
        &(DEST, name),
    )
    .await
    .unwrap_or_else(|e| panic!("Get({name}): {e}"))
    .body()
    .deserialize()
    .unwrap()
}

pub async fn diagnostics(conn: &zbus::Connection) -> Dict {
    tutor_call(conn, "Diagnostics", &())
        .await
        .unwrap()
        .body()
        .deserialize()
        .unwrap()
}

/// The newest 500 rows of `History(session, 0, 500)` (every turn of a test's session);
/// panics on an error.
pub async fn history(conn: &zbus::Connection, session: &str) -> Vec<Dict> {
    tutor_call(conn, "History", &(session, 0u32, 500u32))
        .await
        .unwrap_or_else(|e| panic!("History({session}): {e}"))
        .body()
        .deserialize()
        .unwrap()
}

/// A string value; panics on any other type.
pub fn text(v: &OwnedVariant) -> String {
    match &**v {
        Variant::Str(s) => s.to_string(),
        other => panic!("not a string: {other:?}"),
    }
}

/// A numeric value (any of the integer or double types the interface uses) as f64; panics
/// when `k` is missing or not a number.
pub fn number(d: &Dict, k: &str) -> f64 {
    match d.get(k).map(|v| &**v) {
        Some(Variant::U32(n)) => f64::from(*n),
        Some(Variant::U64(n)) => *n as f64,
        Some(Variant::I64(n)) => *n as f64,
        Some(Variant::F64(x)) => *x,
        other => panic!("{k}: {other:?} is not a number"),
    }
}

/// The engine worker's pid from `Diagnostics()` (a whole number, `t`); None while none runs.
pub fn engine_pid(d: &Dict) -> Option<u32> {
    match d.get("engine_pid").map(|v| &**v) {
        Some(Variant::U64(p)) => Some(*p as u32),
        _ => None,
    }
}

/// True when `k` is present and true.
pub fn flag(stats: &Dict, k: &str) -> bool {
    matches!(stats.get(k).map(|v| &**v), Some(Variant::Bool(true)))
}

/// The `AnswerFinished` signals, subscribed before a question is asked so none is missed.
pub async fn answer_finished_stream(conn: &zbus::Connection) -> zbus::MessageStream {
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(DEST)
        .member("AnswerFinished")
        .build()
        .unwrap();
    zbus::MessageStream::for_match_rule(rule, conn, None)
        .await
        .unwrap()
}

/// Waits for `turn`'s `AnswerFinished` until `deadline`; returns its stats.
pub async fn wait_finished(
    stream: &mut zbus::MessageStream,
    turn: &str,
    deadline: Instant,
) -> Option<Dict> {
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let m = tokio::time::timeout(left, stream.next())
            .await
            .ok()??
            .ok()?;
        let (t, stats): (String, Dict) = m.body().deserialize().ok()?;
        if t == turn {
            return Some(stats);
        }
    }
}

/// Asks `question` (with `new_session`) and waits at most `within` for its answer; returns
/// the turn id and the stats. Panics when Ask fails or no answer comes.
pub async fn ask_and_wait(
    conn: &zbus::Connection,
    question: &str,
    new_session: bool,
    within: Duration,
) -> (String, Dict) {
    let mut finished = answer_finished_stream(conn).await;
    let mut opts: HashMap<&str, Variant<'_>> = HashMap::new();
    if new_session {
        opts.insert("new_session", Variant::from(true));
    }
    let turn: String = tutor_call(conn, "Ask", &(question, opts))
        .await
        .unwrap_or_else(|e| panic!("Ask({question:?}): {e}"))
        .body()
        .deserialize()
        .unwrap();
    let stats = wait_finished(&mut finished, &turn, Instant::now() + within)
        .await
        .unwrap_or_else(|| panic!("{turn} ({question:?}): no AnswerFinished within {within:?}"));
    (turn, stats)
}

/// `tutorctl listen --wav WAV --out OUT`, once speech recognition has loaded (it loads beside
/// the LLM, and a spoken question meanwhile gets NotReady "still loading"): at most 30 s.
pub fn listen_when_ready(bus: &Bus, wav: &Path, out: &Path) -> Output {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let o = tutorctl(
            bus,
            &[
                "listen",
                "--wav",
                wav.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        let loading = String::from_utf8_lossy(&o.stderr).contains("still loading");
        if !loading || Instant::now() > end {
            return o;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
