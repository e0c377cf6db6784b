//! UpdateUserProfile: a user changes their name, expertise or notification choices.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, NotificationSettings, User, UserPreferences};
use crate::fields::{self, MAX_NAME_CHARS};

/// Changes the given fields; absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserProfile {
    /// New display name.
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_NAME_CHARS))]
    pub display_name: Option<String>,
    /// New expertise domains (replaces the list).
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_ITEMS), inner(length(min = 1, max = crate::fields::MAX_NAME_CHARS)))]
    pub expertise_domains: Option<Vec<String>>,
    /// New preferences.
    #[serde(default)]
    pub user_preferences: Option<UserPreferences>,
    /// New notification settings.
    #[serde(default)]
    pub notification_settings: Option<NotificationSettings>,
}

/// A user's profile changed (schema version 2 = seed v1.1); `None` = unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserProfileUpdated {
    /// New display name.
    pub display_name: Option<String>,
    /// New expertise domains (v1: one comma-separated string).
    pub expertise_domains: Option<Vec<String>>,
    /// New preferences (new in v2).
    pub user_preferences: Option<UserPreferences>,
    /// New notification settings (new in v2).
    pub notification_settings: Option<NotificationSettings>,
}

impl User {
    pub(super) fn update_profile(&self, c: &UpdateUserProfile) -> Result<Vec<Event>, DomainError> {
        fields::optional("/display_name", c.display_name.as_deref(), MAX_NAME_CHARS)?;
        if let Some(d) = &c.expertise_domains {
            fields::names("/expertise_domains", d)?;
        }
        if let Some(s) = &c.notification_settings {
            fields::count(
                "/notification_settings/channels",
                s.channels.len(),
                super::MAX_CHANNELS,
            )?;
        }
        if *c == UpdateUserProfile::default() {
            return Err(DomainError::rule(
                "empty_update",
                "give a display_name, expertise_domains, user_preferences or notification_settings",
            ));
        }
        Ok(vec![Event::UserProfileUpdated(UserProfileUpdated {
            display_name: c.display_name.clone(),
            expertise_domains: c.expertise_domains.clone(),
            user_preferences: c.user_preferences.clone(),
            notification_settings: c.notification_settings.clone(),
        })])
    }

    pub(super) fn on_profile_updated(mut self, e: &UserProfileUpdated) -> Self {
        if let Some(n) = &e.display_name {
            self.display_name = Some(n.clone());
        }
        if let Some(d) = &e.expertise_domains {
            self.expertise_domains = d.clone();
        }
        if let Some(p) = &e.user_preferences {
            self.user_preferences = p.clone();
        }
        if let Some(s) = &e.notification_settings {
            self.notification_settings = s.clone();
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
    use crate::opportunity::user::{Channel, Command, Frequency};

    #[test]
    fn replaces_the_expertise_and_keeps_the_rest() {
        let settings = NotificationSettings {
            frequency: Frequency::Weekly,
            ..Default::default()
        };
        let c = UpdateUserProfile {
            expertise_domains: Some(vec!["robotics".into()]),
            notification_settings: Some(settings.clone()),
            ..Default::default()
        };
        let state = given::<User>([registered()])
            .when(Command::UpdateUserProfile(c))
            .then([Event::UserProfileUpdated(UserProfileUpdated {
                display_name: None,
                expertise_domains: Some(vec!["robotics".into()]),
                user_preferences: None,
                notification_settings: Some(settings.clone()),
            })]);
        assert_eq!(state.expertise_domains, vec!["robotics"]);
        assert_eq!(state.notification_settings, settings);
        assert_eq!(state.email, "user@example.com");
    }

    #[test]
    fn refuses_an_update_that_changes_nothing() {
        let err = given::<User>([registered()])
            .when(Command::UpdateUserProfile(UpdateUserProfile::default()))
            .outcome()
            .unwrap_err();
        assert_eq!(err.code(), "empty_update");
    }

    #[test]
    fn refuses_more_channels_than_there_are_as_registration_does() {
        let settings = NotificationSettings {
            channels: vec![Channel::Email, Channel::Push, Channel::Sms, Channel::Email],
            ..Default::default()
        };
        let err = given::<User>([registered()])
            .when(Command::UpdateUserProfile(UpdateUserProfile {
                notification_settings: Some(settings),
                ..Default::default()
            }))
            .outcome()
            .unwrap_err();
        assert_eq!(err.code(), "too_many_items");
    }

    #[test]
    fn refuses_to_update_an_unknown_or_deactivated_user() {
        for past in [vec![], vec![registered(), deactivated()]] {
            let state = User::replay(&past).state_name();
            given::<User>(past)
                .when(Command::UpdateUserProfile(UpdateUserProfile {
                    display_name: Some("x".into()),
                    ..Default::default()
                }))
                .then_error(DomainError::InvalidTransition {
                    state,
                    command: "UpdateUserProfile",
                });
        }
    }
}
