//! How `tutorctl` prints things: a table for people, JSON for scripts.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use zbus::{OwnedVariant, Variant};

/// The properties `tutorctl status` shows.
#[derive(Debug, Clone)]
pub struct StatusView {
    pub state: String,
    pub status_text: String,
    pub progress: f64,
    pub board: String,
    pub version: String,
    pub last_error: String,
}

/// The human table of `tutorctl status`.
pub fn status_table(s: &StatusView) -> String {
    let last_error = if s.last_error.is_empty() {
        "-"
    } else {
        &s.last_error
    };
    let rows = [
        ("State", s.state.clone()),
        ("Status", s.status_text.clone()),
        ("Progress", format!("{:.0} %", s.progress * 100.0)),
        ("Board", s.board.clone()),
        ("Version", s.version.clone()),
        ("Last error", last_error.to_string()),
    ];
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{:>10}: {v}", k);
    }
    out
}

/// Diagnostics as a JSON object with sorted keys.
pub fn diagnostics_json(d: &HashMap<String, OwnedVariant>) -> serde_json::Value {
    let sorted: BTreeMap<_, _> = d.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
    serde_json::Value::Object(sorted.into_iter().collect())
}

/// Diagnostics as `key: value` lines, sorted.
pub fn diagnostics_text(d: &HashMap<String, OwnedVariant>) -> String {
    let sorted: BTreeMap<_, _> = d.iter().collect();
    let width = sorted.keys().map(|k| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in sorted {
        let value = match to_json(v) {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        let _ = writeln!(out, "{k:>width$}: {value}");
    }
    out
}

/// The figures of an answer, one per line, the answer text itself left out.
pub fn answer_stats(stats: &HashMap<String, OwnedVariant>) -> String {
    let mut shown: HashMap<String, OwnedVariant> = HashMap::new();
    for (k, v) in stats {
        if k != "answer" {
            shown.insert(k.clone(), v.try_clone().expect("plain values clone"));
        }
    }
    diagnostics_text(&shown)
}

/// A value as text: strings bare, the rest as JSON.
pub fn variant_text(v: &Variant<'_>) -> String {
    match to_json(v) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

fn to_json(v: &Variant<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Variant::Bool(b) => J::Bool(*b),
        Variant::U8(n) => J::from(*n),
        Variant::I16(n) => J::from(*n),
        Variant::U16(n) => J::from(*n),
        Variant::I32(n) => J::from(*n),
        Variant::U32(n) => J::from(*n),
        Variant::I64(n) => J::from(*n),
        Variant::U64(n) => J::from(*n),
        Variant::F64(n) => J::from(*n),
        Variant::Str(s) => J::String(s.to_string()),
        Variant::Variant(inner) => to_json(inner),
        // Diagnostics hold only the basic types above; show anything newer readably.
        other => J::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::Str;

    #[test]
    fn status_table_shows_every_row() {
        let t = status_table(&StatusView {
            state: "ready".into(),
            status_text: "Ready".into(),
            progress: 1.0,
            board: "generic".into(),
            version: "0.1.0".into(),
            last_error: String::new(),
        });
        assert_eq!(
            t,
            "     State: ready\n    Status: Ready\n  Progress: 100 %\n     Board: generic\n   Version: 0.1.0\nLast error: -\n"
        );
    }

    #[test]
    fn diagnostics_json_keeps_types() {
        let mut d = HashMap::new();
        d.insert("pid".to_string(), OwnedVariant::from(42u32));
        d.insert("board".to_string(), OwnedVariant::from(Str::from("rk3588")));
        d.insert("unclean".to_string(), OwnedVariant::from(true));
        let j = diagnostics_json(&d);
        assert_eq!(
            j.to_string(),
            r#"{"board":"rk3588","pid":42,"unclean":true}"#
        );
        assert_eq!(
            diagnostics_text(&d),
            "  board: rk3588\n    pid: 42\nunclean: true\n"
        );
    }
}
