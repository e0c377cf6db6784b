//! DeactivateUser: the account is closed and becomes read-only.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, User};
use crate::fields::{self, MAX_TEXT_CHARS};

/// Closes the account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeactivateUser {
    /// Why.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_TEXT_CHARS))]
    pub reason: Option<String>,
}

/// The user was deactivated (schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserDeactivated {
    /// Why.
    pub reason: Option<String>,
}

impl User {
    pub(super) fn deactivate(&self, c: &DeactivateUser) -> Result<Vec<Event>, DomainError> {
        fields::optional("/reason", c.reason.as_deref(), MAX_TEXT_CHARS)?;
        Ok(vec![Event::UserDeactivated(UserDeactivated {
            reason: c.reason.clone(),
        })])
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};

    use super::super::fixtures::*;
    use super::*;
    use crate::opportunity::user::Command;

    #[test]
    fn deactivates_an_active_user() {
        let state = given::<User>([registered()])
            .when(Command::DeactivateUser(DeactivateUser {
                reason: Some("left".into()),
            }))
            .then([deactivated()]);
        assert_eq!(state.state_name(), "Deactivated");
    }

    #[test]
    fn refuses_a_nul_in_the_reason() {
        let err = given::<User>([registered()])
            .when(Command::DeactivateUser(DeactivateUser {
                reason: Some("a\u{0}".into()),
            }))
            .outcome()
            .unwrap_err();
        assert_eq!(err.code(), "nul_in_string");
    }

    #[test]
    fn refuses_to_deactivate_an_unknown_user_or_twice() {
        for past in [vec![], vec![registered(), deactivated()]] {
            let state = User::replay(&past).state_name();
            given::<User>(past)
                .when(Command::DeactivateUser(DeactivateUser::default()))
                .then_error(DomainError::InvalidTransition {
                    state,
                    command: "DeactivateUser",
                });
        }
    }
}
