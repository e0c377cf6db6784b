//! The audit side of the event reads (an aggregate's history, the global feed, a correlation):
//! the filters `from`, `to`, `actor`, `category` and `types`, and how an event's payload is shown
//! (upcast to its latest schema version, or as stored with `as_stored=true`).

use chrono::{DateTime, Utc};
use eventfold_domain::EventCategory;
use eventfold_postgres::{Actor, EventFilter, RecordedEvent};
use serde::Deserialize;
use serde_json::Value;

use crate::domains::Domains;
use crate::problem::Problem;

/// The audit parameters of an event read, as sent (read beside the route's own paging query).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    from: Option<String>,
    to: Option<String>,
    actor: Option<String>,
    category: Option<String>,
    types: Option<String>,
    #[serde(default)]
    as_stored: bool,
}

impl AuditQuery {
    /// The filter these parameters ask for, or a 400 naming the bad parameter.
    pub(crate) fn filter(&self) -> Result<EventFilter, Problem> {
        let from = self.from.as_deref().map(|t| time("from", t)).transpose()?;
        let to = self.to.as_deref().map(|t| time("to", t)).transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            // Each value is well-formed; only the two together break the rule (which the OpenAPI
            // document cannot state for parameters), so 422 rather than 400.
            return Err(Problem::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_time_range",
                format!("from ({f}) is later than to ({t})"),
            )
            .with("parameter", "from"));
        }
        Ok(EventFilter {
            from,
            to,
            actor: self.actor.as_deref().map(actor).transpose()?,
            categories: self.category.as_deref().map(categories).transpose()?,
            types: self.types.as_deref().map(types).transpose()?,
        })
    }

    /// True when the stored payloads are asked for instead of the upcast ones.
    pub(crate) fn as_stored(&self) -> bool {
        self.as_stored
    }
}

/// An RFC 3339 time. A `+` offset sent unencoded arrives as a space; it is read as the `+` it was.
fn time(parameter: &'static str, raw: &str) -> Result<DateTime<Utc>, Problem> {
    DateTime::parse_from_rfc3339(raw)
        .or_else(|e| {
            if raw.contains(' ') {
                DateTime::parse_from_rfc3339(&raw.replace(' ', "+"))
            } else {
                Err(e)
            }
        })
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Problem::bad_request(
                "invalid_time",
                format!(
                    "{parameter} `{raw}` is not an RFC 3339 time (e.g. 2026-12-01T09:00:00Z): {e}"
                ),
            )
            .with("parameter", parameter)
        })
}

/// `<user|agent|system>:<id>`, as `X-Actor` names an actor.
fn actor(raw: &str) -> Result<Actor, Problem> {
    let bad = || {
        Problem::bad_request(
            "invalid_actor",
            format!(
                "actor `{raw}` is not <user|agent|system>:<id> with an id of 1 to 128 characters"
            ),
        )
        .with("parameter", "actor")
    };
    Actor::parse(raw).ok_or_else(bad)
}

/// Comma-separated names, trimmed, empty ones dropped.
fn names(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One or more known categories, comma-separated.
fn categories(raw: &str) -> Result<Vec<String>, Problem> {
    let known = || {
        EventCategory::ALL
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let names = names(raw);
    if names.is_empty() {
        return Err(Problem::bad_request(
            "unknown_category",
            format!("category names no category; known: {}", known()),
        )
        .with("parameter", "category"));
    }
    if let Some(unknown) = names.iter().find(|n| EventCategory::from_name(n).is_none()) {
        return Err(Problem::bad_request(
            "unknown_category",
            format!("no event category `{unknown}`; known: {}", known()),
        )
        .with("parameter", "category"));
    }
    Ok(names)
}

/// One or more event types, comma-separated. A type no aggregate emits today is not refused: the
/// store keeps the events of every type ever written.
fn types(raw: &str) -> Result<Vec<String>, Problem> {
    let names = names(raw);
    // A control character (a NUL, which PostgreSQL refuses in text) is in no type name.
    if names.is_empty() || raw.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "invalid_types",
            "types names no event type (comma-separated, e.g. types=CrossReferenceDiscovered,CrossReferenceValidated)",
        )
        .with("parameter", "types"));
    }
    Ok(names)
}

