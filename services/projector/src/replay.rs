//! Replaying a filtered part of the event store into a read model's live generation, through the
//! projector's normal apply path ([`Processor`]: upcast on the way, version guard, parking).
//!
//! Safe to run at any time, also while the live consumer runs: every batch locks the version rows
//! of its aggregates (`FOR UPDATE` in PostgreSQL, the nodes in Neo4j) in the transaction that
//! writes them, exactly as the consumer's batches and the replay of parked events do, so an event
//! is applied by whoever takes the lock first and skipped by the version guard of the other. A
//! replay of events already applied is a no-op (counted as `skipped`).
//!
//! With a checkpoint name the last position done is recorded in `projection_checkpoints`
//! (`projection = replay:<read model>:<name>`, `partition = -1`) after each batch; a rerun with
//! the same name resumes after it. A crash between a batch and its checkpoint replays that batch
//! again, which the version guard turns into skips: nothing is lost, nothing applied twice.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use eventfold_runtime::Shutdown;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};

use crate::engine::Mode;
use crate::parking::Parking;
use crate::projection::Projection;
use crate::rebuild::{self, EVENTS_SQL, RebuildError, Stores, item_from_row};
use crate::state;

/// Events per transaction when a request does not say.
pub const DEFAULT_BATCH: usize = 500;

/// Which events to replay (all filters combine; an empty list or `None` does not filter) and
/// how: the body of `POST /v1/read-models/{read_model}/replay`, the flags of `eventfold replay`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Only this tenant's streams.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Only these event types (e.g. `OpportunityCreated`).
    #[serde(default)]
    pub types: Vec<String>,
    /// Only these aggregate ids (of any of the read model's aggregate types).
    #[serde(default)]
    pub aggregates: Vec<String>,
    /// Only events recorded at or after this time.
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    /// Only events recorded before this time.
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
    /// Only aggregate versions up to this one.
    #[serde(default)]
    pub to_version: Option<i64>,
    /// Events per transaction.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Record progress under this name and resume after it.
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// Stop after this many batches (the rest is left for a rerun with the same checkpoint).
    #[serde(default)]
    pub max_batches: Option<usize>,
}

fn default_batch() -> usize {
    DEFAULT_BATCH
}

impl Default for ReplayRequest {
    fn default() -> Self {
        Self {
            tenant: None,
            types: Vec::new(),
            aggregates: Vec::new(),
            from: None,
            to: None,
            to_version: None,
            batch: DEFAULT_BATCH,
            checkpoint: None,
            max_batches: None,
        }
    }
}

/// A request that cannot run: which field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidReplay {
    /// The field (`from`, `to_version`, …): a JSON pointer `/<field>`, a flag `--<field>` with `-`
    /// for `_`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidReplay {
    InvalidReplay {
        field,
        message: message.into(),
    }
}

/// True for a checkpoint name of 1-64 characters of `A-Z a-z 0-9 - _ .`.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl ReplayRequest {
    /// Checks the request against `p`: a valid tenant and checkpoint name, event types that `p`'s
    /// aggregates emit (a misspelt type would otherwise match nothing), `from` before `to`,
    /// positive numbers.
    pub fn check(&self, p: &dyn Projection) -> Result<(), InvalidReplay> {
        if let Some(t) = &self.tenant
            && !eventfold_auth::valid_tenant(t)
        {
            return Err(invalid(
                "tenant",
                format!("`{t}`: expected 1-64 characters of A-Z a-z 0-9 - _ ."),
            ));
        }
        let known: Vec<&str> = p
            .aggregate_types()
            .iter()
            .filter_map(|a| eventfold_reference::event_types(a))
            .flatten()
            .copied()
            .collect();
        if let Some(t) = self.types.iter().find(|t| !known.contains(&t.as_str())) {
            return Err(invalid(
                "types",
                format!(
                    "`{t}` is not an event type of {} (known: {})",
                    p.name(),
                    known.join(", ")
                ),
            ));
        }
        if let Some(a) = self
            .aggregates
            .iter()
            .find(|a| a.is_empty() || a.len() > 256)
        {
            return Err(invalid(
                "aggregates",
                format!("`{a}`: expected an aggregate id of 1-256 characters"),
            ));
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from >= to
        {
            return Err(invalid("to", format!("{to} is not after from ({from})")));
        }
        if self.to_version.is_some_and(|v| v < 1) {
            return Err(invalid("to_version", "expected a version of at least 1"));
        }
        if !(1..=100_000).contains(&self.batch) {
            return Err(invalid("batch", "expected 1 to 100000 events"));
        }
        if self.max_batches == Some(0) {
            return Err(invalid("max_batches", "expected at least 1"));
        }
        if let Some(c) = &self.checkpoint
            && !valid_name(c)
        {
            return Err(invalid(
                "checkpoint",
                format!("`{c}`: expected 1-64 characters of A-Z a-z 0-9 - _ ."),
            ));
        }
        Ok(())
    }
}

