//! RetryVerseProcessing: a failed phase runs again, as the next attempt.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, VerseProcessing, VerseProcessingStarted};

/// Restarts the failed phase (the body is `{}`); allowed even when the policy said `will_retry:
/// false`, so an operator can retry by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryVerseProcessing {}

impl VerseProcessing {
    pub(super) fn retry(&self, _: &RetryVerseProcessing) -> Result<Vec<Event>, DomainError> {
        // Only reachable in `Failed`, which a started phase precedes.
        let Some(phase) = self.phase else {
            return Err(DomainError::rule("no_phase", "no phase has been started"));
        };
        Ok(vec![Event::VerseProcessingStarted(
            VerseProcessingStarted {
                verse_id: self.verse_id.clone(),
                book: self.book.clone(),
                chapter: self.chapter,
                verse: self.verse,
                text_content: self.text_content.clone(),
                phase,
                attempt: self.attempt.saturating_add(1),
            },
        )])
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};

    use super::super::fixtures::*;
    use super::*;
    use crate::biblos::verse_processing::{Command, Phase};

    #[test]
    fn retrying_a_failed_phase_starts_its_next_attempt() {
        let state = given::<VerseProcessing>([
            started(Phase::Theological, 1),
            failed(Phase::Theological, 0),
        ])
        .when(Command::RetryVerseProcessing(RetryVerseProcessing {}))
        .then([started(Phase::Theological, 2)]);
        assert_eq!(state.state_name(), "Processing");
        assert_eq!(state.attempt, 2);
        assert!(
            state.last_failure.is_some(),
            "kept until the phase completes"
        );
    }

    #[test]
    fn an_operator_may_retry_after_the_policy_gave_up() {
        given::<VerseProcessing>([started(Phase::Linguistic, 4), failed(Phase::Linguistic, 3)])
            .when(Command::RetryVerseProcessing(RetryVerseProcessing {}))
            .then([started(Phase::Linguistic, 5)]);
    }

    #[test]
    fn refuses_to_retry_before_starting() {
        given::<VerseProcessing>([])
            .when(Command::RetryVerseProcessing(RetryVerseProcessing {}))
            .then_error(DomainError::InvalidTransition {
                state: "Initial",
                command: "RetryVerseProcessing",
            });
    }

    #[test]
    fn refuses_to_retry_a_running_phase() {
        given::<VerseProcessing>([started(Phase::Linguistic, 1)])
            .when(Command::RetryVerseProcessing(RetryVerseProcessing {}))
            .then_error(DomainError::InvalidTransition {
                state: "Processing",
                command: "RetryVerseProcessing",
            });
    }

    #[test]
    fn refuses_to_retry_a_completed_phase() {
        given::<VerseProcessing>([started(Phase::Linguistic, 1), completed(Phase::Linguistic)])
            .when(Command::RetryVerseProcessing(RetryVerseProcessing {}))
            .then_error(DomainError::InvalidTransition {
                state: "Completed",
                command: "RetryVerseProcessing",
            });
    }
}
