//! Aggregate-level checks: state machine, command parsing, event metadata, replay property.

use eventfold_domain::{Aggregate, CommandError, DomainEvent, EventCategory, parse_command};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::json;

use super::fixtures::*;
use super::*;
use crate::conformance::{self, json_object, name, nonblank_text, text};

#[test]
fn the_state_machine_agrees_with_decide_in_every_reachable_state() {
    conformance::assert_state_machine_agrees_with_decide::<VerseProcessing>(&samples(), 4);
}

#[test]
fn prints_the_retry_loop_in_its_mermaid_diagram() {
    let m = VerseProcessing::state_machine().to_mermaid();
    assert!(
        m.contains("Failed --> Processing: RetryVerseProcessing / VerseProcessingStarted"),
        "{m}"
    );
}

#[test]
fn parses_a_start_command_from_its_json_body() {
    let body = json!({
        "verse_id": "GEN.1.1", "book": "GEN", "chapter": 1, "verse": 1,
        "text_content": "In the beginning God created the heaven and the earth.",
        "phase": "linguistic"
    });
    assert_eq!(
        parse_command::<VerseProcessing>("StartVerseProcessing", body).unwrap(),
        Command::StartVerseProcessing(start(Phase::Linguistic))
    );
}

#[test]
fn a_failure_is_retryable_unless_it_says_otherwise() {
    let body = json!({"phase": "linguistic", "error_type": "E", "error_message": "m"});
    let Command::FailVerseProcessing(c) =
        parse_command::<VerseProcessing>("FailVerseProcessing", body).unwrap()
    else {
        panic!("wrong command")
    };
    assert!(c.retryable);
    assert_eq!(c.stack_trace, None);
}

#[test]
fn a_retry_takes_an_empty_object_and_nothing_else() {
    assert!(parse_command::<VerseProcessing>("RetryVerseProcessing", json!({})).is_ok());
    assert!(matches!(
        parse_command::<VerseProcessing>("RetryVerseProcessing", json!({"attempt": 2})),
        Err(CommandError::InvalidBody { .. })
    ));
}

#[test]
fn an_unknown_command_is_named_in_the_error() {
    assert_eq!(
        parse_command::<VerseProcessing>("PauseVerseProcessing", json!({})),
        Err(CommandError::UnknownCommand {
            aggregate_type: "VerseProcessing",
            command: "PauseVerseProcessing".into(),
        })
    );
}

