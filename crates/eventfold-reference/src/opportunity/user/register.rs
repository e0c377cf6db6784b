//! RegisterUser: a person signs up.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, NotificationSettings, User, UserPreferences, UserStatus, email};
use crate::fields::{self, MAX_NAME_CHARS};

/// Registers the user; preferences and settings default to the seed's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterUser {
    /// The seed's user id.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub user_id: String,
    /// Email address.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS), extend("pattern" = crate::opportunity::user::EMAIL_PATTERN))]
    pub email: String,
    /// Display name.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_NAME_CHARS))]
    pub display_name: Option<String>,
    /// Expertise domains.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_ITEMS), inner(length(min = 1, max = crate::fields::MAX_NAME_CHARS)))]
    pub expertise_domains: Vec<String>,
    /// Notification preferences.
    #[serde(default)]
    pub user_preferences: Option<UserPreferences>,
    /// Notification settings.
    #[serde(default)]
    pub notification_settings: Option<NotificationSettings>,
}

/// A user registered (seed 002 user event, schema version 2 = seed v1.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRegistered {
    /// The seed's user id.
    pub user_id: String,
    /// Email address.
    pub email: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Expertise domains (v1: one comma-separated string).
    pub expertise_domains: Vec<String>,
    /// Notification preferences (new in v2).
    pub user_preferences: UserPreferences,
    /// Notification settings (new in v2).
    pub notification_settings: NotificationSettings,
}

impl User {
    pub(super) fn register(&self, c: &RegisterUser) -> Result<Vec<Event>, DomainError> {
        fields::required("/user_id", &c.user_id, MAX_NAME_CHARS)?;
        email("/email", &c.email)?;
        fields::optional("/display_name", c.display_name.as_deref(), MAX_NAME_CHARS)?;
        fields::names("/expertise_domains", &c.expertise_domains)?;
        if let Some(s) = &c.notification_settings {
            fields::count(
                "/notification_settings/channels",
                s.channels.len(),
                super::MAX_CHANNELS,
            )?;
        }
        Ok(vec![Event::UserRegistered(UserRegistered {
            user_id: c.user_id.clone(),
            email: c.email.clone(),
            display_name: c.display_name.clone(),
            expertise_domains: c.expertise_domains.clone(),
            user_preferences: c.user_preferences.clone().unwrap_or_default(),
            notification_settings: c.notification_settings.clone().unwrap_or_default(),
        })])
    }

    pub(super) fn on_registered(self, e: &UserRegistered) -> Self {
        Self {
            status: UserStatus::Active,
            user_id: e.user_id.clone(),
            email: e.email.clone(),
            display_name: e.display_name.clone(),
            expertise_domains: e.expertise_domains.clone(),
            user_preferences: e.user_preferences.clone(),
            notification_settings: e.notification_settings.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};

    use super::super::fixtures::*;
    use super::*;
    use crate::opportunity::user::Command;

    fn rule(c: RegisterUser) -> &'static str {
        given::<User>([])
            .when(Command::RegisterUser(c))
            .outcome()
            .expect_err("expected a rule error")
            .code()
    }

    #[test]
    fn registers_a_user_with_the_seed_defaults() {
        let state = given::<User>([])
            .when(Command::RegisterUser(register()))
            .then([registered()]);
        assert_eq!(state.state_name(), "Active");
        assert_eq!(state.user_preferences, UserPreferences::default());
        assert_eq!(state.notification_settings.channels.len(), 1);
    }

    #[test]
    fn refuses_to_register_twice() {
        for past in [vec![registered()], vec![registered(), deactivated()]] {
            let state = User::replay(&past).state_name();
            given::<User>(past)
                .when(Command::RegisterUser(register()))
                .then_error(DomainError::InvalidTransition {
                    state,
                    command: "RegisterUser",
                });
        }
    }

    #[test]
    fn refuses_an_address_without_an_at_sign() {
        let c = RegisterUser {
            email: "user.example.com".into(),
            ..register()
        };
        assert_eq!(rule(c), "invalid_email");
    }

    #[test]
    fn refuses_a_blank_expertise_domain() {
        let c = RegisterUser {
            expertise_domains: vec!["ai".into(), " ".into()],
            ..register()
        };
        assert_eq!(rule(c), "empty_field");
    }
}
