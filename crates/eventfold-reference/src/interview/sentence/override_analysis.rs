//! OverrideAnalysis: a user corrects fields of the analysis; the correction wins over every
//! machine analysis, earlier or later, until cleared.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{AnalysisOverride, Event, Sentence};
use crate::fields::{self, MAX_TEXT_CHARS};

/// Overrides analysis fields with the user's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideAnalysis {
    /// Field name (as in [`Sentence::effective_analysis`]) → corrected value; not empty.
    #[schemars(extend("maxProperties" = crate::fields::MAX_ITEMS, "propertyNames" = {"minLength": 1, "maxLength": crate::fields::MAX_NAME_CHARS}))]
    pub fields_overridden: Map<String, Value>,
    /// Why, at most 10,000 characters.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_TEXT_CHARS))]
    pub note: Option<String>,
}

/// A user overrode the analysis (seed 001 `AnalysisOverridden`; category domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AnalysisOverridden {
    /// Field name → corrected value.
    pub fields_overridden: Map<String, Value>,
    /// Why.
    pub note: Option<String>,
}

impl Sentence {
    pub(super) fn override_analysis(
        &self,
        c: &OverrideAnalysis,
    ) -> Result<Vec<Event>, DomainError> {
        if c.fields_overridden.is_empty() {
            return Err(DomainError::rule(
                "empty_override",
                "/fields_overridden must name at least one field",
            ));
        }
        fields::json_object("/fields_overridden", &c.fields_overridden)?;
        fields::optional("/note", c.note.as_deref(), MAX_TEXT_CHARS)?;
        Ok(vec![Event::AnalysisOverridden(AnalysisOverridden {
            fields_overridden: c.fields_overridden.clone(),
            note: c.note.clone(),
        })])
    }

    pub(super) fn on_analysis_overridden(mut self, e: &AnalysisOverridden) -> Self {
        let previous = self.analysis_override.take().map(|o| o.fields);
        let mut fields = previous.unwrap_or_default();
        fields.extend(e.fields_overridden.clone());
        self.analysis_override = Some(AnalysisOverride {
            fields,
            note: e.note.clone(),
        });
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
    use crate::interview::sentence::Command;

    fn rule(c: OverrideAnalysis) -> &'static str {
        given::<Sentence>([created(), generated("gpt-4o")])
            .when(Command::OverrideAnalysis(c))
            .outcome()
            .expect_err("expected a rule error")
            .code()
    }

    #[test]
    fn a_users_override_wins_over_the_machine_analysis() {
        let state = given::<Sentence>([created(), generated("gpt-4o")])
            .when(Command::OverrideAnalysis(override_function_type()))
            .then([overridden()]);
        assert_eq!(state.state_name(), "Overridden");
        let view = state.effective_analysis();
        assert_eq!(view["function_type"], "interrogative");
        assert_eq!(view["purpose"], "informing");
    }

    #[test]
    fn a_user_may_override_before_any_machine_analysis() {
        let state = given::<Sentence>([created()])
            .when(Command::OverrideAnalysis(override_function_type()))
            .then([overridden()]);
        assert_eq!(
            Value::Object(state.effective_analysis()),
            json!({"function_type": "interrogative"})
        );
    }

    #[test]
    fn overrides_accumulate_and_the_later_value_of_a_field_wins() {
        let second = OverrideAnalysis {
            fields_overridden: json!({"function_type": "imperative", "keywords": ["deadline"]})
                .as_object()
                .unwrap()
                .clone(),
            note: None,
        };
        let state = given::<Sentence>([created(), generated("gpt-4o"), overridden()])
            .when(Command::OverrideAnalysis(second.clone()))
            .then([Event::AnalysisOverridden(AnalysisOverridden {
                fields_overridden: second.fields_overridden,
                note: None,
            })]);
        let view = state.effective_analysis();
        assert_eq!(view["function_type"], "imperative");
        assert_eq!(view["keywords"], json!(["deadline"]));
    }

    #[test]
    fn refuses_an_override_before_the_sentence_exists() {
        given::<Sentence>([])
            .when(Command::OverrideAnalysis(override_function_type()))
            .then_error(DomainError::InvalidTransition {
                state: "Initial",
                command: "OverrideAnalysis",
            });
    }

    #[test]
    fn refuses_an_empty_override() {
        let c = OverrideAnalysis {
            fields_overridden: Map::new(),
            note: None,
        };
        assert_eq!(rule(c), "empty_override");
    }

    #[test]
    fn refuses_a_nul_in_an_overridden_value() {
        let c = OverrideAnalysis {
            fields_overridden: json!({"purpose": "x\u{0}"}).as_object().unwrap().clone(),
            note: None,
        };
        assert_eq!(rule(c), "nul_in_string");
    }

    #[test]
    fn refuses_a_note_over_ten_thousand_characters() {
        let c = OverrideAnalysis {
            note: Some("n".repeat(MAX_TEXT_CHARS + 1)),
            ..override_function_type()
        };
        assert_eq!(rule(c), "text_too_long");
    }
}
