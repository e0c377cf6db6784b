//! Aggregate-level checks: state machine, upcasting of v1 payloads, event metadata, replay property.

use eventfold_domain::{Aggregate, DomainEvent, StoredEventError, UpcastError, parse_command};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::json;

use super::fixtures::*;
use super::*;
use crate::conformance::{self, name, nonblank_text};

#[test]
fn the_state_machine_agrees_with_decide_in_every_reachable_state() {
    conformance::assert_state_machine_agrees_with_decide::<Opportunity>(&samples(), 4);
}

#[test]
fn prints_archival_as_the_end_of_its_mermaid_diagram() {
    let m = Opportunity::state_machine().to_mermaid();
    assert!(
        m.contains("Validated --> Archived: ArchiveOpportunity / OpportunityArchived"),
        "{m}"
    );
    assert!(!m.contains("Archived --> "), "{m}");
}

#[test]
fn reads_the_seed_v1_payload_as_the_seed_v2_event() {
    let v1 = json!({
        "opportunity_id": "123",
        "title": "AI Chatbot",
        "description": "",
        "ai_solution_type": "nlp",
        "market_size": 1000000
    });
    let event = Event::from_stored("OpportunityCreated", 1, v1).unwrap();
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({
            "opportunity_id": "123",
            "title": "AI Chatbot",
            "description": "",
            "ai_solution_type": "nlp",
            "market_size_estimate": 1000000,
            "ai_solution_category": "natural_language_processing",
            "confidence_score": 0.7
        })
    );
}

#[test]
fn derives_every_v1_category_by_the_documented_mapping() {
    let expected = [
        ("nlp", "natural_language_processing"),
        ("computer_vision", "computer_vision"),
        ("machine_learning", "predictive_analytics"),
        ("speech", "speech_and_audio"),
        ("robotics", "automation"),
    ];
    assert_eq!(
        expected.map(|(t, _)| t).as_slice(),
        V1_SOLUTION_TYPES,
        "every v1 symbol is mapped"
    );
    for (t, category) in expected {
        let v1 = json!({"opportunity_id": "1", "title": "t", "description": "d",
                        "ai_solution_type": t, "market_size": 5});
        let up = upcasters().upcast("OpportunityCreated", 1, v1).unwrap();
        assert_eq!(up["ai_solution_category"], category, "{t}");
    }
}

#[test]
fn renames_the_market_size_of_a_v1_update_and_leaves_the_confidence_unchanged() {
    let event = Event::from_stored(
        "OpportunityUpdated",
        1,
        json!({"title": null, "description": "new", "market_size": 42}),
    )
    .unwrap();
    let state = Opportunity::replay(&[created(), event]);
    assert_eq!(state.market_size_estimate, 42);
    assert_eq!(state.description, "new");
    assert_eq!(state.confidence_score, 0.8, "a v1 update never changed it");
}

#[test]
fn refuses_a_v1_solution_type_that_only_v2_knows() {
    let v1 = json!({"opportunity_id": "1", "title": "t", "description": "d",
                    "ai_solution_type": "generative_ai", "market_size": 5});
    match Event::from_stored("OpportunityCreated", 1, v1) {
        Err(StoredEventError::Upcast(UpcastError::Step { field, .. })) => {
            assert_eq!(field, "ai_solution_type")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn refuses_a_version_without_an_upcaster_path() {
    for version in [0, 3] {
        let err = Event::from_stored("OpportunityCreated", version, json!({})).unwrap_err();
        assert!(matches!(err, StoredEventError::Upcast(_)), "{err:?}");
        assert!(err.to_string().contains("OpportunityCreated"), "{err}");
    }
}

#[test]
fn events_name_their_type_category_and_latest_schema_version() {
    let update = Event::OpportunityUpdated(OpportunityUpdated {
        title: Some("x".into()),
        description: None,
        market_size_estimate: None,
        confidence_score: None,
    });
    for (event, name, version) in [
        (created(), "OpportunityCreated", 2),
        (update, "OpportunityUpdated", 2),
        (validated(0.5), "OpportunityValidated", 1),
        (archived(), "OpportunityArchived", 1),
    ] {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.category(), EventCategory::Domain);
        assert_eq!(event.schema_version(), version, "{name}");
    }
}

#[test]
fn parses_a_create_command_and_names_an_unknown_solution_type() {
    let body = json!({"opportunity_id": "123", "title": "AI Chatbot",
        "description": "Answers support tickets", "ai_solution_type": "nlp",
        "market_size_estimate": 1000000, "confidence_score": 0.8});
    assert_eq!(
        parse_command::<Opportunity>("CreateOpportunity", body.clone()).unwrap(),
        Command::CreateOpportunity(create())
    );
    let mut bad = body;
    bad["ai_solution_type"] = json!("telepathy");
    match parse_command::<Opportunity>("CreateOpportunity", bad) {
        Err(eventfold_domain::CommandError::InvalidBody { pointer, .. }) => {
            assert_eq!(pointer, "/ai_solution_type")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reads_an_integral_float_as_the_integer_json_schema_says_it_is() {
    let body = json!({"opportunity_id": "123", "title": "AI Chatbot",
        "description": "Answers support tickets", "ai_solution_type": "nlp",
        "market_size_estimate": 1000000.0, "confidence_score": 0.8});
    assert_eq!(
        parse_command::<Opportunity>("CreateOpportunity", body.clone()).unwrap(),
        Command::CreateOpportunity(create())
    );
    for bad in [json!(1000000.5), json!(-1.0), json!(1e20)] {
        let mut body = body.clone();
        body["market_size_estimate"] = bad;
        match parse_command::<Opportunity>("CreateOpportunity", body) {
            Err(eventfold_domain::CommandError::InvalidBody { pointer, .. }) => {
                assert_eq!(pointer, "/market_size_estimate")
            }
            other => panic!("{other:?}"),
        }
    }
}

fn solution_type() -> impl Strategy<Value = AiSolutionType> {
    prop::sample::select(AiSolutionType::ALL.to_vec())
}

fn command() -> impl Strategy<Value = Command> {
    let create = (
        name(),
        nonblank_text(),
        solution_type(),
        0..1_000_000_000u64,
        proptest::option::of(0.0..=1.0f64),
    )
        .prop_map(|(id, title, t, size, score)| {
            Command::CreateOpportunity(CreateOpportunity {
                opportunity_id: id,
                title,
                description: String::new(),
                ai_solution_type: t,
                market_size_estimate: size,
                confidence_score: score,
            })
        });
    let update = (
        proptest::option::of(nonblank_text()),
        proptest::option::of(0..1_000_000u64),
    )
        .prop_map(|(title, size)| {
            Command::UpdateOpportunity(UpdateOpportunity {
                title,
                market_size_estimate: size,
                ..Default::default()
            })
        });
    let validate = (0.0..=1.0f64).prop_map(|s| Command::ValidateOpportunity(validate(s)));
    prop_oneof![1 => create, 3 => update, 3 => validate, 1 => Just(Command::ArchiveOpportunity(archive()))]
}

proptest! {
    #[test]
    fn replaying_stored_events_gives_the_state_that_decided_them(commands in vec(command(), 1..16)) {
        conformance::check_replay_and_round_trip::<Opportunity>(&commands)?;
    }
}
