//! The OpenAPI 3.1 document of the relay's admin API (admin listener, scope `admin`): parked
//! outbox rows listed, released and discarded (`admin`); served as `/openapi.json` beside it.

use eventfold_runtime::openapi::{authenticated_answers, document, json_answer, problem_answer};
use serde_json::{Value, json};

/// The codes of the admin API's own problem answers.
const PROBLEM_CODES: &[&str] = &[
    "invalid_query",
    "invalid_body",
    "invalid_aggregate",
    "nothing_parked",
    "store_unavailable",
];

/// The admin API's document.
pub fn admin_document() -> Value {
    let text = json!({"type": "string"});
    let target = json!({"type": "object", "additionalProperties": false, "properties": {
        "aggregate_type": text, "aggregate_id": text,
        "all": {"type": "boolean", "default": false, "description": "Every parked aggregate (release only)"}}});
    let body = |schema: &Value| json!({"required": true, "content": {"application/json": {"schema": schema}}});
    let paths = json!({
        "/v1/outbox/parked": {"get": {
            "operationId": "parked", "summary": "Parked outbox rows, by id, of one aggregate or all",
            "parameters": [
                {"name": "aggregate_type", "in": "query", "schema": text, "description": "With aggregate_id: only this aggregate"},
                {"name": "aggregate_id", "in": "query", "schema": text, "description": "With aggregate_type"},
                {"name": "after", "in": "query", "schema": {"type": "integer", "format": "int64"}, "description": "Ids after this one (default 0)"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}, "description": "Page size (default 100)"}],
            "responses": authenticated_answers(json!({"200": json_answer("ParkedPage"), "400": problem_answer("invalid_query, or invalid_aggregate (only one of aggregate_type and aggregate_id)")}), "insufficient_scope")
        }},
        "/v1/outbox/parked/release": {"post": {
            "operationId": "release", "summary": "Put one aggregate's parked rows (or, with all, every aggregate's) back into the outbox, in order",
            "requestBody": body(&target),
            "responses": authenticated_answers(json!({"200": json_answer("Released"), "400": problem_answer("invalid_body or invalid_aggregate (give aggregate_type and aggregate_id, or all: true)"), "404": problem_answer("nothing_parked")}), "insufficient_scope")
        }},
        "/v1/outbox/parked/discard": {"post": {
            "operationId": "discard", "summary": "Delete one aggregate's parked rows (its events reach read models only through a rebuild)",
            "requestBody": body(&target),
            "responses": authenticated_answers(json!({"200": json_answer("Discarded"), "400": problem_answer("invalid_body or invalid_aggregate (one aggregate, named)"), "404": problem_answer("nothing_parked")}), "insufficient_scope")
        }}
    });
    let moved = json!({"type": "object", "required": ["aggregate", "ids", "versions"], "properties": {
        "aggregate": {"type": "string", "description": "<type>/<id>"},
        "ids": {"type": "array", "items": {"type": "integer"}},
        "versions": {"type": "array", "items": {"type": "integer"}}}});
    let schemas = json!({
        "ParkedPage": {"type": "object", "required": ["items", "next_after"], "properties": {
            "items": {"type": "array", "items": {"type": "object",
                "required": ["id", "aggregate_type", "aggregate_id", "version", "event_position", "error", "parked_at"], "properties": {
                "id": {"type": "integer"}, "aggregate_type": text, "aggregate_id": text,
                "version": {"type": "integer"}, "event_position": {"type": "integer"},
                "reason": {"type": ["string", "null"]}, "error": text,
                "blocked_by": {"type": ["integer", "null"]}, "parked_at": {"type": "string", "format": "date-time"}}}},
            "next_after": {"type": ["integer", "null"]}}},
        "Released": {"type": "object", "required": ["released"], "properties": {"released": {"type": "array", "items": moved}}},
        "Discarded": {"type": "object", "required": ["discarded", "note"], "properties": {"discarded": moved, "note": text}}
    });
    document(
        "eventfold outbox-relay admin API",
        "Parked outbox rows, on the admin listener only. Needs `Authorization: Bearer <JWT>` with the scope admin.",
        paths,
        schemas,
        PROBLEM_CODES,
        "RS256 or EdDSA token of a trusted issuer with the scope admin",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves() {
        let doc = admin_document();
        assert_eq!(
            eventfold_runtime::openapi::dangling_references(&doc),
            Vec::<String>::new()
        );
        assert!(doc["paths"]["/v1/outbox/parked/release"]["post"].is_object());
    }
}
