//! The OpenAPI 3.1 description of the API, generated from the aggregate registry.

use eventfold_reference::registry::{AGGREGATE_TYPES, command_names};
use serde_json::{Map, Value, json};

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn ok(schema: &str) -> Value {
    json!({
        "description": "OK",
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

fn param(name: &str, location: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": location, "required": location == "path", "schema": schema, "description": description})
}

fn command_operation(aggregate_type: &str, command: &str) -> Value {
    json!({"post": {
        "operationId": format!("{aggregate_type}.{command}"),
        "tags": [aggregate_type],
        "summary": format!("{command} on a {aggregate_type}"),
        "parameters": [
            param("aggregate_id", "path", json!({"type": "string", "maxLength": 256}), "Aggregate id"),
            param("expected_version", "query", json!({"type": "integer", "minimum": 0}), "Refuse with 409 unless the aggregate is at this version"),
            param("command_id", "query", json!({"type": "string", "format": "uuid"}), "Command id (alternative to Idempotency-Key)"),
            param("Idempotency-Key", "header", json!({"type": "string", "maxLength": 255}), "Repeats return the first result and append nothing"),
            param("X-Correlation-Id", "header", json!({"type": "string", "format": "uuid"}), "Correlation id (default: the command id)"),
            param("X-Causation-Id", "header", json!({"type": "string", "format": "uuid"}), "Id of the event or command that caused this one"),
            param("X-Actor", "header", json!({"type": "string", "pattern": "^(user|agent|system):.+$"}), "Who sends the command (default user:anonymous)"),
            param("X-Tenant", "header", json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}), "Tenant (default `default`)"),
            param("traceparent", "header", json!({"type": "string"}), "W3C trace context, kept with the events")
        ],
        "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {
            "200": ok("Handled"),
            "400": problem("Malformed JSON, a wrong field (with its JSON pointer), a bad header or query"),
            "404": problem("Unknown aggregate type or command"),
            "409": problem("Version conflict (with current_version) or the same command id in flight"),
            "413": problem("Body larger than the limit"),
            "415": problem("Body not declared as JSON"),
            "422": problem("Refused by the aggregate: invalid transition or a domain rule (code names it)"),
            "503": problem("Event store unavailable; retry with the same Idempotency-Key")
        }
    }})
}

/// `params` followed by the audit filters and payload view of the history and the feed.
fn with_audit(mut params: Vec<Value>) -> Vec<Value> {
    let categories: Vec<&str> = eventfold_domain::EventCategory::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    params.extend([
        param("from", "query", json!({"type": "string", "format": "date-time"}), "Only events recorded at or after this time (recorded_at)"),
        param("to", "query", json!({"type": "string", "format": "date-time"}), "Only events recorded before this time (exclusive; not before from)"),
        param("actor", "query", json!({"type": "string", "pattern": "^(user|agent|system):.{1,128}$"}), "Only events caused by this actor, e.g. user:alice"),
        param("category", "query", json!({"type": "string"}), &format!("Comma-separated categories, each one of: {}", categories.join(", "))),
        param("types", "query", json!({"type": "string", "minLength": 1}), "Comma-separated event types (at least one)"),
        param("as_stored", "query", json!({"type": "boolean", "default": false}), "Payloads as stored (schema_version = the stored version) instead of upcast to the latest"),
    ]);
    params
}

