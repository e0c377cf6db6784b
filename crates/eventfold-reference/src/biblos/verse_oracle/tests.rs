//! Given-when-then tests of every command, its rules, and aggregate-level checks.

use eventfold_domain::testing::given;
use eventfold_domain::{Aggregate, DomainEvent, EventCategory, parse_command};
use proptest::prelude::*;
use serde_json::json;

use super::fixtures::*;
use super::*;
use crate::conformance;

fn rule(given_events: Vec<Event>, c: Command) -> &'static str {
    given::<VerseOracle>(given_events)
        .when(c)
        .outcome()
        .expect_err("expected a rule error")
        .code()
}

#[test]
fn the_state_machine_agrees_with_decide_in_every_reachable_state() {
    conformance::assert_state_machine_agrees_with_decide::<VerseOracle>(&samples(), 3);
}

#[test]
fn calculates_a_necessity_on_a_new_verse() {
    let state = given::<VerseOracle>([])
        .when(Command::CalculateNecessity(calculate()))
        .then([calculated()]);
    assert_eq!(state.state_name(), "Recorded");
    assert_eq!(state.verse_id.as_deref(), Some("ISA.7.14"));
    assert_eq!(state.necessities["MAT.1.23"].necessity_score, 0.87);
}

#[test]
fn a_recalculated_necessity_replaces_the_earlier_one_for_that_target() {
    let c = CalculateNecessity {
        necessity_score: 0.5,
        ..calculate()
    };
    let state = given::<VerseOracle>([calculated()])
        .when(Command::CalculateNecessity(c.clone()))
        .then([Event::NecessityCalculated(NecessityCalculated {
            source_verse: c.source_verse,
            target_verse: c.target_verse,
            necessity_score: 0.5,
            necessity_type: c.necessity_type,
            necessity_strength: c.necessity_strength,
            semantic_gaps_filled: c.semantic_gaps_filled,
            presuppositions_detected: c.presuppositions_detected,
        })]);
    assert_eq!(state.necessities.len(), 1);
    assert_eq!(state.necessities["MAT.1.23"].necessity_score, 0.5);
}

#[test]
fn detects_an_lxx_divergence_after_a_necessity() {
    let state = given::<VerseOracle>([calculated()])
        .when(Command::DetectLXXDivergence(detect()))
        .then([detected()]);
    assert_eq!(state.lxx_divergences["lexical"].lxx_reading, "ἡ παρθένος");
}

#[test]
fn computes_a_prophetic_proof_on_a_new_verse_without_fixing_the_verse() {
    let state = given::<VerseOracle>([])
        .when(Command::ComputePropheticProof(compute()))
        .then([computed()]);
    assert_eq!(state.state_name(), "Recorded");
    assert_eq!(state.verse_id, None);
    assert_eq!(state.prophetic_proof.unwrap().bayes_factor, 98_901.0);
}

#[test]
fn a_recomputed_proof_replaces_the_earlier_one() {
    let c = ComputePropheticProof {
        prophecy_ids: vec!["ISA.7.14".into()],
        ..compute()
    };
    let Event::PropheticProofComputed(earlier) = computed() else {
        unreachable!()
    };
    let state = given::<VerseOracle>([detected(), computed()])
        .when(Command::ComputePropheticProof(c))
        .then([Event::PropheticProofComputed(PropheticProofComputed {
            prophecy_ids: vec!["ISA.7.14".into()],
            ..earlier
        })]);
    assert_eq!(state.prophetic_proof.unwrap().prophecy_ids, ["ISA.7.14"]);
    assert_eq!(state.verse_id.as_deref(), Some("ISA.7.14"));
}

#[test]
fn refuses_a_necessity_from_another_verse_than_the_oracles() {
    let c = CalculateNecessity {
        source_verse: "MIC.5.2".into(),
        ..calculate()
    };
    assert_eq!(
        rule(vec![detected()], Command::CalculateNecessity(c)),
        "verse_mismatch"
    );
}

#[test]
fn refuses_a_divergence_of_another_verse_than_the_oracles() {
    let c = DetectLXXDivergence {
        verse_id: "MIC.5.2".into(),
        ..detect()
    };
    assert_eq!(
        rule(vec![calculated()], Command::DetectLXXDivergence(c)),
        "verse_mismatch"
    );
}

#[test]
fn refuses_a_verse_necessitating_itself() {
    let c = CalculateNecessity {
        target_verse: "ISA.7.14".into(),
        ..calculate()
    };
    assert_eq!(
        rule(vec![], Command::CalculateNecessity(c)),
        "self_reference"
    );
}

#[test]
fn refuses_a_necessity_score_above_one() {
    let c = CalculateNecessity {
        necessity_score: 1.5,
        ..calculate()
    };
    assert_eq!(
        rule(vec![], Command::CalculateNecessity(c)),
        "confidence_out_of_range"
    );
}

#[test]
fn refuses_a_nan_necessity_score() {
    let c = CalculateNecessity {
        necessity_score: f64::NAN,
        ..calculate()
    };
    assert_eq!(
        rule(vec![], Command::CalculateNecessity(c)),
        "non_finite_number"
    );
}

