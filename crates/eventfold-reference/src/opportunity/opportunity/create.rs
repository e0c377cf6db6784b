//! CreateOpportunity: an AI opportunity is found and recorded.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{
    AiSolutionCategory, AiSolutionType, DEFAULT_CONFIDENCE, Event, Opportunity, OpportunityStatus,
};
use crate::fields::{self, MAX_NAME_CHARS, MAX_TEXT_CHARS};

/// Records a new opportunity; the category is derived from the solution type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOpportunity {
    /// The seed's opportunity id (clients use it as the aggregate id too).
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub opportunity_id: String,
    /// Title, at most 256 characters.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub title: String,
    /// Description, at most 10,000 characters.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_TEXT_CHARS))]
    pub description: String,
    /// Kind of AI.
    pub ai_solution_type: AiSolutionType,
    /// Estimated market size, at most 2^53 − 1.
    #[schemars(range(max = crate::fields::MAX_SAFE_INTEGER))]
    pub market_size_estimate: u64,
    /// Confidence in `0..=1`; the seed's 0.7 when absent.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub confidence_score: Option<f64>,
}

/// An opportunity was created (seed 002 `OPPORTUNITY_CREATED`, schema version 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpportunityCreated {
    /// The seed's opportunity id.
    pub opportunity_id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Kind of AI.
    pub ai_solution_type: AiSolutionType,
    /// Category derived from the type (new in v2).
    pub ai_solution_category: AiSolutionCategory,
    /// Estimated market size (v1: `market_size`).
    pub market_size_estimate: u64,
    /// Confidence in `0..=1` (new in v2, default 0.7).
    pub confidence_score: f64,
}

impl Opportunity {
    pub(super) fn create(&self, c: &CreateOpportunity) -> Result<Vec<Event>, DomainError> {
        fields::required("/opportunity_id", &c.opportunity_id, MAX_NAME_CHARS)?;
        fields::required("/title", &c.title, MAX_NAME_CHARS)?;
        fields::text("/description", &c.description, MAX_TEXT_CHARS)?;
        fields::safe_integer("/market_size_estimate", c.market_size_estimate)?;
        let confidence = c.confidence_score.unwrap_or(DEFAULT_CONFIDENCE);
        fields::unit_interval("/confidence_score", confidence)?;
        Ok(vec![Event::OpportunityCreated(OpportunityCreated {
            opportunity_id: c.opportunity_id.clone(),
            title: c.title.clone(),
            description: c.description.clone(),
            ai_solution_type: c.ai_solution_type,
            ai_solution_category: c.ai_solution_type.category(),
            market_size_estimate: c.market_size_estimate,
            confidence_score: confidence,
        })])
    }

    pub(super) fn on_created(self, e: &OpportunityCreated) -> Self {
        Self {
            status: OpportunityStatus::Discovered,
            opportunity_id: e.opportunity_id.clone(),
            title: e.title.clone(),
            description: e.description.clone(),
            ai_solution_type: Some(e.ai_solution_type),
            ai_solution_category: Some(e.ai_solution_category),
            market_size_estimate: e.market_size_estimate,
            confidence_score: e.confidence_score,
            validation_scores: Vec::new(),
            archive_reason: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};

    use super::super::fixtures::*;
    use super::*;
    use crate::opportunity::opportunity::Command;

    fn rule(c: CreateOpportunity) -> &'static str {
        given::<Opportunity>([])
            .when(Command::CreateOpportunity(c))
            .outcome()
            .expect_err("expected a rule error")
            .code()
    }

    #[test]
    fn creates_an_opportunity_with_the_category_derived_from_the_type() {
        let state = given::<Opportunity>([])
            .when(Command::CreateOpportunity(create()))
            .then([created()]);
        assert_eq!(state.state_name(), "Discovered");
        assert_eq!(
            state.ai_solution_category,
            Some(AiSolutionCategory::NaturalLanguageProcessing)
        );
        assert_eq!(state.market_size_estimate, 1_000_000);
    }

    #[test]
    fn defaults_the_confidence_to_the_seed_value() {
        let c = CreateOpportunity {
            confidence_score: None,
            ..create()
        };
        let events = given::<Opportunity>([])
            .when(Command::CreateOpportunity(c))
            .outcome()
            .unwrap();
        let Event::OpportunityCreated(e) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(e.confidence_score, DEFAULT_CONFIDENCE);
    }

    #[test]
    fn refuses_to_create_an_opportunity_twice() {
        for past in [
            vec![created()],
            vec![created(), validated(0.9)],
            vec![created(), archived()],
        ] {
            let state = Opportunity::replay(&past).state_name();
            given::<Opportunity>(past)
                .when(Command::CreateOpportunity(create()))
                .then_error(DomainError::InvalidTransition {
                    state,
                    command: "CreateOpportunity",
                });
        }
    }

    #[test]
    fn refuses_an_empty_title() {
        let c = CreateOpportunity {
            title: " ".into(),
            ..create()
        };
        assert_eq!(rule(c), "empty_field");
    }

    #[test]
    fn refuses_a_confidence_outside_the_unit_interval() {
        let c = CreateOpportunity {
            confidence_score: Some(1.5),
            ..create()
        };
        assert_eq!(rule(c), "confidence_out_of_range");
    }

    #[test]
    fn refuses_a_market_size_beyond_exact_integers() {
        let c = CreateOpportunity {
            market_size_estimate: u64::MAX,
            ..create()
        };
        assert_eq!(rule(c), "number_out_of_range");
    }
}
