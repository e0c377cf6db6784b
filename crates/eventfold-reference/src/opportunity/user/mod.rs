//! `User` (seed 002): a person browsing opportunities, with expertise domains and notification
//! preferences.
//!
//! | state         | RegisterUser | UpdateUserProfile | DeactivateUser  |
//! |---------------|--------------|-------------------|-----------------|
//! | `Initial`     | → `Active`   | –                 | –               |
//! | `Active`      | –            | stays             | → `Deactivated` |
//! | `Deactivated` | –            | –                 | –               |
//!
//! Events and versions (seed 002 "User Events v1.0 → v1.1"; schema versions 1 → 2):
//! - `UserRegistered` v2 `{ user_id, email, display_name, expertise_domains: [string],
//!   user_preferences, notification_settings }`; v1 had `expertise_domains` as one comma-separated
//!   string and no preferences or settings.
//! - `UserProfileUpdated` v2 `{ display_name, expertise_domains, user_preferences,
//!   notification_settings }` (each `null` = unchanged); v1 had the first two, the domains as a
//!   string.
//! - `UserDeactivated { reason }`, version 1 only.
//!
//! The v1 → v2 upcaster ([`upcasters`]) splits `expertise_domains` at commas, trims each part and
//! drops empty ones (`"ai, ,nlp,"` → `["ai", "nlp"]`); a registration gets the seed's defaults
//! ([`UserPreferences::default`]: every notification on; [`NotificationSettings::default`]:
//! immediate, by email, quiet hours off), an update gets `null` (unchanged).
//!
//! Rules: `email` must look like an address (one `@` with text on both sides, at most 256
//! characters); expertise domains are names (at most 1,000); an update that changes nothing is
//! refused (`empty_update`); a deactivated user is read-only.

mod deactivate;
mod register;
mod update_profile;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::sync::LazyLock;

use eventfold_domain::{Aggregate, DomainError, EventCategory, StateMachine, Upcaster, Upcasters};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use deactivate::{DeactivateUser, UserDeactivated};
pub use register::{RegisterUser, UserRegistered};
pub use update_profile::{UpdateUserProfile, UserProfileUpdated};

use crate::registry::edge;

/// Which notifications a user wants (new in v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPreferences {
    /// Notifications by email.
    pub email_notifications: bool,
    /// Push notifications.
    pub push_notifications: bool,
    /// A weekly digest.
    pub weekly_digest: bool,
}

impl Default for UserPreferences {
    /// The seed's v1.1 default: everything on.
    fn default() -> Self {
        Self {
            email_notifications: true,
            push_notifications: true,
            weekly_digest: true,
        }
    }
}

/// How often notifications are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    /// As they happen.
    Immediate,
    /// Once a day.
    Daily,
    /// Once a week.
    Weekly,
}

/// Where notifications go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Email.
    Email,
    /// Mobile push.
    Push,
    /// SMS.
    Sms,
}

/// Quiet hours (the seed only records whether they are on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// On or off.
    pub enabled: bool,
}

/// Most notification channels (there are three kinds).
pub const MAX_CHANNELS: usize = 3;

/// How a user is notified (new in v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// How often.
    pub frequency: Frequency,
    /// Where.
    #[schemars(length(max = MAX_CHANNELS))]
    pub channels: Vec<Channel>,
    /// Quiet hours.
    pub quiet_hours: QuietHours,
}

impl Default for NotificationSettings {
    /// The seed's v1.1 default: immediate, by email, no quiet hours.
    fn default() -> Self {
        Self {
            frequency: Frequency::Immediate,
            channels: vec![Channel::Email],
            quiet_hours: QuietHours { enabled: false },
        }
    }
}

/// The state of one user, folded from its events (always at the latest schema).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct User {
    /// Whether the user is registered and whether still active.
    pub status: UserStatus,
    /// The seed's user id.
    pub user_id: String,
    /// Email address.
    pub email: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Expertise domains.
    pub expertise_domains: Vec<String>,
    /// Notification preferences.
    pub user_preferences: UserPreferences,
    /// Notification settings.
    pub notification_settings: NotificationSettings,
}

/// Lifecycle status of a user.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Not registered yet.
    #[default]
    Initial,
    /// Registered.
    Active,
    /// Deactivated; read-only.
    Deactivated,
}

/// A command to a user; the variant name is the command name in the URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Command {
    /// See [`RegisterUser`].
    RegisterUser(RegisterUser),
    /// See [`UpdateUserProfile`].
    UpdateUserProfile(UpdateUserProfile),
    /// See [`DeactivateUser`].
    DeactivateUser(DeactivateUser),
}

