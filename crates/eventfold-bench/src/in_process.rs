//! eventfold in-process: commands go through the event store library (events, outbox rows and the
//! command record committed together), as an embedding service would call it.
//!
//! This is the one adapter to change when the group-commit command bus lands: replace the
//! `repository::handle` call in [`InProcess::send`] by
//! `self.bus.handle(aggregate_id.to_owned(), command, meta, request_hash, None).await`, with
//! `bus: CommandBus<CrossReference>` built in [`InProcess::new`] by
//! `CommandBus::start(store, BusConfig::default())`. The outcome mapping stays as it is.

use eventfold_postgres::repository::{HandleError, RetryPolicy, handle};
use eventfold_postgres::{Actor, ActorKind, CommandMeta, EventStore};
use eventfold_reference::CrossReference;
use eventfold_reference::biblos::cross_reference::Command;
use uuid::Uuid;

use crate::workload::{Outcome, Target};

/// eventfold's command path today: hydrate, decide, append; conflicts retried by the library.
pub struct InProcess {
    store: EventStore,
}

impl InProcess {
    /// The target on a migrated store.
    pub fn new(store: EventStore) -> Self {
        Self { store }
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
        tenant: "bench".into(),
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
        let result = handle::<CrossReference>(
            &self.store,
            aggregate_id,
            &command,
            &meta,
            &request_hash,
            None,
            RetryPolicy::default(),
        )
        .await;
        match result {
            Ok(_) => Outcome::Applied,
            Err(HandleError::Conflict { .. }) => Outcome::Conflict,
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}
