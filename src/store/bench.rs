//! Benchmark results: one JSON row per run, kept as history.

use rusqlite::OptionalExtension;

use super::{Store, StoreError, query_err};

impl Store {
    /// Stores one run's result under its cache key.
    pub fn bench_insert(
        &self,
        key: &str,
        measured_unix: i64,
        json: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO bench_runs (cache_key, measured_unix, result) VALUES (?1, ?2, ?3)",
                rusqlite::params![key, measured_unix, json],
            )
            .map(drop)
            .map_err(|source| query_err(&self.path, "storing a benchmark result", source))
    }

    /// The newest result for `key` measured after `since_unix`.
    pub fn bench_latest(&self, key: &str, since_unix: i64) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT result FROM bench_runs WHERE cache_key = ?1 AND measured_unix > ?2 \
                 ORDER BY measured_unix DESC, id DESC LIMIT 1",
                rusqlite::params![key, since_unix],
                |r| r.get(0),
            )
            .optional()
            .map_err(|source| query_err(&self.path, "reading benchmark results", source))
    }

    /// How many runs are kept, for diagnostics.
    pub fn bench_runs_total(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM bench_runs", [], |r| r.get(0))
            .map_err(|source| query_err(&self.path, "counting benchmark runs", source))
    }
}
