//! RefineCrossReference: an oracle engine re-scores a cross-reference and enriches it.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{CrossReference, Event};
use crate::fields::{self, MAX_NAME_CHARS};

/// What kind of refinement (the seed's `refinement_type` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefinementType {
    /// Mutual transformation analysis.
    MutualTransformation,
    /// Necessity calculation.
    Necessity,
    /// Typology analysis.
    Typology,
}

/// Sets a new confidence and merges enrichments from an oracle engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefineCrossReference {
    /// Kind of refinement.
    pub refinement_type: RefinementType,
    /// Which oracle or engine refined it.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub refinement_source: String,
    /// The new confidence, `0..=1`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub new_confidence: f64,
    /// Open JSON the engine adds (merged into the state, later keys win).
    #[serde(default)]
    #[schemars(extend("maxProperties" = crate::fields::MAX_ITEMS, "propertyNames" = {"minLength": 1, "maxLength": crate::fields::MAX_NAME_CHARS}))]
    pub enrichments: Map<String, Value>,
}

/// A cross-reference was refined (seed `CrossReferenceRefinedEvent`; category discovery).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CrossReferenceRefined {
    /// The seed's id of the cross-reference, `"{source_ref}:{target_ref}"`.
    pub cross_ref_id: String,
    /// Kind of refinement.
    pub refinement_type: RefinementType,
    /// Which oracle or engine refined it.
    pub refinement_source: String,
    /// Confidence before.
    pub old_confidence: f64,
    /// Confidence after.
    pub new_confidence: f64,
    /// Open JSON the engine added.
    pub enrichments: Map<String, Value>,
}

impl CrossReference {
    pub(super) fn refine(&self, c: &RefineCrossReference) -> Result<Vec<Event>, DomainError> {
        fields::required("/refinement_source", &c.refinement_source, MAX_NAME_CHARS)?;
        fields::unit_interval("/new_confidence", c.new_confidence)?;
        fields::json_object("/enrichments", &c.enrichments)?;
        Ok(vec![Event::CrossReferenceRefined(CrossReferenceRefined {
            cross_ref_id: self.cross_ref_id(),
            refinement_type: c.refinement_type,
            refinement_source: c.refinement_source.clone(),
            old_confidence: self.confidence,
            new_confidence: c.new_confidence,
            enrichments: c.enrichments.clone(),
        })])
    }

    pub(super) fn on_refined(mut self, e: &CrossReferenceRefined) -> Self {
        self.confidence = e.new_confidence;
        self.enrichments
            .extend(e.enrichments.iter().map(|(k, v)| (k.clone(), v.clone())));
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
    use crate::biblos::cross_reference::{Command, ValidationResult};

    fn rule(c: RefineCrossReference) -> &'static str {
        given::<CrossReference>([discovered()])
            .when(Command::RefineCrossReference(c))
            .outcome()
            .expect_err("expected a rule error")
            .code()
    }

    #[test]
    fn refining_sets_the_new_confidence_and_records_the_old_one() {
        let state = given::<CrossReference>([discovered()])
            .when(Command::RefineCrossReference(refine()))
            .then([refined(0.5)]);
        assert_eq!(state.confidence, 0.8);
        assert_eq!(state.enrichments["necessity_score"], json!(0.9));
        assert_eq!(state.state_name(), "Discovered");
    }

    #[test]
    fn a_validated_cross_reference_can_be_refined_and_stays_validated() {
        let state = given::<CrossReference>([discovered(), validated(ValidationResult::Approved)])
            .when(Command::RefineCrossReference(refine()))
            .then([refined(0.6)]);
        assert_eq!(state.state_name(), "Validated");
    }

    #[test]
    fn later_enrichments_overwrite_earlier_keys_and_keep_the_others() {
        let mut second = refine();
        second.enrichments = json!({"necessity_score": 0.95, "presuppositions": ["logos"]})
            .as_object()
            .unwrap()
            .clone();
        let state = CrossReference::replay(&[discovered(), refined(0.5)]);
        let events = state
            .decide(&Command::RefineCrossReference(second))
            .unwrap();
        let state = events.iter().fold(state, |s, e| s.apply(e));
        assert_eq!(state.enrichments["necessity_score"], json!(0.95));
        assert_eq!(state.enrichments["gaps_filled"], json!(2));
        assert_eq!(state.enrichments["presuppositions"], json!(["logos"]));
    }

    #[test]
    fn refuses_to_refine_before_discovery() {
        given::<CrossReference>([])
            .when(Command::RefineCrossReference(refine()))
            .then_error(DomainError::InvalidTransition {
                state: "Initial",
                command: "RefineCrossReference",
            });
    }

    #[test]
    fn refuses_to_refine_a_rejected_cross_reference() {
        given::<CrossReference>([discovered(), validated(ValidationResult::Rejected)])
            .when(Command::RefineCrossReference(refine()))
            .then_error(DomainError::InvalidTransition {
                state: "Rejected",
                command: "RefineCrossReference",
            });
    }

    #[test]
    fn refuses_a_new_confidence_above_one() {
        let c = RefineCrossReference {
            new_confidence: 1.5,
            ..refine()
        };
        assert_eq!(rule(c), "confidence_out_of_range");
    }

    #[test]
    fn refuses_an_empty_refinement_source() {
        let c = RefineCrossReference {
            refinement_source: String::new(),
            ..refine()
        };
        assert_eq!(rule(c), "empty_field");
    }

    #[test]
    fn refuses_a_nul_nested_in_the_enrichments() {
        let c = RefineCrossReference {
            enrichments: json!({"notes": {"text": "a\u{0}"}})
                .as_object()
                .unwrap()
                .clone(),
            ..refine()
        };
        assert_eq!(rule(c), "nul_in_string");
    }
}
