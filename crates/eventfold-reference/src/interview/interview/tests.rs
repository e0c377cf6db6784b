//! Aggregate-level checks: state machine, command parsing, event metadata, replay property.

use eventfold_domain::{Aggregate, CommandError, DomainEvent, EventCategory, parse_command};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::json;

use super::fixtures::*;
use super::*;
use crate::conformance::{self, json_object, name, nonblank_text, text};

#[test]
fn the_state_machine_agrees_with_decide_in_every_reachable_state() {
    conformance::assert_state_machine_agrees_with_decide::<Interview>(&samples(), 4);
}

#[test]
fn prints_archival_as_the_end_of_its_mermaid_diagram() {
    let m = Interview::state_machine().to_mermaid();
    assert!(
        m.contains("Completed --> Archived: ChangeInterviewStatus / InterviewStatusChanged"),
        "{m}"
    );
    assert!(!m.contains("Archived --> "), "{m}");
}

#[test]
fn parses_a_create_command_with_an_rfc3339_start_time() {
    let body = json!({
        "project_id": "default-project", "title": "Interview 7",
        "source": "uploads/interview-7.txt", "language": "en",
        "started_at": "2025-10-16T09:30:00Z",
        "metadata": {"interviewer": "R. Silva", "site": "Lisbon"}
    });
    assert_eq!(
        parse_command::<Interview>("CreateInterview", body).unwrap(),
        Command::CreateInterview(create())
    );
}

#[test]
fn a_start_time_that_is_not_rfc3339_names_the_field() {
    let mut body = serde_json::to_value(create()).unwrap();
    body["started_at"] = json!("yesterday");
    match parse_command::<Interview>("CreateInterview", body) {
        Err(CommandError::InvalidBody { pointer, .. }) => assert_eq!(pointer, "/started_at"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unknown_status_names_the_field() {
    match parse_command::<Interview>("ChangeInterviewStatus", json!({"to_status": "done"})) {
        Err(CommandError::InvalidBody { pointer, .. }) => assert_eq!(pointer, "/to_status"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unknown_field_is_refused() {
    assert!(matches!(
        parse_command::<Interview>(
            "UpdateInterviewMetadata",
            json!({"title": "x", "status": "completed"})
        ),
        Err(CommandError::InvalidBody { .. })
    ));
}

#[test]
fn an_unknown_command_is_named_in_the_error() {
    assert_eq!(
        parse_command::<Interview>("DeleteInterview", json!({})),
        Err(CommandError::UnknownCommand {
            aggregate_type: "Interview",
            command: "DeleteInterview".into(),
        })
    );
}

#[test]
fn events_name_their_type_category_and_schema_version() {
    for (event, name) in [
        (created(), "InterviewCreated"),
        (
            status_changed(InterviewStatus::Created, InterviewStatus::Processing),
            "InterviewStatusChanged",
        ),
        (
            Event::InterviewMetadataUpdated(InterviewMetadataUpdated {
                title: None,
                language: None,
                metadata_diff: Default::default(),
            }),
            "InterviewMetadataUpdated",
        ),
    ] {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.category(), EventCategory::Domain);
        assert_eq!(event.schema_version(), 1);
    }
}

#[test]
fn a_created_payload_writes_the_start_time_as_rfc3339() {
    let payload = serde_json::to_value(created()).unwrap();
    assert_eq!(payload["started_at"], "2025-10-16T09:30:00Z");
    assert_eq!(payload["language"], "en");
}

fn status() -> impl Strategy<Value = InterviewStatus> {
    use InterviewStatus::*;
    prop::sample::select(vec![Created, Processing, Completed, Failed, Archived])
}

fn creation() -> impl Strategy<Value = Command> {
    (
        name(),
        nonblank_text(),
        nonblank_text(),
        proptest::option::of(prop::sample::select(vec![
            "en",
            "pt-BR",
            "he",
            "zh-Hant-TW",
        ])),
        proptest::option::of(0..4_000_000_000i64),
        json_object(),
    )
        .prop_map(|(project_id, title, source, language, secs, metadata)| {
            Command::CreateInterview(CreateInterview {
                project_id,
                title,
                source,
                language: language.map(String::from),
                started_at: secs.and_then(|s| chrono::DateTime::from_timestamp(s, 0)),
                metadata,
            })
        })
}

fn command() -> impl Strategy<Value = Command> {
    let change = (status(), proptest::option::of(text())).prop_map(|(to, reason)| {
        Command::ChangeInterviewStatus(ChangeInterviewStatus {
            to_status: to,
            reason,
        })
    });
    let update = (
        proptest::option::of(nonblank_text()),
        proptest::option::of(prop::sample::select(vec!["en", "de", "ar"])),
        json_object(),
    )
        .prop_map(|(title, language, metadata_diff)| {
            Command::UpdateInterviewMetadata(UpdateInterviewMetadata {
                title,
                language: language.map(String::from),
                metadata_diff,
            })
        });
    prop_oneof![1 => creation(), 4 => change, 3 => update]
}

proptest! {
    #[test]
    fn replaying_stored_events_gives_the_state_that_decided_them(
        first in creation(),
        rest in vec(command(), 0..24),
    ) {
        let commands: Vec<Command> = std::iter::once(first).chain(rest).collect();
        let accepted = conformance::check_replay_and_round_trip::<Interview>(&commands)?;
        prop_assert!(accepted >= 1, "the creation is always accepted");
    }
}
