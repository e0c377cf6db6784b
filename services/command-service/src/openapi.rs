//! The OpenAPI 3.1 description of the API. Request bodies, event payloads and states are the JSON
//! Schemas of the domain's own types (`eventfold_reference::registry::schemas`, derived with
//! `schemars`, the domain's field limits as attributes), so the document cannot drift from what the
//! server parses; the envelopes around them are written out here beside the handlers' shapes.

use eventfold_reference::fields::RULE_CODES;
use eventfold_reference::registry::{AGGREGATE_TYPES, schemas, upcasters};
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::api::{MAX_AGGREGATE_ID_CHARS, MAX_PAGE};

/// Every `code` a problem answer of this service can carry besides the domain rules' codes
/// ([`RULE_CODES`]) and those every listener shares (`eventfold_runtime::openapi::AUTH_CODES`,
/// `SERVER_CODES`): request errors and the service's own refusals.
pub const PROBLEM_CODES: &[&str] = &[
    "malformed_json",
    "invalid_body",
    "invalid_field",
    "invalid_header",
    "invalid_query",
    "invalid_path",
    "invalid_aggregate_id",
    "unreadable_body",
    "invalid_time",
    "invalid_time_range",
    "command_id_mismatch",
    "invalid_actor",
    "unknown_category",
    "invalid_types",
    "unknown_aggregate_type",
    "unknown_command",
    "aggregate_not_found",
    "version_not_found",
    "correlation_not_found",
    "version_conflict",
    "idempotency_key_in_flight",
    "payload_too_large",
    "unsupported_media_type",
    "invalid_transition",
    "idempotency_key_reused",
    "unserializable_event",
    "unserializable_state",
    "corrupt_event",
    "store_unavailable",
    "tenant_mismatch",
    "impersonation_not_allowed",
];

/// Rules JSON Schema cannot state, common to every command body.
const BODY_RULES: &str = "Every string, map key and nested value is refused with 422 \
`nul_in_string` when it holds U+0000; a required text that is blank (only white space) is 422 \
`empty_field`; open JSON objects (metadata, enrichments, results) are at most 16 levels deep \
(422 `nesting_too_deep`) with nested strings of at most 10,000 characters (`text_too_long`), \
nested arrays and objects of at most 1,000 entries (`too_many_items`) and non-blank keys \
(`empty_field`). Rules between fields and against the aggregate's state are named in the field \
descriptions; their codes are in the 422 answer.";

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

/// An `i64` as the server reads it from a query: anything else is 400 `invalid_query`.
fn int64(minimum: i64) -> Value {
    json!({"type": "integer", "minimum": minimum, "maximum": i64::MAX})
}

/// The answers every authenticated route can give besides its own.
fn with_common(mut responses: Value, unavailable: bool) -> Value {
    let r = responses.as_object_mut().expect("responses are an object");
    r.insert("401".into(), json!({
        "description": "No, a malformed, expired or otherwise refused bearer token (code names why)",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer realm=\"eventfold\", error=\"invalid_token\""}},
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    }));
    r.insert(
        "403".into(),
        problem("insufficient_scope, tenant_mismatch (X-Tenant names another tenant) or impersonation_not_allowed"),
    );
    if unavailable {
        r.insert(
            "503".into(),
            json!({
                "description": "store_unavailable, overloaded or request_timeout; retry (with the same Idempotency-Key for a command)",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
            }),
        );
    }
    responses
}

/// An optional UUID header: the server reads an empty value as an absent header.
fn optional_uuid() -> Value {
    json!({"type": "string", "anyOf": [{"maxLength": 0}, {"format": "uuid"}]})
}

fn tenant_header() -> Value {
    param(
        "X-Tenant",
        "header",
        json!({"type": "string", "pattern": "^$|^[A-Za-z0-9._-]{1,64}$"}),
        "Must repeat the token's tenant when sent (else 403 tenant_mismatch); empty counts as absent",
    )
}

