//! Aggregate-level checks: state machine, upcasting of v1 payloads, event metadata, replay property.

use eventfold_domain::{Aggregate, DomainEvent, StoredEventError, parse_command};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::json;

use super::fixtures::*;
use super::*;
use crate::conformance::{self, name};

#[test]
fn the_state_machine_agrees_with_decide_in_every_reachable_state() {
    conformance::assert_state_machine_agrees_with_decide::<User>(&samples(), 3);
}

#[test]
fn prints_deactivation_as_the_end_of_its_mermaid_diagram() {
    let m = User::state_machine().to_mermaid();
    assert!(
        m.contains("Active --> Deactivated: DeactivateUser / UserDeactivated"),
        "{m}"
    );
}

#[test]
fn reads_the_seed_v1_payload_as_the_seed_v1_1_event() {
    let v1 = json!({
        "user_id": "456",
        "email": "user@example.com",
        "display_name": null,
        "expertise_domains": "ai,machine learning,nlp"
    });
    let event = Event::from_stored("UserRegistered", 1, v1).unwrap();
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({
            "user_id": "456",
            "email": "user@example.com",
            "display_name": null,
            "expertise_domains": ["ai", "machine learning", "nlp"],
            "user_preferences": {
                "email_notifications": true,
                "push_notifications": true,
                "weekly_digest": true
            },
            "notification_settings": {
                "frequency": "immediate",
                "channels": ["email"],
                "quiet_hours": {"enabled": false}
            }
        })
    );
}

#[test]
fn trims_the_domains_and_drops_empty_parts() {
    assert_eq!(
        split_domains(json!(" ai , ,nlp,,  ")).unwrap(),
        json!(["ai", "nlp"])
    );
    assert_eq!(split_domains(json!("")).unwrap(), json!([]));
    assert_eq!(split_domains(json!(null)).unwrap(), json!(null));
    assert!(split_domains(json!(3)).is_err());
}

#[test]
fn a_v1_profile_update_changes_only_what_it_named() {
    let update = Event::from_stored(
        "UserProfileUpdated",
        1,
        json!({"display_name": "Ada L.", "expertise_domains": null}),
    )
    .unwrap();
    let state = User::replay(&[registered(), update]);
    assert_eq!(state.display_name.as_deref(), Some("Ada L."));
    assert_eq!(
        state.expertise_domains,
        vec!["ai", "machine learning", "nlp"]
    );
    assert_eq!(state.user_preferences, UserPreferences::default());
}

#[test]
fn refuses_a_v1_payload_whose_domains_are_not_a_string() {
    let v1 = json!({"user_id": "1", "email": "a@b", "display_name": null, "expertise_domains": 7});
    let err = Event::from_stored("UserRegistered", 1, v1).unwrap_err();
    assert!(matches!(err, StoredEventError::Upcast(_)), "{err:?}");
    assert!(err.to_string().contains("expertise_domains"), "{err}");
}

#[test]
fn events_name_their_type_and_latest_schema_version() {
    let update = Event::UserProfileUpdated(UserProfileUpdated {
        display_name: Some("x".into()),
        expertise_domains: None,
        user_preferences: None,
        notification_settings: None,
    });
    for (event, name, version) in [
        (registered(), "UserRegistered", 2),
        (update, "UserProfileUpdated", 2),
        (deactivated(), "UserDeactivated", 1),
    ] {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.category(), EventCategory::Domain);
        assert_eq!(event.schema_version(), version, "{name}");
    }
}

#[test]
fn parses_a_registration_with_settings() {
    let body = json!({"user_id": "456", "email": "user@example.com",
        "expertise_domains": ["ai"],
        "notification_settings": {"frequency": "daily", "channels": ["push", "sms"],
                                  "quiet_hours": {"enabled": true}}});
    let Command::RegisterUser(c) = parse_command::<User>("RegisterUser", body).unwrap() else {
        panic!("not a registration")
    };
    let s = c.notification_settings.unwrap();
    assert_eq!(s.frequency, Frequency::Daily);
    assert_eq!(s.channels, vec![Channel::Push, Channel::Sms]);
}

fn command() -> impl Strategy<Value = Command> {
    let register = (name(), vec(name(), 0..4), any::<bool>()).prop_map(|(id, domains, digest)| {
        Command::RegisterUser(RegisterUser {
            user_id: id,
            email: "someone@example.org".into(),
            display_name: None,
            expertise_domains: domains,
            user_preferences: Some(UserPreferences {
                weekly_digest: digest,
                ..Default::default()
            }),
            notification_settings: None,
        })
    });
    let update = (
        proptest::option::of(name()),
        proptest::option::of(vec(name(), 0..3)),
    )
        .prop_map(|(display_name, expertise_domains)| {
            Command::UpdateUserProfile(UpdateUserProfile {
                display_name,
                expertise_domains,
                ..Default::default()
            })
        });
    prop_oneof![1 => register, 4 => update, 1 => Just(Command::DeactivateUser(DeactivateUser::default()))]
}

proptest! {
    #[test]
    fn replaying_stored_events_gives_the_state_that_decided_them(commands in vec(command(), 1..16)) {
        conformance::check_replay_and_round_trip::<User>(&commands)?;
    }
}
