//! The OpenAPI 3.1 documents of the projector: the read API of the `opportunities` read model
//! (public listener) and the admin API (admin listener), each served as `/openapi.json` on its
//! listener without a token. The row schemas follow the read model's tables
//! (`models::opportunities`); the replay body is the `replay::ReplayRequest` the handler parses.

use serde_json::{Value, json};

use eventfold_runtime::openapi::{authenticated_answers, document, json_answer, problem_answer};

/// The codes of the projector's own problem answers (authentication and limits are added).
const PROBLEM_CODES: &[&str] = &[
    "bad_query",
    "bad_cursor",
    "bad_request",
    "tenant_mismatch",
    "unknown_opportunity",
    "unknown_user",
    "unknown_read_model",
    "unknown_parked_event",
    "nothing_parked",
    "invalid_replay",
    "rebuilding",
    "read_model_not_ready",
    "store_unavailable",
];

fn problem(description: &str) -> Value {
    problem_answer(description)
}

fn ok(schema: &str) -> Value {
    json_answer(schema)
}

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

fn path(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": schema, "description": description})
}

fn answers(own: Value, forbidden: &str) -> Value {
    authenticated_answers(own, forbidden)
}

/// The read API's document (`GET /v1/read/...`, scope `read-models:read`).
pub fn read_document() -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    let text = json!({"type": "string"});
    // PostgreSQL refuses a NUL in text, so a filter holding one is 400 bad_query.
    let filter = json!({"type": "string", "pattern": "^[^\\u0000]*$"});
    let id = || {
        path(
            "id",
            json!({"type": "string", "minLength": 1}),
            "Aggregate id",
        )
    };
    let paths = json!({
        "/v1/read/opportunities": {"get": {
            "operationId": "listOpportunities",
            "summary": "The caller's tenant's opportunities, oldest first, filtered, paged by cursor",
            "parameters": [
                query("status", filter.clone(), "Only this status (e.g. created, validated, archived)"),
                query("ai_solution_type", filter.clone(), "Only this solution type"),
                query("ai_solution_category", filter.clone(), "Only this solution category"),
                query("min_confidence", json!({"type": "number", "minimum": 0.0, "maximum": 1.0}), "Only a confidence_score at least this"),
                query("tenant", filter.clone(), "Must be the token's tenant when given (else 403 tenant_mismatch)"),
                query("q", filter.clone(), "Title contains this text (case-insensitive)"),
                query("created_from", time.clone(), "Created at or after"),
                query("created_to", time.clone(), "Created before"),
                query("limit", json!({"type": "integer", "minimum": 1, "maximum": 500}), "Page size (default 50)"),
                query("after", filter.clone(), "The `next` of the previous page (422 bad_cursor for anything else)")
            ],
            "responses": answers(json!({"200": ok("OpportunityPage"), "400": problem("bad_query: a bad value, or a NUL in a text parameter (unknown parameters are ignored)"), "422": problem("bad_cursor: after is not a next of this API")}), "insufficient_scope or tenant_mismatch")
        }},
        "/v1/read/opportunities/stats": {"get": {
            "operationId": "opportunityStats",
            "summary": "Counts of the caller's tenant's opportunities by type, status and day, and of its users",
            "responses": answers(json!({"200": ok("OpportunityStats")}), "insufficient_scope")
        }},
        "/v1/read/opportunities/{id}": {"get": {
            "operationId": "getOpportunity", "summary": "One opportunity of the caller's tenant",
            "parameters": [id()],
            "responses": answers(json!({"200": ok("Opportunity"), "404": problem("unknown_opportunity (also another tenant's)")}), "insufficient_scope")
        }},
        "/v1/read/users/{id}": {"get": {
            "operationId": "getUser", "summary": "One user of the caller's tenant",
            "parameters": [id()],
            "responses": answers(json!({"200": ok("User"), "404": problem("unknown_user (also another tenant's)")}), "insufficient_scope")
        }}
    });
    let count = json!({"type": "integer", "minimum": 0});
    let nullable_text = json!({"type": ["string", "null"]});
    let schemas = json!({
        "Opportunity": {"type": "object", "required": ["aggregate_id", "tenant", "opportunity_id", "title", "description", "ai_solution_type", "ai_solution_category", "market_size_estimate", "confidence_score", "status", "validation_count", "validation_score", "archived_reason", "created_at", "updated_at", "last_version"], "properties": {
            "aggregate_id": text, "tenant": text, "opportunity_id": text, "title": text, "description": text,
            "ai_solution_type": text, "ai_solution_category": text, "market_size_estimate": {"type": "integer"},
            "confidence_score": {"type": "number"}, "status": text, "validation_count": count,
            "validation_score": {"type": ["number", "null"], "description": "Mean validation score; null before the first validation"},
            "archived_reason": nullable_text, "created_at": time, "updated_at": time, "last_version": {"type": "integer", "minimum": 1}}},
        "OpportunityPage": {"type": "object", "required": ["items", "next"], "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Opportunity"}},
            "next": {"type": ["string", "null"], "description": "Pass as after for the next page; null on the last page"}}},
        "OpportunityStats": {"type": "object", "required": ["total", "by_type", "by_status", "by_day", "users", "active_users"], "properties": {
            "total": count, "by_type": {"type": "object", "additionalProperties": count},
            "by_status": {"type": "object", "additionalProperties": count},
            "by_day": {"type": "array", "items": {"type": "object", "required": ["day", "count"], "properties": {"day": {"type": "string", "format": "date"}, "count": count}}},
            "users": count, "active_users": count}},
        "User": {"type": "object", "required": ["aggregate_id", "tenant", "user_id", "email", "display_name", "expertise_domains", "user_preferences", "notification_settings", "active", "deactivation_reason", "registered_at", "updated_at", "last_version"], "properties": {
            "aggregate_id": text, "tenant": text, "user_id": text, "email": text, "display_name": nullable_text,
            "expertise_domains": {"type": "array", "items": {"type": "string"}},
            "user_preferences": {"type": "object"}, "notification_settings": {"type": "object"},
            "active": {"type": "boolean"}, "deactivation_reason": nullable_text,
            "registered_at": time, "updated_at": time, "last_version": {"type": "integer", "minimum": 1}}}
    });
    document(
        "eventfold projector read API",
        "The opportunities read model of the caller's tenant (the token's). Needs `Authorization: Bearer <JWT>` with the scope read-models:read.",
        paths,
        schemas,
        PROBLEM_CODES,
        "RS256 or EdDSA token of a trusted issuer with the scope read-models:read",
    )
}

