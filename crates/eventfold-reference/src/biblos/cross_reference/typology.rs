//! IdentifyTypologicalConnection: the typology engine finds that one verse of the cross-reference
//! is a type of the other (its antitype).

use std::collections::BTreeMap;

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{CrossReference, Event};
use crate::fields::{self, MAX_NAME_CHARS};

/// Deepest fractal level accepted.
pub const MAX_FRACTAL_DEPTH: u32 = 64;

/// Records a typological connection between the cross-reference's two verses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentifyTypologicalConnection {
    /// The type (usually the earlier verse); one of the cross-reference's verses.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub type_ref: String,
    /// The antitype; the cross-reference's other verse.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub antitype_ref: String,
    /// Typology layer, e.g. `christological`.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub typology_layer: String,
    /// Relation, e.g. `prefiguration`.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub relation_type: String,
    /// Fractal depth, `1..=64`.
    #[schemars(range(min = 1, max = MAX_FRACTAL_DEPTH))]
    pub fractal_depth: u32,
    /// Combined strength, `0..=1`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub composite_strength: f64,
    /// Strength per layer, each `0..=1`.
    #[serde(default)]
    #[schemars(extend("maxProperties" = crate::fields::MAX_ITEMS, "propertyNames" = {"minLength": 1, "maxLength": crate::fields::MAX_NAME_CHARS}, "additionalProperties" = {"type": "number", "minimum": 0.0, "maximum": 1.0}))]
    pub layer_strengths: BTreeMap<String, f64>,
}

/// A typological connection was identified (seed `TypologicalConnectionIdentifiedEvent`; category
/// oracle).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TypologicalConnectionIdentified {
    /// The type.
    pub type_ref: String,
    /// The antitype.
    pub antitype_ref: String,
    /// Typology layer.
    pub typology_layer: String,
    /// Relation.
    pub relation_type: String,
    /// Fractal depth.
    pub fractal_depth: u32,
    /// Combined strength.
    pub composite_strength: f64,
    /// Strength per layer.
    pub layer_strengths: BTreeMap<String, f64>,
}

impl CrossReference {
    pub(super) fn identify_typology(
        &self,
        c: &IdentifyTypologicalConnection,
    ) -> Result<Vec<Event>, DomainError> {
        fields::required("/type_ref", &c.type_ref, MAX_NAME_CHARS)?;
        fields::required("/antitype_ref", &c.antitype_ref, MAX_NAME_CHARS)?;
        fields::required("/typology_layer", &c.typology_layer, MAX_NAME_CHARS)?;
        fields::required("/relation_type", &c.relation_type, MAX_NAME_CHARS)?;
        let forward = c.type_ref == self.source_ref && c.antitype_ref == self.target_ref;
        let backward = c.type_ref == self.target_ref && c.antitype_ref == self.source_ref;
        if !(forward || backward) {
            return Err(DomainError::rule(
                "typology_refs_mismatch",
                format!(
                    "type_ref and antitype_ref must be {} and {} in either order",
                    self.source_ref, self.target_ref
                ),
            ));
        }
        if !(1..=MAX_FRACTAL_DEPTH).contains(&c.fractal_depth) {
            return Err(DomainError::rule(
                "fractal_depth_out_of_range",
                format!("/fractal_depth must be between 1 and {MAX_FRACTAL_DEPTH}"),
            ));
        }
        fields::unit_interval("/composite_strength", c.composite_strength)?;
        fields::keys("/layer_strengths", c.layer_strengths.keys())?;
        for (layer, strength) in &c.layer_strengths {
            fields::unit_interval(&format!("/layer_strengths/{layer}"), *strength)?;
        }
        Ok(vec![Event::TypologicalConnectionIdentified(
            TypologicalConnectionIdentified {
                type_ref: c.type_ref.clone(),
                antitype_ref: c.antitype_ref.clone(),
                typology_layer: c.typology_layer.clone(),
                relation_type: c.relation_type.clone(),
                fractal_depth: c.fractal_depth,
                composite_strength: c.composite_strength,
                layer_strengths: c.layer_strengths.clone(),
            },
        )])
    }

