//! Sample commands and events shared by the verse oracle tests.

use super::*;

pub(super) fn calculate() -> CalculateNecessity {
    CalculateNecessity {
        source_verse: "ISA.7.14".into(),
        target_verse: "MAT.1.23".into(),
        necessity_score: 0.87,
        necessity_type: "presuppositional".into(),
        necessity_strength: "strong".into(),
        semantic_gaps_filled: 3,
        presuppositions_detected: vec!["virgin_birth".into(), "immanuel".into()],
    }
}

pub(super) fn calculated() -> Event {
    let c = calculate();
    Event::NecessityCalculated(NecessityCalculated {
        source_verse: c.source_verse,
        target_verse: c.target_verse,
        necessity_score: c.necessity_score,
        necessity_type: c.necessity_type,
        necessity_strength: c.necessity_strength,
        semantic_gaps_filled: c.semantic_gaps_filled,
        presuppositions_detected: c.presuppositions_detected,
    })
}

pub(super) fn detect() -> DetectLXXDivergence {
    DetectLXXDivergence {
        verse_id: "ISA.7.14".into(),
        divergence_type: "lexical".into(),
        lxx_reading: "ἡ παρθένος".into(),
        mt_reading: "הָעַלְמָה".into(),
        christological_category: Some("virgin_birth".into()),
        oldest_witness: "Codex Vaticanus".into(),
        manuscript_confidence: 0.95,
    }
}

pub(super) fn detected() -> Event {
    let c = detect();
    Event::LXXDivergenceDetected(LXXDivergenceDetected {
        verse_id: c.verse_id,
        divergence_type: c.divergence_type,
        lxx_reading: c.lxx_reading,
        mt_reading: c.mt_reading,
        christological_category: c.christological_category,
        oldest_witness: c.oldest_witness,
        manuscript_confidence: c.manuscript_confidence,
    })
}

pub(super) fn compute() -> ComputePropheticProof {
    ComputePropheticProof {
        prophecy_ids: vec!["ISA.7.14".into(), "MIC.5.2".into()],
        compound_probability: 1e-6,
        log_probability: -13.815_510_557_964_274,
        bayesian_posterior: 0.999,
        prior_used: 0.01,
        bayes_factor: 98_901.0,
        interpretation: "far beyond chance".into(),
    }
}

pub(super) fn computed() -> Event {
    let c = compute();
    Event::PropheticProofComputed(PropheticProofComputed {
        prophecy_ids: c.prophecy_ids,
        compound_probability: c.compound_probability,
        log_probability: c.log_probability,
        bayesian_posterior: c.bayesian_posterior,
        prior_used: c.prior_used,
        bayes_factor: c.bayes_factor,
        interpretation: c.interpretation,
    })
}

/// One command of each kind, for the state machine conformance check.
pub(super) fn samples() -> Vec<Command> {
    vec![
        Command::CalculateNecessity(calculate()),
        Command::DetectLXXDivergence(detect()),
        Command::ComputePropheticProof(compute()),
    ]
}
