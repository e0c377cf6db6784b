//! Working from the event store (the authority): rebuilding a read model, replaying parked
//! events, and auditing a read model against a from-scratch replay.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventfold_kafka::Envelope;
use eventfold_runtime::Shutdown;
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgPool, Row};

use crate::apply::ApplyError;
use crate::engine::{Item, Mode, Outcome, Processor, Undecodable};
use crate::parking::{Origin, Parking};
use crate::projection::{ProjectedEvent, Projection, Store};
pub use crate::state::Stores;
use crate::state::{self, ModelState};
use crate::target::{AggregateKey, Target, pg_schema};

/// A failure of a rebuild, replay or audit.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The event store could not be read.
    #[error("event store: {0}")]
    Store(#[from] sqlx::Error),
    /// The read model could not be written.
    #[error("read model: {0}")]
    Apply(#[from] ApplyError),
    /// Stopped by a signal before the end.
    #[error("interrupted")]
    Interrupted,
    /// A replay request that cannot run.
    #[error(transparent)]
    Invalid(#[from] crate::replay::InvalidReplay),
    /// Another rebuild of the same read model is running.
    #[error("a rebuild of {0} is already running")]
    Busy(String),
    /// A replay named an aggregate that has no parked event in the read model: only blocked
    /// aggregates are replayed (the others are up to date or on their way through Kafka).
    #[error(
        "{aggregate} has no parked events in {read_model}; only blocked aggregates are replayed"
    )]
    NotBlocked {
        /// The read model.
        read_model: String,
        /// The aggregate given.
        aggregate: AggregateKey,
    },
}

pub(crate) const EVENTS_SQL: &str = "SELECT position, event_id, event_type, schema_version, aggregate_type, \
     aggregate_id, version, correlation_id, causation_id, command_id, tenant, actor_kind, actor_id, \
     occurred_at, recorded_at, metadata ->> 'traceparent' AS traceparent, payload FROM events";

/// An `events` row as the projector sees it: payload upcast to the latest version.
pub(crate) fn item_from_row(row: &sqlx::postgres::PgRow) -> Result<Item, sqlx::Error> {
    let envelope = Envelope::from_event_row(row)?;
    let Json(payload): Json<serde_json::Value> = row.try_get("payload")?;
    let upcast = eventfold_reference::upcasters(&envelope.aggregate_type)
        .ok_or_else(|| format!("unknown aggregate type `{}`", envelope.aggregate_type))
        .and_then(|u| {
            u.upcast(
                &envelope.event_type,
                envelope.schema_version as u32,
                payload,
            )
            .map_err(|e| e.to_string())
        });
    let event = match upcast {
        Ok(payload) => Ok(ProjectedEvent { envelope, payload }),
        Err(error) => Err(Undecodable {
            envelope: Some(envelope),
            error,
        }),
    };
    Ok(Item {
        origin: Origin::default(),
        event,
    })
}

/// The events of one stream (tenant, aggregate type and id) with versions in `from..=to`, in
/// version order, as the projector sees them (used to fill a version gap in what Kafka delivered).
pub async fn aggregate_events(
    pool: &PgPool,
    key: &AggregateKey,
    from: i64,
    to: i64,
) -> Result<Vec<Item>, sqlx::Error> {
    let sql = format!(
        "{EVENTS_SQL} WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $5 \
         AND version BETWEEN $3 AND $4 ORDER BY version"
    );
    let rows = sqlx::query(&sql)
        .bind(&key.aggregate_type)
        .bind(&key.aggregate_id)
        .bind(from)
        .bind(to)
        .bind(&key.tenant)
        .fetch_all(pool)
        .await?;
    rows.iter().map(item_from_row).collect()
}