#[test]
fn refuses_an_empty_presupposition_and_an_empty_target() {
    let c = CalculateNecessity {
        presuppositions_detected: vec![String::new()],
        ..calculate()
    };
    assert_eq!(rule(vec![], Command::CalculateNecessity(c)), "empty_field");
    let c = CalculateNecessity {
        target_verse: " ".into(),
        ..calculate()
    };
    assert_eq!(rule(vec![], Command::CalculateNecessity(c)), "empty_field");
}

#[test]
fn refuses_identical_readings() {
    let c = DetectLXXDivergence {
        mt_reading: "ἡ παρθένος".into(),
        ..detect()
    };
    assert_eq!(
        rule(vec![], Command::DetectLXXDivergence(c)),
        "readings_identical"
    );
}

#[test]
fn refuses_a_manuscript_confidence_below_zero() {
    let c = DetectLXXDivergence {
        manuscript_confidence: -0.01,
        ..detect()
    };
    assert_eq!(
        rule(vec![], Command::DetectLXXDivergence(c)),
        "confidence_out_of_range"
    );
}

#[test]
fn refuses_a_nul_in_the_christological_category() {
    let c = DetectLXXDivergence {
        christological_category: Some("a\u{0}".into()),
        ..detect()
    };
    assert_eq!(
        rule(vec![], Command::DetectLXXDivergence(c)),
        "nul_in_string"
    );
}

#[test]
fn refuses_a_proof_without_prophecies() {
    let c = ComputePropheticProof {
        prophecy_ids: vec![],
        ..compute()
    };
    assert_eq!(
        rule(vec![], Command::ComputePropheticProof(c)),
        "no_prophecies"
    );
}

#[test]
fn refuses_a_prophecy_named_twice() {
    let c = ComputePropheticProof {
        prophecy_ids: vec!["MIC.5.2".into(), "MIC.5.2".into()],
        ..compute()
    };
    assert_eq!(
        rule(vec![], Command::ComputePropheticProof(c)),
        "duplicate_prophecy_id"
    );
}

#[test]
fn refuses_probabilities_outside_zero_to_one_and_a_positive_log() {
    for c in [
        ComputePropheticProof {
            compound_probability: 1.1,
            ..compute()
        },
        ComputePropheticProof {
            log_probability: 0.5,
            ..compute()
        },
        ComputePropheticProof {
            bayesian_posterior: -0.1,
            ..compute()
        },
        ComputePropheticProof {
            prior_used: 2.0,
            ..compute()
        },
    ] {
        assert_eq!(
            rule(vec![], Command::ComputePropheticProof(c)),
            "probability_out_of_range"
        );
    }
}

#[test]
fn refuses_a_negative_or_infinite_bayes_factor() {
    let c = ComputePropheticProof {
        bayes_factor: -1.0,
        ..compute()
    };
    assert_eq!(
        rule(vec![], Command::ComputePropheticProof(c)),
        "bayes_factor_out_of_range"
    );
    let c = ComputePropheticProof {
        bayes_factor: f64::INFINITY,
        ..compute()
    };
    assert_eq!(
        rule(vec![], Command::ComputePropheticProof(c)),
        "non_finite_number"
    );
}

#[test]
fn refuses_a_blank_interpretation() {
    let c = ComputePropheticProof {
        interpretation: String::new(),
        ..compute()
    };
    assert_eq!(
        rule(vec![], Command::ComputePropheticProof(c)),
        "empty_field"
    );
}

#[test]
fn parses_commands_from_their_json_bodies_and_refuses_unknown_fields() {
    let body = serde_json::to_value(detect()).unwrap();
    assert_eq!(
        parse_command::<VerseOracle>("DetectLXXDivergence", body).unwrap(),
        Command::DetectLXXDivergence(detect())
    );
    let mut body = serde_json::to_value(compute()).unwrap();
    body["verse_id"] = json!("ISA.7.14");
    assert!(parse_command::<VerseOracle>("ComputePropheticProof", body).is_err());
}

#[test]
fn events_name_their_type_the_oracle_category_and_schema_version_one() {
    for (event, name) in [
        (calculated(), "NecessityCalculated"),
        (detected(), "LXXDivergenceDetected"),
        (computed(), "PropheticProofComputed"),
    ] {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.category(), EventCategory::Oracle);
        assert_eq!(event.schema_version(), 1);
        let payload = serde_json::to_value(&event).unwrap();
        assert_eq!(Event::from_payload(name, payload).unwrap(), event);
    }
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (
            0.0..=1.0f64,
            prop::sample::select(vec!["MAT.1.23", "LUK.1.31", "ISA.7.14"])
        )
            .prop_map(
                |(score, target)| Command::CalculateNecessity(CalculateNecessity {
                    necessity_score: score,
                    target_verse: target.into(),
                    ..calculate()
                })
            ),
        (
            0.0..=1.0f64,
            prop::sample::select(vec!["lexical", "syntactic"])
        )
            .prop_map(|(confidence, kind)| Command::DetectLXXDivergence(
                DetectLXXDivergence {
                    manuscript_confidence: confidence,
                    divergence_type: kind.into(),
                    ..detect()
                }
            )),
        (0.0..=1.0f64).prop_map(|p| Command::ComputePropheticProof(ComputePropheticProof {
            compound_probability: p,
            ..compute()
        })),
    ]
}

proptest! {
    #[test]
    fn replaying_stored_events_gives_the_state_that_decided_them(
        commands in prop::collection::vec(command(), 1..24),
    ) {
        conformance::check_replay_and_round_trip::<VerseOracle>(&commands)?;
    }
}
