//! Sample commands and events shared by the user tests.

use super::*;

pub(super) fn register() -> RegisterUser {
    RegisterUser {
        user_id: "456".into(),
        email: "user@example.com".into(),
        display_name: Some("Ada".into()),
        expertise_domains: vec!["ai".into(), "machine learning".into(), "nlp".into()],
        user_preferences: None,
        notification_settings: None,
    }
}

pub(super) fn registered() -> Event {
    let c = register();
    Event::UserRegistered(UserRegistered {
        user_id: c.user_id,
        email: c.email,
        display_name: c.display_name,
        expertise_domains: c.expertise_domains,
        user_preferences: UserPreferences::default(),
        notification_settings: NotificationSettings::default(),
    })
}

pub(super) fn deactivated() -> Event {
    Event::UserDeactivated(UserDeactivated {
        reason: Some("left".into()),
    })
}

/// Representative commands of every kind, for the state machine check.
pub(super) fn samples() -> Vec<Command> {
    vec![
        Command::RegisterUser(register()),
        Command::UpdateUserProfile(UpdateUserProfile {
            display_name: Some("Ada L.".into()),
            ..Default::default()
        }),
        Command::DeactivateUser(DeactivateUser {
            reason: Some("left".into()),
        }),
    ]
}