/// The OpenAPI document.
pub fn document() -> Value {
    let mut paths = Map::new();
    let id = || {
        param(
            "aggregate_id",
            "path",
            json!({"type": "string"}),
            "Aggregate id",
        )
    };
    let ty = || {
        param(
            "aggregate_type",
            "path",
            json!({"type": "string", "enum": AGGREGATE_TYPES}),
            "Aggregate type",
        )
    };
    for t in AGGREGATE_TYPES {
        for c in command_names(t).unwrap_or_default() {
            paths.insert(
                format!("/v1/{t}/{{aggregate_id}}/commands/{c}"),
                command_operation(t, c),
            );
        }
    }
    paths.insert("/v1/{aggregate_type}/{aggregate_id}".into(), json!({"get": {
        "operationId": "state", "summary": "State now, at a version or as of a time",
        "parameters": [ty(), id(),
            param("at_version", "query", json!({"type": "integer", "minimum": 1}), "State at this version"),
            param("as_of", "query", json!({"type": "string", "format": "date-time"}), "State as recorded at this time")],
        "responses": {"200": ok("State"), "400": problem("Bad query"), "404": problem("Unknown type, aggregate or version")}
    }}));
    paths.insert("/v1/{aggregate_type}/{aggregate_id}/events".into(), json!({"get": {
        "operationId": "history", "summary": "An aggregate's events, paged by version",
        "parameters": with_audit(vec![ty(), id(),
            param("after_version", "query", json!({"type": "integer", "minimum": 0}), "Events after this version"),
            param("limit", "query", json!({"type": "integer", "minimum": 1, "maximum": 1000}), "Page size (default 100)")]),
        "responses": {"200": ok("EventPage"), "400": problem("Bad query: invalid_time, invalid_time_range, invalid_actor, unknown_category, invalid_types, invalid_query"), "404": problem("Unknown type or aggregate (no event at all in the caller's tenant)")}
    }}));
    paths.insert("/v1/correlations/{correlation_id}/events".into(), json!({"get": {
        "operationId": "correlation", "summary": "All events of a correlation id",
        "parameters": [param("correlation_id", "path", json!({"type": "string", "format": "uuid"}), "Correlation id"),
            param("as_stored", "query", json!({"type": "boolean", "default": false}), "Payloads as stored instead of upcast to the latest schema version")],
        "responses": {"200": ok("EventPage"), "400": problem("Not a UUID"), "404": problem("No such correlation")}
    }}));
    paths.insert("/v1/events".into(), json!({"get": {
        "operationId": "feed", "summary": "The global feed in commit-safe order",
        "parameters": with_audit(vec![
            param("after", "query", json!({"type": "string", "pattern": "^[0-9]+-[0-9]+$"}), "Cursor `next` of the previous page"),
            param("limit", "query", json!({"type": "integer", "minimum": 1, "maximum": 1000}), "Page size (default 100)")]),
        "responses": {"200": ok("EventPage"), "400": problem("Bad cursor or query: invalid_time, invalid_time_range, invalid_actor, unknown_category, invalid_types, invalid_query")}
    }}));
    paths.insert("/v1/types".into(), json!({"get": {"operationId": "types", "summary": "Aggregate types, their commands and events", "responses": {"200": {"description": "OK"}}}}));
    paths.insert("/v1/types/{aggregate_type}/state-machine".into(), json!({"get": {
        "operationId": "stateMachine", "summary": "The aggregate's state machine as Mermaid",
        "parameters": [ty()],
        "responses": {"200": {"description": "Mermaid stateDiagram-v2", "content": {"text/vnd.mermaid": {}}}, "404": problem("Unknown type")}
    }}));
    paths.insert("/v1/{aggregate_type}/{aggregate_id}/state-machine".into(), json!({"get": {
        "operationId": "aggregateStateMachine", "summary": "The aggregate type's state machine as Mermaid, with this aggregate's current state marked (class `current`)",
        "parameters": [ty(), id()],
        "responses": {"200": ok("AggregateStateMachine"), "404": problem("Unknown type, or no such aggregate in the caller's tenant")}
    }}));
    paths.insert("/v1/stats".into(), json!({"get": {
        "operationId": "stats", "summary": "Event store statistics of the caller's tenant: totals by event type, category and aggregate type, first and last event, events per minute over the last hour",
        "responses": {"200": ok("EventStats")}
    }}));
    paths.insert("/v1/health".into(), json!({"get": {
        "operationId": "health", "summary": "Recent activity of the caller's tenant, registered upcasters, the command buses' state-cache hit rate",
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}, "503": problem("Event store unavailable")}
    }}));
    json!({
        "openapi": "3.1.0",
        "info": {"title": "eventfold command-service", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": {
            "Problem": {"type": "object", "required": ["type", "title", "status", "code"], "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "code": {"type": "string"}, "pointer": {"type": "string"},
                "current_version": {"type": "integer"}}},
            "Handled": {"type": "object", "properties": {
                "command_id": {"type": "string", "format": "uuid"}, "aggregate_type": {"type": "string"},
                "aggregate_id": {"type": "string"}, "version": {"type": "integer"},
                "event_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                "correlation_id": {"type": "string", "format": "uuid"}, "replayed": {"type": "boolean"}}},
            "State": {"type": "object", "properties": {
                "aggregate_type": {"type": "string"}, "aggregate_id": {"type": "string"},
                "version": {"type": "integer"}, "state_name": {"type": "string"}, "state": {"type": "object"}}},
            "AggregateStateMachine": {"type": "object", "properties": {
                "aggregate_type": {"type": "string"}, "aggregate_id": {"type": "string"},
                "version": {"type": "integer"}, "current_state": {"type": "string"},
                "states": {"type": "array", "items": {"type": "string"}}, "mermaid": {"type": "string"}}},
            "EventStats": {"type": "object", "properties": {
                "tenant": {"type": "string"}, "total_events": {"type": "integer"},
                "by_event_type": {"type": "object", "additionalProperties": {"type": "integer"}},
                "by_category": {"type": "object", "additionalProperties": {"type": "integer"}},
                "by_aggregate_type": {"type": "object", "additionalProperties": {"type": "integer"}},
                "first_event_at": {"type": ["string", "null"], "format": "date-time"},
                "last_event_at": {"type": ["string", "null"], "format": "date-time"},
                "events_per_minute": {"type": "array", "minItems": 60, "maxItems": 60, "items": {"type": "object", "properties": {
                    "minute": {"type": "string", "format": "date-time"}, "count": {"type": "integer"}}}},
                "watermark_position": {"type": "integer"}, "watermark_updated_at": {"type": "string", "format": "date-time"},
                "complete": {"type": "boolean"}}},
            "EventPage": {"type": "object", "properties": {
                "events": {"type": "array", "items": {"type": "object"}},
                "next_after_version": {"type": ["integer", "null"]}, "next": {"type": "string"}}}
        }}
    })
}
