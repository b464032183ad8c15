//! The planner's calibration: one smoothed sample per (board, backend, model).

use super::{Store, StoreError, query_err};
use crate::plan::{Sample, smooth};

impl Store {
    /// Every sample of `board`, with its backend.
    pub fn calibration_samples(&self, board: &str) -> Result<Vec<(String, Sample)>, StoreError> {
        let err = |source| query_err(&self.path, "reading the calibration", source);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT backend, model, bytes_per_token, flops_per_token, bandwidth, compute, \
                 seconds_per_token, prefill_seconds_per_token, samples \
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
                    },
                ))
            })
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// Folds one answer's figures (`new.count` ignored) into the model's smoothed sample.
    pub fn calibration_record(
        &self,
        board: &str,
        backend: &str,
        new: &Sample,
    ) -> Result<Sample, StoreError> {
        let old = self
            .calibration_samples(board)?
            .into_iter()
            .find(|(b, s)| b == backend && s.model == new.model)
            .map(|(_, s)| s);
        let merged = match old {
            None => Sample {
                count: 1,
                ..new.clone()
            },
            Some(old) => Sample {
                seconds_per_token: smooth(old.seconds_per_token, new.seconds_per_token, old.count),
                prefill_seconds_per_token: match (
                    old.prefill_seconds_per_token,
                    new.prefill_seconds_per_token,
                ) {
                    (Some(o), Some(n)) => Some(smooth(o, n, old.count)),
                    (o, n) => n.or(o),
                },
                count: old.count.saturating_add(1),
                ..new.clone()
            },
        };
        self.conn
            .execute(
                "INSERT INTO calibration (board, backend, model, bytes_per_token, \
                 flops_per_token, bandwidth, compute, seconds_per_token, \
                 prefill_seconds_per_token, samples) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (board, backend, model) DO UPDATE SET \
                 bytes_per_token = excluded.bytes_per_token, \
                 flops_per_token = excluded.flops_per_token, bandwidth = excluded.bandwidth, \
                 compute = excluded.compute, seconds_per_token = excluded.seconds_per_token, \
                 prefill_seconds_per_token = excluded.prefill_seconds_per_token, \
                 samples = excluded.samples, \
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
                ],
            )
            .map_err(|source| query_err(&self.path, "storing the calibration", source))?;
        Ok(merged)
    }
}
