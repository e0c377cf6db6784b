//! The query API of the `opportunities` read model: list with filters and keyset paging, one
//! opportunity, stats by type, status and day, one user. Always reads the live generation, and
//! only the rows of the caller's tenant (the token's): another tenant's row answers 404.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eventfold_auth::Principal;
use eventfold_runtime::problem;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::state::ModelState;
use crate::target::pg_schema;

#[derive(Clone)]
struct Read {
    pool: PgPool,
    state: watch::Receiver<ModelState>,
    /// Stats per (generation, tenant), computed at most once per [`STATS_TTL`].
    stats: Arc<Mutex<StatsCache>>,
}

/// Computed stats and when, by (generation, tenant).
type StatsCache = HashMap<(i32, String), (Instant, Value)>;

/// How long computed stats are served before they are computed again.
const STATS_TTL: Duration = Duration::from_secs(5);

impl Read {
    fn schema(&self) -> String {
        pg_schema("opportunities", self.state.borrow().generation)
    }
}

/// `GET /v1/read/opportunities`, `/v1/read/opportunities/stats`,
/// `/v1/read/opportunities/{id}`, `/v1/read/users/{id}`.
pub fn router(pool: PgPool, state: watch::Receiver<ModelState>) -> axum::Router {
    axum::Router::new()
        .route("/v1/read/opportunities", get(list))
        .route("/v1/read/opportunities/stats", get(stats))
        .route("/v1/read/opportunities/{id}", get(one))
        .route("/v1/read/users/{id}", get(user))
        .with_state(Read {
            pool,
            state,
            stats: Arc::default(),
        })
}

/// A read-only transaction as `eventfold_reader` for `tenant`: the tables' row-level security then
/// shows that tenant's rows only (the queries filter by tenant as well, for their indexes).
async fn as_tenant(
    pool: &PgPool,
    tenant: &str,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT set_config('role', 'eventfold_reader', true), \
                set_config('eventfold.tenant', $1, true)",
    )
    .bind(tenant)
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}

fn unavailable(e: sqlx::Error) -> Response {
    match &e {
        // The read model has not been created yet (no event consumed): nothing to read.
        sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01") => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "read_model_not_ready",
            "the read model has not been built yet",
        ),
        _ => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        ),
    }
}

/// Filters and paging of the list; unknown parameters are ignored, as on every route.
#[derive(Debug, Deserialize)]
struct Filter {
    status: Option<String>,
    ai_solution_type: Option<String>,
    ai_solution_category: Option<String>,
    min_confidence: Option<f64>,
    tenant: Option<String>,
    q: Option<String>,
    created_from: Option<chrono::DateTime<chrono::Utc>>,
    created_to: Option<chrono::DateTime<chrono::Utc>>,
    limit: Option<i64>,
    /// Cursor: the `next` of the previous page.
    after: Option<String>,
}

impl Filter {
    /// The first text parameter holding a NUL character, by name.
    fn with_nul(&self) -> Option<&'static str> {
        [
            ("status", &self.status),
            ("ai_solution_type", &self.ai_solution_type),
            ("ai_solution_category", &self.ai_solution_category),
            ("tenant", &self.tenant),
            ("q", &self.q),
            ("after", &self.after),
        ]
        .into_iter()
        .find(|(_, v)| v.as_deref().is_some_and(|v| v.contains('\0')))
        .map(|(name, _)| name)
    }
}

const COLUMNS: &str = "aggregate_id, tenant, opportunity_id, title, description, ai_solution_type, \
    ai_solution_category, market_size_estimate, confidence_score, status, validation_count, \
    CASE WHEN validation_count > 0 THEN validation_score_sum / validation_count END AS validation_score, \
    archived_reason, created_at, updated_at, last_version";

