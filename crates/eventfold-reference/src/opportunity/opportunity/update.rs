//! UpdateOpportunity: a curator corrects the title, description, market size or confidence.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, Opportunity};
use crate::fields::{self, MAX_NAME_CHARS, MAX_TEXT_CHARS};

/// Changes the given fields; absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOpportunity {
    /// New title.
    #[serde(default)]
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub title: Option<String>,
    /// New description.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_TEXT_CHARS))]
    pub description: Option<String>,
    /// New market size estimate.
    #[serde(default)]
    #[schemars(range(max = crate::fields::MAX_SAFE_INTEGER))]
    pub market_size_estimate: Option<u64>,
    /// New confidence in `0..=1`.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub confidence_score: Option<f64>,
}

/// An opportunity changed (seed 002 `OPPORTUNITY_UPDATED`, schema version 2); `None` = unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpportunityUpdated {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New market size estimate (v1: `market_size`).
    pub market_size_estimate: Option<u64>,
    /// New confidence (new in v2).
    pub confidence_score: Option<f64>,
}

impl Opportunity {
    pub(super) fn update(&self, c: &UpdateOpportunity) -> Result<Vec<Event>, DomainError> {
        if let Some(title) = &c.title {
            fields::required("/title", title, MAX_NAME_CHARS)?;
        }
        fields::optional("/description", c.description.as_deref(), MAX_TEXT_CHARS)?;
        if let Some(size) = c.market_size_estimate {
            fields::safe_integer("/market_size_estimate", size)?;
        }
        if let Some(score) = c.confidence_score {
            fields::unit_interval("/confidence_score", score)?;
        }
        if *c == UpdateOpportunity::default() {
            return Err(DomainError::rule(
                "empty_update",
                "give a title, description, market_size_estimate or confidence_score",
            ));
        }
        Ok(vec![Event::OpportunityUpdated(OpportunityUpdated {
            title: c.title.clone(),
            description: c.description.clone(),
            market_size_estimate: c.market_size_estimate,
            confidence_score: c.confidence_score,
        })])
    }

    pub(super) fn on_updated(mut self, e: &OpportunityUpdated) -> Self {
        if let Some(t) = &e.title {
            self.title = t.clone();
        }
        if let Some(d) = &e.description {
            self.description = d.clone();
        }
        if let Some(m) = e.market_size_estimate {
            self.market_size_estimate = m;
        }
        if let Some(s) = e.confidence_score {
            self.confidence_score = s;
        }
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
    fn changes_only_the_given_fields() {
        let c = UpdateOpportunity {
            market_size_estimate: Some(5_000_000),
            ..Default::default()
        };
        let state = given::<Opportunity>([created()])
            .when(Command::UpdateOpportunity(c))
            .then([Event::OpportunityUpdated(OpportunityUpdated {
                title: None,
                description: None,
                market_size_estimate: Some(5_000_000),
                confidence_score: None,
            })]);
        assert_eq!(state.market_size_estimate, 5_000_000);
        assert_eq!(state.title, "AI Chatbot");
        assert_eq!(state.state_name(), "Discovered");
    }

    #[test]
    fn updates_a_validated_opportunity_and_keeps_it_validated() {
        let c = UpdateOpportunity {
            confidence_score: Some(0.95),
            ..Default::default()
        };
        let state = given::<Opportunity>([created(), validated(0.8)])
            .when(Command::UpdateOpportunity(c))
            .outcome()
            .unwrap()
            .iter()
            .fold(Opportunity::replay(&[created(), validated(0.8)]), |s, e| {
                s.apply(e)
            });
        assert_eq!(state.confidence_score, 0.95);
        assert_eq!(state.state_name(), "Validated");
    }

    #[test]
    fn refuses_an_update_that_changes_nothing() {
        let err = given::<Opportunity>([created()])
            .when(Command::UpdateOpportunity(UpdateOpportunity::default()))
            .outcome()
            .unwrap_err();
        assert_eq!(err.code(), "empty_update");
    }

    #[test]
    fn refuses_to_update_before_creation_and_after_archival() {
        for past in [vec![], vec![created(), archived()]] {
            let state = Opportunity::replay(&past).state_name();
            given::<Opportunity>(past)
                .when(Command::UpdateOpportunity(UpdateOpportunity {
                    title: Some("x".into()),
                    ..Default::default()
                }))
                .then_error(DomainError::InvalidTransition {
                    state,
                    command: "UpdateOpportunity",
                });
        }
    }
}
