//! Aggregate-level checks: state machine, command parsing, event metadata, replay and override
//! properties.

use std::collections::BTreeMap;

use eventfold_domain::{Aggregate, CommandError, DomainEvent, EventCategory, parse_command};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::fixtures::*;
use super::*;
use crate::conformance::{self, json_object, name, nonblank_text, text};

#[test]
fn the_state_machine_agrees_with_decide_in_every_reachable_state() {
    conformance::assert_state_machine_agrees_with_decide::<Sentence>(&samples(), 4);
}

#[test]
fn prints_both_ways_out_of_an_override_in_its_mermaid_diagram() {
    let m = Sentence::state_machine().to_mermaid();
    assert!(
        m.contains("Overridden --> Analyzed: ClearAnalysisOverride / AnalysisCleared"),
        "{m}"
    );
    assert!(
        m.contains("Overridden --> Created: ClearAnalysisOverride / AnalysisCleared"),
        "{m}"
    );
}

#[test]
fn parses_an_override_from_its_json_body() {
    let body = json!({
        "fields_overridden": {"function_type": "interrogative"},
        "note": "it is asked, not stated"
    });
    assert_eq!(
        parse_command::<Sentence>("OverrideAnalysis", body).unwrap(),
        Command::OverrideAnalysis(override_function_type())
    );
}

#[test]
fn an_edit_defaults_to_a_human_editor() {
    let Command::EditSentence(c) =
        parse_command::<Sentence>("EditSentence", json!({"new_text": "x"})).unwrap()
    else {
        panic!("wrong command")
    };
    assert_eq!(c.editor_type, EditorType::Human);
}

#[test]
fn a_clear_takes_an_empty_object() {
    assert_eq!(
        parse_command::<Sentence>("ClearAnalysisOverride", json!({})).unwrap(),
        Command::ClearAnalysisOverride(ClearAnalysisOverride { reason: None })
    );
}

#[test]
fn a_negative_index_names_the_field() {
    let mut body = serde_json::to_value(create()).unwrap();
    body["index"] = json!(-1);
    match parse_command::<Sentence>("CreateSentence", body) {
        Err(CommandError::InvalidBody { pointer, .. }) => assert_eq!(pointer, "/index"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_keyword_of_the_wrong_type_points_at_the_element() {
    let mut body = serde_json::to_value(generate("gpt-4o")).unwrap();
    body["keywords"] = json!(["ok", 7]);
    match parse_command::<Sentence>("GenerateAnalysis", body) {
        Err(CommandError::InvalidBody { pointer, .. }) => assert_eq!(pointer, "/keywords/1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unknown_field_is_refused() {
    assert!(matches!(
        parse_command::<Sentence>("EditSentence", json!({"new_text": "x", "old_text": "y"})),
        Err(CommandError::InvalidBody { .. })
    ));
}

#[test]
fn an_unknown_command_is_named_in_the_error() {
    assert_eq!(
        parse_command::<Sentence>("DeleteSentence", json!({})),
        Err(CommandError::UnknownCommand {
            aggregate_type: "Sentence",
            command: "DeleteSentence".into(),
        })
    );
}

#[test]
fn events_name_their_type_category_and_schema_version() {
    let cleared = Event::AnalysisCleared(AnalysisCleared { reason: None });
    for (event, name) in [
        (created(), "SentenceCreated"),
        (
            Event::SentenceEdited(SentenceEdited {
                old_text: "a".into(),
                new_text: "b".into(),
                editor_type: EditorType::Ai,
            }),
            "SentenceEdited",
        ),
        (generated("gpt-4o"), "AnalysisGenerated"),
        (overridden(), "AnalysisOverridden"),
        (cleared, "AnalysisCleared"),
    ] {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.category(), EventCategory::Domain);
        assert_eq!(event.schema_version(), 1);
    }
}

#[test]
fn a_cleared_payload_with_no_reason_reads_back_as_cleared() {
    let payload =
        serde_json::to_value(Event::AnalysisCleared(AnalysisCleared { reason: None })).unwrap();
    assert_eq!(payload, json!({"reason": null}));
    assert_eq!(
        Event::from_payload("AnalysisCleared", payload).unwrap(),
        Event::AnalysisCleared(AnalysisCleared { reason: None })
    );
}

fn creation() -> impl Strategy<Value = Command> {
    (
        name(),
        0..10_000u32,
        nonblank_text(),
        proptest::option::of(name()),
        proptest::option::of((0..1_000_000u64, 0..100_000u64)),
    )
        .prop_map(|(interview_id, index, text, speaker, span)| {
            Command::CreateSentence(CreateSentence {
                interview_id,
                index,
                text,
                speaker,
                start_ms: span.map(|(s, _)| s),
                end_ms: span.map(|(s, d)| s + d),
            })
        })
}

fn override_() -> impl Strategy<Value = Command> {
    (json_object(), proptest::option::of(text())).prop_map(|(fields_overridden, note)| {
        Command::OverrideAnalysis(OverrideAnalysis {
            fields_overridden,
            note,
        })
    })
}

fn command() -> impl Strategy<Value = Command> {
    let edit = (
        nonblank_text(),
        prop::sample::select(vec![EditorType::Human, EditorType::Ai]),
    )
        .prop_map(|(new_text, editor_type)| {
            Command::EditSentence(EditSentence {
                new_text,
                editor_type,
            })
        });
    let analysis = (
        name(),
        name(),
        json_object(),
        vec(name(), 0..4),
        vec(name(), 0..3),
        vec(name(), 0..3),
        proptest::option::of(0.0..=1.0f64),
        proptest::option::of(text()),
    )
        .prop_map(
            |(
                model,
                model_version,
                classification,
                keywords,
                topics,
                domain_keywords,
                confidence,
                raw_ref,
            )| {
                Command::GenerateAnalysis(GenerateAnalysis {
                    model,
                    model_version,
                    classification,
                    keywords,
                    topics,
                    domain_keywords,
                    confidence,
                    raw_ref,
                })
            },
        );
    let clear = proptest::option::of(text())
        .prop_map(|reason| Command::ClearAnalysisOverride(ClearAnalysisOverride { reason }));
    prop_oneof![
        1 => creation(),
        2 => edit,
        4 => analysis,
        3 => override_(),
        2 => clear,
    ]
}

proptest! {
    #[test]
    fn replaying_stored_events_gives_the_state_that_decided_them(
        first in creation(),
        rest in vec(command(), 0..32),
    ) {
        let commands: Vec<Command> = std::iter::once(first).chain(rest).collect();
        let accepted = conformance::check_replay_and_round_trip::<Sentence>(&commands)?;
        prop_assert!(accepted >= 1, "the creation is always accepted");
    }

    #[test]
    fn an_override_wins_over_every_later_machine_analysis_until_cleared(
        first in creation(),
        rest in vec(command(), 0..32),
    ) {
        // A model of the rule: the user's latest value per field, forgotten on clear.
        let mut expected: BTreeMap<String, Value> = BTreeMap::new();
        let mut state = Sentence::default();
        for command in std::iter::once(first).chain(rest) {
            let Ok(events) = state.decide(&command) else { continue };
            state = events.iter().fold(state, |s, e| s.apply(e));
            match &command {
                Command::OverrideAnalysis(c) => expected.extend(c.fields_overridden.clone()),
                Command::ClearAnalysisOverride(_) => expected.clear(),
                _ => {}
            }
            let view = state.effective_analysis();
            for (field, value) in &expected {
                prop_assert_eq!(view.get(field), Some(value), "field {}", field);
            }
        }
    }
}
