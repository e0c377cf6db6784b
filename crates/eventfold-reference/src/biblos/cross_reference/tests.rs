//! Aggregate-level checks: state machine, command parsing, event metadata, replay property.

use eventfold_domain::{Aggregate, CommandError, DomainEvent, EventCategory, parse_command};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::json;

use super::fixtures::*;
use super::*;
use crate::conformance::{self, json_object, name, text};

#[test]
fn the_state_machine_agrees_with_decide_in_every_reachable_state() {
    conformance::assert_state_machine_agrees_with_decide::<CrossReference>(&samples(), 3);
}

#[test]
fn prints_its_state_machine_as_mermaid() {
    let m = CrossReference::state_machine().to_mermaid();
    assert!(m.contains("[*] --> Initial"), "{m}");
    assert!(
        m.contains("Initial --> Discovered: DiscoverCrossReference / CrossReferenceDiscovered"),
        "{m}"
    );
    assert!(
        m.contains("Rejected --> Validated: ValidateCrossReference / CrossReferenceValidated"),
        "{m}"
    );
}

#[test]
fn parses_a_discover_command_from_its_json_body() {
    let body = json!({
        "source_ref": "GEN.1.1",
        "target_ref": "JHN.1.1",
        "connection_type": "thematic",
        "initial_confidence": 0.5,
        "discovery_method": "embedding",
        "feature_vector": [0.25, -0.5],
        "semantic_similarity": 0.75
    });
    let command = parse_command::<CrossReference>("DiscoverCrossReference", body).unwrap();
    assert_eq!(command, Command::DiscoverCrossReference(discover()));
}

#[test]
fn a_missing_feature_vector_defaults_to_empty() {
    let body = json!({
        "source_ref": "GEN.1.1", "target_ref": "JHN.1.1", "connection_type": "thematic",
        "initial_confidence": 0.5, "discovery_method": "gnn", "semantic_similarity": 0.75
    });
    let Command::DiscoverCrossReference(c) =
        parse_command::<CrossReference>("DiscoverCrossReference", body).unwrap()
    else {
        panic!("wrong command")
    };
    assert!(c.feature_vector.is_empty());
}

#[test]
fn an_unknown_command_is_named_in_the_error() {
    assert_eq!(
        parse_command::<CrossReference>("DeleteCrossReference", json!({})),
        Err(CommandError::UnknownCommand {
            aggregate_type: "CrossReference",
            command: "DeleteCrossReference".into(),
        })
    );
}

#[track_caller]
fn invalid_body(name: &str, body: serde_json::Value) -> (String, String) {
    match parse_command::<CrossReference>(name, body) {
        Err(CommandError::InvalidBody { pointer, message }) => (pointer, message),
        other => panic!("expected InvalidBody, got {other:?}"),
    }
}

#[test]
fn a_wrong_field_type_names_the_field_as_a_json_pointer() {
    let mut body = serde_json::to_value(discover()).unwrap();
    body["initial_confidence"] = json!("high");
    let (pointer, _) = invalid_body("DiscoverCrossReference", body);
    assert_eq!(pointer, "/initial_confidence");
}

#[test]
fn a_wrong_type_inside_an_array_points_at_the_element() {
    let mut body = serde_json::to_value(discover()).unwrap();
    body["feature_vector"] = json!([0.1, "x"]);
    let (pointer, _) = invalid_body("DiscoverCrossReference", body);
    assert_eq!(pointer, "/feature_vector/1");
}

#[test]
fn a_key_with_a_slash_is_escaped_in_the_pointer() {
    let body = json!({
        "validator_agent": "v", "validation_result": "approved", "reasoning": "",
        "theological_checks": {"nicene/creed": "yes"}
    });
    let (pointer, _) = invalid_body("ValidateCrossReference", body);
    assert_eq!(pointer, "/theological_checks/nicene~1creed");
}

#[test]
fn a_body_that_is_not_an_object_points_at_the_whole_body() {
    let (pointer, _) = invalid_body("ValidateCrossReference", json!("approve it"));
    assert_eq!(pointer, "");
}

#[test]
fn an_unknown_validation_result_names_the_field() {
    let body = json!({
        "validator_agent": "v", "validation_result": "maybe", "reasoning": ""
    });
    let (pointer, _) = invalid_body("ValidateCrossReference", body);
    assert_eq!(pointer, "/validation_result");
}

#[test]
fn an_unknown_field_is_refused() {
    let mut body = serde_json::to_value(refine()).unwrap();
    body["cross_ref_id"] = json!("GEN.1.1:JHN.1.1");
    let (_, message) = invalid_body("RefineCrossReference", body);
    assert!(
        message.contains("unknown field `cross_ref_id`"),
        "{message}"
    );
}

#[test]
fn a_missing_field_is_refused() {
    let (_, message) = invalid_body(
        "ValidateCrossReference",
        json!({"validator_agent": "v", "validation_result": "approved"}),
    );
    assert!(message.contains("missing field `reasoning`"), "{message}");
}

