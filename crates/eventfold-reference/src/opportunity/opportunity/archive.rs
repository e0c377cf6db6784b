//! ArchiveOpportunity: the opportunity is retired and becomes read-only.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, Opportunity, OpportunityStatus};
use crate::fields::{self, MAX_TEXT_CHARS};

/// Retires the opportunity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveOpportunity {
    /// Why.
    #[schemars(length(min = 1, max = crate::fields::MAX_TEXT_CHARS))]
    pub reason: String,
}

/// The opportunity was archived (schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpportunityArchived {
    /// Why.
    pub reason: String,
}

impl Opportunity {
    pub(super) fn archive(&self, c: &ArchiveOpportunity) -> Result<Vec<Event>, DomainError> {
        fields::required("/reason", &c.reason, MAX_TEXT_CHARS)?;
        Ok(vec![Event::OpportunityArchived(OpportunityArchived {
            reason: c.reason.clone(),
        })])
    }

    pub(super) fn on_archived(mut self, e: &OpportunityArchived) -> Self {
        self.status = OpportunityStatus::Archived;
        self.archive_reason = Some(e.reason.clone());
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
    fn archives_a_discovered_or_validated_opportunity() {
        for past in [vec![created()], vec![created(), validated(0.7)]] {
            let state = given::<Opportunity>(past)
                .when(Command::ArchiveOpportunity(archive()))
                .then([archived()]);
            assert_eq!(state.state_name(), "Archived");
            assert_eq!(state.archive_reason.as_deref(), Some("market vanished"));
        }
    }

    #[test]
    fn refuses_a_blank_reason() {
        let err = given::<Opportunity>([created()])
            .when(Command::ArchiveOpportunity(ArchiveOpportunity {
                reason: "".into(),
            }))
            .outcome()
            .unwrap_err();
        assert_eq!(err.code(), "empty_field");
    }

    #[test]
    fn refuses_to_archive_before_creation_or_twice() {
        for past in [vec![], vec![created(), archived()]] {
            let state = Opportunity::replay(&past).state_name();
            given::<Opportunity>(past)
                .when(Command::ArchiveOpportunity(archive()))
                .then_error(DomainError::InvalidTransition {
                    state,
                    command: "ArchiveOpportunity",
                });
        }
    }
}
