//! Hydration of one long-lived cross-reference (a discovery and its validations): how long loading
//! and folding it takes, one load after the other, after a few untimed warm-up loads.

use std::time::Instant;

use anyhow::Context;
use eventfold_domain::Aggregate as _;
use eventfold_postgres::{EventStore, repository::hydrate};
use eventfold_reference::CrossReference;
use hdrhistogram::Histogram;

use crate::in_process::TENANT;
use crate::workload::{histogram, record};

/// Untimed loads before the timed ones (connections opened, plans cached).
pub const WARMUP: usize = 20;

/// The result of one hydration target.
pub enum Hydration {
    /// Latencies of the timed loads, in microseconds.
    Measured(Histogram<u64>),
}

/// eventfold's `repository::hydrate`. Snapshots the command path wrote are deleted first; with
/// `snapshot`, one is then written at the last version (untimed), so every load reads it and no
/// event; without, every event is read and folded.
pub async fn eventfold(
    store: &EventStore,
    aggregate_id: &str,
    events: usize,
    samples: usize,
    snapshot: bool,
) -> anyhow::Result<Hydration> {
    sqlx::query(
        "DELETE FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $3",
    )
    .bind(CrossReference::TYPE)
    .bind(aggregate_id)
    .bind(TENANT)
    .execute(store.pool())
    .await
    .context("failed to clear the aggregate's snapshots")?;
    if snapshot {
        let (state, version) =
            hydrate::<CrossReference>(store, TENANT, aggregate_id, None, None).await?;
        store
            .save_snapshot(
                TENANT,
                CrossReference::TYPE,
                aggregate_id,
                version,
                CrossReference::STATE_VERSION,
                &serde_json::to_string(&state)?,
                1,
            )
            .await
            .context("failed to write the snapshot")?;
    }
    let mut latency = histogram();
    for n in 0..samples + WARMUP {
        let started = Instant::now();
        let (_, version) =
            hydrate::<CrossReference>(store, TENANT, aggregate_id, None, None).await?;
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