/// What a replay did (also its progress after each batch).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplaySummary {
    /// Read model.
    pub read_model: String,
    /// The live generation replayed into.
    pub generation: i32,
    /// Checkpoint name, if any.
    pub checkpoint: Option<String>,
    /// The checkpoint's position when this run started (events up to it were not read).
    pub resumed_after: Option<i64>,
    /// Position of the last event done.
    pub last_position: Option<i64>,
    /// Batches (transactions) run.
    pub batches: usize,
    /// Events read that match the filters.
    pub matched: usize,
    /// Events written, including `gap_filled` ones.
    pub applied: usize,
    /// Events skipped by the version guard (already applied).
    pub skipped: usize,
    /// Events parked (refused, or behind a parked event of their aggregate).
    pub parked: usize,
    /// Earlier versions outside the filters applied first to close a version gap (an event is
    /// only ever applied right after its predecessor).
    pub gap_filled: usize,
    /// False when stopped by `max_batches` before the end.
    pub complete: bool,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// The `projection_checkpoints` row of checkpoint `name` of `read_model`.
fn checkpoint_key(read_model: &str, name: &str) -> String {
    format!("replay:{read_model}:{name}")
}

async fn load_checkpoint(pool: &PgPool, key: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT \"offset\" FROM projection_checkpoints WHERE projection = $1 AND partition = -1",
    )
    .bind(key)
    .fetch_optional(pool)
    .await
}

async fn save_checkpoint(pool: &PgPool, key: &str, position: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, partition, \"offset\") \
         VALUES ($1, -1, $2) ON CONFLICT (projection, partition) \
         DO UPDATE SET \"offset\" = excluded.\"offset\", updated_at = clock_timestamp()",
    )
    .bind(key)
    .bind(position)
    .execute(pool)
    .await?;
    Ok(())
}

