//! The HTTP API: commands in, state, history, correlations and the global feed out.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use eventfold_auth::{Authenticator, Principal, authenticate, require_scope, scope};
use eventfold_postgres::bus::BusMetrics;
use eventfold_postgres::{Actor, ActorKind, CommandMeta, EventStore, FeedCursor};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::audit::{AuditQuery, envelope};
use crate::domains::{Domains, Submission};
use crate::openapi;
use crate::problem::Problem;
use crate::stats::{self, StatsSettings};

/// Longest aggregate id accepted, in characters (a limit the OpenAPI document can state; in bytes
/// it could not).
pub const MAX_AGGREGATE_ID_CHARS: usize = 256;
/// Most events per page.
pub const MAX_PAGE: i64 = 1000;
const DEFAULT_PAGE: i64 = 100;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct Api {
    /// Aggregate types and their buses.
    pub domains: Domains,
    /// The event store, for reads.
    pub store: EventStore,
    /// Command ids being handled by this process right now.
    pub in_flight: Arc<Mutex<HashSet<Uuid>>>,
    /// HTTP metrics.
    pub metrics: HttpMetrics,
    /// The command buses' metrics, for `/v1/health`.
    pub bus_metrics: Option<BusMetrics>,
    /// How the event statistics are caught up on a call.
    pub stats: StatsSettings,
    /// Keeps the statistics maintainer running while the API lives.
    pub alive: crate::stats::Alive,
}

/// Request counts and latencies by route.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: prometheus::IntCounterVec,
    latency: prometheus::HistogramVec,
}

impl HttpMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )?;
        let latency = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["method", "route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Self { requests, latency })
    }
}

/// The API routes, with `body_limit` bytes as the largest accepted body. Every route but
/// `/openapi.json` needs a bearer token (`auth`); reads (statistics and health included) need
/// `events:read`, commands `commands:write`.
pub fn router(api: Api, auth: Authenticator, body_limit: usize) -> Router {
    let metrics = api.metrics.clone();
    let needs = |s: &'static str| middleware::from_fn_with_state(s, require_scope);
    let authenticated = Router::new()
        .route("/v1/types", get(list_types))
        .route(
            "/v1/types/{aggregate_type}/state-machine",
            get(state_machine),
        )
        .route(
            "/v1/events",
            get(feed).route_layer(needs(scope::EVENTS_READ)),
        )
        .route(
            "/v1/stats",
            get(stats::event_stats).route_layer(needs(scope::EVENTS_READ)),
        )
        .route(
            "/v1/health",
            get(stats::health).route_layer(needs(scope::EVENTS_READ)),
        )
        .route(
            "/v1/correlations/{correlation_id}/events",
            get(correlation).route_layer(needs(scope::EVENTS_READ)),
        )
        .route(
            "/v1/{aggregate_type}/{aggregate_id}",
            get(state).route_layer(needs(scope::EVENTS_READ)),
        )
        .route(
            "/v1/{aggregate_type}/{aggregate_id}/state-machine",
            get(instance_state_machine).route_layer(needs(scope::EVENTS_READ)),
        )
        .route(
            "/v1/{aggregate_type}/{aggregate_id}/events",
            get(history).route_layer(needs(scope::EVENTS_READ)),
        )
        .route(
            "/v1/{aggregate_type}/{aggregate_id}/commands/{command}",
            post(command).route_layer(needs(scope::COMMANDS_WRITE)),
        )
        .route_layer(middleware::from_fn_with_state(auth, authenticate));
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .merge(authenticated)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(metrics, observe))
        .with_state(api)
}

async fn observe(State(m): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = eventfold_runtime::limits::method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    m.latency
        .with_label_values(&[method, &route])
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[method, &route, response.status().as_str()])
        .inc();
    response
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this resource; see /openapi.json",
    )
}

fn path_problem(e: PathRejection) -> Problem {
    Problem::bad_request("invalid_path", e.body_text())
}

fn query_problem(e: QueryRejection) -> Problem {
    Problem::bad_request("invalid_query", e.body_text())
}

/// `POST /v1/{aggregate_type}/{aggregate_id}/commands/{command}`.
#[derive(Debug, Deserialize)]
struct CommandQuery {
    expected_version: Option<i64>,
    command_id: Option<Uuid>,
}