    pub(super) fn on_typology_identified(mut self, e: &TypologicalConnectionIdentified) -> Self {
        self.typological_connections.push(e.clone());
        self
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};

    use super::super::fixtures::*;
    use super::*;
    use crate::biblos::cross_reference::{Command, ValidationResult};

    fn rule(c: IdentifyTypologicalConnection) -> &'static str {
        given::<CrossReference>([discovered()])
            .when(Command::IdentifyTypologicalConnection(c))
            .outcome()
            .expect_err("expected a rule error")
            .code()
    }

    #[test]
    fn identifies_a_typological_connection_on_a_discovered_cross_reference() {
        let state = given::<CrossReference>([discovered()])
            .when(Command::IdentifyTypologicalConnection(identify()))
            .then([identified()]);
        assert_eq!(state.typological_connections.len(), 1);
        assert_eq!(state.state_name(), "Discovered");
    }

    #[test]
    fn accepts_the_verses_in_the_reverse_direction() {
        let c = IdentifyTypologicalConnection {
            type_ref: "JHN.1.1".into(),
            antitype_ref: "GEN.1.1".into(),
            ..identify()
        };
        assert!(
            given::<CrossReference>([discovered()])
                .when(Command::IdentifyTypologicalConnection(c))
                .outcome()
                .is_ok()
        );
    }

    #[test]
    fn a_validated_cross_reference_can_gain_a_typological_connection() {
        let state = given::<CrossReference>([discovered(), validated(ValidationResult::Approved)])
            .when(Command::IdentifyTypologicalConnection(identify()))
            .then([identified()]);
        assert_eq!(state.state_name(), "Validated");
    }

    #[test]
    fn refuses_a_typological_connection_before_discovery() {
        given::<CrossReference>([])
            .when(Command::IdentifyTypologicalConnection(identify()))
            .then_error(DomainError::InvalidTransition {
                state: "Initial",
                command: "IdentifyTypologicalConnection",
            });
    }

    #[test]
    fn refuses_a_typological_connection_on_a_rejected_cross_reference() {
        given::<CrossReference>([discovered(), validated(ValidationResult::Rejected)])
            .when(Command::IdentifyTypologicalConnection(identify()))
            .then_error(DomainError::InvalidTransition {
                state: "Rejected",
                command: "IdentifyTypologicalConnection",
            });
    }

    #[test]
    fn refuses_verses_that_are_not_this_cross_references() {
        let c = IdentifyTypologicalConnection {
            antitype_ref: "ROM.5.14".into(),
            ..identify()
        };
        assert_eq!(rule(c), "typology_refs_mismatch");
    }

    #[test]
    fn refuses_a_fractal_depth_of_zero() {
        let c = IdentifyTypologicalConnection {
            fractal_depth: 0,
            ..identify()
        };
        assert_eq!(rule(c), "fractal_depth_out_of_range");
    }

    #[test]
    fn refuses_a_composite_strength_below_zero() {
        let c = IdentifyTypologicalConnection {
            composite_strength: -0.1,
            ..identify()
        };
        assert_eq!(rule(c), "confidence_out_of_range");
    }

    #[test]
    fn refuses_a_layer_strength_above_one() {
        let c = IdentifyTypologicalConnection {
            layer_strengths: BTreeMap::from([("moral".to_owned(), 2.0)]),
            ..identify()
        };
        assert_eq!(rule(c), "confidence_out_of_range");
    }

    #[test]
    fn refuses_an_empty_typology_layer() {
        let c = IdentifyTypologicalConnection {
            typology_layer: String::new(),
            ..identify()
        };
        assert_eq!(rule(c), "empty_field");
    }

    #[test]
    fn refuses_a_nul_in_the_relation_type() {
        let c = IdentifyTypologicalConnection {
            relation_type: "\u{0}".into(),
            ..identify()
        };
        assert_eq!(rule(c), "nul_in_string");
    }
}
