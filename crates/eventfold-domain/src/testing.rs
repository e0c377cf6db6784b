//! Given-when-then harness for aggregate tests: given past events, when a command, then these events
//! (or this error).

use crate::{Aggregate, DomainError};

/// The past of an aggregate under test.
#[derive(Debug)]
pub struct Given<A: Aggregate> {
    state: A,
}

/// Starts a test from the state reached by replaying `events`.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let events: Vec<A::Event> = events.into_iter().collect();
    Given {
        state: A::replay(&events),
    }
}

impl<A: Aggregate> Given<A> {
    /// Decides `command` in the given state.
    pub fn when(self, command: A::Command) -> Then<A> {
        let outcome = self.state.decide(&command);
        Then {
            state: self.state,
            outcome,
        }
    }
}

/// The outcome of a decision, to assert on.
#[derive(Debug)]
pub struct Then<A: Aggregate> {
    state: A,
    outcome: Result<Vec<A::Event>, DomainError>,
}

impl<A: Aggregate> Then<A>
where
    A::Event: PartialEq,
{
    /// Asserts the command emitted exactly `expected`; returns the state after applying them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.outcome {
            Ok(events) => {
                assert_eq!(events, expected, "emitted events differ");
                events.iter().fold(self.state, |s, e| s.apply(e))
            }
            Err(e) => panic!("expected events {expected:?}, got error {e:?}"),
        }
    }

    /// Asserts the command was refused with `expected`.
    #[track_caller]
    pub fn then_error(self, expected: DomainError) {
        match self.outcome {
            Ok(events) => panic!("expected error {expected:?}, got events {events:?}"),
            Err(e) => assert_eq!(e, expected),
        }
    }

    /// The raw outcome, for assertions the helpers do not cover.
    pub fn outcome(self) -> Result<Vec<A::Event>, DomainError> {
        self.outcome
    }
}
