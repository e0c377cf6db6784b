//! FailVerseProcessing: the running phase failed; the aggregate counts retries and applies the
//! retry policy.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, Failure, Phase, ProcessingStatus, VerseProcessing};
use crate::fields::{self, MAX_NAME_CHARS, MAX_STACK_TRACE_CHARS, MAX_TEXT_CHARS};

/// Retries the policy allows before `will_retry` turns false.
pub const MAX_AUTOMATIC_RETRIES: u32 = 3;

fn retryable_by_default() -> bool {
    true
}

/// Records that the running phase failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailVerseProcessing {
    /// The running phase.
    pub phase: Phase,
    /// Error class, e.g. `TimeoutError`.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub error_type: String,
    /// Error message.
    #[schemars(length(min = 1, max = crate::fields::MAX_TEXT_CHARS))]
    pub error_message: String,
    /// Stack trace, at most 65,536 characters.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_STACK_TRACE_CHARS))]
    pub stack_trace: Option<String>,
    /// False for errors a retry cannot fix (bad input); defaults to true.
    #[serde(default = "retryable_by_default")]
    pub retryable: bool,
}

/// A phase run failed (seed `VerseProcessingFailedEvent`; category processing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VerseProcessingFailed {
    /// Verse id.
    pub verse_id: String,
    /// Phase that failed.
    pub phase: Phase,
    /// Error class.
    pub error_type: String,
    /// Error message.
    pub error_message: String,
    /// Stack trace, if any.
    pub stack_trace: Option<String>,
    /// Retries of this phase run that preceded the failure (0 on the first attempt).
    pub retry_count: u32,
    /// Whether the retry policy will retry (`retryable && retry_count < 3`).
    pub will_retry: bool,
}

impl VerseProcessing {
    pub(super) fn fail(&self, c: &FailVerseProcessing) -> Result<Vec<Event>, DomainError> {
        let phase = self.running(c.phase)?;
        fields::required("/error_type", &c.error_type, MAX_NAME_CHARS)?;
        fields::required("/error_message", &c.error_message, MAX_TEXT_CHARS)?;
        fields::optional(
            "/stack_trace",
            c.stack_trace.as_deref(),
            MAX_STACK_TRACE_CHARS,
        )?;
        let retry_count = self.attempt.saturating_sub(1);
        Ok(vec![Event::VerseProcessingFailed(VerseProcessingFailed {
            verse_id: self.verse_id.clone(),
            phase,
            error_type: c.error_type.clone(),
            error_message: c.error_message.clone(),
            stack_trace: c.stack_trace.clone(),
            retry_count,
            will_retry: c.retryable && retry_count < MAX_AUTOMATIC_RETRIES,
        })])
    }

    pub(super) fn on_failed(mut self, e: &VerseProcessingFailed) -> Self {
        self.status = ProcessingStatus::Failed;
        self.last_failure = Some(Failure {
            phase: e.phase,
            error_type: e.error_type.clone(),
            error_message: e.error_message.clone(),
            retry_count: e.retry_count,
            will_retry: e.will_retry,
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};

    use super::super::fixtures::*;
    use super::*;
    use crate::biblos::verse_processing::Command;

    fn rule(c: FailVerseProcessing) -> &'static str {
        given::<VerseProcessing>([started(Phase::Linguistic, 1)])
            .when(Command::FailVerseProcessing(c))
            .outcome()
            .expect_err("expected a rule error")
            .code()
    }

    #[test]
    fn a_first_failure_has_retry_count_zero_and_will_retry() {
        let state = given::<VerseProcessing>([started(Phase::Linguistic, 1)])
            .when(Command::FailVerseProcessing(fail(Phase::Linguistic)))
            .then([failed(Phase::Linguistic, 0)]);
        assert_eq!(state.state_name(), "Failed");
        assert_eq!(state.last_failure.unwrap().retry_count, 0);
    }

    #[test]
    fn counts_the_retries_that_preceded_a_failure() {
        given::<VerseProcessing>([
            started(Phase::Linguistic, 1),
            failed(Phase::Linguistic, 0),
            started(Phase::Linguistic, 2),
        ])
        .when(Command::FailVerseProcessing(fail(Phase::Linguistic)))
        .then([failed(Phase::Linguistic, 1)]);
    }

    #[test]
    fn stops_retrying_after_three_retries() {
        let events = given::<VerseProcessing>([started(Phase::Linguistic, 4)])
            .when(Command::FailVerseProcessing(fail(Phase::Linguistic)))
            .outcome()
            .unwrap();
        let Event::VerseProcessingFailed(e) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!((e.retry_count, e.will_retry), (3, false));
    }

    #[test]
    fn a_non_retryable_error_will_not_be_retried() {
        let c = FailVerseProcessing {
            retryable: false,
            ..fail(Phase::Linguistic)
        };
        let events = given::<VerseProcessing>([started(Phase::Linguistic, 1)])
            .when(Command::FailVerseProcessing(c))
            .outcome()
            .unwrap();
        let Event::VerseProcessingFailed(e) = &events[0] else {
            panic!("{events:?}")
        };
        assert!(!e.will_retry);
    }

    #[test]
    fn refuses_to_fail_before_starting() {
        given::<VerseProcessing>([])
            .when(Command::FailVerseProcessing(fail(Phase::Linguistic)))
            .then_error(DomainError::InvalidTransition {
                state: "Initial",
                command: "FailVerseProcessing",
            });
    }

    #[test]
    fn refuses_to_fail_a_completed_phase() {
        given::<VerseProcessing>([started(Phase::Linguistic, 1), completed(Phase::Linguistic)])
            .when(Command::FailVerseProcessing(fail(Phase::Linguistic)))
            .then_error(DomainError::InvalidTransition {
                state: "Completed",
                command: "FailVerseProcessing",
            });
    }

    #[test]
    fn refuses_to_fail_twice() {
        given::<VerseProcessing>([started(Phase::Linguistic, 1), failed(Phase::Linguistic, 0)])
            .when(Command::FailVerseProcessing(fail(Phase::Linguistic)))
            .then_error(DomainError::InvalidTransition {
                state: "Failed",
                command: "FailVerseProcessing",
            });
    }

    #[test]
    fn refuses_a_failure_of_a_phase_that_is_not_running() {
        assert_eq!(rule(fail(Phase::Validation)), "phase_mismatch");
    }

    #[test]
    fn refuses_an_empty_error_type() {
        let c = FailVerseProcessing {
            error_type: String::new(),
            ..fail(Phase::Linguistic)
        };
        assert_eq!(rule(c), "empty_field");
    }

    #[test]
    fn refuses_a_stack_trace_over_the_cap() {
        let c = FailVerseProcessing {
            stack_trace: Some("x".repeat(MAX_STACK_TRACE_CHARS + 1)),
            ..fail(Phase::Linguistic)
        };
        assert_eq!(rule(c), "text_too_long");
    }

    #[test]
    fn refuses_a_nul_in_the_error_message() {
        let c = FailVerseProcessing {
            error_message: "boom\u{0}".into(),
            ..fail(Phase::Linguistic)
        };
        assert_eq!(rule(c), "nul_in_string");
    }
}
