//! The relay's admin routes for parked outbox rows, served on the admin listener (`ADMIN_ADDR`)
//! only (errors are RFC 9457 problems with a `code`):
//!
//! - `GET /v1/outbox/parked?aggregate_type=&aggregate_id=&after=&limit=`: `{items, next_after}`
//! - `POST /v1/outbox/parked/release` with `{aggregate_type, aggregate_id}` or `{"all": true}`:
//!   the aggregates' parked rows go back into the outbox, `{released: [...]}`
//! - `POST /v1/outbox/parked/discard` with `{aggregate_type, aggregate_id}`: `{discarded, note}`

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use eventfold_runtime::problem;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use crate::parked::{self, AggregateRef};

/// What `discard` tells the caller about the discarded events.
pub const DISCARD_NOTE: &str = "the events stay in the event store; read models get them only \
through a rebuild (`eventfold rebuild <read-model>`)";

/// The admin routes on `pool`, for the admin listener.
pub fn router(pool: PgPool) -> axum::Router {
    axum::Router::new()
        .route("/v1/outbox/parked", get(list))
        .route("/v1/outbox/parked/release", post(release))
        .route("/v1/outbox/parked/discard", post(discard))
        .with_state(pool)
}

fn unavailable(e: sqlx::Error) -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        e.to_string(),
    )
}

/// The aggregate given by both fields, or neither.
fn aggregate(t: Option<String>, i: Option<String>) -> Result<Option<AggregateRef>, Box<Response>> {
    match (t, i) {
        (Some(aggregate_type), Some(aggregate_id))
            if !aggregate_type.is_empty() && !aggregate_id.is_empty() =>
        {
            Ok(Some(AggregateRef {
                aggregate_type,
                aggregate_id,
            }))
        }
        (None, None) => Ok(None),
        _ => Err(Box::new(problem(
            StatusCode::BAD_REQUEST,
            "invalid_aggregate",
            "give both aggregate_type and aggregate_id (non-empty), or neither",
        ))),
    }
}

/// Filter and paging of the list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    100
}

async fn list(State(pool): State<PgPool>, q: Result<Query<ListQuery>, QueryRejection>) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()),
    };
    if !(1..=1000).contains(&q.limit) {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit must be between 1 and 1000",
        );
    }
    let only = match aggregate(q.aggregate_type, q.aggregate_id) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    match parked::list(&pool, only.as_ref(), q.after, q.limit).await {
        Ok(items) => {
            let next = (items.len() as i64 == q.limit)
                .then(|| items.last().map(|i| i.id))
                .flatten();
            Json(json!({ "items": items, "next_after": next })).into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// Which aggregate to release or discard.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    #[serde(default)]
    all: bool,
}

fn body(body: Result<Json<Target>, JsonRejection>) -> Result<Target, Box<Response>> {
    body.map(|Json(t)| t).map_err(|e| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            e.body_text().lines().next().unwrap_or("invalid body"),
        ))
    })
}

async fn release(State(pool): State<PgPool>, req: Result<Json<Target>, JsonRejection>) -> Response {
    let t = match body(req) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let targets = match (aggregate(t.aggregate_type, t.aggregate_id), t.all) {
        (Err(r), _) => return *r,
        (Ok(Some(a)), false) => vec![a],
        (Ok(None), true) => match parked::aggregates(&pool).await {
            Ok(all) => all,
            Err(e) => return unavailable(e),
        },
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_aggregate",
                "give aggregate_type and aggregate_id, or \"all\": true",
            );
        }
    };
    let mut released = Vec::new();
    for a in &targets {
        match parked::release(&pool, a).await {
            Ok(Some(m)) => released.push(m),
            Ok(None) if !t.all => {
                return problem(
                    StatusCode::NOT_FOUND,
                    "nothing_parked",
                    format!("no parked outbox rows of {a}"),
                );
            }
            Ok(None) => {}
            Err(e) => return unavailable(e),
        }
    }
    Json(json!({ "released": released })).into_response()
}

async fn discard(State(pool): State<PgPool>, req: Result<Json<Target>, JsonRejection>) -> Response {
    let t = match body(req) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let a = match (aggregate(t.aggregate_type, t.aggregate_id), t.all) {
        (Err(r), _) => return *r,
        (Ok(Some(a)), false) => a,
        // Discarding loses events for the read models: one aggregate at a time, named.
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_aggregate",
                "give aggregate_type and aggregate_id (discard takes one aggregate at a time)",
            );
        }
    };
    match parked::discard(&pool, &a).await {
        Ok(Some(m)) => Json(json!({ "discarded": m, "note": DISCARD_NOTE })).into_response(),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            "nothing_parked",
            format!("no parked outbox rows of {a}"),
        ),
        Err(e) => unavailable(e),
    }
}