impl Command {
    /// The command names, in declaration order.
    pub const NAMES: &'static [&'static str] =
        &["RegisterUser", "UpdateUserProfile", "DeactivateUser"];
}

eventfold_domain::domain_events! {
    /// An event of a user; serializes to its payload only, at the latest schema version.
    pub enum Event for "User" {
        /// See [`UserRegistered`].
        UserRegistered,
        /// See [`UserProfileUpdated`].
        UserProfileUpdated,
        /// See [`UserDeactivated`].
        UserDeactivated,
    }
    category: |_| EventCategory::Domain,
    upcasters: upcasters(),
}

/// The v1 comma-separated `expertise_domains` as the v2 list: split at commas, trimmed, empty parts
/// dropped; `null` stays `null`.
pub fn split_domains(v: Value) -> Result<Value, String> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::String(s) => Ok(Value::Array(
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(p.to_owned()))
                .collect(),
        )),
        other => Err(format!("{other} is not a comma-separated string")),
    }
}

static UPCASTERS: LazyLock<Upcasters> = LazyLock::new(|| {
    let preferences =
        serde_json::to_value(UserPreferences::default()).expect("preferences serialize");
    let settings =
        serde_json::to_value(NotificationSettings::default()).expect("settings serialize");
    Upcasters::default()
        .with(
            Upcaster::new("UserRegistered", 1)
                .convert("expertise_domains", split_domains)
                .default_value("user_preferences", preferences)
                .default_value("notification_settings", settings),
        )
        .with(
            Upcaster::new("UserProfileUpdated", 1)
                .convert("expertise_domains", split_domains)
                .default_value("user_preferences", Value::Null)
                .default_value("notification_settings", Value::Null),
        )
});

/// The steps that bring older user events to the latest schema version.
pub fn upcasters() -> &'static Upcasters {
    &UPCASTERS
}

/// The transition table; `decide` consults it before anything else.
static MACHINE: LazyLock<StateMachine> = LazyLock::new(|| StateMachine {
    aggregate_type: User::TYPE,
    initial: "Initial",
    transitions: vec![
        edge("Initial", "RegisterUser", &["UserRegistered"], "Active"),
        edge(
            "Active",
            "UpdateUserProfile",
            &["UserProfileUpdated"],
            "Active",
        ),
        edge(
            "Active",
            "DeactivateUser",
            &["UserDeactivated"],
            "Deactivated",
        ),
    ],
});

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = Command;
    type Event = Event;

    fn command_names() -> &'static [&'static str] {
        Command::NAMES
    }

    fn command_name(command: &Command) -> &'static str {
        match command {
            Command::RegisterUser(_) => "RegisterUser",
            Command::UpdateUserProfile(_) => "UpdateUserProfile",
            Command::DeactivateUser(_) => "DeactivateUser",
        }
    }

    fn state_name(&self) -> &'static str {
        match self.status {
            UserStatus::Initial => "Initial",
            UserStatus::Active => "Active",
            UserStatus::Deactivated => "Deactivated",
        }
    }

    fn decide(&self, command: &Command) -> Result<Vec<Event>, DomainError> {
        if !MACHINE.allows(self.state_name(), Self::command_name(command)) {
            return Err(self.invalid(command));
        }
        match command {
            Command::RegisterUser(c) => self.register(c),
            Command::UpdateUserProfile(c) => self.update_profile(c),
            Command::DeactivateUser(c) => self.deactivate(c),
        }
    }

    fn apply(self, event: &Event) -> Self {
        match event {
            Event::UserRegistered(e) => self.on_registered(e),
            Event::UserProfileUpdated(e) => self.on_profile_updated(e),
            Event::UserDeactivated(_) => Self {
                status: UserStatus::Deactivated,
                ..self
            },
        }
    }

    fn state_machine() -> StateMachine {
        MACHINE.clone()
    }
}

/// The JSON Schema pattern of [`email`]: one `@`, text on both sides, no Unicode white space.
pub(crate) const EMAIL_PATTERN: &str = r"^[^@\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+@[^@\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$";

/// An email address, loosely: one `@` with text on both sides, no spaces, at most 256 characters.
pub(crate) fn email(field: &str, value: &str) -> Result<(), DomainError> {
    crate::fields::required(field, value, crate::fields::MAX_NAME_CHARS)?;
    let well_formed = value
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !value.contains(char::is_whitespace);
    if !well_formed {
        return Err(DomainError::rule(
            "invalid_email",
            format!("{field} must be an email address"),
        ));
    }
    Ok(())
}
