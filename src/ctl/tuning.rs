//! `tutorctl tuning`: what tutord's tuning has in effect, from the `tuning_*` entries of
//! `Diagnostics()`.

use std::collections::HashMap;
use std::fmt::Write;

use zbus::OwnedVariant;

use super::render::variant_text;

/// Rows in the order a person reads them: (diagnostics key, label).
const ROWS: &[(&str, &str)] = &[
    ("tuning_mode", "Mode"),
    ("tuning_cpus", "CPUs"),
    ("tuning_cpus_basis", "Chosen by"),
    ("tuning_affinity", "Affinity"),
    ("tuning_stopped_units", "Stopped units"),
    ("tuning_started_units", "Started units"),
    ("tuning_governors", "Governors"),
    ("tuning_mem_freed_bytes", "Memory freed"),
    ("tuning_swap", "Swap"),
    ("tuning_throttled", "Throttled"),
    ("tuning_throttle_reasons", "Because"),
    ("tuning_thermal", "Thermal"),
    ("tuning_reconciled", "Reconciled"),
    ("tuning_would", "Would"),
    ("tuning_warnings", "Warnings"),
];

/// The table of `tutorctl tuning`; lists (an item per line of the value) get a line per item.
pub fn text(d: &HashMap<String, OwnedVariant>) -> String {
    let mut out = String::new();
    if !d.contains_key("tuning_mode") {
        return "tutord reports no tuning (an older tutord?)\n".into();
    }
    for (key, label) in ROWS {
        let Some(v) = d.get(*key) else { continue };
        let mut value = variant_text(v);
        if *key == "tuning_mem_freed_bytes" {
            let bytes: f64 = value.parse().unwrap_or(0.0);
            value = format!("{:.1} MiB (MemAvailable after − before)", bytes / 1048576.0);
        }
        if *key == "tuning_throttled" {
            value = if value == "true" { "yes" } else { "no" }.into();
        }
        if value.is_empty() {
            value = "-".into();
        }
        for (i, item) in value.lines().enumerate() {
            let label = if i == 0 { *label } else { "" };
            let _ = writeln!(out, "{label:>13}: {item}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::Str;

    #[test]
    fn table_lists_units_and_warnings_one_per_line() {
        let mut d: HashMap<String, OwnedVariant> = HashMap::new();
        let s = |v: &str| OwnedVariant::from(Str::from(v.to_string()));
        d.insert("tuning_mode".into(), s("apply"));
        d.insert("tuning_stopped_units".into(), s("a.service b.timer"));
        d.insert("tuning_warnings".into(), s("one; still one\ntwo"));
        d.insert(
            "tuning_mem_freed_bytes".into(),
            OwnedVariant::from(3_145_728i64),
        );
        d.insert("tuning_throttled".into(), OwnedVariant::from(false));
        let t = text(&d);
        assert!(t.contains("         Mode: apply\n"), "{t}");
        assert!(t.contains("Stopped units: a.service b.timer\n"), "{t}");
        assert!(
            t.contains("     Warnings: one; still one\n             : two\n"),
            "{t}"
        );
        assert!(t.contains("Memory freed: 3.0 MiB"), "{t}");
        assert!(t.contains("    Throttled: no\n"), "{t}");
        assert_eq!(
            text(&HashMap::new()),
            "tutord reports no tuning (an older tutord?)\n"
        );
    }
}