async fn command(
    State(api): State<Api>,
    principal: Principal,
    path: Result<Path<(String, String, String)>, PathRejection>,
    query: Result<Query<CommandQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let Path((aggregate_type, aggregate_id, command)) = path.map_err(path_problem)?;
    let Query(query) = query.map_err(query_problem)?;
    let domain = api.domains.get(&aggregate_type)?;
    if !domain.command_names().contains(&command.as_str()) {
        return Err(Problem::not_found(
            "unknown_command",
            format!(
                "{aggregate_type} has no command `{command}`; known: {}",
                domain.command_names().join(", ")
            ),
        ));
    }
    check_aggregate_id(&aggregate_id)?;
    if let Some(v) = query.expected_version
        && v < 0
    {
        return Err(Problem::bad_request(
            "invalid_query",
            "expected_version must be 0 or more",
        ));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is larger than the limit",
            )
        } else {
            Problem::bad_request("unreadable_body", e.body_text())
        }
    })?;
    let body = json_body(&headers, &body)?;
    let tenant = tenant_of(&principal, &headers)?;
    let command_id = command_id(query.command_id, idempotency_key(&headers, tenant)?)?;
    let meta = CommandMeta {
        command_id,
        correlation_id: uuid_header(&headers, "x-correlation-id")?.unwrap_or(command_id),
        causation_id: uuid_header(&headers, "x-causation-id")?,
        actor: actor(&headers, &principal)?,
        tenant: tenant.to_owned(),
        metadata: metadata(&headers, &principal)?,
        occurred_at: Utc::now(),
    };
    let request_hash = request_hash(
        &aggregate_type,
        &aggregate_id,
        &command,
        &body,
        query.expected_version,
        tenant,
    );
    let _in_flight = InFlight::claim(&api.in_flight, command_id)?;
    let handled = domain
        .execute(Submission {
            aggregate_id: aggregate_id.clone(),
            command,
            body,
            meta: meta.clone(),
            request_hash,
            expected_version: query.expected_version,
        })
        .await?;
    let mut response = axum::Json(json!({
        "command_id": handled.command_id,
        "aggregate_type": aggregate_type,
        "aggregate_id": aggregate_id,
        "version": handled.version,
        "event_ids": handled.event_ids,
        "correlation_id": meta.correlation_id,
        "replayed": handled.replayed,
    }))
    .into_response();
    if handled.replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            header::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// The command id `?command_id=` and `Idempotency-Key` name (a new one when neither is sent).
/// Both are well-formed on their own when they disagree, so that is 422 `command_id_mismatch`,
/// a rule between two parameters that the OpenAPI document states in words only.
fn command_id(from_query: Option<Uuid>, from_key: Option<Uuid>) -> Result<Uuid, Problem> {
    match (from_query, from_key) {
        (Some(a), Some(b)) if a != b => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "command_id_mismatch",
            "Idempotency-Key and command_id name different commands",
        )),
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => Ok(Uuid::now_v7()),
    }
}

/// Marks a command id as being handled here; a second request with it gets 409 until it is done.
struct InFlight {
    set: Arc<Mutex<HashSet<Uuid>>>,
    id: Uuid,
}

impl InFlight {
    fn claim(set: &Arc<Mutex<HashSet<Uuid>>>, id: Uuid) -> Result<Self, Problem> {
        let fresh = set.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
        if !fresh {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_flight",
                "a request with this command id is still being handled; retry later",
            ));
        }
        Ok(Self {
            set: set.clone(),
            id,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// An aggregate id as commands write it; the reads check it too, so that an id no command can
/// write (a NUL, which PostgreSQL refuses in text) is a 400 rather than a store error.
fn check_aggregate_id(id: &str) -> Result<(), Problem> {
    if id.is_empty()
        || id.chars().count() > MAX_AGGREGATE_ID_CHARS
        || id.chars().any(char::is_control)
    {
        return Err(Problem::bad_request(
            "invalid_aggregate_id",
            format!(
                "an aggregate id has 1 to {MAX_AGGREGATE_ID_CHARS} characters and no control characters"
            ),
        ));
    }
    Ok(())
}

/// The caller's tenant: the token's. `X-Tenant`, when sent, must name the same one.
pub(crate) fn tenant_of<'p>(
    principal: &'p Principal,
    headers: &HeaderMap,
) -> Result<&'p str, Problem> {
    if let Some(claimed) = header_text(headers, "x-tenant")?
        && claimed != principal.tenant
    {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "tenant_mismatch",
            "X-Tenant names another tenant than the token's",
        ));
    }
    Ok(&principal.tenant)
}

