//! The event envelope as Kafka record headers: written by the relay, read by the projector.
//!
//! The record key is the aggregate id and the value is the Avro payload; everything else about the
//! event travels in these headers, as UTF-8 text.

use chrono::{DateTime, Utc};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

/// Header names, one per envelope field.
pub mod names {
    /// Event id (UUID).
    pub const EVENT_ID: &str = "event_id";
    /// Event type name.
    pub const EVENT_TYPE: &str = "event_type";
    /// Payload schema version as stored (before upcasting).
    pub const SCHEMA_VERSION: &str = "schema_version";
    /// Aggregate type.
    pub const AGGREGATE_TYPE: &str = "aggregate_type";
    /// Aggregate id (also the record key).
    pub const AGGREGATE_ID: &str = "aggregate_id";
    /// Version of the aggregate after this event.
    pub const AGGREGATE_VERSION: &str = "aggregate_version";
    /// Event store position.
    pub const POSITION: &str = "position";
    /// Correlation id.
    pub const CORRELATION_ID: &str = "correlation_id";
    /// Causation id, when there is one.
    pub const CAUSATION_ID: &str = "causation_id";
    /// Command id, when there is one.
    pub const COMMAND_ID: &str = "command_id";
    /// Tenant.
    pub const TENANT: &str = "tenant";
    /// Actor as `kind:id`.
    pub const ACTOR: &str = "actor";
    /// Business time, RFC 3339.
    pub const OCCURRED_AT: &str = "occurred_at";
    /// Time the event was stored, RFC 3339.
    pub const RECORDED_AT: &str = "recorded_at";
    /// W3C trace context of the command, when it had one.
    pub const TRACEPARENT: &str = "traceparent";
}

/// Everything about an event except its payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// Event id.
    pub event_id: String,
    /// Event type name.
    pub event_type: String,
    /// Payload schema version as stored.
    pub schema_version: i32,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Version of the aggregate after this event.
    pub aggregate_version: i64,
    /// Event store position.
    pub position: i64,
    /// Correlation id.
    pub correlation_id: String,
    /// Causation id.
    pub causation_id: Option<String>,
    /// Command id.
    pub command_id: Option<String>,
    /// Tenant.
    pub tenant: String,
    /// Actor as `kind:id`.
    pub actor: String,
    /// Business time, RFC 3339.
    pub occurred_at: String,
    /// Store time, RFC 3339.
    pub recorded_at: String,
    /// W3C trace context.
    pub traceparent: Option<String>,
}