async fn list(
    State(r): State<Read>,
    principal: Principal,
    q: Result<Query<Filter>, QueryRejection>,
) -> Response {
    let Query(f) = match q {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "bad_query", e.body_text()),
    };
    if f.tenant.as_ref().is_some_and(|t| *t != principal.tenant) {
        return problem(
            StatusCode::FORBIDDEN,
            "tenant_mismatch",
            "`tenant` names another tenant than the token's",
        );
    }
    let limit = f.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "limit must be between 1 and 500",
        );
    }
    if let Some(name) = f.with_nul() {
        // PostgreSQL refuses a NUL in text: a 400 here, not a store error.
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("{name} contains a NUL character"),
        );
    }
    if f.min_confidence.is_some_and(|c| !(0.0..=1.0).contains(&c)) {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "min_confidence must be between 0 and 1",
        );
    }
    let after = match f.after.as_deref().map(parse_cursor) {
        None => None,
        Some(Some(c)) => Some(c),
        // Any text is a well-formed `after`; only the server can tell a cursor it made, so an
        // unreadable one is 422 (as the OpenAPI document says), not 400.
        Some(None) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_cursor",
                "`after` is not a cursor from `next`",
            );
        }
    };
    let sql = format!(
        "SELECT row_to_json(t) FROM (SELECT {COLUMNS} FROM {}.opportunities \
         WHERE ($1::text IS NULL OR status = $1) \
           AND ($2::text IS NULL OR ai_solution_type = $2) \
           AND ($3::text IS NULL OR ai_solution_category = $3) \
           AND ($4::float8 IS NULL OR confidence_score >= $4) \
           AND tenant = $5 \
           AND ($6::text IS NULL OR title ILIKE '%' || replace(replace(replace($6, '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%') \
           AND ($7::timestamptz IS NULL OR created_at >= $7) \
           AND ($8::timestamptz IS NULL OR created_at < $8) \
           AND ($9::timestamptz IS NULL OR (created_at, aggregate_id) > ($9, $10)) \
         ORDER BY created_at, aggregate_id LIMIT $11) t",
        r.schema()
    );
    let rows: Result<Vec<Value>, _> = async {
        let mut tx = as_tenant(&r.pool, &principal.tenant).await?;
        sqlx::query_scalar(&sql)
            .bind(&f.status)
            .bind(&f.ai_solution_type)
            .bind(&f.ai_solution_category)
            .bind(f.min_confidence)
            .bind(&principal.tenant)
            .bind(&f.q)
            .bind(f.created_from)
            .bind(f.created_to)
            .bind(after.as_ref().map(|(t, _)| *t))
            .bind(after.as_ref().map(|(_, id)| id.clone()))
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
    }
    .await;
    match rows {
        Ok(items) => {
            let next = (items.len() as i64 == limit)
                .then(|| items.last().and_then(cursor_of))
                .flatten();
            Json(json!({ "items": items, "next": next })).into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// `<created_at RFC 3339>|<aggregate id>` of a listed row.
fn cursor_of(row: &Value) -> Option<String> {
    Some(format!(
        "{}|{}",
        row.get("created_at")?.as_str()?,
        row.get("aggregate_id")?.as_str()?
    ))
}

fn parse_cursor(c: &str) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
    let (t, id) = c.split_once('|')?;
    let t = chrono::DateTime::parse_from_rfc3339(t).ok()?;
    Some((t.with_timezone(&chrono::Utc), id.to_owned()))
}

async fn one(State(r): State<Read>, principal: Principal, Path(id): Path<String>) -> Response {
    let sql = format!(
        "SELECT row_to_json(t) FROM (SELECT {COLUMNS} FROM {}.opportunities \
         WHERE aggregate_id = $1 AND tenant = $2) t",
        r.schema()
    );
    by_id(&r, &sql, &id, &principal.tenant, "opportunity").await
}

async fn user(State(r): State<Read>, principal: Principal, Path(id): Path<String>) -> Response {
    let sql = format!(
        "SELECT row_to_json(u) FROM {}.users u WHERE aggregate_id = $1 AND tenant = $2",
        r.schema()
    );
    by_id(&r, &sql, &id, &principal.tenant, "user").await
}

/// The JSON row `sql` returns for `id` of `tenant`, or 404 `unknown_<what>` (also for another
/// tenant's row).
async fn by_id(r: &Read, sql: &str, id: &str, tenant: &str, what: &'static str) -> Response {
    // No command writes an id with a control character (and PostgreSQL refuses a NUL in text).
    let writable = !id.chars().any(char::is_control);
    let row = async {
        if !writable {
            return Ok(None);
        }
        let mut tx = as_tenant(&r.pool, tenant).await?;
        sqlx::query_scalar::<_, Value>(sql)
            .bind(id)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await
    };
    match row.await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            &format!("unknown_{what}"),
            format!("no {what} `{id}` in the read model"),
        ),
        Err(e) => unavailable(e),
    }
}

