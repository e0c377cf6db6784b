//! The aggregate (decider) and domain event traits.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::upcast::{StoredEventError, Upcasters};
use crate::{CommandError, DomainError, StateMachine};

/// Event category, used for routing, filtering and retention (seed 000).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EventCategory {
    /// Processing lifecycle (verse processing, batches).
    Processing,
    /// Discoveries (cross-references, patterns).
    Discovery,
    /// Validations.
    Validation,
    /// Oracle engine results (typology, necessity).
    Oracle,
    /// Ordinary domain changes (interviews, sentences, opportunities, users).
    Domain,
    /// Infrastructure.
    System,
}

impl EventCategory {
    /// Every category, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::Processing,
        Self::Discovery,
        Self::Validation,
        Self::Oracle,
        Self::Domain,
        Self::System,
    ];

    /// The category stored as `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The category's name as stored in the `category` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Discovery => "discovery",
            Self::Validation => "validation",
            Self::Oracle => "oracle",
            Self::Domain => "domain",
            Self::System => "system",
        }
    }
}

/// A domain event: a payload that knows its stable name, schema version and category.
///
/// The serialized form is the event's payload only (no envelope); the name and version are
/// defined once here and reused by the store, the Avro subjects and the Kafka headers.
pub trait DomainEvent:
    Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync
{
    /// Past-tense type name, e.g. `CrossReferenceDiscovered`.
    fn event_type(&self) -> &'static str;
    /// Schema version of this payload shape (the latest the code writes, from [`Self::upcasters`]).
    fn schema_version(&self) -> u32 {
        Self::upcasters().latest(self.event_type())
    }
    /// Category of the event.
    fn category(&self) -> EventCategory;
    /// Reads a payload of type `event_type` at the latest schema version.
    fn from_payload(
        event_type: &str,
        payload: serde_json::Value,
    ) -> Result<Self, serde_json::Error>;

    /// The JSON Schema of each event type's payload at the latest version, by type name, with
    /// shared definitions added to `generator` (for the OpenAPI documents; none by default).
    fn payload_schemas(
        generator: &mut schemars::SchemaGenerator,
    ) -> Vec<(&'static str, schemars::Schema)> {
        let _ = generator;
        Vec::new()
    }

    /// The steps that bring older payload versions of these events to the latest (none by default).
    fn upcasters() -> &'static Upcasters {
        Upcasters::empty()
    }

    /// Reads a payload stored or consumed at `schema_version`: upcasts it to the latest version,
    /// then reads it with [`Self::from_payload`]. The one entry point of every read path
    /// (hydration, projection, replay); the stored payload itself is never rewritten.
    fn from_stored(
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<Self, StoredEventError> {
        let latest = Self::upcasters().upcast(event_type, schema_version, payload)?;
        Self::from_payload(event_type, latest).map_err(|source| StoredEventError::Payload {
            event_type: event_type.to_owned(),
            version: schema_version,
            source,
        })
    }
}

/// An aggregate as a Mealy machine: `decide` turns (state, command) into events, `apply` folds an
/// event into the state. Both are pure; `decide` never panics on a bad transition.
pub trait Aggregate:
    Default
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
    + schemars::JsonSchema
    + Send
    + Sync
    + 'static
{
    /// Stable aggregate type name used in URLs, rows and topics, e.g. `CrossReference`.
    const TYPE: &'static str;
    /// Version of the serialized state; snapshots with another version are ignored.
    const STATE_VERSION: u32 = 1;
    /// The commands this aggregate accepts.
    /// Its JSON Schema is an externally tagged `oneOf`: one object per command, whose only
    /// property is the command name and holds the body's schema.
    type Command: DeserializeOwned + schemars::JsonSchema + std::fmt::Debug + Send;
    /// The events it emits.
    type Event: DomainEvent;

    /// Names of the commands, as used in `POST .../commands/{command}`.
    fn command_names() -> &'static [&'static str];
    /// Name of `command` (one of [`Aggregate::command_names`]).
    fn command_name(command: &Self::Command) -> &'static str;
    /// Name of the current state, e.g. `Discovered` (`Initial` before the first event).
    fn state_name(&self) -> &'static str;
    /// True once the aggregate has at least one event (it exists).
    fn exists(&self) -> bool {
        self.state_name() != "Initial"
    }
    /// Decides which events `command` produces in this state.
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, DomainError>;
    /// Folds one event into the state.
    fn apply(self, event: &Self::Event) -> Self;
    /// The state machine (states, commands, events) for documentation and Mermaid output.
    fn state_machine() -> StateMachine;

    /// An invalid-transition error naming this state and `command`.
    fn invalid(&self, command: &Self::Command) -> DomainError {
        DomainError::InvalidTransition {
            state: self.state_name(),
            command: Self::command_name(command),
        }
    }

    /// Replays `events` from the initial state.
    fn replay<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(Self::default(), |s, e| s.apply(e))
    }
}

/// Reads a command of aggregate `A` from its name and JSON body.
///
/// Commands are externally tagged enums (`{"DiscoverCrossReference": {...}}`); the name must be one
/// of [`Aggregate::command_names`], and a field error names the field as a JSON pointer. A number
/// with a zero fraction (`3.0`) is an integer to JSON Schema (and so to the OpenAPI document) but
/// not to serde: a body serde refuses is read once more with such numbers as integers, so that
/// an integer field takes them while a body read the first time keeps its numbers as sent.
pub fn parse_command<A: Aggregate>(
    name: &str,
    body: serde_json::Value,
) -> Result<A::Command, CommandError> {
    let Some(known) = A::command_names().iter().find(|n| **n == name) else {
        return Err(CommandError::UnknownCommand {
            aggregate_type: A::TYPE,
            command: name.to_owned(),
        });
    };
    let mut tagged = serde_json::json!({ *known: body });
    let first = match serde_path_to_error::deserialize(&tagged) {
        Ok(command) => return Ok(command),
        Err(e) => CommandError::InvalidBody {
            pointer: body_pointer(e.path()),
            message: e.into_inner().to_string(),
        },
    };
    if integral_numbers_as_integers(&mut tagged)
        && let Ok(command) = serde_path_to_error::deserialize(&tagged)
    {
        return Ok(command);
    }
    Err(first)
}

/// Rewrites every number with a zero fraction that fits an `i64` or `u64` (`3.0`, `-0.0`) as that
/// integer, in place; true when it rewrote any.
fn integral_numbers_as_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let Some(f) = n.as_f64() else { return false };
            // 2^63 and 2^64 are exact in f64; the bounds keep the casts below lossless.
            if f.fract() != 0.0 || !f.is_finite() {
                return false;
            }
            if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
                *value = Value::from(f as i64);
            } else if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                *value = Value::from(f as u64);
            } else {
                return false;
            }
            true
        }
        // Every element is rewritten, so no short-circuiting `any`.
        Value::Array(items) => {
            items
                .iter_mut()
                .map(integral_numbers_as_integers)
                .filter(|rewrote| *rewrote)
                .count()
                > 0
        }
        Value::Object(fields) => {
            fields
                .values_mut()
                .map(integral_numbers_as_integers)
                .filter(|rewrote| *rewrote)
                .count()
                > 0
        }
        _ => false,
    }
}

/// The RFC 6901 pointer of a deserialization path, relative to the command body: the first segment
/// (the command's own tag) is dropped, array indices become `/n`, and `~` and `/` in keys are
/// escaped. An unknown segment ends the pointer at its parent.
fn body_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter().skip(1) {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Unknown => break,
        }
    }
    pointer
}
