//! Every aggregate type of the reference domains, by name, for the command-service (routing,
//! OpenAPI, Mermaid) and for the schema and projector code (event type names).

use eventfold_domain::{
    Aggregate, DomainEvent, StateMachine, StoredEventError, Transition, Upcasters,
};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

use crate::{
    CrossReference, Graph, Interview, Opportunity, Sentence, User, VerseOracle, VerseProcessing,
    Workflow,
};

/// The aggregate type names, as used in URLs, rows and topics.
pub const AGGREGATE_TYPES: &[&str] = &[
    CrossReference::TYPE,
    VerseProcessing::TYPE,
    VerseOracle::TYPE,
    Interview::TYPE,
    Sentence::TYPE,
    Opportunity::TYPE,
    User::TYPE,
    Workflow::TYPE,
    Graph::TYPE,
];

/// Code that runs generically for one aggregate type chosen by name at run time.
///
/// Rust has no generic closures, so the command-service implements this once (e.g. "parse the
/// command, load, decide, append" for `A`) and [`visit`] picks `A` from the URL's type name.
pub trait AggregateVisitor {
    /// What the visit returns.
    type Output;
    /// Runs for the aggregate type `A`.
    fn visit<A: Aggregate>(self) -> Self::Output;
}

/// Runs `visitor` for the aggregate type named `aggregate_type`; `None` for an unknown name.
pub fn visit<V: AggregateVisitor>(aggregate_type: &str, visitor: V) -> Option<V::Output> {
    match aggregate_type {
        CrossReference::TYPE => Some(visitor.visit::<CrossReference>()),
        VerseProcessing::TYPE => Some(visitor.visit::<VerseProcessing>()),
        VerseOracle::TYPE => Some(visitor.visit::<VerseOracle>()),
        Interview::TYPE => Some(visitor.visit::<Interview>()),
        Sentence::TYPE => Some(visitor.visit::<Sentence>()),
        Opportunity::TYPE => Some(visitor.visit::<Opportunity>()),
        User::TYPE => Some(visitor.visit::<User>()),
        Workflow::TYPE => Some(visitor.visit::<Workflow>()),
        Graph::TYPE => Some(visitor.visit::<Graph>()),
        _ => None,
    }
}

struct Machine;

impl AggregateVisitor for Machine {
    type Output = StateMachine;
    fn visit<A: Aggregate>(self) -> StateMachine {
        A::state_machine()
    }
}

/// The state machine of `aggregate_type`.
pub fn state_machine(aggregate_type: &str) -> Option<StateMachine> {
    visit(aggregate_type, Machine)
}

/// The state machine of `aggregate_type` as a Mermaid `stateDiagram-v2`.
pub fn mermaid(aggregate_type: &str) -> Option<String> {
    state_machine(aggregate_type).map(|m| m.to_mermaid())
}

struct Commands;

impl AggregateVisitor for Commands {
    type Output = &'static [&'static str];
    fn visit<A: Aggregate>(self) -> Self::Output {
        A::command_names()
    }
}

/// The command names of `aggregate_type`.
pub fn command_names(aggregate_type: &str) -> Option<&'static [&'static str]> {
    visit(aggregate_type, Commands)
}

/// The event type names `aggregate_type` can emit, in declaration order.
pub fn event_types(aggregate_type: &str) -> Option<&'static [&'static str]> {
    match aggregate_type {
        CrossReference::TYPE => Some(crate::biblos::cross_reference::Event::TYPES),
        VerseProcessing::TYPE => Some(crate::biblos::verse_processing::Event::TYPES),
        VerseOracle::TYPE => Some(crate::biblos::verse_oracle::Event::TYPES),
        Interview::TYPE => Some(crate::interview::interview::Event::TYPES),
        Sentence::TYPE => Some(crate::interview::sentence::Event::TYPES),
        Opportunity::TYPE => Some(crate::opportunity::opportunity::Event::TYPES),
        User::TYPE => Some(crate::opportunity::user::Event::TYPES),
        Workflow::TYPE => Some(crate::cim::workflow::Event::TYPES),
        Graph::TYPE => Some(crate::cim::graph::Event::TYPES),
        _ => None,
    }
}

struct Steps;

impl AggregateVisitor for Steps {
    type Output = &'static Upcasters;
    fn visit<A: Aggregate>(self) -> Self::Output {
        A::Event::upcasters()
    }
}

/// The upcasters of `aggregate_type`'s events (every event type without a step is at version 1).
pub fn upcasters(aggregate_type: &str) -> Option<&'static Upcasters> {
    visit(aggregate_type, Steps)
}

struct ReadStored<'a> {
    event_type: &'a str,
    version: u32,
    payload: Value,
}

impl AggregateVisitor for ReadStored<'_> {
    type Output = Result<Value, StoredEventError>;
    fn visit<A: Aggregate>(self) -> Self::Output {
        let event = A::Event::from_stored(self.event_type, self.version, self.payload)?;
        serde_json::to_value(&event).map_err(|source| StoredEventError::Payload {
            event_type: self.event_type.to_owned(),
            version: self.version,
            source,
        })
    }
}

