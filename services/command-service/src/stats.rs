//! Event store statistics and the health document: `GET /v1/stats` and `GET /v1/health`, both for
//! the caller's tenant, and the maintainer that keeps the statistics current.
//!
//! The statistics are counted beside the events ([`eventfold_postgres::stats`]), never by the
//! append: the maintainer folds new events in every `EVENT_STATS_INTERVAL_MS`, and each stats
//! call folds what is left (a bounded number of batches) before reading.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use eventfold_auth::Principal;
use eventfold_postgres::bus::{BusMetrics, positive};
use eventfold_postgres::stats::{self, CatchUp};
use eventfold_reference::registry::{AGGREGATE_TYPES, event_types, upcasters};
use eventfold_runtime::{Env, SettingsError};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};

use crate::api::{Api, tenant_of};
use crate::problem::Problem;

/// Batches a stats call folds at most before reading (the rest waits for the maintainer).
const BATCHES_PER_CALL: u32 = 20;

/// How the statistics are maintained.
#[derive(Debug, Clone, Copy)]
pub struct StatsSettings {
    /// `EVENT_STATS_INTERVAL_MS`: pause of the maintainer when caught up (default 5000).
    pub interval: Duration,
    /// `EVENT_STATS_BATCH`: events folded per transaction (default 5000).
    pub batch: i64,
}

impl StatsSettings {
    /// Reads the settings, naming the variable on error.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            interval: Duration::from_millis(positive(env, "EVENT_STATS_INTERVAL_MS", 5000)? as u64),
            batch: positive(env, "EVENT_STATS_BATCH", 5000)? as i64,
        })
    }
}

/// Starts the maintainer: it folds batches while there are events to fold, then sleeps
/// `interval`; it stops once `alive` has no strong holder left (the API was dropped).
pub fn spawn_maintainer(pool: PgPool, settings: StatsSettings, alive: Weak<()>) {
    tokio::spawn(async move {
        let mut rounds: u64 = 0;
        while alive.strong_count() > 0 {
            match stats::catch_up_batch(&pool, settings.batch, false).await {
                Ok(CatchUp::Folded(n)) if n as i64 == settings.batch => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "event statistics not updated"),
            }
            // Old minute buckets go about once a minute.
            let every = (60_000 / settings.interval.as_millis().max(1) as u64).max(1);
            if rounds.is_multiple_of(every)
                && let Err(e) = stats::prune_minutes(&pool).await
            {
                tracing::warn!(error = %e, "old event statistics minutes not pruned");
            }
            rounds += 1;
            tokio::time::sleep(settings.interval).await;
        }
    });
}

/// Keeps the maintainer running while the API lives.
pub type Alive = Arc<()>;

/// `GET /v1/stats`: the caller's tenant's statistics, caught up first.
pub async fn event_stats(
    State(api): State<Api>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&principal, &headers)?;
    let pool = api.store.pool();
    let complete = stats::catch_up(pool, api.stats.batch, BATCHES_PER_CALL).await?;
    let s = stats::read(pool, tenant).await?;
    let mut body = serde_json::to_value(&s).unwrap_or(Value::Null);
    body["complete"] = complete.into();
    Ok(axum::Json(body).into_response())
}

/// `GET /v1/health`: recent activity of the caller's tenant, the upcasters this build holds and
/// the command buses' state-cache and snapshot counts.
pub async fn health(
    State(api): State<Api>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&principal, &headers)?;
    let pool = api.store.pool();
    stats::catch_up(pool, api.stats.batch, BATCHES_PER_CALL).await?;
    let s = stats::read(pool, tenant).await?;
    Ok(axum::Json(json!({
        "tenant": tenant,
        "event_store": {"status": "up"},
        "recent_activity": {
            "events_current_minute": s.current_minute(),
            "events_last_hour": s.last_hour(),
            "last_event_at": s.last_event_at,
        },
        "upcasters": upcaster_document(),
        "state_cache": cache_document(api.bus_metrics.as_ref()),
        "replays": replay_document(pool).await?,
    }))
    .into_response())
}

/// The last replays and rebuilds (at most 20, newest first) and, per read model and kind, the
/// duration of the latest one.
async fn replay_document(pool: &PgPool) -> Result<Value, Problem> {
    let rows = sqlx::query(
        "SELECT read_model, kind, started_at, finished_at, seconds, events, complete \
         FROM replay_runs ORDER BY finished_at DESC, id DESC LIMIT 20",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| Problem::from(eventfold_postgres::HandleError::Database(e)))?;
    let mut latest = serde_json::Map::new();
    let recent: Vec<Value> = rows
        .iter()
        .map(|r| {
            let (model, kind): (String, String) = (r.get(0), r.get(1));
            let seconds: f64 = r.get(4);
            latest
                .entry(format!("{model}/{kind}"))
                .or_insert_with(|| json!(seconds));
            json!({
                "read_model": model,
                "kind": kind,
                "started_at": r.get::<chrono::DateTime<chrono::Utc>, _>(2),
                "finished_at": r.get::<chrono::DateTime<chrono::Utc>, _>(3),
                "seconds": seconds,
                "events": r.get::<i64, _>(5),
                "complete": r.get::<bool, _>(6),
            })
        })
        .collect();
    Ok(json!({"latest_seconds": latest, "recent": recent}))
}

/// Per aggregate type, each event type with upcasting steps: its latest version and the version
/// each step reads.
fn upcaster_document() -> Value {
    let mut total = 0;
    let by_type: serde_json::Map<String, Value> = AGGREGATE_TYPES
        .iter()
        .filter_map(|t| {
            let steps = upcasters(t)?;
            let events: Vec<Value> = event_types(t)
                .unwrap_or_default()
                .iter()
                .filter_map(|e| {
                    let from: Vec<u32> = steps
                        .steps()
                        .filter(|s| s.event_type() == *e)
                        .map(|s| s.from_version())
                        .collect();
                    total += from.len();
                    (!from.is_empty()).then(|| {
                        json!({
                            "event_type": e,
                            "latest_version": steps.latest(e),
                            "upcasts_from_versions": from,
                        })
                    })
                })
                .collect();
            Some(((*t).to_owned(), Value::Array(events)))
        })
        .collect();
    json!({"total": total, "by_aggregate_type": by_type})
}

/// Per aggregate type, the bus's cache hits and misses since start, and the hit rate.
fn cache_document(metrics: Option<&BusMetrics>) -> Value {
    let Some(m) = metrics else {
        return Value::Null;
    };
    let (mut hits, mut lookups, mut from_snapshot, mut hydrations) = (0, 0, 0, 0);
    let by_type: serde_json::Map<String, Value> = AGGREGATE_TYPES
        .iter()
        .map(|t| {
            let c = m.cache_counts(t);
            hits += c.hits;
            lookups += c.hits + c.misses + c.stale;
            from_snapshot += c.hydrated_from_snapshot;
            hydrations += c.hydrated_from_snapshot + c.hydrated_from_events;
            let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
            v["hit_rate"] = c.hit_rate().into();
            v["snapshot_hit_rate"] = c.snapshot_hit_rate().into();
            ((*t).to_owned(), v)
        })
        .collect();
    json!({
        "hit_rate": (lookups > 0).then(|| hits as f64 / lookups as f64),
        "lookups": lookups,
        "snapshot_hit_rate": (hydrations > 0).then(|| from_snapshot as f64 / hydrations as f64),
        "hydrations": hydrations,
        "by_aggregate_type": by_type,
    })
}