#[test]
fn a_negative_fractal_depth_is_a_bad_body_not_a_rule() {
    let mut body = serde_json::to_value(identify()).unwrap();
    body["fractal_depth"] = json!(-1);
    let (pointer, _) = invalid_body("IdentifyTypologicalConnection", body);
    assert_eq!(pointer, "/fractal_depth");
}

#[test]
fn events_name_their_type_category_and_schema_version() {
    let cases = [
        (
            discovered(),
            "CrossReferenceDiscovered",
            EventCategory::Discovery,
        ),
        (
            validated(ValidationResult::Approved),
            "CrossReferenceValidated",
            EventCategory::Validation,
        ),
        (
            refined(0.5),
            "CrossReferenceRefined",
            EventCategory::Discovery,
        ),
        (
            identified(),
            "TypologicalConnectionIdentified",
            EventCategory::Oracle,
        ),
    ];
    for (event, name, category) in cases {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.category(), category);
        assert_eq!(event.schema_version(), 1);
        assert!(Event::TYPES.contains(&name));
    }
}

#[test]
fn a_validated_payload_has_exactly_the_seed_fields_plus_status() {
    let payload = serde_json::to_value(validated(ValidationResult::Approved)).unwrap();
    let mut keys: Vec<&str> = payload
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "confidence_after",
            "confidence_before",
            "cross_ref_id",
            "reasoning",
            "status",
            "theological_checks",
            "validation_result",
            "validator_agent",
        ]
    );
    assert_eq!(payload["validation_result"], "approved");
    assert_eq!(payload["status"], "validated");
}

#[test]
fn reading_an_unknown_event_type_is_an_error() {
    assert!(Event::from_payload("CrossReferenceDeleted", json!({})).is_err());
}

#[test]
fn reading_a_payload_that_lacks_a_field_is_an_error() {
    assert!(Event::from_payload("CrossReferenceRefined", json!({"cross_ref_id": "x"})).is_err());
}

fn verse() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["GEN.1.1", "JHN.1.1", "ROM.5.14"]).prop_map(String::from)
}

fn distinct_verses() -> impl Strategy<Value = (String, String)> {
    prop::sample::subsequence(vec!["GEN.1.1", "JHN.1.1", "ROM.5.14"], 2)
        .prop_shuffle()
        .prop_map(|v| (v[0].to_owned(), v[1].to_owned()))
}

fn discovery() -> impl Strategy<Value = Command> {
    (
        distinct_verses(),
        name(),
        0.0..=1.0f64,
        prop::sample::select(vec![
            DiscoveryMethod::Embedding,
            DiscoveryMethod::Gnn,
            DiscoveryMethod::Keyword,
            DiscoveryMethod::Agent,
        ]),
        vec(-1.0..1.0f64, 0..6),
        -1.0..=1.0f64,
    )
        .prop_map(|((s, t), ct, conf, method, fv, sim)| {
            Command::DiscoverCrossReference(DiscoverCrossReference {
                source_ref: s,
                target_ref: t,
                connection_type: ct,
                initial_confidence: conf,
                discovery_method: method,
                feature_vector: fv,
                semantic_similarity: sim,
            })
        })
}

fn command() -> impl Strategy<Value = Command> {
    let validation = (
        name(),
        prop::sample::select(vec![
            ValidationResult::Approved,
            ValidationResult::Rejected,
            ValidationResult::Modified,
            ValidationResult::Escalated,
        ]),
        text(),
        btree_map(name(), any::<bool>(), 0..5),
    )
        .prop_map(|(agent, result, reasoning, checks)| {
            Command::ValidateCrossReference(ValidateCrossReference {
                validator_agent: agent,
                validation_result: result,
                reasoning,
                theological_checks: checks,
            })
        });
    let refinement = (
        prop::sample::select(vec![
            RefinementType::MutualTransformation,
            RefinementType::Necessity,
            RefinementType::Typology,
        ]),
        name(),
        0.0..=1.0f64,
        json_object(),
    )
        .prop_map(|(kind, source, conf, enrichments)| {
            Command::RefineCrossReference(RefineCrossReference {
                refinement_type: kind,
                refinement_source: source,
                new_confidence: conf,
                enrichments,
            })
        });
    let typology = (
        verse(),
        verse(),
        name(),
        name(),
        0..=8u32,
        0.0..=1.0f64,
        btree_map(name(), 0.0..=1.0f64, 0..4),
    )
        .prop_map(|(t, a, layer, relation, depth, strength, layers)| {
            Command::IdentifyTypologicalConnection(IdentifyTypologicalConnection {
                type_ref: t,
                antitype_ref: a,
                typology_layer: layer,
                relation_type: relation,
                fractal_depth: depth,
                composite_strength: strength,
                layer_strengths: layers,
            })
        });
    prop_oneof![1 => discovery(), 6 => validation, 2 => refinement, 2 => typology]
}

proptest! {
    #[test]
    fn replaying_stored_events_gives_the_state_that_decided_them(
        first in discovery(),
        rest in vec(command(), 0..24),
    ) {
        let commands: Vec<Command> = std::iter::once(first).chain(rest).collect();
        let accepted = conformance::check_replay_and_round_trip::<CrossReference>(&commands)?;
        prop_assert!(accepted >= 1, "the discovery is always accepted");
    }
}
