//! The planner's calibration: one smoothed sample per (board, backend, model).

use super::{Store, StoreError, query_err};

/// One model's smoothed measurement (the planner merges and fits them; the store keeps them).
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationSample {
    pub model: String,
    pub bytes_per_token: f64,
    pub ops_per_token: f64,
    /// The bandwidth and compute peak measured when the sample was taken.
    pub bandwidth: f64,
    pub compute: f64,
    /// Smoothed measured seconds per decoded token.
    pub seconds_per_token: f64,
    /// Smoothed measured prompt seconds per prompt token, when known.
    pub prefill_seconds_per_token: Option<f64>,
    /// Smoothed KV cache depth (cells) the answers decoded at: the prompt, the kept
    /// conversation and half the answer. None in samples stored before it was recorded
    /// (schema 5): the planner then takes its planned depth.
    pub depth: Option<f64>,
    pub count: u32,
}

type Sample = CalibrationSample;

impl Store {
    /// Every sample of `board`, with its backend.
    pub fn calibration_samples(&self, board: &str) -> Result<Vec<(String, Sample)>, StoreError> {
        let err = |source| query_err(&self.path, "reading the calibration", source);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT backend, model, bytes_per_token, flops_per_token, bandwidth, compute, \
                 seconds_per_token, prefill_seconds_per_token, samples, depth \
                 FROM calibration WHERE board = ?1 ORDER BY backend, model",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([board], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Sample {
                        model: r.get(1)?,
                        bytes_per_token: r.get(2)?,
                        ops_per_token: r.get(3)?,
                        bandwidth: r.get(4)?,
                        compute: r.get(5)?,
                        seconds_per_token: r.get(6)?,
                        prefill_seconds_per_token: r.get(7)?,
                        count: r.get(8)?,
                        depth: r.get(9)?,
                    },
                ))
            })
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// Stores `merged` as the model's sample, replacing the one before.
    pub fn calibration_put(
        &self,
        board: &str,
        backend: &str,
        merged: &Sample,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO calibration (board, backend, model, bytes_per_token, \
                 flops_per_token, bandwidth, compute, seconds_per_token, \
                 prefill_seconds_per_token, samples, depth) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT (board, backend, model) DO UPDATE SET \
                 bytes_per_token = excluded.bytes_per_token, \
                 flops_per_token = excluded.flops_per_token, bandwidth = excluded.bandwidth, \
                 compute = excluded.compute, seconds_per_token = excluded.seconds_per_token, \
                 prefill_seconds_per_token = excluded.prefill_seconds_per_token, \
                 samples = excluded.samples, depth = excluded.depth, \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                rusqlite::params![
                    board,
                    backend,
                    merged.model,
                    merged.bytes_per_token,
                    merged.ops_per_token,
                    merged.bandwidth,
                    merged.compute,
                    merged.seconds_per_token,
                    merged.prefill_seconds_per_token,
                    merged.count,
                    merged.depth,
                ],
            )
            .map_err(|source| query_err(&self.path, "storing the calibration", source))?;
        Ok(())
    }
}
