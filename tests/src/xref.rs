//! Seed 000 CrossReference commands and command envelopes shared by the write-side tests.

use chrono::Utc;
use eventfold_domain::{Aggregate, parse_command};
use eventfold_postgres::{Actor, ActorKind, CommandMeta};
use eventfold_reference::CrossReference;
use serde_json::json;
use uuid::Uuid;

/// A CrossReference command.
pub type Command = <CrossReference as Aggregate>::Command;

/// A fresh command envelope (new command and correlation ids, an agent actor).
pub fn meta() -> CommandMeta {
    CommandMeta {
        command_id: Uuid::new_v4(),
        correlation_id: Uuid::new_v4(),
        causation_id: None,
        actor: Actor {
            kind: ActorKind::Agent,
            id: "validator".into(),
        },
        tenant: "default".into(),
        metadata: json!({}),
        occurred_at: Utc::now(),
    }
}

/// The JSON body of a DiscoverCrossReference command (GEN.1.1 → JHN.1.1).
pub fn discover_body() -> serde_json::Value {
    json!({
        "source_ref": "GEN.1.1", "target_ref": "JHN.1.1", "connection_type": "thematic",
        "initial_confidence": 0.5, "discovery_method": "embedding",
        "feature_vector": [0.1, 0.2], "semantic_similarity": 0.8
    })
}

/// The JSON body of an approving ValidateCrossReference command with `reasoning`.
pub fn validate_body(reasoning: &str) -> serde_json::Value {
    json!({
        "validator_agent": "theology",
        "validation_result": "approved", "reasoning": reasoning
    })
}

/// DiscoverCrossReference.
pub fn discover() -> Command {
    parse_command::<CrossReference>("DiscoverCrossReference", discover_body()).unwrap()
}

/// ValidateCrossReference, approved.
pub fn validate() -> Command {
    validate_with("creation parallel")
}

/// ValidateCrossReference, approved, with `reasoning`.
pub fn validate_with(reasoning: &str) -> Command {
    parse_command::<CrossReference>("ValidateCrossReference", validate_body(reasoning)).unwrap()
}
