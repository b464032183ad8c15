//! Journal `MESSAGE_ID`s of the key events. Each is explained in systemd/tutord.catalog, so
//! `journalctl -x -u tutord` says what happened and what to do; keep the two in step (a unit
//! test checks that every ID here has a catalog entry).
//!
//! Log them as a `message_id` field: the journald layer upper-cases field names, so it lands
//! as `MESSAGE_ID`.

/// tutord started and read its configuration.
pub const STARTED: &str = "e857ec717d554ab2be6aeb11bcf9b047";
/// tutord finished booting and serves on D-Bus (READY=1 was sent).
pub const READY: &str = "f080c398c64642f39af0abb35b8dc87b";
/// tutord got SIGTERM/SIGINT and is shutting down.
pub const STOPPING: &str = "42a46c6fbcd341fa841a8a7891c1ca65";
/// tutord finished its cleanup and exits.
pub const STOPPED: &str = "5c5cd2130f5c4169967ce837c87c46e5";
/// The configuration is invalid; tutord exits with status 78.
pub const CONFIG_INVALID: &str = "13ac16771a2d4a8f89e58090d92b7136";
/// The database was unreadable; it was moved aside and a new one started.
pub const STORE_RECOVERED: &str = "4a44fc049b2e4bf594c17595e0c7ef6f";
/// The state directory cannot be written at start (a full disk): answering without storing.
pub const STORE_UNAVAILABLE: &str = "c3f1d2a97e6b4e0a9b5d8f2e61a4c7b0";
/// The main loop failed its liveness check, so the watchdog was not pinged.
pub const WATCHDOG_SKIPPED: &str = "a4b1700ba0944a4f8fbda60ca398447b";

/// The LLM model was loaded by the engine worker.
pub const MODEL_LOADED: &str = "0c1f4e8e2b6d4a0b9d0f3c5a7e9b1d23";
/// The engine worker failed to load the model, or died.
pub const ENGINE_FAILED: &str = "7d2e5f8a1c3b4e6f8a0b2c4d6e8f0a12";

/// Tuning stopped units / pinned clocks (issue 5).
pub const TUNING_APPLIED: &str = "4f18b8b12da843b28a6b53ca70b540af";
/// Tuning's changes were undone at stop.
pub const TUNING_UNDONE: &str = "9c340615aada4e2b999589a4bdd43798";
/// A previous run's tuning changes (left by a crash) were undone at start.
pub const TUNING_RECONCILED: &str = "6ea95d00aa9b4aacab0fdc4e8e4338b3";
/// The board is throttling (thermal): answers are slower than planned.
pub const THROTTLED: &str = "dadbfa0466244fee9812b6900fd5b970";

/// The boot self-benchmark measured (or reused) the memory bandwidth and compute peaks.
pub const BENCHMARKED: &str = "81f33183ab7c44a3bbdaa986a6c83be0";
/// The planner predicted every model and chose one (or none).
pub const PLANNED: &str = "787cdaa98af248aabd9aa4681d926c6a";
/// A real answer moved the planner's calibration.
pub const CALIBRATED: &str = "0639ec9cebee4fe3baaa197b9b7fdb5f";

/// Every ID with its name, for the catalog check.
pub const ALL: &[(&str, &str)] = &[
    ("STARTED", STARTED),
    ("READY", READY),
    ("STOPPING", STOPPING),
    ("STOPPED", STOPPED),
    ("CONFIG_INVALID", CONFIG_INVALID),
    ("STORE_RECOVERED", STORE_RECOVERED),
    ("STORE_UNAVAILABLE", STORE_UNAVAILABLE),
    ("WATCHDOG_SKIPPED", WATCHDOG_SKIPPED),
    ("MODEL_LOADED", MODEL_LOADED),
    ("ENGINE_FAILED", ENGINE_FAILED),
    ("BENCHMARKED", BENCHMARKED),
    ("PLANNED", PLANNED),
    ("CALIBRATED", CALIBRATED),
    ("TUNING_APPLIED", TUNING_APPLIED),
    ("TUNING_UNDONE", TUNING_UNDONE),
    ("TUNING_RECONCILED", TUNING_RECONCILED),
    ("THROTTLED", THROTTLED),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_event_has_a_catalog_entry() {
        let catalog = include_str!("../systemd/tutord.catalog");
        for (name, id) in super::ALL {
            assert_eq!(id.len(), 32, "{name}");
            assert!(
                catalog.contains(&format!("-- {id}\n")),
                "systemd/tutord.catalog lacks an entry for {name} ({id})"
            );
        }
    }
}
