//! Schema migrations. The version is SQLite's `PRAGMA user_version`; migration N (1-based)
//! takes the schema from version N-1 to N inside one transaction. Append, never edit: a
//! board in the field may be at any earlier version.

pub const MIGRATIONS: &[&str] = &[
    // 1: one row per start of the daemon, so a crash (no clean stop) is visible afterwards.
    "CREATE TABLE boots (
        id          INTEGER PRIMARY KEY,
        started_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        version     TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        ready_at    TEXT,
        stopped_at  TEXT,
        clean_stop  INTEGER NOT NULL DEFAULT 0
    );",
    // 2: benchmark runs (history; the newest with the same key is reused for a while) and the
    // planner's calibration: per board, backend and model, the smoothed measured decode time
    // with what the roofline needs to turn it back into efficiencies.
    "CREATE TABLE bench_runs (
        id            INTEGER PRIMARY KEY,
        measured_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        measured_unix INTEGER NOT NULL,
        cache_key     TEXT NOT NULL,
        result        TEXT NOT NULL
    );
    CREATE INDEX bench_runs_by_key ON bench_runs (cache_key, measured_unix);
    CREATE TABLE calibration (
        board               TEXT NOT NULL,
        backend             TEXT NOT NULL,
        model               TEXT NOT NULL,
        bytes_per_token     REAL NOT NULL,
        flops_per_token     REAL NOT NULL,
        bandwidth           REAL NOT NULL,
        compute             REAL NOT NULL,
        seconds_per_token   REAL NOT NULL,
        prefill_seconds_per_token REAL,
        samples             INTEGER NOT NULL,
        updated_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (board, backend, model)
    );",
    // 3: the tuning journal: every system change tuning makes (a unit stopped, a sysfs value
    // written), recorded before it is made, so a stop or the next start after a crash can
    // undo it. `state`: pending (about to be made) → applied → undone, or abandoned when the
    // undo cannot succeed any more (`note` says why).
    "CREATE TABLE tuning_changes (
        id          INTEGER PRIMARY KEY,
        boot_id     INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        target      TEXT NOT NULL,
        previous    TEXT NOT NULL,
        value       TEXT NOT NULL,
        state       TEXT NOT NULL DEFAULT 'pending',
        note        TEXT,
        recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at  TEXT
    );
    CREATE INDEX tuning_changes_open ON tuning_changes (state);",
    // 4: tutoring sessions and their turns. A turn's row is written when the question reaches
    // the engine and completed when the answer ends, so a power cut loses at most the answer
    // in flight; an open session (no ended_at) is resumed at the next start. `timings` holds the
    // per-stage seconds as JSON (speech end → transcript → first token → first audio).
    "CREATE TABLE sessions (
        id         INTEGER PRIMARY KEY,
        subject    TEXT NOT NULL,
        started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        ended_at   TEXT
    );
    CREATE TABLE turns (
        id                  INTEGER PRIMARY KEY,
        session_id          INTEGER NOT NULL REFERENCES sessions (id),
        boot_id             INTEGER NOT NULL,
        turn_id             TEXT NOT NULL,
        source              TEXT NOT NULL DEFAULT 'text',
        question            TEXT NOT NULL,
        answer              TEXT,
        asked_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        finished_at         TEXT,
        time_to_first_token REAL,
        tokens_per_second   REAL,
        generated_tokens    INTEGER,
        aborted             INTEGER NOT NULL DEFAULT 0,
        error               TEXT,
        timings             TEXT
    );
    CREATE INDEX turns_by_session ON turns (session_id, id);",
    // 5: the KV cache depth a calibration sample's answers decoded at (smoothed, in cells):
    // attention over the cache costs time per cached token, so the fit needs each sample's
    // own depth, not the planned one. NULL in the rows stored before.
    "ALTER TABLE calibration ADD COLUMN depth REAL;",
];

/// The version a fully migrated database has.
pub fn latest() -> u32 {
    MIGRATIONS.len() as u32
}
