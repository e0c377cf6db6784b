//! GenerateAnalysis: a model analysed the sentence; the newest machine analysis replaces the
//! previous one, but never a user's override.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Analysis, Event, Sentence};
use crate::fields::{self, MAX_NAME_CHARS, MAX_TEXT_CHARS};

/// Records a machine analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateAnalysis {
    /// Model that produced it.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub model: String,
    /// Model version.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub model_version: String,
    /// Classification results (`function_type`, `structure_type`, `purpose`, ...).
    #[schemars(extend("maxProperties" = crate::fields::MAX_ITEMS, "propertyNames" = {"minLength": 1, "maxLength": crate::fields::MAX_NAME_CHARS}))]
    pub classification: Map<String, Value>,
    /// Keywords.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_ITEMS), inner(length(min = 1, max = crate::fields::MAX_NAME_CHARS)))]
    pub keywords: Vec<String>,
    /// Topics.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_ITEMS), inner(length(min = 1, max = crate::fields::MAX_NAME_CHARS)))]
    pub topics: Vec<String>,
    /// Domain-specific keywords.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_ITEMS), inner(length(min = 1, max = crate::fields::MAX_NAME_CHARS)))]
    pub domain_keywords: Vec<String>,
    /// Confidence, `0..=1`.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub confidence: Option<f64>,
    /// Reference to the raw model output.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_TEXT_CHARS))]
    pub raw_ref: Option<String>,
}

/// A machine analysis was generated (seed 001 `AnalysisGenerated`; category domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AnalysisGenerated {
    /// Model that produced it.
    pub model: String,
    /// Model version.
    pub model_version: String,
    /// Classification results.
    pub classification: Map<String, Value>,
    /// Keywords.
    pub keywords: Vec<String>,
    /// Topics.
    pub topics: Vec<String>,
    /// Domain-specific keywords.
    pub domain_keywords: Vec<String>,
    /// Confidence.
    pub confidence: Option<f64>,
    /// Reference to the raw model output.
    pub raw_ref: Option<String>,
}

impl Sentence {
    pub(super) fn generate_analysis(
        &self,
        c: &GenerateAnalysis,
    ) -> Result<Vec<Event>, DomainError> {
        fields::required("/model", &c.model, MAX_NAME_CHARS)?;
        fields::required("/model_version", &c.model_version, MAX_NAME_CHARS)?;
        fields::json_object("/classification", &c.classification)?;
        fields::names("/keywords", &c.keywords)?;
        fields::names("/topics", &c.topics)?;
        fields::names("/domain_keywords", &c.domain_keywords)?;
        if let Some(confidence) = c.confidence {
            fields::unit_interval("/confidence", confidence)?;
        }
        fields::optional("/raw_ref", c.raw_ref.as_deref(), MAX_TEXT_CHARS)?;
        Ok(vec![Event::AnalysisGenerated(AnalysisGenerated {
            model: c.model.clone(),
            model_version: c.model_version.clone(),
            classification: c.classification.clone(),
            keywords: c.keywords.clone(),
            topics: c.topics.clone(),
            domain_keywords: c.domain_keywords.clone(),
            confidence: c.confidence,
            raw_ref: c.raw_ref.clone(),
        })])
    }

    pub(super) fn on_analysis_generated(mut self, e: &AnalysisGenerated) -> Self {
        self.analysis = Some(Analysis {
            model: e.model.clone(),
            model_version: e.model_version.clone(),
            classification: e.classification.clone(),
            keywords: e.keywords.clone(),
            topics: e.topics.clone(),
            domain_keywords: e.domain_keywords.clone(),
            confidence: e.confidence,
            raw_ref: e.raw_ref.clone(),
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

    fn rule(c: GenerateAnalysis) -> &'static str {
        given::<Sentence>([created()])
            .when(Command::GenerateAnalysis(c))
            .outcome()
            .expect_err("expected a rule error")
            .code()
    }

    #[test]
    fn records_the_first_machine_analysis() {
        let state = given::<Sentence>([created()])
            .when(Command::GenerateAnalysis(generate("gpt-4o")))
            .then([generated("gpt-4o")]);
        assert_eq!(state.state_name(), "Analyzed");
        assert_eq!(state.effective_analysis()["function_type"], "declarative");
    }

    #[test]
    fn a_newer_machine_analysis_replaces_the_previous_one() {
        let mut c = generate("gpt-5");
        c.classification = json!({"function_type": "narrative"})
            .as_object()
            .unwrap()
            .clone();
        let state = given::<Sentence>([created(), generated("gpt-4o")])
            .when(Command::GenerateAnalysis(c))
            .outcome()
            .map(|events| {
                events.iter().fold(
                    Sentence::replay(&[created(), generated("gpt-4o")]),
                    |s, e| s.apply(e),
                )
            })
            .unwrap();
        assert_eq!(state.analysis.as_ref().unwrap().model, "gpt-5");
        assert_eq!(state.effective_analysis()["function_type"], "narrative");
    }

    #[test]
    fn a_later_machine_analysis_does_not_beat_the_users_override() {
        let mut c = generate("gpt-5");
        c.classification = json!({"function_type": "narrative", "purpose": "reporting"})
            .as_object()
            .unwrap()
            .clone();
        let state = given::<Sentence>([created(), generated("gpt-4o"), overridden()])
            .when(Command::GenerateAnalysis(c.clone()))
            .then([Event::AnalysisGenerated(AnalysisGenerated {
                model: c.model,
                model_version: c.model_version,
                classification: c.classification,
                keywords: c.keywords,
                topics: c.topics,
                domain_keywords: c.domain_keywords,
                confidence: c.confidence,
                raw_ref: c.raw_ref,
            })]);
        assert_eq!(state.state_name(), "Overridden");
        let view = state.effective_analysis();
        assert_eq!(view["function_type"], "interrogative", "the override wins");
        assert_eq!(
            view["purpose"], "reporting",
            "fields not overridden follow the machine"
        );
    }

    #[test]
    fn refuses_an_analysis_before_the_sentence_exists() {
        given::<Sentence>([])
            .when(Command::GenerateAnalysis(generate("gpt-4o")))
            .then_error(DomainError::InvalidTransition {
                state: "Initial",
                command: "GenerateAnalysis",
            });
    }

    #[test]
    fn refuses_a_confidence_above_one() {
        let c = GenerateAnalysis {
            confidence: Some(1.5),
            ..generate("gpt-4o")
        };
        assert_eq!(rule(c), "confidence_out_of_range");
    }

    #[test]
    fn refuses_an_empty_model_name() {
        let c = GenerateAnalysis {
            model: String::new(),
            ..generate("gpt-4o")
        };
        assert_eq!(rule(c), "empty_field");
    }

    #[test]
    fn refuses_an_empty_keyword() {
        let c = GenerateAnalysis {
            keywords: vec!["ok".into(), String::new()],
            ..generate("gpt-4o")
        };
        assert_eq!(rule(c), "empty_field");
    }

    #[test]
    fn refuses_more_than_a_thousand_topics() {
        let c = GenerateAnalysis {
            topics: vec!["t".into(); 1001],
            ..generate("gpt-4o")
        };
        assert_eq!(rule(c), "too_many_items");
    }

    #[test]
    fn refuses_a_nul_in_the_classification() {
        let c = GenerateAnalysis {
            classification: json!({"purpose": "\u{0}"}).as_object().unwrap().clone(),
            ..generate("gpt-4o")
        };
        assert_eq!(rule(c), "nul_in_string");
    }
}