/// Reads a payload of `event_type` stored at `version` as `aggregate_type`'s event (upcasting it)
/// and returns that event's payload at the latest version; `None` for an unknown aggregate type.
pub fn read_stored(
    aggregate_type: &str,
    event_type: &str,
    version: u32,
    payload: Value,
) -> Option<Result<Value, StoredEventError>> {
    visit(
        aggregate_type,
        ReadStored {
            event_type,
            version,
            payload,
        },
    )
}

/// The JSON Schemas of one aggregate type (2020-12, as OpenAPI 3.1 uses): each command's body,
/// each event's payload at the latest schema version, and the folded state. Each is a `$ref` into
/// the generator's definitions, which the caller takes once for every type.
#[derive(Debug, Clone)]
pub struct AggregateSchemas {
    /// Per command name, in declaration order, the schema of its JSON body.
    pub commands: Vec<(&'static str, Schema)>,
    /// Per event type, in declaration order, the schema of its payload.
    pub events: Vec<(&'static str, Schema)>,
    /// The state as `GET /v1/{type}/{id}` answers it in `state`.
    pub state: Schema,
}

struct Schemas<'g>(&'g mut SchemaGenerator);

impl AggregateVisitor for Schemas<'_> {
    type Output = AggregateSchemas;
    fn visit<A: Aggregate>(self) -> AggregateSchemas {
        let generator = self.0;
        // The command enum is externally tagged: one object per command, whose only property is
        // the command name holding the body. Inline it (every aggregate's enum is called
        // `Command`) and keep only the bodies.
        let tagged = A::Command::json_schema(generator);
        let variants = tagged
            .get("oneOf")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let commands = A::command_names()
            .iter()
            .filter_map(|name| {
                let body = variants
                    .iter()
                    .find_map(|v| v.get("properties")?.get(*name))?;
                Some((*name, Schema::try_from(body.clone()).ok()?))
            })
            .collect();
        AggregateSchemas {
            commands,
            events: A::Event::payload_schemas(generator),
            state: generator.subschema_for::<A>(),
        }
    }
}

/// The JSON Schemas of `aggregate_type`'s commands, events and state; `None` for an unknown name.
pub fn schemas(aggregate_type: &str, generator: &mut SchemaGenerator) -> Option<AggregateSchemas> {
    visit(aggregate_type, Schemas(generator))
}

/// One row of a state machine table: in `from`, `command` emits `events` and leads to `to`.
pub(crate) const fn edge(
    from: &'static str,
    command: &'static str,
    events: &'static [&'static str],
    to: &'static str,
) -> Transition {
    Transition {
        from,
        command,
        events,
        to,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_a_schema_for_every_command_and_event() {
        let mut generator = SchemaGenerator::default();
        for t in AGGREGATE_TYPES {
            let s = schemas(t, &mut generator).unwrap();
            let commands: Vec<&str> = s.commands.iter().map(|(n, _)| *n).collect();
            let events: Vec<&str> = s.events.iter().map(|(n, _)| *n).collect();
            assert_eq!(commands, command_names(t).unwrap(), "{t}");
            assert_eq!(events, event_types(t).unwrap(), "{t}");
        }
        let definitions = generator.take_definitions(true);
        for name in [
            "DiscoverCrossReference",
            "CrossReferenceDiscovered",
            "CrossReference",
        ] {
            assert!(definitions.contains_key(name), "{name}");
        }
    }

    #[test]
    fn lists_the_seed_aggregates() {
        assert_eq!(
            AGGREGATE_TYPES,
            [
                "CrossReference",
                "VerseProcessing",
                "VerseOracle",
                "Interview",
                "Sentence",
                "Opportunity",
                "User",
                "Workflow",
                "Graph"
            ]
        );
    }

    #[test]
    fn prints_mermaid_for_every_listed_type_and_nothing_for_an_unknown_one() {
        for t in AGGREGATE_TYPES {
            let m = mermaid(t).expect("mermaid for a listed type");
            assert!(m.contains("stateDiagram-v2"), "{m}");
            assert!(m.contains(&format!("title: {t}")), "{m}");
        }
        assert_eq!(mermaid("Nope"), None);
        assert_eq!(command_names("Nope"), None);
        assert_eq!(event_types("Nope"), None);
    }

    #[test]
    fn names_every_event_that_a_state_machine_can_emit() {
        for t in AGGREGATE_TYPES {
            let types = event_types(t).unwrap();
            let machine = state_machine(t).unwrap();
            let mut emitted: Vec<&str> = machine
                .transitions
                .iter()
                .flat_map(|tr| tr.events.iter().copied())
                .collect();
            emitted.sort_unstable();
            emitted.dedup();
            let mut listed = types.to_vec();
            listed.sort_unstable();
            assert_eq!(emitted, listed, "{t}");
        }
    }

    #[test]
    fn names_every_command_that_a_state_machine_accepts() {
        for t in AGGREGATE_TYPES {
            let mut accepted: Vec<&str> = state_machine(t)
                .unwrap()
                .transitions
                .iter()
                .map(|tr| tr.command)
                .collect();
            accepted.sort_unstable();
            accepted.dedup();
            let mut listed = command_names(t).unwrap().to_vec();
            listed.sort_unstable();
            assert_eq!(accepted, listed, "{t}");
        }
    }
}
