//! ComputePropheticProof: the prophetic proof oracle combined the probabilities of several
//! prophecies fulfilled in this verse.

use std::collections::BTreeSet;

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, VerseOracle};
use crate::fields::{self, MAX_TEXT_CHARS};

/// Records a prophetic proof computed for this verse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComputePropheticProof {
    /// The prophecies combined, at least one, none twice.
    #[schemars(length(min = 1, max = crate::fields::MAX_ITEMS), inner(length(min = 1, max = crate::fields::MAX_NAME_CHARS)))]
    pub prophecy_ids: Vec<String>,
    /// Probability of all of them by chance, `0..=1`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub compound_probability: f64,
    /// Logarithm of that probability, at most 0.
    #[schemars(range(max = 0.0))]
    pub log_probability: f64,
    /// Posterior probability, `0..=1`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub bayesian_posterior: f64,
    /// Prior used, `0..=1`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub prior_used: f64,
    /// Bayes factor, at least 0.
    #[schemars(range(min = 0.0))]
    pub bayes_factor: f64,
    /// Reading of the result in words.
    #[schemars(length(min = 1, max = crate::fields::MAX_TEXT_CHARS))]
    pub interpretation: String,
}

/// A prophetic proof was computed (seed `PropheticProofComputedEvent`; category oracle).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PropheticProofComputed {
    /// The prophecies combined.
    pub prophecy_ids: Vec<String>,
    /// Compound probability.
    pub compound_probability: f64,
    /// Its logarithm.
    pub log_probability: f64,
    /// Posterior probability.
    pub bayesian_posterior: f64,
    /// Prior used.
    pub prior_used: f64,
    /// Bayes factor.
    pub bayes_factor: f64,
    /// Reading of the result.
    pub interpretation: String,
}

fn probability(field: &str, value: f64) -> Result<(), DomainError> {
    fields::in_range(field, value, 0.0, 1.0, "probability_out_of_range")
}

impl VerseOracle {
    pub(super) fn compute_proof(
        &self,
        c: &ComputePropheticProof,
    ) -> Result<Vec<Event>, DomainError> {
        if c.prophecy_ids.is_empty() {
            return Err(DomainError::rule(
                "no_prophecies",
                "/prophecy_ids must name at least one prophecy",
            ));
        }
        fields::names("/prophecy_ids", &c.prophecy_ids)?;
        let mut seen = BTreeSet::new();
        for (i, id) in c.prophecy_ids.iter().enumerate() {
            if !seen.insert(id) {
                return Err(DomainError::rule(
                    "duplicate_prophecy_id",
                    format!("/prophecy_ids/{i} repeats {id}"),
                ));
            }
        }
        probability("/compound_probability", c.compound_probability)?;
        fields::in_range(
            "/log_probability",
            c.log_probability,
            f64::MIN,
            0.0,
            "probability_out_of_range",
        )?;
        probability("/bayesian_posterior", c.bayesian_posterior)?;
        probability("/prior_used", c.prior_used)?;
        fields::in_range(
            "/bayes_factor",
            c.bayes_factor,
            0.0,
            f64::MAX,
            "bayes_factor_out_of_range",
        )?;
        fields::required("/interpretation", &c.interpretation, MAX_TEXT_CHARS)?;
        Ok(vec![Event::PropheticProofComputed(
            PropheticProofComputed {
                prophecy_ids: c.prophecy_ids.clone(),
                compound_probability: c.compound_probability,
                log_probability: c.log_probability,
                bayesian_posterior: c.bayesian_posterior,
                prior_used: c.prior_used,
                bayes_factor: c.bayes_factor,
                interpretation: c.interpretation.clone(),
            },
        )])
    }

    pub(super) fn on_proof(self, e: &PropheticProofComputed) -> Self {
        let mut s = self.recorded_on(None);
        s.prophetic_proof = Some(e.clone());
        s
    }
}
