//! The projector's admin API, served on the admin listener (`ADMIN_ADDR`) only: read model
//! state, parked events (list, replay, discard).
//!
//! `POST /v1/parked/{read_model}/replay` with `{aggregate_type, aggregate_id}` (and `tenant`, default
//! `default`: the stream is per tenant) replays that
//! aggregate only if it is blocked (has parked events in the read model); otherwise it answers
//! 404 `nothing_parked` and changes nothing, as the relay's release does for an aggregate without
//! parked rows. Without a body (or `{}`), every blocked aggregate is replayed.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use eventfold_runtime::Shutdown;
use serde::Deserialize;
use serde_json::json;

use crate::parking::Parking;
use crate::projection::{Projection, Registry};
use crate::rebuild::{RebuildError, Stores, replay_parked};
use crate::replay::ReplayRequest as EventsReplay;
use crate::state;
use crate::target::AggregateKey;
use eventfold_runtime::problem;

#[derive(Clone)]
struct Admin {
    registry: Arc<Registry>,
    stores: Stores,
}

/// `GET /v1/read-models`, `GET /v1/parked/{read_model}`, `POST /v1/parked/{read_model}/replay`,
/// `DELETE /v1/parked/{read_model}/{id}`, `POST /v1/read-models/{read_model}/replay`, for the
/// admin listener.
pub fn router(registry: Arc<Registry>, stores: Stores) -> axum::Router {
    axum::Router::new()
        .route("/v1/read-models", get(models))
        .route("/v1/read-models/{read_model}/replay", post(replay_events))
        .route("/v1/parked/{read_model}", get(list))
        .route("/v1/parked/{read_model}/replay", post(replay))
        .route("/v1/parked/{read_model}/{id}", delete(discard))
        .with_state(Admin { registry, stores })
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        e.to_string(),
    )
}

/// 400 naming the field by JSON pointer (`pointer`, and in `errors[]`), as the command API does.
fn field_problem(code: &str, field: &str, detail: &str) -> Response {
    let pointer = format!("/{field}");
    let body = json!({
        "type": format!("https://eventfold.dev/problems/{}", code.replace('_', "-")),
        "title": "Bad Request",
        "status": 400,
        "detail": detail,
        "code": code,
        "pointer": pointer,
        "errors": [{"pointer": pointer, "detail": detail}],
    });
    (
        StatusCode::BAD_REQUEST,
        [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

impl Admin {
    fn model(&self, name: &str) -> Result<Arc<dyn Projection>, Box<Response>> {
        self.registry.get(name).cloned().ok_or_else(|| {
            Box::new(problem(
                StatusCode::NOT_FOUND,
                "unknown_read_model",
                format!("no read model named `{name}`"),
            ))
        })
    }
}

async fn models(State(a): State<Admin>) -> Response {
    let mut out = Vec::new();
    for p in a.registry.all() {
        let s = match state::ensure(&a.stores.pool, &**p).await {
            Ok(s) => s,
            Err(e) => return unavailable(e),
        };
        let parked = match Parking::new(a.stores.pool.clone(), p.name(), None)
            .count()
            .await
        {
            Ok(n) => n,
            Err(e) => return unavailable(e),
        };
        out.push(json!({
            "name": p.name(),
            "store": p.store().as_str(),
            "aggregate_types": p.aggregate_types(),
            "generation": s.generation,
            "rebuilding": s.rebuilding,
            "parked": parked,
        }));
    }
    Json(json!({ "read_models": out })).into_response()
}

/// Paging of the parked list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    100
}

async fn list(
    State(a): State<Admin>,
    Path(name): Path<String>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let p = match a.model(&name) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let Query(page) = match page {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "bad_query", e.body_text()),
    };
    if !(1..=1000).contains(&page.limit) {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "limit must be between 1 and 1000",
        );
    }
    let parking = Parking::new(a.stores.pool.clone(), p.name(), None);
    match parking.list(page.after, page.limit).await {
        Ok(items) => {
            let next = (items.len() as i64 == page.limit)
                .then(|| items.last().map(|i| i.id))
                .flatten();
            Json(json!({ "items": items, "next_after": next })).into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// Which stream to replay (the tenant defaults to `default`); all blocked streams when absent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    tenant: Option<String>,
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
}

async fn replay(
    State(a): State<Admin>,
    Path(name): Path<String>,
    body: Result<Option<Json<ReplayRequest>>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let p = match a.model(&name) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let req = match body {
        Ok(b) => b.map(|Json(b)| b).unwrap_or_default(),
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_request",
                e.body_text().lines().next().unwrap_or("invalid body"),
            );
        }
    };
    let tenant = req.tenant.unwrap_or_else(|| "default".into());
    let only = match (req.aggregate_type, req.aggregate_id) {
        (Some(t), Some(i)) => Some(AggregateKey::new(tenant, t, i)),
        (None, None) => None,
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "give both aggregate_type and aggregate_id, or neither",
            );
        }
    };
    match replay_parked(&p, &a.stores, only, &Shutdown::new()).await {
        Ok(reports) => {
            let failed = reports.iter().filter(|r| r.error.is_some()).count();
            let status = if failed == 0 {
                StatusCode::OK
            } else {
                StatusCode::CONFLICT
            };
            (
                status,
                Json(json!({ "replayed": reports, "failed": failed })),
            )
                .into_response()
        }
        Err(e @ RebuildError::NotBlocked { .. }) => {
            problem(StatusCode::NOT_FOUND, "nothing_parked", e.to_string())
        }
        Err(e) => unavailable(e),
    }
}

async fn replay_events(
    State(a): State<Admin>,
    Path(name): Path<String>,
    body: Result<Json<EventsReplay>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let p = match a.model(&name) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let req = match body {
        Ok(Json(b)) => b,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_request",
                e.body_text().lines().next().unwrap_or("invalid body"),
            );
        }
    };
    match crate::replay::replay(&p, &a.stores, &req, &mut |_| {}, &Shutdown::new()).await {
        Ok(summary) => Json(summary).into_response(),
        Err(RebuildError::Invalid(e)) => field_problem("invalid_replay", e.field, &e.to_string()),
        Err(e @ RebuildError::Busy(_)) => {
            problem(StatusCode::CONFLICT, "rebuilding", e.to_string())
        }
        Err(e) => unavailable(e),
    }
}

async fn discard(State(a): State<Admin>, Path((name, id)): Path<(String, i64)>) -> Response {
    let p = match a.model(&name) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match Parking::new(a.stores.pool.clone(), p.name(), None)
        .discard(id)
        .await
    {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => problem(
            StatusCode::NOT_FOUND,
            "unknown_parked_event",
            format!("no parked event {id} in {name}"),
        ),
        Err(e) => unavailable(e),
    }
}
