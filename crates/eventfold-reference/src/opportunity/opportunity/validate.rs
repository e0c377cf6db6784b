//! ValidateOpportunity: a reviewer scores the opportunity.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, Opportunity, OpportunityStatus};
use crate::fields::{self, MAX_NAME_CHARS, MAX_TEXT_CHARS};

/// Records a reviewer's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateOpportunity {
    /// Who validated.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub validator_id: String,
    /// Score in `0..=1`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub score: f64,
    /// Free comment.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_TEXT_CHARS))]
    pub comment: Option<String>,
}

/// A reviewer validated the opportunity (schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpportunityValidated {
    /// Who validated.
    pub validator_id: String,
    /// Score in `0..=1`.
    pub score: f64,
    /// Free comment.
    pub comment: Option<String>,
}

impl Opportunity {
    pub(super) fn validate(&self, c: &ValidateOpportunity) -> Result<Vec<Event>, DomainError> {
        fields::required("/validator_id", &c.validator_id, MAX_NAME_CHARS)?;
        fields::unit_interval("/score", c.score)?;
        fields::optional("/comment", c.comment.as_deref(), MAX_TEXT_CHARS)?;
        Ok(vec![Event::OpportunityValidated(OpportunityValidated {
            validator_id: c.validator_id.clone(),
            score: c.score,
            comment: c.comment.clone(),
        })])
    }

    pub(super) fn on_validated(mut self, e: &OpportunityValidated) -> Self {
        self.status = OpportunityStatus::Validated;
        self.validation_scores.push(e.score);
        self
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};

    use super::super::fixtures::*;
    use super::*;
    use crate::opportunity::opportunity::Command;

    #[test]
    fn validates_a_discovered_opportunity_and_again_later() {
        let state = given::<Opportunity>([created()])
            .when(Command::ValidateOpportunity(validate(0.9)))
            .then([validated(0.9)]);
        assert_eq!(state.state_name(), "Validated");
        let state = given::<Opportunity>([created(), validated(0.9)])
            .when(Command::ValidateOpportunity(validate(0.4)))
            .then([validated(0.4)]);
        assert_eq!(state.validation_scores, vec![0.9, 0.4]);
    }

    #[test]
    fn refuses_a_score_outside_the_unit_interval() {
        let err = given::<Opportunity>([created()])
            .when(Command::ValidateOpportunity(validate(-0.1)))
            .outcome()
            .unwrap_err();
        assert_eq!(err.code(), "confidence_out_of_range");
    }

    #[test]
    fn refuses_to_validate_before_creation_and_after_archival() {
        for past in [vec![], vec![created(), archived()]] {
            let state = Opportunity::replay(&past).state_name();
            given::<Opportunity>(past)
                .when(Command::ValidateOpportunity(validate(0.5)))
                .then_error(DomainError::InvalidTransition {
                    state,
                    command: "ValidateOpportunity",
                });
        }
    }
}
