//! ClearAnalysisOverride: the user's override is withdrawn and the latest machine analysis shows
//! again.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, Sentence};
use crate::fields::{self, MAX_TEXT_CHARS};

/// Clears the user's override.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearAnalysisOverride {
    /// Why, at most 10,000 characters.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_TEXT_CHARS))]
    pub reason: Option<String>,
}

/// The user's override was cleared (seed 001 `AnalysisCleared`; category domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AnalysisCleared {
    /// Why.
    pub reason: Option<String>,
}

impl Sentence {
    pub(super) fn clear_override(
        &self,
        c: &ClearAnalysisOverride,
    ) -> Result<Vec<Event>, DomainError> {
        fields::optional("/reason", c.reason.as_deref(), MAX_TEXT_CHARS)?;
        Ok(vec![Event::AnalysisCleared(AnalysisCleared {
            reason: c.reason.clone(),
        })])
    }

    pub(super) fn on_analysis_cleared(mut self, _: &AnalysisCleared) -> Self {
        self.analysis_override = None;
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
    use crate::interview::sentence::{Command, GenerateAnalysis};

    fn clear() -> Command {
        Command::ClearAnalysisOverride(ClearAnalysisOverride {
            reason: Some("the model was right".into()),
        })
    }

    fn cleared() -> Event {
        Event::AnalysisCleared(AnalysisCleared {
            reason: Some("the model was right".into()),
        })
    }

    #[test]
    fn clearing_the_override_shows_the_latest_machine_analysis_again() {
        let mut later = generate("gpt-5");
        later.classification = json!({"function_type": "narrative"})
            .as_object()
            .unwrap()
            .clone();
        let past = vec![created(), generated("gpt-4o"), overridden()];
        let state = Sentence::replay(&past);
        let events = state
            .decide(&Command::GenerateAnalysis(later))
            .expect("analysis accepted");
        let past: Vec<Event> = past.into_iter().chain(events).collect();
        assert_eq!(
            Sentence::replay(&past).effective_analysis()["function_type"],
            "interrogative"
        );
        let state = given::<Sentence>(past).when(clear()).then([cleared()]);
        assert_eq!(state.state_name(), "Analyzed");
        assert_eq!(state.effective_analysis()["function_type"], "narrative");
    }

    #[test]
    fn clearing_an_override_made_before_any_analysis_returns_to_created() {
        let state = given::<Sentence>([created(), overridden()])
            .when(clear())
            .then([cleared()]);
        assert_eq!(state.state_name(), "Created");
        assert!(state.effective_analysis().is_empty());
    }

    #[test]
    fn a_machine_analysis_after_clearing_shows_directly() {
        let state = Sentence::replay(&[created(), generated("gpt-4o"), overridden(), cleared()]);
        let c: GenerateAnalysis = generate("gpt-5");
        let events = state.decide(&Command::GenerateAnalysis(c)).unwrap();
        let state = events.iter().fold(state, |s, e| s.apply(e));
        assert_eq!(state.effective_analysis()["function_type"], "declarative");
        assert_eq!(state.state_name(), "Analyzed");
    }

    #[test]
    fn refuses_to_clear_when_nothing_is_overridden() {
        for (past, state) in [
            (vec![], "Initial"),
            (vec![created()], "Created"),
            (vec![created(), generated("gpt-4o")], "Analyzed"),
            (
                vec![created(), generated("gpt-4o"), overridden(), cleared()],
                "Analyzed",
            ),
        ] {
            given::<Sentence>(past)
                .when(clear())
                .then_error(DomainError::InvalidTransition {
                    state,
                    command: "ClearAnalysisOverride",
                });
        }
    }

    #[test]
    fn refuses_a_nul_in_the_reason() {
        let err = given::<Sentence>([created(), overridden()])
            .when(Command::ClearAnalysisOverride(ClearAnalysisOverride {
                reason: Some("\u{0}".into()),
            }))
            .outcome()
            .unwrap_err();
        assert_eq!(err.code(), "nul_in_string");
    }
}
