//! DiscoverCrossReference: a pipeline found a candidate link between two verses.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{CrossReference, CrossReferenceStatus, Event};
use crate::fields::{self, MAX_NAME_CHARS, MAX_VECTOR_LEN};

/// How a cross-reference was found (the seed's `discovery_method` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryMethod {
    /// Embedding similarity search.
    Embedding,
    /// Graph neural network link prediction.
    Gnn,
    /// Keyword overlap.
    Keyword,
    /// An analysis agent.
    Agent,
}

/// Records a newly discovered cross-reference from `source_ref` to `target_ref`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoverCrossReference {
    /// Verse the link starts from.
    #[schemars(length(min = 1, max = MAX_NAME_CHARS))]
    pub source_ref: String,
    /// Verse the link points to; must differ from `source_ref`.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub target_ref: String,
    /// Kind of connection, e.g. `thematic`.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub connection_type: String,
    /// Confidence at discovery, `0..=1`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub initial_confidence: f64,
    /// How it was found.
    pub discovery_method: DiscoveryMethod,
    /// Features the discovery model used (at most 4,096 finite numbers).
    #[serde(default)]
    #[schemars(length(max = MAX_VECTOR_LEN))]
    pub feature_vector: Vec<f64>,
    /// Cosine similarity of the two verses, `-1..=1`.
    #[schemars(range(min = -1.0, max = 1.0))]
    pub semantic_similarity: f64,
}

/// A cross-reference was discovered (seed `CrossReferenceDiscoveredEvent`; category discovery).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CrossReferenceDiscovered {
    /// Verse the link starts from.
    pub source_ref: String,
    /// Verse the link points to.
    pub target_ref: String,
    /// Kind of connection.
    pub connection_type: String,
    /// Confidence at discovery.
    pub initial_confidence: f64,
    /// How it was found.
    pub discovery_method: DiscoveryMethod,
    /// Features the discovery model used.
    pub feature_vector: Vec<f64>,
    /// Cosine similarity of the two verses.
    pub semantic_similarity: f64,
}

impl CrossReference {
    pub(super) fn discover(&self, c: &DiscoverCrossReference) -> Result<Vec<Event>, DomainError> {
        fields::required("/source_ref", &c.source_ref, MAX_NAME_CHARS)?;
        fields::required("/target_ref", &c.target_ref, MAX_NAME_CHARS)?;
        fields::required("/connection_type", &c.connection_type, MAX_NAME_CHARS)?;
        if c.source_ref == c.target_ref {
            return Err(DomainError::rule(
                "self_reference",
                "a verse cannot cross-reference itself",
            ));
        }
        fields::unit_interval("/initial_confidence", c.initial_confidence)?;
        fields::in_range(
            "/semantic_similarity",
            c.semantic_similarity,
            -1.0,
            1.0,
            "similarity_out_of_range",
        )?;
        fields::count("/feature_vector", c.feature_vector.len(), MAX_VECTOR_LEN)?;
        for (i, x) in c.feature_vector.iter().enumerate() {
            fields::finite(&format!("/feature_vector/{i}"), *x)?;
        }
        Ok(vec![Event::CrossReferenceDiscovered(
            CrossReferenceDiscovered {
                source_ref: c.source_ref.clone(),
                target_ref: c.target_ref.clone(),
                connection_type: c.connection_type.clone(),
                initial_confidence: c.initial_confidence,
                discovery_method: c.discovery_method,
                feature_vector: c.feature_vector.clone(),
                semantic_similarity: c.semantic_similarity,
            },
        )])
    }

