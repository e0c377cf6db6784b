//! ChangeInterviewStatus: the pipeline (or a person) moves the interview to another status.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, Interview, InterviewStatus, STATUS_CHANGES};
use crate::fields::{self, MAX_TEXT_CHARS};

/// Moves the interview to `to_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeInterviewStatus {
    /// The new status.
    pub to_status: InterviewStatus,
    /// Why, at most 10,000 characters.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_TEXT_CHARS))]
    pub reason: Option<String>,
}

/// The interview's status changed (seed 001 `InterviewStatusChanged`; category domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InterviewStatusChanged {
    /// Status before.
    pub from_status: InterviewStatus,
    /// Status after.
    pub to_status: InterviewStatus,
    /// Why.
    pub reason: Option<String>,
}

impl Interview {
    pub(super) fn change_status(
        &self,
        c: &ChangeInterviewStatus,
    ) -> Result<Vec<Event>, DomainError> {
        fields::optional("/reason", c.reason.as_deref(), MAX_TEXT_CHARS)?;
        // Only reachable once created: the transition table has no Initial row for this command.
        let from = self.status.unwrap_or(InterviewStatus::Created);
        if from == c.to_status {
            return Err(DomainError::rule(
                "status_unchanged",
                format!("the interview is already {}", from.state_name()),
            ));
        }
        if !STATUS_CHANGES.contains(&(from, c.to_status)) {
            return Err(DomainError::rule(
                "status_transition_not_allowed",
                format!(
                    "an interview cannot go from {} to {}",
                    from.state_name(),
                    c.to_status.state_name()
                ),
            ));
        }
        Ok(vec![Event::InterviewStatusChanged(
            InterviewStatusChanged {
                from_status: from,
                to_status: c.to_status,
                reason: c.reason.clone(),
            },
        )])
    }

    pub(super) fn on_status_changed(mut self, e: &InterviewStatusChanged) -> Self {
        self.status = Some(e.to_status);
        self
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};

    use super::super::fixtures::*;
    use super::*;
    use crate::interview::interview::Command;
    use InterviewStatus::*;

    fn change(to: InterviewStatus) -> Command {
        Command::ChangeInterviewStatus(ChangeInterviewStatus {
            to_status: to,
            reason: None,
        })
    }

    fn history(path: &[InterviewStatus]) -> Vec<Event> {
        let mut events = vec![created()];
        for pair in path.windows(2) {
            events.push(status_changed(pair[0], pair[1]));
        }
        events
    }

    #[test]
    fn starts_processing_a_created_interview_with_a_reason() {
        let state = given::<Interview>([created()])
            .when(Command::ChangeInterviewStatus(ChangeInterviewStatus {
                to_status: Processing,
                reason: Some("pipeline picked it up".into()),
            }))
            .then([Event::InterviewStatusChanged(InterviewStatusChanged {
                from_status: Created,
                to_status: Processing,
                reason: Some("pipeline picked it up".into()),
            })]);
        assert_eq!(state.state_name(), "Processing");
    }

    #[test]
    fn follows_every_allowed_status_change() {
        let paths: &[&[InterviewStatus]] = &[
            &[
                Created, Processing, Completed, Processing, Failed, Processing,
            ],
            &[Created, Failed, Archived],
            &[Created, Processing, Completed, Archived],
            &[Created, Archived],
            &[Created, Processing, Archived],
            &[Created, Processing, Failed, Archived],
        ];
        for path in paths {
            let (last, before) = path.split_last().unwrap();
            let state = given::<Interview>(history(before))
                .when(change(*last))
                .then([status_changed(*before.last().unwrap(), *last)]);
            assert_eq!(state.status, Some(*last), "{path:?}");
        }
    }

    #[test]
    fn refuses_to_complete_an_interview_that_never_processed() {
        let err = given::<Interview>([created()])
            .when(change(Completed))
            .outcome()
            .unwrap_err();
        assert_eq!(err.code(), "status_transition_not_allowed");
    }

    #[test]
    fn refuses_to_go_back_to_created() {
        let err = given::<Interview>(history(&[Created, Processing]))
            .when(change(Created))
            .outcome()
            .unwrap_err();
        assert_eq!(err.code(), "status_transition_not_allowed");
    }

    #[test]
    fn refuses_a_change_to_the_current_status() {
        let err = given::<Interview>(history(&[Created, Processing]))
            .when(change(Processing))
            .outcome()
            .unwrap_err();
        assert_eq!(err.code(), "status_unchanged");
    }

    #[test]
    fn refuses_a_status_change_before_creation() {
        given::<Interview>([]).when(change(Processing)).then_error(
            DomainError::InvalidTransition {
                state: "Initial",
                command: "ChangeInterviewStatus",
            },
        );
    }

    #[test]
    fn an_archived_interview_cannot_change_status() {
        given::<Interview>(history(&[Created, Archived]))
            .when(change(Processing))
            .then_error(DomainError::InvalidTransition {
                state: "Archived",
                command: "ChangeInterviewStatus",
            });
    }

    #[test]
    fn refuses_a_nul_in_the_reason() {
        let err = given::<Interview>([created()])
            .when(Command::ChangeInterviewStatus(ChangeInterviewStatus {
                to_status: Processing,
                reason: Some("\u{0}".into()),
            }))
            .outcome()
            .unwrap_err();
        assert_eq!(err.code(), "nul_in_string");
    }
}