/// A read-only transaction on one consistent snapshot of the event store, for a replay that
/// streams its selection in one statement: the login role's statement_timeout, which bounds every
/// other statement of the projector, is lifted for it.
pub(crate) async fn snapshot(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Applies every event of `processor`'s aggregate types, in position order, from one
/// consistent snapshot of the event store, in batches of `batch`.
pub async fn replay_all(
    processor: &Processor,
    pool: &PgPool,
    batch: usize,
    shutdown: &Shutdown,
) -> Result<Outcome, RebuildError> {
    Ok(replay_events(processor, pool, batch, None, shutdown)
        .await?
        .0)
}

/// [`replay_all`] of `tenant`'s events only (every tenant's when `None`); also how many events
/// of each tenant it read.
async fn replay_events(
    processor: &Processor,
    pool: &PgPool,
    batch: usize,
    tenant: Option<&str>,
    shutdown: &Shutdown,
) -> Result<(Outcome, BTreeMap<String, usize>), RebuildError> {
    let types: Vec<String> = processor
        .projection
        .aggregate_types()
        .iter()
        .map(|t| t.to_string())
        .collect();
    let mut tx = snapshot(pool).await?;
    let only_tenant = if tenant.is_some() {
        " AND tenant = $2"
    } else {
        ""
    };
    let sql = format!("{EVENTS_SQL} WHERE aggregate_type = ANY($1){only_tenant} ORDER BY position");
    let mut query = sqlx::query(&sql).bind(&types);
    if let Some(t) = tenant {
        query = query.bind(t);
    }
    let mut rows = query.fetch(&mut *tx);
    let mut total = Outcome::default();
    let mut per_tenant: BTreeMap<String, usize> = BTreeMap::new();
    let mut buf = Vec::with_capacity(batch);
    loop {
        let row = rows.try_next().await?;
        if let Some(r) = &row {
            *per_tenant.entry(r.try_get("tenant")?).or_default() += 1;
            buf.push(item_from_row(r)?);
        }
        if buf.len() >= batch || (row.is_none() && !buf.is_empty()) {
            let o = processor
                .apply(&buf, shutdown)
                .await
                .ok_or(RebuildError::Interrupted)?;
            total.applied += o.applied;
            total.skipped += o.skipped;
            total.parked += o.parked;
            buf.clear();
        }
        if row.is_none() {
            break;
        }
    }
    drop(rows);
    tx.commit().await?;
    Ok((total, per_tenant))
}

/// What a rebuild did.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    /// Read model.
    pub read_model: String,
    /// The generation now live.
    pub generation: i32,
    /// Events applied from the event store.
    pub applied: usize,
    /// Events parked (refused or behind a parked event).
    pub parked: usize,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl Stores {
    pub(crate) fn processor(
        &self,
        p: &Arc<dyn Projection>,
        target: Target,
        parking: Parking,
        mode: Mode,
    ) -> Processor {
        Processor {
            projection: p.clone(),
            target,
            parking,
            max_attempts: 3,
            metrics: None,
            mode,
            apply_timeout: crate::engine::APPLY_TIMEOUT,
        }
    }
}

/// Rebuilds `p` from the event store. PostgreSQL: into a new generation (schema) while the live
/// one keeps serving, then switches; Neo4j: in place, with the projectors stopped meanwhile
/// and fenced off by a new epoch (the generation number).
/// The new generation starts consuming Kafka at the offsets the old one had stored *before*
/// the event store snapshot was taken, so nothing is missed, and the version guard skips what
/// the snapshot already applied.
pub async fn rebuild(
    p: &Arc<dyn Projection>,
    stores: &Stores,
    shutdown: &Shutdown,
) -> Result<RebuildReport, RebuildError> {
    let started = Instant::now();
    let name = p.name();
    let now = state::ensure(&stores.pool, &**p).await?;
    if now.rebuilding {
        return Err(RebuildError::Busy(name.into()));
    }
    state::set_rebuilding(&stores.pool, name, true).await?;
    let result = rebuild_flagged(p, stores, now, shutdown).await;
    if result.is_err() {
        let _ = state::set_rebuilding(&stores.pool, name, false).await;
    }
    let (generation, o) = result?;
    record_run(
        &stores.pool,
        name,
        "rebuild",
        started,
        o.applied + o.parked,
        true,
    )
    .await;
    Ok(RebuildReport {
        read_model: name.into(),
        generation,
        applied: o.applied,
        parked: o.parked,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Records a finished replay or rebuild in `replay_runs` (for `GET /v1/health`); a failure to
/// record it is logged, never fatal.
pub async fn record_run(
    pool: &PgPool,
    read_model: &str,
    kind: &str,
    started: Instant,
    events: usize,
    complete: bool,
) {
    let seconds = started.elapsed().as_secs_f64();
    let recorded = sqlx::query(
        "INSERT INTO replay_runs (read_model, kind, started_at, seconds, events, complete) \
         VALUES ($1, $2, clock_timestamp() - make_interval(secs => $3), $3, $4, $5)",
    )
    .bind(read_model)
    .bind(kind)
    .bind(seconds)
    .bind(events as i64)
    .bind(complete)
    .execute(pool)
    .await;
    if let Err(e) = recorded {
        tracing::warn!(read_model, kind, error = %e, "the run was not recorded in replay_runs");
    }
}

async fn rebuild_flagged(
    p: &Arc<dyn Projection>,
    stores: &Stores,
    now: ModelState,
    shutdown: &Shutdown,
) -> Result<(i32, Outcome), RebuildError> {
    let name = p.name();
    let parking = Parking::new(stores.pool.clone(), name, None);
    let live = state::target(&**p, now.generation, stores);
    let (generation, next) = match p.store() {
        Store::Postgres => {
            let generation = now.generation + 1;
            // Two generations are kept: the live one and the one before (for a rollback).
            let older = Target::Postgres {
                pool: stores.pool.clone(),
                schema: pg_schema(name, now.generation - 1),
            };
            older.drop_all(&**p).await?;
            let next = Target::Postgres {
                pool: stores.pool.clone(),
                schema: pg_schema(name, generation),
            };
            next.drop_all(&**p).await?;
            (generation, next)
        }
        Store::Neo4j => {
            // Rebuilt in place: move the epoch on first, so that no writer of the old
            // generation (a batch still running, a paused projector) can write after the reset.
            // This waits for a transaction in flight; every later one of the old epoch fails.
            let generation = now.generation + 1;
            live.setup(&**p).await?;
            live.move_epoch(name, generation).await?;
            (generation, state::target(&**p, generation, stores))
        }
    };
    let offsets = live.offsets().await?;
    if p.store() == Store::Neo4j {
        next.reset(&**p).await?;
    }
    next.setup(&**p).await?;
    let processor = stores.processor(p, next.clone(), parking, Mode::Consume);
    let outcome = replay_all(&processor, &stores.pool, stores.batch, shutdown).await?;
    let mut tx = next.begin().await?;
    tx.save_offsets(&offsets).await?;
    tx.commit().await?;
    state::switch(&stores.pool, name, generation).await?;
    Ok((generation, outcome))
}

/// What replaying one aggregate's parked events did.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// Tenant of the stream.
    pub tenant: String,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Events applied.
    pub applied: usize,
    /// Parked rows released.
    pub released: u64,
    /// Why it failed (nothing changed for this aggregate), if it did.
    pub error: Option<String>,
}

/// Replays the parked events of `only` (or of every blocked aggregate) from the event store:
/// every event after the aggregate's applied version, in one transaction; on success its parked
/// rows are deleted, on a refusal nothing changes. An aggregate given in `only` that has no
/// parked event is refused with [`RebuildError::NotBlocked`] before anything is written.
pub async fn replay_parked(
    p: &Arc<dyn Projection>,
    stores: &Stores,
    only: Option<AggregateKey>,
    shutdown: &Shutdown,
) -> Result<Vec<ReplayReport>, RebuildError> {
    let name = p.name();
    let now = state::ensure(&stores.pool, &**p).await?;
    let target = state::target(&**p, now.generation, stores);
    let parking = Parking::new(stores.pool.clone(), name, None);
    let keys = match only {
        Some(k) => {
            if parking.blocked(std::slice::from_ref(&k)).await?.is_empty() {
                return Err(RebuildError::NotBlocked {
                    read_model: name.into(),
                    aggregate: k,
                });
            }
            vec![k]
        }
        None => parking.blocked_aggregates().await?,
    };
    let processor = stores.processor(p, target.clone(), parking.clone(), Mode::Replay);
    let mut reports = Vec::new();
    for key in keys {
        if shutdown.is_triggered() {
            return Err(RebuildError::Interrupted);
        }
        let mut report = ReplayReport {
            tenant: key.tenant.clone(),
            aggregate_type: key.aggregate_type.clone(),
            aggregate_id: key.aggregate_id.clone(),
            applied: 0,
            released: 0,
            error: None,
        };
        // New events may be parked behind while this runs: go round until none is left.
        for _ in 0..5 {
            let mut tx = target.begin().await?;
            let last = tx
                .lock_versions(std::slice::from_ref(&key))
                .await?
                .get(&key)
                .copied()
                .unwrap_or(0);
            tx.rollback().await;
            let sql = format!(
                "{EVENTS_SQL} WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $4 \
                 AND version > $3 ORDER BY version"
            );
            let rows = sqlx::query(&sql)
                .bind(&key.aggregate_type)
                .bind(&key.aggregate_id)
                .bind(last)
                .bind(&key.tenant)
                .fetch_all(&stores.pool)
                .await?;
            let items = rows
                .iter()
                .map(item_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let applied_to = match processor.apply_once(&items, None).await {
                Ok(o) => {
                    report.applied += o.applied;
                    o.versions.get(&key).copied().unwrap_or(last)
                }
                Err(e) => {
                    report.error = Some(e.to_string());
                    break;
                }
            };
            report.released += parking.release(&key, applied_to).await?;
            if parking
                .blocked(std::slice::from_ref(&key))
                .await?
                .is_empty()
            {
                break;
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

/// What the auditor found, in all and per tenant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    /// Read model.
    pub read_model: String,
    /// The one tenant audited, or `None` for all of them.
    pub tenant: Option<String>,
    /// Events replayed into the scratch generation.
    pub events: usize,
    /// Entities (dump rows) in the live read model.
    pub live_rows: usize,
    /// Entities in the from-scratch replay.
    pub expected_rows: usize,
    /// Rows the replay has and the live model lacks (or has differently), at most 20.
    pub missing: Vec<String>,
    /// Rows the live model has and the replay does not, at most 20.
    pub unexpected: Vec<String>,
    /// Number of missing rows in all.
    pub missing_count: usize,
    /// Number of unexpected rows in all.
    pub unexpected_count: usize,
    /// Aggregates whose applied version differs (live vs replay), at most 20.
    pub version_mismatches: Vec<String>,
    /// Number of version mismatches in all.
    pub version_mismatch_count: usize,
    /// The same counts for each tenant met (in events, rows or versions), by tenant name; rows
    /// that name no tenant are counted under `""`.
    pub tenants: Vec<TenantAudit>,
}

impl AuditReport {
    /// True when live equals the replay.
    pub fn is_clean(&self) -> bool {
        self.missing_count == 0 && self.unexpected_count == 0 && self.version_mismatch_count == 0
    }

    /// The audit of `tenant`, if it was met.
    pub fn tenant(&self, tenant: &str) -> Option<&TenantAudit> {
        self.tenants.iter().find(|t| t.tenant == tenant)
    }
}

/// What the auditor found for one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TenantAudit {
    /// The tenant.
    pub tenant: String,
    /// Its events replayed.
    pub events: usize,
    /// Its rows in the live read model.
    pub live_rows: usize,
    /// Its rows in the replay.
    pub expected_rows: usize,
    /// Its rows the live model lacks or has differently.
    pub missing_count: usize,
    /// Its live rows the replay does not have.
    pub unexpected_count: usize,
    /// Its streams whose applied version differs.
    pub version_mismatch_count: usize,
    /// True when its rows and versions equal the replay's.
    pub clean: bool,
}

/// Replays the event store into a scratch generation and compares it with the live read model
/// (rows and applied versions), tenant by tenant. Waits up to `wait` for the live model to catch
/// up with the snapshot before comparing; the scratch generation is dropped afterwards. With
/// `tenant`, only that tenant's events are replayed and only its rows and versions compared:
/// sound because a read model keeps tenants apart (see [`Projection::dump`]).
pub async fn audit(
    p: &Arc<dyn Projection>,
    stores: &Stores,
    tenant: Option<&str>,
    wait: Duration,
    shutdown: &Shutdown,
) -> Result<AuditReport, RebuildError> {
    let name = p.name();
    let now = state::ensure(&stores.pool, &**p).await?;
    let live = state::target(&**p, now.generation, stores);
    let tag = format!("audit{:08x}", fastrand::u32(..));
    let scratch = match p.store() {
        Store::Postgres => Target::Postgres {
            pool: stores.pool.clone(),
            schema: format!("rm_{name}_{tag}"),
        },
        Store::Neo4j => Target::Neo4j {
            graph: stores.graph.clone(),
            g: format!("{}_{tag}", stores.graph_suffix),
            fence: None,
        },
    };
    scratch.setup(&**p).await?;
    let result = audit_into(p, stores, &live, &scratch, tenant, wait, shutdown).await;
    let dropped = scratch.drop_all(&**p).await;
    let report = result?;
    dropped?;
    Ok(report)
}

async fn audit_into(
    p: &Arc<dyn Projection>,
    stores: &Stores,
    live: &Target,
    scratch: &Target,
    tenant: Option<&str>,
    wait: Duration,
    shutdown: &Shutdown,
) -> Result<AuditReport, RebuildError> {
    let parking = Parking::dry_run(stores.pool.clone(), p.name());
    let processor = stores.processor(p, scratch.clone(), parking, Mode::Consume);
    let (outcome, events) =
        replay_events(&processor, &stores.pool, stores.batch, tenant, shutdown).await?;
    let expected_versions = scratch.versions_of(tenant).await?;
    let deadline = Instant::now() + wait;
    let mut mismatches;
    loop {
        let live_versions = live.versions_of(tenant).await?;
        mismatches = version_diff(&expected_versions, &live_versions);
        if mismatches.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let expected = by_tenant(scratch.dump(&**p, tenant).await?);
    let actual = by_tenant(live.dump(&**p, tenant).await?);

    let mut names: BTreeSet<&str> = events.keys().map(String::as_str).collect();
    names.extend(expected.keys().map(String::as_str));
    names.extend(actual.keys().map(String::as_str));
    names.extend(mismatches.iter().map(|(t, _)| t.as_str()));
    names.extend(tenant);
    let none = Vec::new();
    let mut report = AuditReport {
        read_model: p.name().into(),
        tenant: tenant.map(str::to_owned),
        events: outcome.applied + outcome.parked + outcome.skipped,
        ..AuditReport::default()
    };
    for name in names {
        let expected = expected.get(name).unwrap_or(&none);
        let actual = actual.get(name).unwrap_or(&none);
        let (missing, unexpected) = multiset_diff(expected, actual);
        let versions = mismatches.iter().filter(|(t, _)| t == name).count();
        report.tenants.push(TenantAudit {
            tenant: name.to_owned(),
            events: events.get(name).copied().unwrap_or(0),
            live_rows: actual.len(),
            expected_rows: expected.len(),
            missing_count: missing.len(),
            unexpected_count: unexpected.len(),
            version_mismatch_count: versions,
            clean: missing.is_empty() && unexpected.is_empty() && versions == 0,
        });
        report.live_rows += actual.len();
        report.expected_rows += expected.len();
        report.missing_count += missing.len();
        report.unexpected_count += unexpected.len();
        report.missing.extend(missing);
        report.unexpected.extend(unexpected);
    }
    report.missing.truncate(20);
    report.unexpected.truncate(20);
    report.version_mismatch_count = mismatches.len();
    report.version_mismatches = mismatches.into_iter().take(20).map(|(_, m)| m).collect();
    Ok(report)
}

/// Sorted `(tenant, row)` pairs as each tenant's sorted rows.
fn by_tenant(rows: Vec<(String, String)>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (tenant, row) in rows {
        out.entry(tenant).or_default().push(row);
    }
    out
}

/// The streams whose applied versions differ, as `(tenant, description)`, sorted.
fn version_diff(
    expected: &HashMap<AggregateKey, i64>,
    live: &HashMap<AggregateKey, i64>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = expected
        .iter()
        .filter(|(k, v)| live.get(*k) != Some(*v))
        .map(|(k, v)| {
            let m = format!("{k}: expected v{v}, live {:?}", live.get(k));
            (k.tenant.clone(), m)
        })
        .chain(
            live.iter()
                .filter(|(k, _)| !expected.contains_key(*k))
                .map(|(k, v)| {
                    let m = format!("{k}: live v{v}, not in the event store");
                    (k.tenant.clone(), m)
                }),
        )
        .collect();
    out.sort();
    out
}

/// Rows of sorted `a` not matched in sorted `b`, and rows of `b` not matched in `a`.
fn multiset_diff(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut i, mut j) = (0, 0);
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                only_a.push(x.clone());
                i += 1;
            }
            (Some(_), Some(y)) => {
                only_b.push(y.clone());
                j += 1;
            }
            (Some(x), None) => {
                only_a.push(x.clone());
                i += 1;
            }
            (None, Some(y)) => {
                only_b.push(y.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    (only_a, only_b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn multiset_diff_counts_duplicates() {
        let (a, b) = multiset_diff(&s(&["a", "b", "b", "c"]), &s(&["b", "c", "c", "d"]));
        assert_eq!(a, s(&["a", "b"]));
        assert_eq!(b, s(&["c", "d"]));
        assert_eq!(multiset_diff(&s(&["x"]), &s(&["x"])), (vec![], vec![]));
    }

    #[test]
    fn version_diff_names_both_directions() {
        let k = |i: &str| AggregateKey::new("default", "T", i);
        let expected = HashMap::from([(k("a"), 2), (k("b"), 1)]);
        let live = HashMap::from([(k("a"), 1), (k("c"), 4)]);
        let d = version_diff(&expected, &live);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d.iter().all(|(t, _)| t == "default"), "{d:?}");
    }
}
