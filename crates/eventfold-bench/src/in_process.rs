//! eventfold in-process: commands go through the group-commit command bus of the event store
//! library (events, outbox rows and the command records committed together), as the command
//! service and any embedding service call it.

use eventfold_postgres::repository::HandleError;
use eventfold_postgres::{Actor, ActorKind, BusConfig, CommandBus, CommandMeta, EventStore};
use eventfold_reference::CrossReference;
use eventfold_reference::biblos::cross_reference::Command;
use uuid::Uuid;

use crate::workload::{Outcome, Target};

/// The tenant of every command the in-process bench sends (its streams are that tenant's).
pub const TENANT: &str = "bench";

/// eventfold's command path: the command bus (cached state, group commit, conflicts retried).
pub struct InProcess {
    bus: CommandBus<CrossReference>,
}

impl InProcess {
    /// The target on a migrated store (starts the bus on the current runtime, configured like the
    /// command service: `COMMAND_WRITERS`, `COMMAND_MAX_BATCH`, ...).
    pub fn new(store: EventStore, config: BusConfig) -> Self {
        Self {
            bus: CommandBus::start(store, config),
        }
    }
}

/// Envelope of a bench command: a fresh command id (so nothing is a replay), a system actor.
pub fn meta() -> CommandMeta {
    CommandMeta {
        command_id: Uuid::now_v7(),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        actor: Actor {
            kind: ActorKind::System,
            id: "eventfold-bench".into(),
        },
        tenant: TENANT.into(),
        metadata: serde_json::json!({}),
        occurred_at: chrono::Utc::now(),
    }
}

impl Target for InProcess {
    async fn send(&self, aggregate_id: &str, command: Command) -> Outcome {
        let meta = meta();
        // The command-service hashes the canonical request; in-process callers may use any bytes
        // that identify the request, and every bench command is a new request.
        let request_hash = meta.command_id.as_bytes().to_vec();
        let result = self
            .bus
            .handle(aggregate_id.to_owned(), command, meta, request_hash, None)
            .await;
        match result {
            Ok(_) => Outcome::Applied,
            Err(HandleError::Conflict { .. }) => Outcome::Conflict,
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}