async fn stats(State(r): State<Read>, principal: Principal) -> Response {
    let generation = r.state.borrow().generation;
    let key = (generation, principal.tenant.clone());
    if let Some((at, v)) = r.stats.lock().ok().and_then(|c| c.get(&key).cloned())
        && at.elapsed() < STATS_TTL
    {
        return Json(v).into_response();
    }
    let schema = pg_schema("opportunities", generation);
    let sql = format!(
        "SELECT json_build_object( \
           'total', (SELECT count(*) FROM {schema}.opportunities WHERE tenant = $1), \
           'by_type', (SELECT coalesce(json_object_agg(ai_solution_type, n), '{{}}') FROM \
              (SELECT ai_solution_type, count(*) AS n FROM {schema}.opportunities \
               WHERE tenant = $1 GROUP BY 1) a), \
           'by_status', (SELECT coalesce(json_object_agg(status, n), '{{}}') FROM \
              (SELECT status, count(*) AS n FROM {schema}.opportunities \
               WHERE tenant = $1 GROUP BY 1) b), \
           'by_day', (SELECT coalesce(json_agg(json_build_object('day', day, 'count', n) ORDER BY day), '[]') FROM \
              (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n \
               FROM {schema}.opportunities WHERE tenant = $1 GROUP BY 1) c), \
           'users', (SELECT count(*) FROM {schema}.users WHERE tenant = $1), \
           'active_users', (SELECT count(*) FROM {schema}.users WHERE tenant = $1 AND active))"
    );
    let computed = async {
        let mut tx = as_tenant(&r.pool, &principal.tenant).await?;
        sqlx::query_scalar::<_, Value>(&sql)
            .bind(&principal.tenant)
            .fetch_one(&mut *tx)
            .await
    };
    match computed.await {
        Ok(v) => {
            if let Ok(mut cache) = r.stats.lock() {
                cache.retain(|_, (at, _)| at.elapsed() < STATS_TTL);
                cache.insert(key, (Instant::now(), v.clone()));
            }
            Json(v).into_response()
        }
        Err(e) => unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_filter_holding_a_nul() {
        let uri: axum::http::Uri = "/?status=open&q=a%00b".parse().unwrap();
        let Query(f) = Query::<Filter>::try_from_uri(&uri).unwrap();
        assert_eq!(f.with_nul(), Some("q"));
        let uri: axum::http::Uri = "/?status=open&unknown=ignored".parse().unwrap();
        let Query(f) = Query::<Filter>::try_from_uri(&uri).unwrap();
        assert_eq!(f.with_nul(), None);
    }

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let row = json!({"created_at": "2026-11-24T00:00:00.5+00:00", "aggregate_id": "a|b"});
        let c = cursor_of(&row).unwrap();
        let (t, id) = parse_cursor(&c).unwrap();
        assert_eq!(id, "a|b");
        assert_eq!(t.timestamp_subsec_millis(), 500);
        assert!(parse_cursor("nope").is_none());
        assert!(parse_cursor("yesterday|x").is_none());
    }
}
