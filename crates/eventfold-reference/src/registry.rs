//! Every aggregate type of the reference domains, by name, for the command-service (routing,
//! OpenAPI, Mermaid) and for the schema and projector code (event type names).

use eventfold_domain::{
    Aggregate, DomainEvent, StateMachine, StoredEventError, Transition, Upcasters,
};
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