/// Replays the events of `p`'s aggregate types that match `req` into `p`'s live generation, in
/// position order, in batches of `req.batch`, from one snapshot of the event store; `progress`
/// is called after each batch. Only events of transactions finished before the snapshot are
/// read (positions are allocated before commit), so that a checkpoint never passes an event
/// still being committed. Refused while the read model is being rebuilt.
pub async fn replay(
    p: &Arc<dyn Projection>,
    stores: &Stores,
    req: &ReplayRequest,
    progress: &mut (dyn FnMut(&ReplaySummary) + Send),
    shutdown: &Shutdown,
) -> Result<ReplaySummary, RebuildError> {
    req.check(&**p)?;
    let started = Instant::now();
    let name = p.name();
    let now = state::ensure(&stores.pool, &**p).await?;
    if now.rebuilding {
        return Err(RebuildError::Busy(name.into()));
    }
    let target = state::target(&**p, now.generation, stores);
    target.setup(&**p).await?;
    let parking = Parking::new(stores.pool.clone(), name, None);
    let processor = stores.processor(p, target, parking, Mode::Consume);
    let key = req.checkpoint.as_deref().map(|c| checkpoint_key(name, c));
    let resumed_after = match &key {
        Some(k) => load_checkpoint(&stores.pool, k).await?,
        None => None,
    };
    let mut summary = ReplaySummary {
        read_model: name.into(),
        generation: now.generation,
        checkpoint: req.checkpoint.clone(),
        resumed_after,
        last_position: resumed_after,
        ..ReplaySummary::default()
    };
    let types: Vec<&str> = p.aggregate_types().to_vec();
    let mut tx = rebuild::snapshot(&stores.pool).await?;
    let sql = format!(
        "{EVENTS_SQL} WHERE aggregate_type = ANY($1) AND position > $2 \
         AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         AND ($3::text IS NULL OR tenant = $3) \
         AND (cardinality($4::text[]) = 0 OR event_type = ANY($4)) \
         AND (cardinality($5::text[]) = 0 OR aggregate_id = ANY($5)) \
         AND ($6::timestamptz IS NULL OR recorded_at >= $6) \
         AND ($7::timestamptz IS NULL OR recorded_at < $7) \
         AND ($8::bigint IS NULL OR version <= $8) \
         ORDER BY position"
    );
    let mut rows = sqlx::query(&sql)
        .bind(&types)
        .bind(resumed_after.unwrap_or(0))
        .bind(&req.tenant)
        .bind(&req.types)
        .bind(&req.aggregates)
        .bind(req.from)
        .bind(req.to)
        .bind(req.to_version)
        .fetch(&mut *tx);
    let mut buf = Vec::with_capacity(req.batch);
    let mut last = None;
    summary.complete = loop {
        let row = rows.try_next().await?;
        if let Some(r) = &row {
            last = Some(r.try_get::<i64, _>("position")?);
            buf.push(item_from_row(r)?);
        }
        if buf.len() >= req.batch || (row.is_none() && !buf.is_empty()) {
            if shutdown.is_triggered() {
                return Err(RebuildError::Interrupted);
            }
            let o = processor
                .apply(&buf, shutdown)
                .await
                .ok_or(RebuildError::Interrupted)?;
            summary.batches += 1;
            summary.matched += buf.len();
            summary.applied += o.applied;
            summary.skipped += o.skipped;
            summary.parked += o.parked;
            summary.gap_filled += o.gap_filled;
            summary.last_position = last;
            buf.clear();
            if let (Some(k), Some(pos)) = (&key, last) {
                save_checkpoint(&stores.pool, k, pos).await?;
            }
            summary.seconds = started.elapsed().as_secs_f64();
            progress(&summary);
            if req.max_batches.is_some_and(|m| summary.batches >= m) {
                break row.is_none();
            }
        }
        if row.is_none() {
            break true;
        }
    };
    drop(rows);
    tx.rollback().await?;
    summary.seconds = started.elapsed().as_secs_f64();
    rebuild::record_run(
        &stores.pool,
        name,
        "replay",
        started,
        summary.matched,
        summary.complete,
    )
    .await;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opportunities() -> Arc<dyn Projection> {
        crate::models::registry()
            .get("opportunities")
            .cloned()
            .expect("opportunities")
    }

    fn field(r: ReplayRequest) -> Option<&'static str> {
        r.check(&*opportunities()).err().map(|e| e.field)
    }

    #[test]
    fn a_request_without_filters_is_valid() {
        assert_eq!(field(ReplayRequest::default()), None);
    }

    #[test]
    fn rejects_each_bad_field_by_name() {
        let t = |s: &str| Some(s.parse::<DateTime<Utc>>().unwrap());
        let cases = [
            (
                ReplayRequest {
                    tenant: Some("a b".into()),
                    ..Default::default()
                },
                "tenant",
            ),
            (
                ReplayRequest {
                    types: vec!["NoSuchEvent".into()],
                    ..Default::default()
                },
                "types",
            ),
            (
                ReplayRequest {
                    aggregates: vec![String::new()],
                    ..Default::default()
                },
                "aggregates",
            ),
            (
                ReplayRequest {
                    from: t("2026-01-02T00:00:00Z"),
                    to: t("2026-01-01T00:00:00Z"),
                    ..Default::default()
                },
                "to",
            ),
            (
                ReplayRequest {
                    to_version: Some(0),
                    ..Default::default()
                },
                "to_version",
            ),
            (
                ReplayRequest {
                    batch: 0,
                    ..Default::default()
                },
                "batch",
            ),
            (
                ReplayRequest {
                    max_batches: Some(0),
                    ..Default::default()
                },
                "max_batches",
            ),
            (
                ReplayRequest {
                    checkpoint: Some("a/b".into()),
                    ..Default::default()
                },
                "checkpoint",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(field(r.clone()), Some(want), "{r:?}");
        }
    }

    #[test]
    fn event_types_of_the_read_models_aggregates_are_accepted() {
        let known = eventfold_reference::event_types("Opportunity").unwrap();
        let r = ReplayRequest {
            types: vec![known[0].to_owned()],
            ..Default::default()
        };
        assert_eq!(field(r), None);
    }

    #[test]
    fn the_json_body_refuses_unknown_fields_and_defaults_the_batch() {
        let r: ReplayRequest = serde_json::from_str(r#"{"types": []}"#).unwrap();
        assert_eq!(r.batch, DEFAULT_BATCH);
        assert!(serde_json::from_str::<ReplayRequest>(r#"{"typo": 1}"#).is_err());
    }
}