    pub(super) fn on_discovered(self, e: &CrossReferenceDiscovered) -> Self {
        Self {
            status: CrossReferenceStatus::Discovered,
            source_ref: e.source_ref.clone(),
            target_ref: e.target_ref.clone(),
            connection_type: e.connection_type.clone(),
            discovery_method: Some(e.discovery_method),
            semantic_similarity: e.semantic_similarity,
            confidence: e.initial_confidence,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};

    use super::super::fixtures::*;
    use super::*;
    use crate::biblos::cross_reference::{Command, ValidationResult};

    fn when(c: DiscoverCrossReference) -> Result<Vec<Event>, DomainError> {
        given::<CrossReference>([])
            .when(Command::DiscoverCrossReference(c))
            .outcome()
    }

    fn rule(c: DiscoverCrossReference) -> &'static str {
        when(c).expect_err("expected a rule error").code()
    }

    #[test]
    fn discovers_a_cross_reference_from_the_initial_state() {
        let state = given::<CrossReference>([])
            .when(Command::DiscoverCrossReference(discover()))
            .then([discovered()]);
        assert_eq!(state.state_name(), "Discovered");
        assert_eq!(state.confidence, 0.5);
        assert_eq!(state.cross_ref_id(), "GEN.1.1:JHN.1.1");
    }

    #[test]
    fn refuses_to_discover_a_cross_reference_twice() {
        for past in [
            vec![discovered()],
            vec![discovered(), validated(ValidationResult::Approved)],
            vec![discovered(), validated(ValidationResult::Rejected)],
        ] {
            let state = CrossReference::replay(&past).state_name();
            given::<CrossReference>(past)
                .when(Command::DiscoverCrossReference(discover()))
                .then_error(DomainError::InvalidTransition {
                    state,
                    command: "DiscoverCrossReference",
                });
        }
    }

    #[test]
    fn refuses_a_verse_that_references_itself() {
        let c = DiscoverCrossReference {
            target_ref: "GEN.1.1".into(),
            ..discover()
        };
        assert_eq!(rule(c), "self_reference");
    }

    #[test]
    fn refuses_an_initial_confidence_outside_zero_to_one() {
        for bad in [-0.01, 1.01, f64::INFINITY] {
            let c = DiscoverCrossReference {
                initial_confidence: bad,
                ..discover()
            };
            assert!(
                matches!(rule(c), "confidence_out_of_range" | "non_finite_number"),
                "{bad}"
            );
        }
    }

    #[test]
    fn accepts_the_bounds_of_the_confidence_range() {
        for ok in [0.0, 1.0] {
            let c = DiscoverCrossReference {
                initial_confidence: ok,
                ..discover()
            };
            assert!(when(c).is_ok());
        }
    }

    #[test]
    fn refuses_a_similarity_outside_minus_one_to_one() {
        let c = DiscoverCrossReference {
            semantic_similarity: -1.5,
            ..discover()
        };
        assert_eq!(rule(c), "similarity_out_of_range");
    }

    #[test]
    fn refuses_an_empty_source_ref() {
        let c = DiscoverCrossReference {
            source_ref: " ".into(),
            ..discover()
        };
        assert_eq!(rule(c), "empty_field");
    }

    #[test]
    fn refuses_a_nul_in_the_connection_type() {
        let c = DiscoverCrossReference {
            connection_type: "the\u{0}matic".into(),
            ..discover()
        };
        assert_eq!(rule(c), "nul_in_string");
    }

    #[test]
    fn refuses_an_overlong_target_ref() {
        let c = DiscoverCrossReference {
            target_ref: "x".repeat(MAX_NAME_CHARS + 1),
            ..discover()
        };
        assert_eq!(rule(c), "text_too_long");
    }

    #[test]
    fn refuses_a_non_finite_feature_component() {
        let c = DiscoverCrossReference {
            feature_vector: vec![0.1, f64::NAN],
            ..discover()
        };
        assert_eq!(rule(c), "non_finite_number");
    }

    #[test]
    fn refuses_a_feature_vector_over_the_cap() {
        let c = DiscoverCrossReference {
            feature_vector: vec![0.0; MAX_VECTOR_LEN + 1],
            ..discover()
        };
        assert_eq!(rule(c), "too_many_items");
    }
}