/// The 404 of an aggregate without events (in the caller's tenant: another tenant's stream with the
/// same id is another stream).
fn no_events(aggregate_type: &str, aggregate_id: &str) -> Problem {
    Problem::not_found(
        "aggregate_not_found",
        format!("{aggregate_type} {aggregate_id} has no events"),
    )
}

/// The body as a JSON object: empty means `{}`; otherwise it must be declared and be JSON.
fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, Problem> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json"
        && !(essence.starts_with("application/") && essence.ends_with("+json"))
    {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected Content-Type application/json, got `{content_type}`"),
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Problem::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
            .with("line", e.line())
            .with("column", e.column())
    })?;
    if !value.is_object() {
        return Err(Problem::field(
            "invalid_body",
            "",
            "the body must be a JSON object",
        ));
    }
    Ok(value)
}

/// An optional header's value; one sent empty counts as absent (as HTTP clients and OpenAPI tools
/// send an optional header they have no value for). `Idempotency-Key` is read with
/// [`raw_header_text`] instead: an empty key is refused rather than losing the idempotency.
fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Problem> {
    Ok(raw_header_text(headers, name)?.filter(|v| !v.trim().is_empty()))
}

/// A header's value as sent, empty included.
fn raw_header_text<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Problem> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| {
                Problem::bad_request("invalid_header", format!("{name} is not ASCII text"))
            })
        })
        .transpose()
}

fn uuid_header(headers: &HeaderMap, name: &str) -> Result<Option<Uuid>, Problem> {
    header_text(headers, name)?
        .map(|v| {
            Uuid::parse_str(v.trim()).map_err(|_| {
                Problem::bad_request("invalid_header", format!("{name} is not a UUID"))
            })
        })
        .transpose()
}

/// The command id named by `Idempotency-Key`: the key itself when it is a UUID, otherwise a
/// UUID derived from the tenant and the key.
fn idempotency_key(headers: &HeaderMap, tenant: &str) -> Result<Option<Uuid>, Problem> {
    let Some(key) = raw_header_text(headers, "idempotency-key")? else {
        return Ok(None);
    };
    // A structured-header string arrives quoted; a key of quotes only is taken as it is.
    let key = key.trim();
    let key = Some(key.trim_matches('"'))
        .filter(|k| !k.is_empty())
        .unwrap_or(key);
    // Visible ASCII and inner spaces, as the OpenAPI document states (a tab was taken before).
    if key.is_empty() || key.len() > 255 || !key.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
        return Err(Problem::bad_request(
            "invalid_header",
            "Idempotency-Key has 1 to 255 visible ASCII characters or spaces",
        ));
    }
    if let Ok(id) = Uuid::parse_str(key) {
        return Ok(Some(id));
    }
    let digest = Sha256::digest(format!("idempotency-key\0{tenant}\0{key}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Ok(Some(uuid::Builder::from_custom_bytes(bytes).into_uuid()))
}

/// Who the events are recorded as: the token's subject (`<actor_kind>:<sub>`), or
/// `X-Actor: <user|agent|system>:<id>` when the token holds the `impersonate` scope (the token's
/// subject is then kept in the metadata as `impersonated_by`).
fn actor(headers: &HeaderMap, principal: &Principal) -> Result<Actor, Problem> {
    let Some(raw) = header_text(headers, "x-actor")? else {
        return Ok(Actor {
            kind: principal.actor_kind.parse().unwrap_or(ActorKind::User),
            id: principal.subject.clone(),
        });
    };
    if !principal.has(scope::IMPERSONATE) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "impersonation_not_allowed",
            "X-Actor needs a token with the impersonate scope",
        ));
    }
    let bad = || {
        Problem::bad_request(
            "invalid_header",
            "X-Actor is <user|agent|system>:<id> with an id of 1 to 128 characters",
        )
    };
    Actor::parse(raw).ok_or_else(bad)
}

/// Request context kept with the events: the W3C trace context when sent, and the token's
/// subject when it acts for another actor.
fn metadata(headers: &HeaderMap, principal: &Principal) -> Result<Value, Problem> {
    let mut meta = serde_json::Map::new();
    if header_text(headers, "x-actor")?.is_some() {
        meta.insert(
            "impersonated_by".into(),
            format!("{}:{}", principal.actor_kind, principal.subject).into(),
        );
    }
    if let Some(tp) = header_text(headers, "traceparent")? {
        // version-trace_id-parent_id-flags, lowercase hex of 2, 32, 16 and 2 digits (W3C).
        let lengths: Vec<usize> = tp.split('-').map(str::len).collect();
        let valid = lengths == [2, 32, 16, 2]
            && tp
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c) || c == '-');
        if !valid {
            return Err(Problem::bad_request(
                "invalid_header",
                "traceparent is not a W3C trace context",
            ));
        }
        meta.insert("traceparent".into(), tp.into());
    }
    Ok(Value::Object(meta))
}