fn command_operation(aggregate_type: &str, command: &str, body: &Value) -> Value {
    // A body with required fields must be sent; an empty body means `{}`.
    let required = body
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    let description = body
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("");
    json!({"post": {
        "operationId": format!("{aggregate_type}.{command}"),
        "tags": [aggregate_type],
        "summary": format!("{command} on a {aggregate_type}"),
        "description": format!("{description}\n\n{BODY_RULES}"),
        "parameters": [
            param("aggregate_id", "path", json!({"type": "string", "minLength": 1, "maxLength": MAX_AGGREGATE_ID_CHARS, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"}),
                "Aggregate id: 1 to 256 characters, no control characters (400 invalid_aggregate_id)"),
            param("expected_version", "query", int64(0), "Refuse with 409 unless the aggregate is at this version"),
            param("command_id", "query", json!({"type": "string", "format": "uuid"}), "Command id (alternative to Idempotency-Key; when both are sent they must name the same command, else 422 command_id_mismatch)"),
            param("Idempotency-Key", "header", json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\u0021-\\u007e]([\\u0020-\\u007e]*[\\u0021-\\u007e])?$"}), "Repeats return the first result and append nothing (1 to 255 visible ASCII characters)"),
            param("X-Correlation-Id", "header", optional_uuid(), "Correlation id (default: the command id); empty counts as absent"),
            param("X-Causation-Id", "header", optional_uuid(), "Id of the event or command that caused this one; empty counts as absent"),
            param("X-Actor", "header", json!({"type": "string", "pattern": "^$|^(user|agent|system):[\\u0020-\\u007e]{1,128}$"}), "Who the events are recorded as (needs the impersonate scope, else 403); empty counts as absent"),
            tenant_header(),
            param("traceparent", "header", json!({"type": "string", "pattern": "^$|^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"}), "W3C trace context, kept with the events; empty counts as absent")
        ],
        "requestBody": {"required": required, "content": {"application/json": {"schema": body}}},
        "responses": with_common(json!({
            "200": {
                "description": "Handled: the events are stored (or, for a repeated command id, the first answer replayed)",
                "headers": {"Idempotent-Replayed": {"schema": {"type": "string", "const": "true"}, "description": "Present when the answer is a replay"}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Handled"}}}
            },
            "400": problem("malformed_json, invalid_body, invalid_field (a wrong type, a missing or unknown field; with its JSON pointer), invalid_header, invalid_query, invalid_path, invalid_aggregate_id, unreadable_body"),
            "404": problem("unknown_aggregate_type or unknown_command"),
            "409": problem("version_conflict (with current_version) or idempotency_key_in_flight"),
            "413": problem("payload_too_large"),
            "415": problem("unsupported_media_type: a body not declared as application/json"),
            "422": problem(&format!("Refused by the aggregate: invalid_transition (with state and command), idempotency_key_reused, command_id_mismatch, or a domain rule, one of: {}", RULE_CODES.join(", "))),
        }), true)
    }})
}

/// `params` followed by the audit filters and payload view of the history and the feed.
fn with_audit(mut params: Vec<Value>) -> Vec<Value> {
    let categories: Vec<&str> = eventfold_domain::EventCategory::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    params.extend([
        param("from", "query", json!({"type": "string", "format": "date-time"}), "Only events recorded at or after this time (recorded_at; 400 invalid_time)"),
        param("to", "query", json!({"type": "string", "format": "date-time"}), "Only events recorded before this time (exclusive; a from later than to is 422 invalid_time_range)"),
        param("actor", "query", json!({"type": "string", "pattern": "^(user|agent|system):[^\\u0000-\\u001f\\u007f-\\u009f]{1,128}$"}), "Only events caused by this actor, e.g. user:alice (400 invalid_actor)"),
        param("category", "query", json!({"type": "string", "pattern": format!("^ *({0}) *(, *({0}) *)*$", categories.join("|"))}), &format!("Comma-separated categories, each one of: {} (400 unknown_category)", categories.join(", "))),
        param("types", "query", json!({"type": "string", "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^,\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"}), "Comma-separated event types, at least one, no control characters (400 invalid_types)"),
        param("as_stored", "query", json!({"type": "boolean", "default": false}), "Payloads as stored (schema_version = the stored version) instead of upcast to the latest"),
    ]);
    params
}

/// The document's component schemas of the API's own answers.
fn answer_schemas(states: &[(String, Value)], events: &[(String, u32)]) -> Map<String, Value> {
    let codes: Vec<&str> = PROBLEM_CODES.iter().chain(RULE_CODES).copied().collect();
    let uuid = json!({"type": "string", "format": "uuid"});
    let time = json!({"type": "string", "format": "date-time"});
    let count = json!({"type": "integer", "minimum": 0});
    let categories: Vec<&str> = eventfold_domain::EventCategory::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    // The state is the aggregate type's own; the payload is its event type's, at the latest
    // schema version (an event shown as stored at an older version keeps its older shape).
    let state_by_type: Vec<Value> = states
        .iter()
        .map(|(t, state)| json!({
            "if": {"properties": {"aggregate_type": {"const": t}}, "required": ["aggregate_type"]},
            "then": {"properties": {"state": state}}
        }))
        .collect();
    let payload_by_type: Vec<Value> = events
        .iter()
        .map(|(e, latest)| json!({
            "if": {"properties": {"event_type": {"const": e}, "schema_version": {"const": latest}}, "required": ["event_type", "schema_version"], "not": {"required": ["upcast_error"]}},
            "then": {"properties": {"payload": {"$ref": format!("#/components/schemas/{e}")}}}
        }))
        .collect();
    let events_array = json!({"type": "array", "items": {"$ref": "#/components/schemas/Event"}});
    let mut problem = eventfold_runtime::openapi::problem_schema(&codes);
    for (name, schema) in [
        (
            "parameter",
            json!({"type": "string", "description": "The refused query parameter"}),
        ),
        ("current_version", json!({"type": "integer"})),
        ("state", json!({"type": "string"})),
        ("command", json!({"type": "string"})),
        ("line", json!({"type": "integer"})),
        ("column", json!({"type": "integer"})),
    ] {
        problem["properties"][name] = schema;
    }
    let schemas = json!({
        "Problem": problem,
        "Handled": {"type": "object", "required": ["command_id", "aggregate_type", "aggregate_id", "version", "event_ids", "correlation_id", "replayed"], "properties": {
            "command_id": uuid, "aggregate_type": {"type": "string", "enum": AGGREGATE_TYPES},
            "aggregate_id": {"type": "string"}, "version": {"type": "integer", "minimum": 1},
            "event_ids": {"type": "array", "items": uuid},
            "correlation_id": uuid, "replayed": {"type": "boolean"}}},
        "State": {"type": "object", "required": ["aggregate_type", "aggregate_id", "version", "state_name", "state"], "properties": {
            "aggregate_type": {"type": "string", "enum": AGGREGATE_TYPES}, "aggregate_id": {"type": "string"},
            "version": {"type": "integer", "minimum": 1}, "state_name": {"type": "string"}, "state": {"type": "object"}},
            "allOf": state_by_type},
        "AggregateStateMachine": {"type": "object", "required": ["aggregate_type", "aggregate_id", "version", "current_state", "states", "mermaid"], "properties": {
            "aggregate_type": {"type": "string", "enum": AGGREGATE_TYPES}, "aggregate_id": {"type": "string"},
            "version": {"type": "integer"}, "current_state": {"type": "string"},
            "states": {"type": "array", "items": {"type": "string"}}, "mermaid": {"type": "string"}}},
        "Types": {"type": "object", "required": ["aggregate_types"], "properties": {
            "aggregate_types": {"type": "array", "items": {"type": "object", "required": ["aggregate_type", "commands", "events"], "properties": {
                "aggregate_type": {"type": "string", "enum": AGGREGATE_TYPES},
                "commands": {"type": "array", "items": {"type": "string"}},
                "events": {"type": "array", "items": {"type": "string"}}}}}}},
        "EventStats": {"type": "object", "required": ["tenant", "total_events", "by_event_type", "by_category", "by_aggregate_type", "events_per_minute", "complete"], "properties": {
            "tenant": {"type": "string"}, "total_events": count,
            "by_event_type": {"type": "object", "additionalProperties": count},
            "by_category": {"type": "object", "additionalProperties": count},
            "by_aggregate_type": {"type": "object", "additionalProperties": count},
            "first_event_at": {"type": ["string", "null"], "format": "date-time"},
            "last_event_at": {"type": ["string", "null"], "format": "date-time"},
            "events_per_minute": {"type": "array", "minItems": 60, "maxItems": 60, "items": {"type": "object", "required": ["minute", "count"], "properties": {
                "minute": time, "count": count}}},
            "watermark_position": {"type": "integer"}, "watermark_updated_at": {"type": ["string", "null"], "format": "date-time"},
            "complete": {"type": "boolean"}}},
        "Health": {"type": "object", "required": ["tenant", "event_store", "recent_activity", "upcasters", "state_cache"], "properties": {
            "tenant": {"type": "string"},
            "event_store": {"type": "object", "properties": {"status": {"type": "string"}}},
            "recent_activity": {"type": "object", "properties": {
                "events_current_minute": count, "events_last_hour": count,
                "last_event_at": {"type": ["string", "null"], "format": "date-time"}}},
            "upcasters": {"type": "object", "required": ["total", "by_aggregate_type"], "properties": {"total": count,
                "by_aggregate_type": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "object", "properties": {
                    "event_type": {"type": "string"}, "latest_version": {"type": "integer"},
                    "upcasts_from_versions": {"type": "array", "items": {"type": "integer"}}}}}}}},
            "state_cache": {"type": ["object", "null"], "properties": {
                "hit_rate": {"type": ["number", "null"]}, "lookups": count,
                "by_aggregate_type": {"type": "object", "additionalProperties": {"type": "object"}}}}}},
        "Event": {"type": "object", "description": "A stored event with its envelope; the payload is upcast to the latest schema version unless as_stored=true",
            "required": ["position", "event_id", "event_type", "schema_version", "stored_schema_version", "category", "aggregate_type", "aggregate_id", "version", "occurred_at", "recorded_at", "correlation_id", "actor_kind", "actor_id", "tenant", "metadata", "payload"],
            "properties": {
                "position": {"type": "integer"}, "event_id": uuid, "event_type": {"type": "string"},
                "schema_version": {"type": "integer", "minimum": 1}, "stored_schema_version": {"type": "integer", "minimum": 1},
                "category": {"type": "string", "enum": categories},
                "aggregate_type": {"type": "string"}, "aggregate_id": {"type": "string"},
                "version": {"type": "integer", "minimum": 1}, "occurred_at": time, "recorded_at": time,
                "correlation_id": uuid, "causation_id": {"type": ["string", "null"], "format": "uuid"},
                "actor_kind": {"type": "string", "enum": ["user", "agent", "system"]}, "actor_id": {"type": "string"},
                "tenant": {"type": "string"}, "command_id": {"type": ["string", "null"], "format": "uuid"},
                "metadata": {"type": "object"}, "payload": {"type": "object"},
                "upcast_error": {"type": "string", "description": "Why the payload could not be upcast (it is then shown as stored)"}},
            "allOf": payload_by_type},
        "HistoryPage": {"type": "object", "required": ["aggregate_type", "aggregate_id", "events", "next_after_version"], "properties": {
            "aggregate_type": {"type": "string"}, "aggregate_id": {"type": "string"}, "events": events_array,
            "next_after_version": {"type": ["integer", "null"], "description": "after_version of the next page; null on the last page"}}},
        "CorrelationPage": {"type": "object", "required": ["correlation_id", "events", "next_after_position"], "properties": {
            "correlation_id": uuid, "events": events_array,
            "next_after_position": {"type": ["integer", "null"], "description": "after_position of the next page; null on the last page"}}},
        "FeedPage": {"type": "object", "required": ["events", "next"], "properties": {
            "events": events_array,
            "next": {"type": "string", "pattern": "^[0-9]+-[0-9]+$", "description": "The cursor to pass as after"}}}
    });
    match schemas {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    }
}

