//! Hydration of one long-lived cross-reference (a discovery and its validations): how long loading
//! and folding it takes, one load after the other, after a few untimed warm-up loads.

use std::time::Instant;

use anyhow::Context;
use eventfold_domain::Aggregate as _;
use eventfold_postgres::{EventStore, repository::hydrate};
use eventfold_reference::CrossReference;
use hdrhistogram::Histogram;

use crate::workload::{histogram, record};

/// Untimed loads before the timed ones (connections opened, plans cached).
pub const WARMUP: usize = 20;

/// The result of one hydration target.
pub enum Hydration {
    /// Latencies of the timed loads, in microseconds.
    Measured(Histogram<u64>),
    /// The target cannot run yet; the reason is printed instead of numbers.
    NotAvailable(&'static str),
}

/// eventfold without a snapshot: every event read and folded (`repository::hydrate`). Snapshots of
/// the aggregate, if the command path wrote any, are deleted first so that none is used.
pub async fn eventfold(
    store: &EventStore,
    aggregate_id: &str,
    events: usize,
    samples: usize,
) -> anyhow::Result<Hydration> {
    sqlx::query("DELETE FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2")
        .bind(CrossReference::TYPE)
        .bind(aggregate_id)
        .execute(store.pool())
        .await
        .context("failed to clear the aggregate's snapshots")?;
    let mut latency = histogram();
    for n in 0..samples + WARMUP {
        let started = Instant::now();
        let (_, version) = hydrate::<CrossReference>(store, aggregate_id, None, None).await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            version == events as i64,
            "eventfold hydrated {aggregate_id} at version {version}, expected {events}"
        );
        if n >= WARMUP {
            record(&mut latency, elapsed);
        }
    }
    Ok(Hydration::Measured(latency))
}

/// eventfold from its latest snapshot plus the events after it.
///
/// Adapter point for snapshot support: once the store can save and load snapshots, write one for
/// `aggregate_id` at its last version here (untimed: hydrate, then
/// `store.save_snapshot(CrossReference::TYPE, id, version, CrossReference::STATE_VERSION,
/// &serde_json::to_value(&state)?, 1)`), then time the snapshot-aware hydration the same way as
/// [`eventfold`] does, checking the version it returns. Runs after [`eventfold`], which clears the
/// aggregate's snapshots.
pub async fn eventfold_with_snapshot(
    _store: &EventStore,
    _aggregate_id: &str,
    _events: usize,
    _samples: usize,
) -> anyhow::Result<Hydration> {
    Ok(Hydration::NotAvailable(
        "not available: the event store has no snapshot support yet",
    ))
}
