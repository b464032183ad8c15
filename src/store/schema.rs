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
];

/// The version a fully migrated database has.
pub fn latest() -> u32 {
    MIGRATIONS.len() as u32
}
