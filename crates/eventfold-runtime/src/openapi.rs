//! The pieces every service's OpenAPI 3.1 document shares: the problem answer and its schema,
//! the bearer security scheme, the 401/403/503 answers of an authenticated route, and the
//! `/openapi.json` route that serves a document without a token (a document is no secret).

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

/// The `code`s of a refused bearer token or scope, as `eventfold-auth` answers them.
pub const AUTH_CODES: &[&str] = &[
    "insufficient_scope",
    "missing_token",
    "malformed_token",
    "bad_signature",
    "token_expired",
    "token_not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "algorithm_refused",
    "unknown_key",
    "missing_claim",
    "invalid_subject",
    "missing_tenant",
    "invalid_tenant",
    "invalid_actor_kind",
    "invalid_claim",
    "jwks_unavailable",
    "issuer_key",
];

/// The `code`s every listener may answer besides a route's own: no route, a wrong method, the
/// request limits.
pub const SERVER_CODES: &[&str] = &[
    "no_route",
    "method_not_allowed",
    "overloaded",
    "request_timeout",
];

/// An answer with a problem+json body, `description` naming its codes.
pub fn problem_answer(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// An answer with a JSON body of the component schema `schema`.
pub fn json_answer(schema: &str) -> Value {
    json!({
        "description": "OK",
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

/// `own` answers plus 401 (with `WWW-Authenticate`), 403 (`forbidden` names its codes) and 503.
pub fn authenticated_answers(mut own: Value, forbidden: &str) -> Value {
    if let Some(r) = own.as_object_mut() {
        r.insert("401".into(), json!({
            "description": "No, a malformed, expired or otherwise refused bearer token (code names why)",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer realm=\"eventfold\", error=\"invalid_token\""}},
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        }));
        r.insert("403".into(), problem_answer(forbidden));
        r.insert("503".into(), json!({
            "description": "store_unavailable, overloaded or request_timeout; retry later",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        }));
    }
    own
}

/// The RFC 9457 problem schema whose `code` is one of `codes`, [`AUTH_CODES`] or [`SERVER_CODES`].
pub fn problem_schema(codes: &[&str]) -> Value {
    let all: Vec<&str> = codes
        .iter()
        .chain(AUTH_CODES)
        .chain(SERVER_CODES)
        .copied()
        .collect();
    json!({"type": "object", "description": "RFC 9457 problem details with a machine-readable code",
        "required": ["type", "title", "status", "detail", "code"], "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"}, "code": {"type": "string", "enum": all},
        "pointer": {"type": "string", "description": "RFC 6901 pointer of the refused field"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "pointer": {"type": "string"}, "detail": {"type": "string"}}}}}})
}

/// A document: `paths` (plus `/openapi.json` itself), the component `schemas` (plus `Problem`
/// with `codes`) and a bearer scheme described by `scopes`.
pub fn document(
    title: &str,
    description: &str,
    mut paths: Value,
    mut schemas: Value,
    codes: &[&str],
    scopes: &str,
) -> Value {
    schemas["Problem"] = problem_schema(codes);
    paths["/openapi.json"] = json!({"get": {"operationId": "openapi", "summary": "This document", "security": [],
        "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": title, "version": env!("CARGO_PKG_VERSION"), "description": description},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": scopes}},
            "schemas": schemas
        }
    })
}

/// `GET /openapi.json` answering `document`, without a token.
pub fn route(document: Value) -> Router {
    let document = Arc::new(document);
    Router::new().route(
        "/openapi.json",
        get(move || {
            let document = document.clone();
            async move { axum::Json((*document).clone()) }
        }),
    )
}

/// Every `#/components/schemas/...` reference of `document` that names no component.
pub fn dangling_references(document: &Value) -> Vec<String> {
    let text = document.to_string();
    let prefix = "#/components/schemas/";
    text.match_indices(prefix)
        .map(|(at, _)| {
            text[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !document["components"]["schemas"][name].is_object())
        .collect()
}