/// SHA-256 of the canonical request (keys sorted), binding a command id to one request.
fn request_hash(
    aggregate_type: &str,
    aggregate_id: &str,
    command: &str,
    body: &Value,
    expected_version: Option<i64>,
    tenant: &str,
) -> Vec<u8> {
    let canonical = json!([
        aggregate_type,
        aggregate_id,
        command,
        body,
        expected_version,
        tenant
    ]);
    Sha256::digest(canonical.to_string().as_bytes()).to_vec()
}

#[derive(Debug, Deserialize)]
struct StateQuery {
    at_version: Option<i64>,
    as_of: Option<DateTime<Utc>>,
}

async fn state(
    State(api): State<Api>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<StateQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Path((aggregate_type, aggregate_id)) = path.map_err(path_problem)?;
    let Query(q) = query.map_err(query_problem)?;
    let domain = api.domains.get(&aggregate_type)?;
    check_aggregate_id(&aggregate_id)?;
    let tenant = tenant_of(&principal, &headers)?.to_owned();
    if let Some(v) = q.at_version
        && v < 1
    {
        return Err(Problem::bad_request(
            "invalid_query",
            "at_version must be 1 or more",
        ));
    }
    let view = domain
        .state(tenant, aggregate_id, q.at_version, q.as_of)
        .await?;
    Ok(axum::Json(view).into_response())
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    after_version: Option<i64>,
    limit: Option<i64>,
}

fn page_limit(limit: Option<i64>) -> Result<i64, Problem> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(Problem::bad_request(
            "invalid_query",
            format!("limit is 1 to {MAX_PAGE}"),
        )),
    }
}

