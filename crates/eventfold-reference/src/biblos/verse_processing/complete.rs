//! CompleteVerseProcessing: the running phase finished with results.

use std::collections::BTreeMap;

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Event, Phase, PhaseOutcome, ProcessingStatus, VerseProcessing};
use crate::fields;

/// Completes the running phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteVerseProcessing {
    /// The running phase.
    pub phase: Phase,
    /// How long it took, in milliseconds.
    #[schemars(range(max = crate::fields::MAX_SAFE_INTEGER))]
    pub duration_ms: u64,
    /// Results per agent: agent name → open JSON object.
    #[serde(default)]
    #[schemars(extend("maxProperties" = crate::fields::MAX_ITEMS, "propertyNames" = {"minLength": 1, "maxLength": crate::fields::MAX_NAME_CHARS}))]
    pub agent_results: BTreeMap<String, Map<String, Value>>,
    /// Quality score, `0..=1`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub quality_score: f64,
}

/// A phase run completed (seed `VerseProcessingCompletedEvent`; category processing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VerseProcessingCompleted {
    /// Verse id.
    pub verse_id: String,
    /// Phase completed.
    pub phase: Phase,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Results per agent.
    pub agent_results: BTreeMap<String, Map<String, Value>>,
    /// Quality score.
    pub quality_score: f64,
}

impl VerseProcessing {
    pub(super) fn complete(&self, c: &CompleteVerseProcessing) -> Result<Vec<Event>, DomainError> {
        let phase = self.running(c.phase)?;
        fields::safe_integer("/duration_ms", c.duration_ms)?;
        fields::unit_interval("/quality_score", c.quality_score)?;
        fields::keys("/agent_results", c.agent_results.keys())?;
        for (agent, results) in &c.agent_results {
            fields::json_object(&format!("/agent_results/{agent}"), results)?;
        }
        Ok(vec![Event::VerseProcessingCompleted(
            VerseProcessingCompleted {
                verse_id: self.verse_id.clone(),
                phase,
                duration_ms: c.duration_ms,
                agent_results: c.agent_results.clone(),
                quality_score: c.quality_score,
            },
        )])
    }

    pub(super) fn on_completed(mut self, e: &VerseProcessingCompleted) -> Self {
        self.status = ProcessingStatus::Completed;
        self.last_failure = None;
        self.completed_phases.insert(
            e.phase,
            PhaseOutcome {
                duration_ms: e.duration_ms,
                quality_score: e.quality_score,
            },
        );
        self
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};
    use serde_json::json;

    use super::super::fixtures::*;
    use super::*;
    use crate::biblos::verse_processing::Command;
    use crate::fields::MAX_SAFE_INTEGER;

    fn rule(c: CompleteVerseProcessing) -> &'static str {
        given::<VerseProcessing>([started(Phase::Linguistic, 1)])
            .when(Command::CompleteVerseProcessing(c))
            .outcome()
            .expect_err("expected a rule error")
            .code()
    }

    #[test]
    fn completes_the_running_phase_with_its_results() {
        let state = given::<VerseProcessing>([started(Phase::Linguistic, 1)])
            .when(Command::CompleteVerseProcessing(complete(
                Phase::Linguistic,
            )))
            .then([completed(Phase::Linguistic)]);
        assert_eq!(state.state_name(), "Completed");
        assert_eq!(
            state.completed_phases[&Phase::Linguistic],
            PhaseOutcome {
                duration_ms: 1250,
                quality_score: 0.92
            }
        );
    }

    #[test]
    fn completing_after_a_retry_clears_the_last_failure() {
        let state = given::<VerseProcessing>([
            started(Phase::Linguistic, 1),
            failed(Phase::Linguistic, 0),
            started(Phase::Linguistic, 2),
        ])
        .when(Command::CompleteVerseProcessing(complete(
            Phase::Linguistic,
        )))
        .then([completed(Phase::Linguistic)]);
        assert_eq!(state.last_failure, None);
    }

    #[test]
    fn refuses_to_complete_a_phase_that_is_not_running() {
        assert_eq!(rule(complete(Phase::Theological)), "phase_mismatch");
    }

    #[test]
    fn refuses_to_complete_before_starting() {
        given::<VerseProcessing>([])
            .when(Command::CompleteVerseProcessing(complete(
                Phase::Linguistic,
            )))
            .then_error(DomainError::InvalidTransition {
                state: "Initial",
                command: "CompleteVerseProcessing",
            });
    }

    #[test]
    fn refuses_to_complete_twice() {
        given::<VerseProcessing>([started(Phase::Linguistic, 1), completed(Phase::Linguistic)])
            .when(Command::CompleteVerseProcessing(complete(
                Phase::Linguistic,
            )))
            .then_error(DomainError::InvalidTransition {
                state: "Completed",
                command: "CompleteVerseProcessing",
            });
    }

    #[test]
    fn refuses_to_complete_a_failed_phase() {
        given::<VerseProcessing>([started(Phase::Linguistic, 1), failed(Phase::Linguistic, 0)])
            .when(Command::CompleteVerseProcessing(complete(
                Phase::Linguistic,
            )))
            .then_error(DomainError::InvalidTransition {
                state: "Failed",
                command: "CompleteVerseProcessing",
            });
    }

    #[test]
    fn refuses_a_quality_score_above_one() {
        let c = CompleteVerseProcessing {
            quality_score: 1.2,
            ..complete(Phase::Linguistic)
        };
        assert_eq!(rule(c), "confidence_out_of_range");
    }

    #[test]
    fn refuses_a_duration_beyond_exact_json_integers() {
        let c = CompleteVerseProcessing {
            duration_ms: MAX_SAFE_INTEGER + 1,
            ..complete(Phase::Linguistic)
        };
        assert_eq!(rule(c), "number_out_of_range");
    }

    #[test]
    fn refuses_a_nul_inside_agent_results() {
        let c = CompleteVerseProcessing {
            agent_results: BTreeMap::from([(
                "morphology".to_owned(),
                json!({"lemma": "\u{0}"}).as_object().unwrap().clone(),
            )]),
            ..complete(Phase::Linguistic)
        };
        assert_eq!(rule(c), "nul_in_string");
    }
}
