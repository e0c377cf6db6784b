//! CalculateNecessity: the necessity oracle measured how far the target verse cannot be read
//! without the source verse.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, VerseOracle};
use crate::fields::{self, MAX_NAME_CHARS};

/// Records a necessity calculated from this verse to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalculateNecessity {
    /// The verse of this oracle, e.g. `ISA.7.14`.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub source_verse: String,
    /// The other verse, e.g. `MAT.1.23`.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub target_verse: String,
    /// Necessity score, `0..=1`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub necessity_score: f64,
    /// Kind of necessity, e.g. `presuppositional`.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub necessity_type: String,
    /// Strength label, e.g. `strong`.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub necessity_strength: String,
    /// How many semantic gaps the source fills in the target.
    pub semantic_gaps_filled: u32,
    /// Presuppositions detected, each a non-empty name.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_ITEMS), inner(length(min = 1, max = crate::fields::MAX_NAME_CHARS)))]
    pub presuppositions_detected: Vec<String>,
}

/// A necessity was calculated (seed `NecessityCalculatedEvent`; category oracle).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NecessityCalculated {
    /// The verse of this oracle.
    pub source_verse: String,
    /// The other verse.
    pub target_verse: String,
    /// Necessity score.
    pub necessity_score: f64,
    /// Kind of necessity.
    pub necessity_type: String,
    /// Strength label.
    pub necessity_strength: String,
    /// Semantic gaps filled.
    pub semantic_gaps_filled: u32,
    /// Presuppositions detected.
    pub presuppositions_detected: Vec<String>,
}

impl VerseOracle {
    pub(super) fn calculate_necessity(
        &self,
        c: &CalculateNecessity,
    ) -> Result<Vec<Event>, DomainError> {
        fields::required("/source_verse", &c.source_verse, MAX_NAME_CHARS)?;
        fields::required("/target_verse", &c.target_verse, MAX_NAME_CHARS)?;
        self.same_verse("/source_verse", &c.source_verse)?;
        if c.source_verse == c.target_verse {
            return Err(DomainError::rule(
                "self_reference",
                "a verse cannot necessitate itself",
            ));
        }
        fields::unit_interval("/necessity_score", c.necessity_score)?;
        fields::required("/necessity_type", &c.necessity_type, MAX_NAME_CHARS)?;
        fields::required("/necessity_strength", &c.necessity_strength, MAX_NAME_CHARS)?;
        fields::names("/presuppositions_detected", &c.presuppositions_detected)?;
        Ok(vec![Event::NecessityCalculated(NecessityCalculated {
            source_verse: c.source_verse.clone(),
            target_verse: c.target_verse.clone(),
            necessity_score: c.necessity_score,
            necessity_type: c.necessity_type.clone(),
            necessity_strength: c.necessity_strength.clone(),
            semantic_gaps_filled: c.semantic_gaps_filled,
            presuppositions_detected: c.presuppositions_detected.clone(),
        })])
    }

    pub(super) fn on_necessity(self, e: &NecessityCalculated) -> Self {
        let mut s = self.recorded_on(Some(&e.source_verse));
        s.necessities.insert(e.target_verse.clone(), e.clone());
        s
    }
}