/// `GET /v1/{aggregate_type}/{aggregate_id}/events`: the stream's events after a version, only
/// those meeting the audit filters; 404 only for a stream without any event (a filter that matches
/// nothing is an empty page).
async fn history(
    State(api): State<Api>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
    audit: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Path((aggregate_type, aggregate_id)) = path.map_err(path_problem)?;
    let Query(q) = query.map_err(query_problem)?;
    let Query(audit) = audit.map_err(query_problem)?;
    api.domains.get(&aggregate_type)?;
    check_aggregate_id(&aggregate_id)?;
    let tenant = tenant_of(&principal, &headers)?;
    let limit = page_limit(q.limit)?;
    let filter = audit.filter()?;
    let after = q.after_version.unwrap_or(0).max(0);
    let mut events = api
        .store
        .history(
            tenant,
            &aggregate_type,
            &aggregate_id,
            after,
            limit + 1,
            &filter,
        )
        .await?;
    if events.is_empty()
        && after == 0
        && api
            .store
            .current_version(tenant, &aggregate_type, &aggregate_id)
            .await?
            == 0
    {
        return Err(no_events(&aggregate_type, &aggregate_id));
    }
    let more = events.len() as i64 > limit;
    events.truncate(limit as usize);
    let next = more.then(|| events.last().map(|e| e.version)).flatten();
    Ok(axum::Json(json!({
        "aggregate_type": aggregate_type,
        "aggregate_id": aggregate_id,
        "events": events.iter().map(|e| envelope(&api.domains, e, audit.as_stored())).collect::<Vec<_>>(),
        "next_after_version": next,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
struct CorrelationQuery {
    after_position: Option<i64>,
    limit: Option<i64>,
}

async fn correlation(
    State(api): State<Api>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<CorrelationQuery>, QueryRejection>,
    audit: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Path(raw) = path.map_err(path_problem)?;
    let Query(q) = query.map_err(query_problem)?;
    let Query(audit) = audit.map_err(query_problem)?;
    let id = Uuid::parse_str(&raw)
        .map_err(|_| Problem::bad_request("invalid_path", "the correlation id is not a UUID"))?;
    let limit = page_limit(q.limit)?;
    let after = q.after_position.unwrap_or(0).max(0);
    let tenant = tenant_of(&principal, &headers)?;
    let mut events = api
        .store
        .by_correlation(id, Some(tenant), after, limit + 1)
        .await?;
    if events.is_empty() && after == 0 {
        return Err(Problem::not_found(
            "correlation_not_found",
            format!("no events with correlation id {id}"),
        ));
    }
    let more = events.len() as i64 > limit;
    events.truncate(limit as usize);
    let next = more.then(|| events.last().map(|e| e.position)).flatten();
    Ok(axum::Json(json!({
        "correlation_id": id,
        "events": events.iter().map(|e| envelope(&api.domains, e, audit.as_stored())).collect::<Vec<_>>(),
        "next_after_position": next,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
struct FeedQuery {
    after: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/events`: the tenant's global feed after a cursor, only the events meeting the audit
/// filters; `next` is the cursor of the last event of the page (an empty page: nothing more yet).
async fn feed(
    State(api): State<Api>,
    principal: Principal,
    headers: HeaderMap,
    query: Result<Query<FeedQuery>, QueryRejection>,
    audit: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let tenant = tenant_of(&principal, &headers)?;
    let Query(q) = query.map_err(query_problem)?;
    let Query(audit) = audit.map_err(query_problem)?;
    let limit = page_limit(q.limit)?;
    let cursor: FeedCursor = match q.after.as_deref() {
        None | Some("") => FeedCursor::default(),
        Some(raw) => raw
            .parse()
            .map_err(|e: String| Problem::bad_request("invalid_query", e))?,
    };
    let filter = audit.filter()?;
    let events = api
        .store
        .feed_filtered(cursor, limit, &filter, Some(tenant))
        .await?;
    let next = events
        .last()
        .map(|e| FeedCursor {
            tx_id: e.tx_id,
            position: e.position,
        })
        .unwrap_or(cursor);
    Ok(axum::Json(json!({
        "events": events.iter().map(|e| envelope(&api.domains, e, audit.as_stored())).collect::<Vec<_>>(),
        "next": next.to_string(),
    }))
    .into_response())
}

async fn list_types(State(api): State<Api>) -> Response {
    let types: Vec<Value> = eventfold_reference::registry::AGGREGATE_TYPES
        .iter()
        .filter_map(|t| {
            let d = api.domains.get(t).ok()?;
            Some(json!({
                "aggregate_type": t,
                "commands": d.command_names(),
                "events": eventfold_reference::registry::event_types(t).unwrap_or_default(),
            }))
        })
        .collect();
    axum::Json(json!({ "aggregate_types": types })).into_response()
}

async fn state_machine(
    State(api): State<Api>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let Path(aggregate_type) = path.map_err(path_problem)?;
    api.domains.get(&aggregate_type)?;
    let mermaid = eventfold_reference::registry::mermaid(&aggregate_type).unwrap_or_default();
    Ok((
        [(header::CONTENT_TYPE, "text/vnd.mermaid; charset=utf-8")],
        mermaid,
    )
        .into_response())
}

/// `GET /v1/{aggregate_type}/{aggregate_id}/state-machine`: the type's diagram with the
/// aggregate's current state marked; 404 like the state route for an aggregate without events in
/// the caller's tenant.
async fn instance_state_machine(
    State(api): State<Api>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    let Path((aggregate_type, aggregate_id)) = path.map_err(path_problem)?;
    let domain = api.domains.get(&aggregate_type)?;
    check_aggregate_id(&aggregate_id)?;
    let tenant = tenant_of(&principal, &headers)?.to_owned();
    let view = domain.state(tenant, aggregate_id, None, None).await?;
    let machine = eventfold_reference::registry::state_machine(&aggregate_type)
        .ok_or_else(|| no_events(&aggregate_type, &view.aggregate_id))?;
    Ok(axum::Json(json!({
        "aggregate_type": view.aggregate_type,
        "aggregate_id": view.aggregate_id,
        "version": view.version,
        "current_state": view.state_name,
        "states": machine.states(),
        "mermaid": machine.to_mermaid_at(view.state_name),
    }))
    .into_response())
}

async fn openapi_json() -> Response {
    axum::Json(openapi::document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_id_and_an_idempotency_key_that_disagree_are_unprocessable() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let p = command_id(Some(a), Some(b)).unwrap_err();
        assert_eq!(p.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(p.code(), "command_id_mismatch");
        assert_eq!(command_id(Some(a), Some(a)).unwrap(), a);
        assert_eq!(command_id(None, Some(b)).unwrap(), b);
        assert_eq!(command_id(Some(a), None).unwrap(), a);
    }

    #[test]
    fn the_request_hash_ignores_key_order_but_not_values() {
        let a = request_hash("T", "1", "C", &json!({"a": 1, "b": 2}), None, "t");
        let b = request_hash("T", "1", "C", &json!({"b": 2, "a": 1}), None, "t");
        let c = request_hash("T", "1", "C", &json!({"a": 1, "b": 3}), None, "t");
        let d = request_hash("T", "1", "C", &json!({"a": 1, "b": 2}), Some(1), "t");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn a_non_uuid_idempotency_key_maps_to_a_stable_per_tenant_uuid() {
        let mut h = HeaderMap::new();
        h.insert("idempotency-key", "order-42".parse().unwrap());
        let one = idempotency_key(&h, "t1").unwrap().unwrap();
        assert_eq!(idempotency_key(&h, "t1").unwrap().unwrap(), one);
        assert_ne!(idempotency_key(&h, "t2").unwrap().unwrap(), one);
        let id = Uuid::now_v7();
        h.insert("idempotency-key", id.to_string().parse().unwrap());
        assert_eq!(idempotency_key(&h, "t1").unwrap().unwrap(), id);
    }

    fn principal(actor_kind: &str, scopes: &[&str]) -> Principal {
        Principal {
            subject: "alice".into(),
            actor_kind: actor_kind.into(),
            tenant: "t1".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn the_actor_is_the_tokens_subject_unless_it_may_impersonate() {
        let mut h = HeaderMap::new();
        let agent = principal("agent", &[scope::COMMANDS_WRITE]);
        let a = actor(&h, &agent).unwrap();
        assert_eq!((a.kind, a.id.as_str()), (ActorKind::Agent, "alice"));
        h.insert("x-actor", "agent:theology".parse().unwrap());
        assert_eq!(
            actor(&h, &agent).unwrap_err().code(),
            "impersonation_not_allowed"
        );
        let proxy = principal("system", &[scope::COMMANDS_WRITE, scope::IMPERSONATE]);
        let a = actor(&h, &proxy).unwrap();
        assert_eq!((a.kind, a.id.as_str()), (ActorKind::Agent, "theology"));
        assert_eq!(
            metadata(&h, &proxy).unwrap()["impersonated_by"],
            "system:alice"
        );
        h.insert("x-actor", "robot:x".parse().unwrap());
        assert_eq!(actor(&h, &proxy).unwrap_err().code(), "invalid_header");
    }

    #[test]
    fn an_empty_optional_header_counts_as_absent_but_an_empty_idempotency_key_is_refused() {
        let mut h = HeaderMap::new();
        let p = principal("user", &[scope::IMPERSONATE]);
        for name in [
            "x-actor",
            "traceparent",
            "x-correlation-id",
            "x-causation-id",
            "x-tenant",
        ] {
            h.insert(name, "".parse().unwrap());
        }
        assert_eq!(metadata(&h, &p).unwrap(), json!({}));
        assert_eq!(actor(&h, &p).unwrap().id, "alice");
        assert_eq!(uuid_header(&h, "x-correlation-id").unwrap(), None);
        assert_eq!(tenant_of(&p, &h).unwrap(), "t1");
        h.insert("idempotency-key", "\"\"".parse().unwrap());
        assert!(idempotency_key(&h, "t1").unwrap().is_some());
        for bad in ["", "a\tb"] {
            h.insert("idempotency-key", bad.parse().unwrap());
            assert_eq!(
                idempotency_key(&h, "t1").unwrap_err().code(),
                "invalid_header"
            );
        }
    }

    #[test]
    fn a_traceparent_must_be_a_w3c_trace_context() {
        let mut h = HeaderMap::new();
        let p = principal("user", &[]);
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        h.insert("traceparent", tp.parse().unwrap());
        assert_eq!(metadata(&h, &p).unwrap()["traceparent"], tp);
        for bad in [
            "null",
            "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
            "0-00af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            h.insert("traceparent", bad.parse().unwrap());
            assert_eq!(metadata(&h, &p).unwrap_err().code(), "invalid_header");
        }
    }

    #[test]
    fn x_tenant_may_only_repeat_the_tokens_tenant() {
        let mut h = HeaderMap::new();
        let p = principal("user", &[]);
        assert_eq!(tenant_of(&p, &h).unwrap(), "t1");
        h.insert("x-tenant", "t1".parse().unwrap());
        assert_eq!(tenant_of(&p, &h).unwrap(), "t1");
        h.insert("x-tenant", "t2".parse().unwrap());
        assert_eq!(tenant_of(&p, &h).unwrap_err().code(), "tenant_mismatch");
    }
}
