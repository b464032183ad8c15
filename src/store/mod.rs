//! The SQLite store in the state directory: boot records, sessions and their turns (kept
//! as `[history]` says), benchmark results, calibration and the tuning journal. WAL mode,
//! so a reader (a person with `sqlite3`) never blocks the daemon and a power cut loses at
//! most the transaction in flight.
//!
//! A database SQLite cannot read is moved aside as `tutord.db.corrupt-<unix time>` (with its
//! `-wal`/`-shm` files) and a new one is started: the appliance must come up, and the old
//! file stays for a person to rescue. It is never deleted.

mod bench;
mod calibration;
mod retention;
mod schema;
mod sessions;
mod tuning;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OptionalExtension};

pub use calibration::CalibrationSample;
pub use retention::{Pruned, Retention};
pub use schema::latest as latest_schema_version;
pub use sessions::{SessionRow, TurnEnd, TurnRow};
pub use tuning::TuningRow;

/// The database's file name inside the state directory.
pub const DB_FILE: &str = "tutord.db";

/// What went wrong with the store; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot move the unreadable database {path} aside: {source}")]
    MoveAside {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this tutord knows ({supported}); \
         it was written by a newer version: install that, or move the file away"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("database {path}: migration to schema version {version} failed: {source}")]
    Migrate {
        path: PathBuf,
        version: u32,
        source: rusqlite::Error,
    },
    #[error("database {path}: {what}: {source}")]
    Query {
        path: PathBuf,
        what: &'static str,
        source: rusqlite::Error,
    },
}

/// An open, migrated database with this start's boot record.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    boot_id: i64,
    recovered_from: Option<PathBuf>,
    previous_boot_unclean: bool,
}

impl Store {
    /// Opens (creating or migrating) `<state_dir>/tutord.db` and records this boot.
    pub fn open(state_dir: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::CreateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(DB_FILE);
        // A file that is not SQLite at all is moved aside before SQLite touches it: SQLite
        // would otherwise discard a `-wal` file it cannot use when the connection closes.
        let opened = if has_foreign_header(&path) {
            Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB),
                Some("the file does not start with the SQLite header".into()),
            ))
        } else {
            open_checked(&path, busy_timeout)
        };
        let (conn, recovered_from) = match opened {
            Ok(conn) => (conn, None),
            Err(e) if is_corruption(&e) => {
                let aside = move_aside(&path)?;
                tracing::error!(
                    message_id = crate::events::STORE_RECOVERED,
                    database = %path.display(),
                    moved_to = %aside.display(),
                    "database {} is unreadable ({e}); moved it to {} and started a new one",
                    path.display(),
                    aside.display()
                );
                let conn =
                    open_checked(&path, busy_timeout).map_err(|source| StoreError::Open {
                        path: path.clone(),
                        source,
                    })?;
                (conn, Some(aside))
            }
            Err(source) => return Err(StoreError::Open { path, source }),
        };
        migrate(&conn, &path)?;
        let previous_boot_unclean = conn
            .query_row(
                "SELECT clean_stop FROM boots ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get::<_, bool>(0),
            )
            .optional()
            .map_err(|source| query_err(&path, "reading the last boot", source))?
            .is_some_and(|clean| !clean);
        let boot_id = record_boot(&conn, &path)?;
        Ok(Self {
            conn,
            path,
            boot_id,
            recovered_from,
            previous_boot_unclean,
        })
    }

    /// A store in memory, for a start whose state directory cannot be written (a full
    /// disk): the tutor answers, and nothing of this run is kept. Same schema, same calls.
    pub fn in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(|source| query_err(&path, "enabling foreign keys", source))?;
        migrate(&conn, &path)?;
        let boot_id = record_boot(&conn, &path)?;
        Ok(Self {
            conn,
            path,
            boot_id,
            recovered_from: None,
            previous_boot_unclean: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This start's row in `boots`.
    pub fn boot_id(&self) -> i64 {
        self.boot_id
    }

    /// Where an unreadable database was moved this start, if it was.
    pub fn recovered_from(&self) -> Option<&Path> {
        self.recovered_from.as_deref()
    }

    /// Whether the previous run ended without a clean stop (crash, kill -9, power cut).
    pub fn previous_boot_unclean(&self) -> bool {
        self.previous_boot_unclean
    }

    pub fn schema_version(&self) -> Result<u32, StoreError> {
        user_version(&self.conn)
            .map_err(|source| query_err(&self.path, "reading the schema version", source))
    }

    pub fn boots_total(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM boots", [], |r| r.get(0))
            .map_err(|source| query_err(&self.path, "counting boots", source))
    }

    pub fn record_ready(&self) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE boots SET ready_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                [self.boot_id],
            )
            .map(drop)
            .map_err(|source| query_err(&self.path, "recording ready", source))
    }

    /// Marks this boot as cleanly stopped; the next start reads it to spot crashes.
    pub fn record_clean_stop(&self) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE boots SET stopped_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
                 clean_stop = 1 WHERE id = ?1",
                [self.boot_id],
            )
            .map(drop)
            .map_err(|source| query_err(&self.path, "recording the stop", source))
    }
}

fn query_err(path: &Path, what: &'static str, source: rusqlite::Error) -> StoreError {
    StoreError::Query {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// Whether `path` exists, is not empty, and does not begin with SQLite's magic string.
fn has_foreign_header(path: &Path) -> bool {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = Vec::with_capacity(16);
    if f.take(16).read_to_end(&mut head).is_err() || head.is_empty() {
        return false;
    }
    // SQLite writes the whole 100-byte header at once, so a short file is not a database.
    head.as_slice() != b"SQLite format 3\0"
}

/// Opens the file and proves SQLite can read it: a garbage file only fails on first use.
/// Records this run in `boots`; its id marks the run's clean stop later.
fn record_boot(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO boots (version, pid) VALUES (?1, ?2)",
        (crate::VERSION, std::process::id()),
    )
    .map_err(|source| query_err(path, "recording this boot", source))?;
    Ok(conn.last_insert_rowid())
}

fn open_checked(path: &Path, busy_timeout: Duration) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(database = %path.display(), "SQLite refused WAL mode (got {mode})");
    }
    // NORMAL is durable in WAL mode except for the last transactions before a power cut,
    // which is the trade-off SQLite recommends for WAL.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(format!("quick_check: {check}")),
        ));
    }
    Ok(conn)
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// Renames the database and its WAL/SHM files to `<name>.corrupt-<unix seconds>`.
fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut target = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!("{}.corrupt-{stamp}.{n}", path.display()));
        n += 1;
    }
    std::fs::rename(path, &target).map_err(|source| StoreError::MoveAside {
        path: path.to_path_buf(),
        source,
    })?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            let to = PathBuf::from(format!("{}{suffix}", target.display()));
            std::fs::rename(&side, &to).map_err(|source| StoreError::MoveAside {
                path: side.clone(),
                source,
            })?;
        }
    }
    Ok(target)
}

fn user_version(conn: &Connection) -> Result<u32, rusqlite::Error> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let found = user_version(conn)
        .map_err(|source| query_err(path, "reading the schema version", source))?;
    let latest = schema::latest();
    if found > latest {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: latest,
        });
    }
    for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as u32 + 1;
        let apply = || -> Result<(), rusqlite::Error> {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()
        };
        apply().map_err(|source| StoreError::Migrate {
            path: path.to_path_buf(),
            version,
            source,
        })?;
        tracing::info!(database = %path.display(), "database migrated to schema version {version}");
    }
    Ok(())
}

#[cfg(test)]
mod history_tests;
#[cfg(test)]
mod tests;