/// The admin API's document (admin listener, scope `admin`).
pub fn admin_document() -> Value {
    let name = || {
        path(
            "read_model",
            json!({"type": "string"}),
            "Read model name (404 unknown_read_model)",
        )
    };
    let text = json!({"type": "string"});
    let time = json!({"type": ["string", "null"], "format": "date-time"});
    let paths = json!({
        "/v1/read-models": {"get": {
            "operationId": "readModels", "summary": "Every read model with its generation, rebuild flag and parked count",
            "responses": answers(json!({"200": ok("ReadModels")}), "insufficient_scope")
        }},
        "/v1/read-models/{read_model}/replay": {"post": {
            "operationId": "replayEvents", "summary": "Apply the event store's matching events to the live generation (synchronously)",
            "parameters": [name()],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReplayRequest"}}}},
            "responses": answers(json!({"200": ok("ReplaySummary"), "400": problem("bad_request (not a replay body) or invalid_replay (with the field's pointer)"), "404": problem("unknown_read_model"), "409": problem("rebuilding")}), "insufficient_scope")
        }},
        "/v1/parked/{read_model}": {"get": {
            "operationId": "parked", "summary": "Parked events of a read model, by id",
            "parameters": [name(),
                query("after", json!({"type": "integer", "format": "int64"}), "Ids after this one (default 0)"),
                query("limit", json!({"type": "integer", "minimum": 1, "maximum": 1000}), "Page size (default 100)")],
            "responses": answers(json!({"200": ok("ParkedPage"), "400": problem("bad_query"), "404": problem("unknown_read_model")}), "insufficient_scope")
        }},
        "/v1/parked/{read_model}/replay": {"post": {
            "operationId": "replayParked", "summary": "Replay one blocked aggregate (or, with {}, every blocked aggregate) from the event store and release its parked events",
            "parameters": [name()],
            "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {
                "tenant": {"type": "string", "description": "Default `default`"},
                "aggregate_type": text, "aggregate_id": text},
                "dependentRequired": {"aggregate_type": ["aggregate_id"], "aggregate_id": ["aggregate_type"]}}}}},
            "responses": answers(json!({"200": ok("ParkedReplay"), "400": problem("bad_request"), "404": problem("unknown_read_model or nothing_parked"), "409": {"description": "Some aggregate was refused again (nothing changed for it)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ParkedReplay"}}}}}), "insufficient_scope")
        }},
        "/v1/parked/{read_model}/{id}": {"delete": {
            "operationId": "discardParked", "summary": "Discard one parked event that can never apply",
            "parameters": [name(), path("id", json!({"type": "integer", "format": "int64"}), "Parked event id")],
            "responses": answers(json!({"204": {"description": "Discarded"}, "404": problem("unknown_read_model or unknown_parked_event")}), "insufficient_scope")
        }}
    });
    let count = json!({"type": "integer", "minimum": 0});
    let schemas = json!({
        "ReadModels": {"type": "object", "required": ["read_models"], "properties": {"read_models": {"type": "array", "items": {"type": "object",
            "required": ["name", "store", "aggregate_types", "generation", "rebuilding", "parked"], "properties": {
            "name": text, "store": {"type": "string", "enum": ["postgres", "neo4j"]},
            "aggregate_types": {"type": "array", "items": {"type": "string"}},
            "generation": {"type": "integer"}, "rebuilding": {"type": "boolean"}, "parked": count}}}}},
        "ReplayRequest": {"type": "object", "additionalProperties": false, "properties": {
            "tenant": {"type": ["string", "null"], "description": "Only this tenant's streams"},
            "types": {"type": "array", "items": {"type": "string"}, "description": "Only these event types"},
            "aggregates": {"type": "array", "items": {"type": "string"}, "description": "Only these aggregate ids"},
            "from": time, "to": time,
            "to_version": {"type": ["integer", "null"], "format": "int64"},
            "batch": {"type": "integer", "minimum": 1, "description": "Events per transaction (default 500)"},
            "checkpoint": {"type": ["string", "null"], "description": "Record progress under this name and resume after it"},
            "max_batches": {"type": ["integer", "null"], "minimum": 1}}},
        "ReplaySummary": {"type": "object", "properties": {
            "read_model": text, "generation": {"type": "integer"}, "checkpoint": {"type": ["string", "null"]},
            "matched": count, "applied": count, "skipped": count, "parked": count, "gap_filled": count,
            "batches": count, "resumed_after": {"type": ["integer", "null"]}, "last_position": {"type": ["integer", "null"]},
            "complete": {"type": "boolean"}, "seconds": {"type": "number"}}},
        "ParkedPage": {"type": "object", "required": ["items", "next_after"], "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "integer"}, "read_model": text, "tenant": text,
                "reason": {"type": "string", "enum": ["undecodable", "refused", "version_gap", "behind_parked"]}, "error": text,
                "event_id": {"type": ["string", "null"]}, "event_type": {"type": ["string", "null"]},
                "aggregate_type": {"type": ["string", "null"]}, "aggregate_id": {"type": ["string", "null"]},
                "version": {"type": ["integer", "null"]}, "blocked_by": {"type": ["integer", "null"]}}}},
            "next_after": {"type": ["integer", "null"]}}},
        "ParkedReplay": {"type": "object", "required": ["replayed", "failed"], "properties": {
            "replayed": {"type": "array", "items": {"type": "object"}}, "failed": count}}
    });
    document(
        "eventfold projector admin API",
        "Read models, filtered replays and parked events, on the admin listener only. Needs `Authorization: Bearer <JWT>` with the scope admin.",
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
    fn every_reference_resolves_and_every_operation_has_answers() {
        for doc in [read_document(), admin_document()] {
            assert_eq!(
                eventfold_runtime::openapi::dangling_references(&doc),
                Vec::<String>::new()
            );
            for (p, item) in doc["paths"].as_object().unwrap() {
                for (method, op) in item.as_object().unwrap() {
                    assert!(op["responses"].is_object(), "{method} {p}");
                }
            }
        }
    }
}