#[test]
fn a_chapter_that_overflows_its_integer_names_the_field() {
    let mut body = serde_json::to_value(start(Phase::Linguistic)).unwrap();
    body["chapter"] = json!(4_294_967_296u64);
    match parse_command::<VerseProcessing>("StartVerseProcessing", body) {
        Err(CommandError::InvalidBody { pointer, .. }) => assert_eq!(pointer, "/chapter"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unknown_phase_names_the_field() {
    let body = json!({"phase": "mystical", "duration_ms": 1, "quality_score": 0.5});
    match parse_command::<VerseProcessing>("CompleteVerseProcessing", body) {
        Err(CommandError::InvalidBody { pointer, .. }) => assert_eq!(pointer, "/phase"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn events_name_their_type_category_and_schema_version() {
    for (event, name) in [
        (started(Phase::Linguistic, 1), "VerseProcessingStarted"),
        (completed(Phase::Linguistic), "VerseProcessingCompleted"),
        (failed(Phase::Linguistic, 0), "VerseProcessingFailed"),
    ] {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.category(), EventCategory::Processing);
        assert_eq!(event.schema_version(), 1);
    }
}

#[test]
fn a_failed_payload_carries_the_seed_fields() {
    let payload = serde_json::to_value(failed(Phase::Validation, 2)).unwrap();
    assert_eq!(
        payload,
        json!({
            "verse_id": "GEN.1.1", "phase": "validation", "error_type": "TimeoutError",
            "error_message": "agent did not answer within 30 s",
            "stack_trace": "at agents/theology.py:42", "retry_count": 2, "will_retry": true
        })
    );
}

#[test]
fn a_state_snapshot_keeps_completed_phases_by_name() {
    let state =
        VerseProcessing::replay(&[started(Phase::Linguistic, 1), completed(Phase::Linguistic)]);
    let snapshot = serde_json::to_value(&state).unwrap();
    assert_eq!(
        snapshot["completed_phases"],
        json!({"linguistic": {"duration_ms": 1250, "quality_score": 0.92}})
    );
    assert_eq!(
        serde_json::from_value::<VerseProcessing>(snapshot).unwrap(),
        state
    );
}

fn phase() -> impl Strategy<Value = Phase> {
    prop::sample::select(vec![
        Phase::Linguistic,
        Phase::Theological,
        Phase::Intertextual,
        Phase::Validation,
    ])
}

/// Mostly one phase, so completions and failures usually name the running one.
fn likely_phase() -> impl Strategy<Value = Phase> {
    prop_oneof![4 => Just(Phase::Linguistic), 1 => phase()]
}

fn starting() -> impl Strategy<Value = Command> {
    (likely_phase(), nonblank_text()).prop_map(|(phase, text)| {
        Command::StartVerseProcessing(StartVerseProcessing {
            text_content: text,
            ..start(phase)
        })
    })
}

fn command() -> impl Strategy<Value = Command> {
    let completion = (
        likely_phase(),
        0..10_000_000u64,
        btree_map(name(), json_object(), 0..3),
        0.0..=1.0f64,
    )
        .prop_map(|(phase, duration_ms, agent_results, quality_score)| {
            Command::CompleteVerseProcessing(CompleteVerseProcessing {
                phase,
                duration_ms,
                agent_results,
                quality_score,
            })
        });
    let failure = (
        likely_phase(),
        name(),
        nonblank_text(),
        proptest::option::of(text()),
        any::<bool>(),
    )
        .prop_map(
            |(phase, error_type, error_message, stack_trace, retryable)| {
                Command::FailVerseProcessing(FailVerseProcessing {
                    phase,
                    error_type,
                    error_message,
                    stack_trace,
                    retryable,
                })
            },
        );
    prop_oneof![
        2 => starting(),
        3 => completion,
        3 => failure,
        3 => Just(Command::RetryVerseProcessing(RetryVerseProcessing {})),
    ]
}

proptest! {
    #[test]
    fn replaying_stored_events_gives_the_state_that_decided_them(
        first in starting(),
        rest in vec(command(), 0..48),
    ) {
        let commands: Vec<Command> = std::iter::once(first).chain(rest).collect();
        let accepted = conformance::check_replay_and_round_trip::<VerseProcessing>(&commands)?;
        prop_assert!(accepted >= 1, "the first start is always accepted");
    }

    #[test]
    fn retry_count_is_the_number_of_retries_since_the_phase_started(
        failures in 1..8usize,
    ) {
        let mut state = VerseProcessing::default();
        let mut script = vec![Command::StartVerseProcessing(start(Phase::Intertextual))];
        for _ in 1..failures {
            script.push(Command::FailVerseProcessing(fail(Phase::Intertextual)));
            script.push(Command::RetryVerseProcessing(RetryVerseProcessing {}));
        }
        script.push(Command::FailVerseProcessing(fail(Phase::Intertextual)));
        let mut last = None;
        for c in &script {
            for e in state.decide(c).unwrap() {
                state = state.apply(&e);
                last = Some(e);
            }
        }
        let Some(Event::VerseProcessingFailed(e)) = last else { panic!("{last:?}") };
        let retries = failures as u32 - 1;
        prop_assert_eq!(e.retry_count, retries);
        prop_assert_eq!(e.will_retry, retries < MAX_AUTOMATIC_RETRIES);
    }
}
