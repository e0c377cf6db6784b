//! DetectLXXDivergence: the LXX oracle found the Septuagint reading of this verse diverging from
//! the Masoretic text.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, VerseOracle};
use crate::fields::{self, MAX_NAME_CHARS, MAX_TEXT_CHARS};

/// Records an LXX/MT divergence of this verse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectLXXDivergence {
    /// The verse of this oracle.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub verse_id: String,
    /// Kind of divergence, e.g. `lexical`.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub divergence_type: String,
    /// The Septuagint reading.
    #[schemars(length(min = 1, max = crate::fields::MAX_TEXT_CHARS))]
    pub lxx_reading: String,
    /// The Masoretic reading.
    #[schemars(length(min = 1, max = crate::fields::MAX_TEXT_CHARS))]
    pub mt_reading: String,
    /// Christological category, if any, e.g. `virgin_birth`.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_NAME_CHARS))]
    pub christological_category: Option<String>,
    /// Oldest manuscript witness, e.g. `Codex Vaticanus`.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub oldest_witness: String,
    /// Confidence in the manuscript evidence, `0..=1`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub manuscript_confidence: f64,
}

/// An LXX divergence was detected (seed `LXXDivergenceDetectedEvent`; category oracle).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LXXDivergenceDetected {
    /// The verse.
    pub verse_id: String,
    /// Kind of divergence.
    pub divergence_type: String,
    /// The Septuagint reading.
    pub lxx_reading: String,
    /// The Masoretic reading.
    pub mt_reading: String,
    /// Christological category, if any.
    pub christological_category: Option<String>,
    /// Oldest manuscript witness.
    pub oldest_witness: String,
    /// Confidence in the manuscript evidence.
    pub manuscript_confidence: f64,
}

impl VerseOracle {
    pub(super) fn detect_divergence(
        &self,
        c: &DetectLXXDivergence,
    ) -> Result<Vec<Event>, DomainError> {
        fields::required("/verse_id", &c.verse_id, MAX_NAME_CHARS)?;
        self.same_verse("/verse_id", &c.verse_id)?;
        fields::required("/divergence_type", &c.divergence_type, MAX_NAME_CHARS)?;
        fields::required("/lxx_reading", &c.lxx_reading, MAX_TEXT_CHARS)?;
        fields::required("/mt_reading", &c.mt_reading, MAX_TEXT_CHARS)?;
        if c.lxx_reading == c.mt_reading {
            return Err(DomainError::rule(
                "readings_identical",
                "/lxx_reading and /mt_reading must differ for a divergence",
            ));
        }
        fields::optional(
            "/christological_category",
            c.christological_category.as_deref(),
            MAX_NAME_CHARS,
        )?;
        fields::required("/oldest_witness", &c.oldest_witness, MAX_NAME_CHARS)?;
        fields::unit_interval("/manuscript_confidence", c.manuscript_confidence)?;
        Ok(vec![Event::LXXDivergenceDetected(LXXDivergenceDetected {
            verse_id: c.verse_id.clone(),
            divergence_type: c.divergence_type.clone(),
            lxx_reading: c.lxx_reading.clone(),
            mt_reading: c.mt_reading.clone(),
            christological_category: c.christological_category.clone(),
            oldest_witness: c.oldest_witness.clone(),
            manuscript_confidence: c.manuscript_confidence,
        })])
    }

    pub(super) fn on_divergence(self, e: &LXXDivergenceDetected) -> Self {
        let mut s = self.recorded_on(Some(&e.verse_id));
        s.lxx_divergences
            .insert(e.divergence_type.clone(), e.clone());
        s
    }
}
