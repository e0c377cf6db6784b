//! Sample commands and events shared by the cross-reference tests.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;

pub(super) fn discover() -> DiscoverCrossReference {
    DiscoverCrossReference {
        source_ref: "GEN.1.1".into(),
        target_ref: "JHN.1.1".into(),
        connection_type: "thematic".into(),
        initial_confidence: 0.5,
        discovery_method: DiscoveryMethod::Embedding,
        feature_vector: vec![0.25, -0.5],
        semantic_similarity: 0.75,
    }
}

pub(super) fn discovered() -> Event {
    let c = discover();
    Event::CrossReferenceDiscovered(CrossReferenceDiscovered {
        source_ref: c.source_ref,
        target_ref: c.target_ref,
        connection_type: c.connection_type,
        initial_confidence: c.initial_confidence,
        discovery_method: c.discovery_method,
        feature_vector: c.feature_vector,
        semantic_similarity: c.semantic_similarity,
    })
}

pub(super) fn validate(result: ValidationResult) -> ValidateCrossReference {
    ValidateCrossReference {
        validator_agent: "theological_validator".into(),
        validation_result: result,
        reasoning: "In the beginning: the same creative Word".into(),
        theological_checks: BTreeMap::new(),
    }
}

pub(super) fn validated_event(
    before: f64,
    after: f64,
    result: ValidationResult,
    status: CrossReferenceStatus,
) -> Event {
    let c = validate(result);
    Event::CrossReferenceValidated(CrossReferenceValidated {
        cross_ref_id: "GEN.1.1:JHN.1.1".into(),
        validator_agent: c.validator_agent,
        validation_result: result,
        confidence_before: before,
        confidence_after: after,
        reasoning: c.reasoning,
        theological_checks: c.theological_checks,
        status,
    })
}

/// The event a first validation with `result` emits right after [`discovered`].
pub(super) fn validated(result: ValidationResult) -> Event {
    let status = match result {
        ValidationResult::Approved => CrossReferenceStatus::Validated,
        ValidationResult::Rejected => CrossReferenceStatus::Rejected,
        _ => CrossReferenceStatus::Discovered,
    };
    validated_event(
        0.5,
        confidence_after(0.5, result, &BTreeMap::new()),
        result,
        status,
    )
}

pub(super) fn refine() -> RefineCrossReference {
    RefineCrossReference {
        refinement_type: RefinementType::Necessity,
        refinement_source: "necessity_calculator".into(),
        new_confidence: 0.8,
        enrichments: json!({"necessity_score": 0.9, "gaps_filled": 2})
            .as_object()
            .unwrap()
            .clone(),
    }
}

pub(super) fn refined(old_confidence: f64) -> Event {
    let c = refine();
    Event::CrossReferenceRefined(CrossReferenceRefined {
        cross_ref_id: "GEN.1.1:JHN.1.1".into(),
        refinement_type: c.refinement_type,
        refinement_source: c.refinement_source,
        old_confidence,
        new_confidence: c.new_confidence,
        enrichments: c.enrichments,
    })
}

pub(super) fn identify() -> IdentifyTypologicalConnection {
    IdentifyTypologicalConnection {
        type_ref: "GEN.1.1".into(),
        antitype_ref: "JHN.1.1".into(),
        typology_layer: "christological".into(),
        relation_type: "prefiguration".into(),
        fractal_depth: 3,
        composite_strength: 0.7,
        layer_strengths: BTreeMap::from([("literal".to_owned(), 0.6), ("moral".to_owned(), 0.8)]),
    }
}

pub(super) fn identified() -> Event {
    let c = identify();
    Event::TypologicalConnectionIdentified(TypologicalConnectionIdentified {
        type_ref: c.type_ref,
        antitype_ref: c.antitype_ref,
        typology_layer: c.typology_layer,
        relation_type: c.relation_type,
        fractal_depth: c.fractal_depth,
        composite_strength: c.composite_strength,
        layer_strengths: c.layer_strengths,
    })
}

/// One representative command of each kind (every validation result), for the state machine check.
pub(super) fn samples() -> Vec<Command> {
    vec![
        Command::DiscoverCrossReference(discover()),
        Command::ValidateCrossReference(validate(ValidationResult::Approved)),
        Command::ValidateCrossReference(validate(ValidationResult::Rejected)),
        Command::ValidateCrossReference(validate(ValidationResult::Modified)),
        Command::ValidateCrossReference(validate(ValidationResult::Escalated)),
        Command::RefineCrossReference(refine()),
        Command::IdentifyTypologicalConnection(identify()),
    ]
}