/// An event as the API shows it: the envelope with the payload upcast to the latest schema
/// version of its type (`schema_version` is then that version), or as stored with `as_stored`.
/// `stored_schema_version` always says the version of the stored row. A payload that cannot be
/// upcast (a version newer than this build knows, a missing step) is shown as stored, with
/// `upcast_error` saying why: an audit read never hides an event.
pub(crate) fn envelope(domains: &Domains, e: &RecordedEvent, as_stored: bool) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    v["stored_schema_version"] = e.schema_version.into();
    if as_stored {
        return v;
    }
    let Ok(domain) = domains.get(&e.aggregate_type) else {
        return v;
    };
    let version = u32::try_from(e.schema_version).unwrap_or(0);
    match domain.upcast(&e.event_type, version, e.payload.clone()) {
        Ok((payload, latest)) => {
            v["payload"] = payload;
            v["schema_version"] = latest.into();
        }
        Err(err) => v["upcast_error"] = err.to_string().into(),
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventfold_postgres::ActorKind;

    fn query(pairs: &str) -> AuditQuery {
        let uri: axum::http::Uri = format!("/?{pairs}").parse().unwrap();
        axum::extract::Query::<AuditQuery>::try_from_uri(&uri)
            .unwrap()
            .0
    }

    fn code(pairs: &str) -> &'static str {
        query(pairs).filter().unwrap_err().code()
    }

    #[test]
    fn no_parameters_filter_nothing() {
        assert_eq!(query("").filter().unwrap(), EventFilter::default());
        assert!(!query("").as_stored());
        assert!(query("as_stored=true").as_stored());
    }

    #[test]
    fn every_parameter_becomes_its_condition() {
        let f = query(
            "from=2026-12-01T09:00:00Z&to=2026-12-01T10:00:00%2B01:00&actor=agent:theology\
             &category=discovery,%20validation&types=A,,B",
        )
        .filter()
        .unwrap();
        assert_eq!(f.from.unwrap().to_rfc3339(), "2026-12-01T09:00:00+00:00");
        assert_eq!(f.to.unwrap().to_rfc3339(), "2026-12-01T09:00:00+00:00");
        let a = f.actor.unwrap();
        assert_eq!((a.kind, a.id.as_str()), (ActorKind::Agent, "theology"));
        assert_eq!(f.categories.unwrap(), ["discovery", "validation"]);
        assert_eq!(f.types.unwrap(), ["A", "B"]);
    }

    #[test]
    fn an_unencoded_plus_offset_is_read_as_a_plus() {
        let f = query("from=2026-12-01T10:00:00+01:00").filter().unwrap();
        assert_eq!(f.from.unwrap().to_rfc3339(), "2026-12-01T09:00:00+00:00");
    }

    #[test]
    fn a_from_after_its_to_is_unprocessable_not_malformed() {
        let p = query("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z")
            .filter()
            .unwrap_err();
        assert_eq!(p.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(p.code(), "invalid_time_range");
    }

    #[test]
    fn bad_values_name_their_rule() {
        assert_eq!(code("from=yesterday"), "invalid_time");
        assert_eq!(code("to=2026-12-01"), "invalid_time");
        assert_eq!(
            code("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z"),
            "invalid_time_range"
        );
        assert_eq!(code("actor=alice"), "invalid_actor");
        assert_eq!(code("actor=robot:x"), "invalid_actor");
        assert_eq!(code("actor=user:"), "invalid_actor");
        assert_eq!(code("category=gossip"), "unknown_category");
        assert_eq!(code("category=discovery,gossip"), "unknown_category");
        assert_eq!(code("category=,"), "unknown_category");
        assert_eq!(code("types="), "invalid_types");
        assert_eq!(code("types=A%00B"), "invalid_types");
        assert_eq!(code("actor=user:a%00b"), "invalid_actor");
        assert_eq!(code("types=%20,%20"), "invalid_types");
    }

    #[test]
    fn an_equal_from_and_to_is_an_empty_window_not_an_error() {
        let f = query("from=2026-12-01T09:00:00Z&to=2026-12-01T09:00:00Z").filter();
        assert!(f.is_ok());
    }
}