/// Bounds every unsigned and signed integer of a generated schema by its Rust type (`format`
/// `uint32`, `uint64`, ...), so that a number the schema allows is one serde reads.
fn bound_integers(value: &mut Value) {
    match value {
        Value::Object(o) => {
            let max = match o.get("format").and_then(Value::as_str) {
                Some("uint8") => Some(json!(u8::MAX)),
                Some("uint16") => Some(json!(u16::MAX)),
                Some("uint32") => Some(json!(u32::MAX)),
                Some("uint64" | "uint") => Some(json!(u64::MAX)),
                Some("int32") => Some(json!(i32::MAX)),
                Some("int64" | "int") => Some(json!(i64::MAX)),
                _ => None,
            };
            if let Some(max) = max {
                o.entry("maximum").or_insert(max);
            }
            o.values_mut().for_each(bound_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// The OpenAPI document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut paths = Map::new();
    let mut states = Vec::new();
    let mut events = Vec::new();
    let mut tags = Vec::new();
    for t in AGGREGATE_TYPES {
        let s = schemas(t, &mut generator).expect("a listed aggregate type");
        for (c, body) in &s.commands {
            let body = body.as_value();
            // The body's own definition holds its description; the operation repeats it.
            let resolved = body
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .and_then(|name| generator.definitions().get(name))
                .cloned()
                .unwrap_or_else(|| body.clone());
            let mut op = command_operation(t, c, &resolved);
            op["post"]["requestBody"]["content"]["application/json"]["schema"] = body.clone();
            paths.insert(format!("/v1/{t}/{{aggregate_id}}/commands/{c}"), op);
        }
        let steps = upcasters(t).expect("a listed aggregate type");
        events.extend(
            s.events
                .iter()
                .map(|(e, _)| ((*e).to_owned(), steps.latest(e))),
        );
        states.push(((*t).to_owned(), s.state.to_value()));
        tags.push(json!({"name": t, "description": format!("Commands of a {t}")}));
    }
    let id = || {
        param(
            "aggregate_id",
            "path",
            json!({"type": "string", "minLength": 1, "maxLength": MAX_AGGREGATE_ID_CHARS, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"}),
            "Aggregate id: 1 to 256 characters, no control characters (400 invalid_aggregate_id)",
        )
    };
    let ty = || {
        param(
            "aggregate_type",
            "path",
            json!({"type": "string", "enum": AGGREGATE_TYPES}),
            "Aggregate type (404 unknown_aggregate_type for another name)",
        )
    };
    let limit = || {
        param(
            "limit",
            "query",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
            "Page size (default 100; 400 invalid_query outside 1..=1000)",
        )
    };
    paths.insert("/v1/{aggregate_type}/{aggregate_id}".into(), json!({"get": {
        "operationId": "state", "summary": "State now, at a version or as of a time",
        "parameters": [ty(), id(), tenant_header(),
            param("at_version", "query", int64(1), "State at this version (404 version_not_found past the last)"),
            param("as_of", "query", json!({"type": "string", "format": "date-time"}), "State as recorded at this time")],
        "responses": with_common(json!({"200": ok("State"), "400": problem("invalid_query or invalid_aggregate_id"), "404": problem("unknown_aggregate_type, aggregate_not_found or version_not_found")}), true)
    }}));
    paths.insert("/v1/{aggregate_type}/{aggregate_id}/events".into(), json!({"get": {
        "operationId": "history", "summary": "An aggregate's events, paged by version",
        "parameters": with_audit(vec![ty(), id(), tenant_header(),
            param("after_version", "query", int64(i64::MIN), "Events after this version (below 0 counts as 0)"),
            limit()]),
        "responses": with_common(json!({"200": ok("HistoryPage"), "400": problem("invalid_time, invalid_actor, unknown_category, invalid_types, invalid_query, invalid_aggregate_id"), "422": problem("invalid_time_range: from is later than to"), "404": problem("unknown_aggregate_type, or aggregate_not_found (no event at all in the caller's tenant)")}), true)
    }}));
    paths.insert("/v1/correlations/{correlation_id}/events".into(), json!({"get": {
        "operationId": "correlation", "summary": "All events of a correlation id, paged by position",
        "parameters": [param("correlation_id", "path", json!({"type": "string", "format": "uuid"}), "Correlation id (400 invalid_path when not a UUID)"),
            tenant_header(),
            param("after_position", "query", int64(i64::MIN), "Events after this position (below 0 counts as 0)"),
            limit(),
            param("as_stored", "query", json!({"type": "boolean", "default": false}), "Payloads as stored instead of upcast to the latest schema version")],
        "responses": with_common(json!({"200": ok("CorrelationPage"), "400": problem("invalid_path or invalid_query"), "404": problem("correlation_not_found")}), true)
    }}));
    paths.insert("/v1/events".into(), json!({"get": {
        "operationId": "feed", "summary": "The global feed in commit-safe order",
        "parameters": with_audit(vec![tenant_header(),
            param("after", "query", json!({"type": "string", "pattern": "^([0-9]{1,18}-[0-9]{1,18})?$"}), "Cursor `next` of the previous page (empty: from the start)"),
            limit()]),
        "responses": with_common(json!({"200": ok("FeedPage"), "400": problem("invalid_time, invalid_actor, unknown_category, invalid_types, invalid_query (a bad cursor or limit)"), "422": problem("invalid_time_range: from is later than to")}), true)
    }}));
    paths.insert(
        "/v1/types".into(),
        json!({"get": {
            "operationId": "types", "summary": "Aggregate types, their commands and events",
            "responses": with_common(json!({"200": ok("Types")}), false)
        }}),
    );
    paths.insert("/v1/types/{aggregate_type}/state-machine".into(), json!({"get": {
        "operationId": "stateMachine", "summary": "The aggregate's state machine as Mermaid",
        "parameters": [ty()],
        "responses": with_common(json!({"200": {"description": "Mermaid stateDiagram-v2", "content": {"text/vnd.mermaid": {"schema": {"type": "string"}}}}, "404": problem("unknown_aggregate_type")}), false)
    }}));
    paths.insert("/v1/{aggregate_type}/{aggregate_id}/state-machine".into(), json!({"get": {
        "operationId": "aggregateStateMachine", "summary": "The aggregate type's state machine as Mermaid, with this aggregate's current state marked (class `current`)",
        "parameters": [ty(), id(), tenant_header()],
        "responses": with_common(json!({"200": ok("AggregateStateMachine"), "400": problem("invalid_aggregate_id"), "404": problem("unknown_aggregate_type, or aggregate_not_found in the caller's tenant")}), true)
    }}));
    paths.insert("/v1/stats".into(), json!({"get": {
        "operationId": "stats", "summary": "Event store statistics of the caller's tenant: totals by event type, category and aggregate type, first and last event, events per minute over the last hour",
        "parameters": [tenant_header()],
        "responses": with_common(json!({"200": ok("EventStats")}), true)
    }}));
    paths.insert("/v1/health".into(), json!({"get": {
        "operationId": "health", "summary": "Recent activity of the caller's tenant, registered upcasters, the command buses' state-cache hit rate",
        "parameters": [tenant_header()],
        "responses": with_common(json!({"200": ok("Health")}), true)
    }}));
    paths.insert("/openapi.json".into(), json!({"get": {
        "operationId": "openapi", "summary": "This document", "security": [],
        "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}
    }}));
    let mut components = generator.take_definitions(true);
    components.extend(answer_schemas(&states, &events));
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "eventfold command-service", "version": env!("CARGO_PKG_VERSION"),
            "description": "The write side and the event store's reads. Every route but this document needs `Authorization: Bearer <JWT>` with the route's scope (commands:write for commands, events:read for reads); the tenant is the token's. An optional header sent with an empty value counts as absent, except Idempotency-Key (400 when empty)."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [{"url": "/"}],
        "tags": tags,
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "RS256 or EdDSA token of a trusted issuer; scopes commands:write, events:read, impersonate (X-Actor)"}},
            "schemas": components
        }
    });
    bound_integers(&mut doc);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_every_command_of_every_aggregate_type_with_its_body() {
        let doc = document();
        for t in AGGREGATE_TYPES {
            for c in eventfold_reference::registry::command_names(t).unwrap() {
                let op = &doc["paths"][format!("/v1/{t}/{{aggregate_id}}/commands/{c}")]["post"];
                let schema = &op["requestBody"]["content"]["application/json"]["schema"];
                let name = schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
                assert_eq!(name, *c);
                assert_eq!(doc["components"]["schemas"][c]["type"], "object", "{c}");
            }
        }
    }

    /// A validator of the document's component `name`, its references resolved in the document.
    fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": format!("#/components/schemas/{name}"),
            "components": doc["components"],
        });
        jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Every golden sample's payload at the latest version (`<type>/<event>.v<n>.expected.json`).
    fn golden_samples() -> Vec<(String, String, Value)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/golden");
        let mut samples = Vec::new();
        for t in AGGREGATE_TYPES {
            for entry in std::fs::read_dir(dir.join(t)).unwrap() {
                let path = entry.unwrap().path();
                let file = path.file_name().unwrap().to_str().unwrap().to_owned();
                if let Some(stem) = file.strip_suffix(".expected.json") {
                    let event_type = stem.split('.').next().unwrap().to_owned();
                    let text = std::fs::read_to_string(&path).unwrap();
                    samples.push((file, event_type, serde_json::from_str(&text).unwrap()));
                }
            }
        }
        samples
    }

    #[test]
    fn every_golden_sample_event_validates_against_its_event_schema() {
        let doc = document();
        let samples = golden_samples();
        assert!(samples.len() >= 29, "{} samples", samples.len());
        let mut covered = std::collections::BTreeSet::new();
        for (file, event_type, payload) in &samples {
            let v = validator(&doc, event_type);
            let errors: Vec<String> = v.iter_errors(payload).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{file}: {errors:?}");
            covered.insert(event_type.clone());
        }
        for t in AGGREGATE_TYPES {
            for e in eventfold_reference::registry::event_types(t).unwrap() {
                assert!(covered.contains(*e), "no golden sample of {e}");
            }
        }
    }

    #[test]
    fn an_event_envelope_holds_the_payload_of_its_type_at_the_latest_version() {
        let doc = document();
        let v = validator(&doc, "Event");
        let (_, event_type, payload) = golden_samples()
            .into_iter()
            .find(|(f, _, _)| f == "CrossReferenceDiscovered.v1.expected.json")
            .unwrap();
        let mut event = json!({
            "position": 7, "event_id": "0190d5a0-0000-7000-8000-000000000001",
            "event_type": event_type, "schema_version": 1, "stored_schema_version": 1,
            "category": "discovery", "aggregate_type": "CrossReference",
            "aggregate_id": "GEN.1.1:JHN.1.1", "version": 1,
            "occurred_at": "2026-12-01T09:00:00Z", "recorded_at": "2026-12-01T09:00:00Z",
            "correlation_id": "0190d5a0-0000-7000-8000-000000000002", "causation_id": null,
            "actor_kind": "user", "actor_id": "alice", "tenant": "default",
            "command_id": null, "metadata": {}, "payload": payload,
        });
        assert!(v.is_valid(&event));
        event["payload"]["initial_confidence"] = json!("high");
        assert!(
            !v.is_valid(&event),
            "a payload of the wrong shape must not validate"
        );
        event["upcast_error"] = json!("no upcaster path");
        assert!(
            v.is_valid(&event),
            "a payload that could not be upcast is shown as stored"
        );
    }

    #[test]
    fn the_problem_code_enum_holds_every_domain_rule_code() {
        let doc = document();
        let codes = doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap();
        for c in RULE_CODES.iter().chain(PROBLEM_CODES) {
            assert!(codes.contains(&json!(c)), "{c}");
        }
    }

    /// The schema of `name` among the history's parameters.
    fn history_parameter(doc: &Value, name: &str) -> jsonschema::Validator {
        let params =
            doc["paths"]["/v1/{aggregate_type}/{aggregate_id}/events"]["get"]["parameters"]
                .as_array()
                .unwrap();
        let p = params.iter().find(|p| p["name"] == name).unwrap();
        jsonschema::draft202012::new(&p["schema"]).unwrap()
    }

    #[test]
    fn parameter_patterns_refuse_what_the_server_refuses() {
        let doc = document();
        let types = history_parameter(&doc, "types");
        assert!(types.is_valid(&json!("CrossReferenceDiscovered, CrossReferenceValidated")));
        for bad in ["", ",,", " , ", "A\u{0}B", "\u{0}"] {
            assert!(!types.is_valid(&json!(bad)), "{bad:?}");
        }
        let id = history_parameter(&doc, "aggregate_id");
        assert!(id.is_valid(&json!("GEN.1.1:JHN.1.1")));
        assert!(!id.is_valid(&json!("a\u{0}b")));
        assert!(!id.is_valid(&json!("x".repeat(257))));
        let actor = history_parameter(&doc, "actor");
        assert!(actor.is_valid(&json!("user:josé")));
        assert!(!actor.is_valid(&json!("robot:x")));
        assert!(!actor.is_valid(&json!("user:a\u{0}")));
    }

    #[test]
    fn bounds_the_body_fields_as_the_domain_validates_them() {
        let doc = document();
        let discover = &doc["components"]["schemas"]["DiscoverCrossReference"];
        assert_eq!(discover["additionalProperties"], false);
        assert_eq!(discover["properties"]["source_ref"]["maxLength"], 256);
        assert_eq!(discover["properties"]["source_ref"]["minLength"], 1);
        assert_eq!(discover["properties"]["feature_vector"]["maxItems"], 4096);
        assert_eq!(
            discover["properties"]["semantic_similarity"]["minimum"],
            -1.0
        );
        let start = &doc["components"]["schemas"]["StartVerseProcessing"];
        assert_eq!(start["properties"]["chapter"]["maximum"], 999);
        let sentence = &doc["components"]["schemas"]["CreateSentence"];
        assert_eq!(sentence["properties"]["index"]["maximum"], u32::MAX);
    }
}