/// A record whose headers do not carry a complete envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// A required header is absent.
    #[error("header `{0}` is missing")]
    Missing(&'static str),
    /// A header is not UTF-8 or not a number where one is expected.
    #[error("header `{name}` is malformed: {reason}")]
    Malformed {
        /// The header.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Envelope {
    /// The envelope of an `events` row; the row must carry the columns `event_id`, `event_type`,
    /// `schema_version`, `aggregate_type`, `aggregate_id`, `version`, `position`,
    /// `correlation_id`, `causation_id`, `command_id`, `tenant`, `actor_kind`, `actor_id`,
    /// `occurred_at`, `recorded_at` and `traceparent` (`metadata ->> 'traceparent'`).
    pub fn from_event_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let actor_kind: String = row.try_get("actor_kind")?;
        let actor_id: String = row.try_get("actor_id")?;
        let occurred_at: DateTime<Utc> = row.try_get("occurred_at")?;
        let recorded_at: DateTime<Utc> = row.try_get("recorded_at")?;
        Ok(Self {
            event_id: row.try_get::<Uuid, _>("event_id")?.to_string(),
            event_type: row.try_get("event_type")?,
            schema_version: row.try_get("schema_version")?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            aggregate_version: row.try_get("version")?,
            position: row.try_get("position")?,
            correlation_id: row.try_get::<Uuid, _>("correlation_id")?.to_string(),
            causation_id: row
                .try_get::<Option<Uuid>, _>("causation_id")?
                .map(|u| u.to_string()),
            command_id: row
                .try_get::<Option<Uuid>, _>("command_id")?
                .map(|u| u.to_string()),
            tenant: row.try_get("tenant")?,
            actor: format!("{actor_kind}:{actor_id}"),
            occurred_at: occurred_at.to_rfc3339(),
            recorded_at: recorded_at.to_rfc3339(),
            traceparent: row.try_get("traceparent")?,
        })
    }

    /// The envelope as record headers (optional fields only when present).
    pub fn to_headers(&self) -> OwnedHeaders {
        let schema_version = self.schema_version.to_string();
        let aggregate_version = self.aggregate_version.to_string();
        let position = self.position.to_string();
        let mut fields: Vec<(&str, &str)> = vec![
            (names::EVENT_ID, &self.event_id),
            (names::EVENT_TYPE, &self.event_type),
            (names::SCHEMA_VERSION, &schema_version),
            (names::AGGREGATE_TYPE, &self.aggregate_type),
            (names::AGGREGATE_ID, &self.aggregate_id),
            (names::AGGREGATE_VERSION, &aggregate_version),
            (names::POSITION, &position),
            (names::CORRELATION_ID, &self.correlation_id),
            (names::TENANT, &self.tenant),
            (names::ACTOR, &self.actor),
            (names::OCCURRED_AT, &self.occurred_at),
            (names::RECORDED_AT, &self.recorded_at),
        ];
        for (name, value) in [
            (names::CAUSATION_ID, &self.causation_id),
            (names::COMMAND_ID, &self.command_id),
            (names::TRACEPARENT, &self.traceparent),
        ] {
            if let Some(v) = value {
                fields.push((name, v));
            }
        }
        fields
            .into_iter()
            .fold(OwnedHeaders::new_with_capacity(15), |h, (key, value)| {
                h.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                })
            })
    }

    /// Reads the envelope back from a record's headers.
    pub fn from_headers<H: Headers>(headers: &H) -> Result<Self, EnvelopeError> {
        let text = |name: &'static str| -> Result<Option<String>, EnvelopeError> {
            match headers.iter().find(|h| h.key == name).and_then(|h| h.value) {
                None => Ok(None),
                Some(bytes) => std::str::from_utf8(bytes)
                    .map(|s| Some(s.to_owned()))
                    .map_err(|e| EnvelopeError::Malformed {
                        name,
                        reason: e.to_string(),
                    }),
            }
        };
        let required = |name: &'static str| text(name)?.ok_or(EnvelopeError::Missing(name));
        let number = |name: &'static str| -> Result<i64, EnvelopeError> {
            let raw = required(name)?;
            raw.parse().map_err(|_| EnvelopeError::Malformed {
                name,
                reason: format!("`{raw}` is not an integer"),
            })
        };
        let schema_version = i32::try_from(number(names::SCHEMA_VERSION)?)
            .ok()
            .filter(|v| *v > 0)
            .ok_or(EnvelopeError::Malformed {
                name: names::SCHEMA_VERSION,
                reason: "not a positive 32-bit integer".into(),
            })?;
        let aggregate_version = number(names::AGGREGATE_VERSION)?;
        if aggregate_version < 1 {
            return Err(EnvelopeError::Malformed {
                name: names::AGGREGATE_VERSION,
                reason: format!("{aggregate_version} is not a version (starts at 1)"),
            });
        }
        Ok(Self {
            event_id: required(names::EVENT_ID)?,
            event_type: required(names::EVENT_TYPE)?,
            schema_version,
            aggregate_type: required(names::AGGREGATE_TYPE)?,
            aggregate_id: required(names::AGGREGATE_ID)?,
            aggregate_version,
            position: number(names::POSITION)?,
            correlation_id: required(names::CORRELATION_ID)?,
            causation_id: text(names::CAUSATION_ID)?,
            command_id: text(names::COMMAND_ID)?,
            tenant: required(names::TENANT)?,
            actor: required(names::ACTOR)?,
            occurred_at: required(names::OCCURRED_AT)?,
            recorded_at: required(names::RECORDED_AT)?,
            traceparent: text(names::TRACEPARENT)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            event_id: "7d1f3c1e-0000-4000-8000-000000000001".into(),
            event_type: "CrossReferenceDiscovered".into(),
            schema_version: 1,
            aggregate_type: "CrossReference".into(),
            aggregate_id: "xref-1".into(),
            aggregate_version: 3,
            position: 42,
            correlation_id: "c".into(),
            causation_id: Some("cause".into()),
            command_id: None,
            tenant: "default".into(),
            actor: "agent:validator".into(),
            occurred_at: "2026-11-23T10:00:00Z".into(),
            recorded_at: "2026-11-23T10:00:00.001Z".into(),
            traceparent: None,
        }
    }

    #[test]
    fn survives_a_round_trip_through_headers() {
        let e = sample();
        assert_eq!(Envelope::from_headers(&e.to_headers()).unwrap(), e);
    }

    #[test]
    fn names_a_missing_or_malformed_header() {
        let without_id = OwnedHeaders::new().insert(Header {
            key: names::SCHEMA_VERSION,
            value: Some("1"),
        });
        assert_eq!(
            Envelope::from_headers(&without_id),
            Err(EnvelopeError::Missing(names::AGGREGATE_VERSION))
        );
        let mut bad = sample();
        bad.aggregate_version = 0;
        let err = Envelope::from_headers(&bad.to_headers()).unwrap_err();
        assert!(err.to_string().contains("aggregate_version"), "{err}");
    }
}
