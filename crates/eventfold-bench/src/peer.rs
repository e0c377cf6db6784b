//! The peer: cqrs-es 0.5 with postgres-es 0.5, running eventfold's own `CrossReference` decide and
//! apply, so the two differ only in how commands reach PostgreSQL.
//!
//! The wrapper is what a cqrs-es user would write: an aggregate whose `handle` writes the decided
//! events to the sink, an externally tagged event enum (the usual serde derive), no services and
//! no queries. A conflict (`AggregateConflict`) is returned to the caller, as cqrs-es does.

use std::time::Instant;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateError, EventStore as _};
use eventfold_domain::{Aggregate as _, DomainError};
use eventfold_reference::CrossReference;
use eventfold_reference::biblos::cross_reference::{
    Command, CrossReferenceDiscovered, CrossReferenceRefined, CrossReferenceValidated, Event,
    TypologicalConnectionIdentified,
};
use hdrhistogram::Histogram;
use postgres_es::{PostgresCqrs, PostgresEventRepository, postgres_cqrs};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::workload::{Outcome, Target, histogram, record};

/// The peer's DDL: postgres-es's own tables.
pub const SCHEMA: &str = include_str!("../sql/peer_schema.sql");

/// eventfold's `CrossReference` as a cqrs-es aggregate.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerCrossReference(pub CrossReference);

/// The events as a cqrs-es user declares them: one serde enum, externally tagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeerEvent {
    /// See [`CrossReferenceDiscovered`].
    CrossReferenceDiscovered(CrossReferenceDiscovered),
    /// See [`CrossReferenceValidated`].
    CrossReferenceValidated(CrossReferenceValidated),
    /// See [`CrossReferenceRefined`].
    CrossReferenceRefined(CrossReferenceRefined),
    /// See [`TypologicalConnectionIdentified`].
    TypologicalConnectionIdentified(TypologicalConnectionIdentified),
}

impl From<Event> for PeerEvent {
    fn from(e: Event) -> Self {
        match e {
            Event::CrossReferenceDiscovered(e) => Self::CrossReferenceDiscovered(e),
            Event::CrossReferenceValidated(e) => Self::CrossReferenceValidated(e),
            Event::CrossReferenceRefined(e) => Self::CrossReferenceRefined(e),
            Event::TypologicalConnectionIdentified(e) => Self::TypologicalConnectionIdentified(e),
        }
    }
}

impl From<PeerEvent> for Event {
    fn from(e: PeerEvent) -> Self {
        match e {
            PeerEvent::CrossReferenceDiscovered(e) => Self::CrossReferenceDiscovered(e),
            PeerEvent::CrossReferenceValidated(e) => Self::CrossReferenceValidated(e),
            PeerEvent::CrossReferenceRefined(e) => Self::CrossReferenceRefined(e),
            PeerEvent::TypologicalConnectionIdentified(e) => {
                Self::TypologicalConnectionIdentified(e)
            }
        }
    }
}

impl cqrs_es::DomainEvent for PeerEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CrossReferenceDiscovered(_) => "CrossReferenceDiscovered",
            Self::CrossReferenceValidated(_) => "CrossReferenceValidated",
            Self::CrossReferenceRefined(_) => "CrossReferenceRefined",
            Self::TypologicalConnectionIdentified(_) => "TypologicalConnectionIdentified",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

impl cqrs_es::Aggregate for PeerCrossReference {
    const TYPE: &'static str = CrossReference::TYPE;
    type Command = Command;
    type Event = PeerEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Command,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        for event in self.0.decide(&command)? {
            sink.write(event.into(), self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: PeerEvent) {
        let state = std::mem::take(&mut self.0);
        self.0 = state.apply(&event.into());
    }
}

/// The peer's command path: `CqrsFramework::execute` on postgres-es.
pub struct Peer {
    cqrs: PostgresCqrs<PeerCrossReference>,
}

impl Peer {
    /// The framework on `pool` (postgres-es tables created), without queries or snapshots.
    pub fn new(pool: PgPool) -> Self {
        Self {
            cqrs: postgres_cqrs(pool, Vec::new(), ()),
        }
    }
}

impl Target for Peer {
    async fn send(&self, aggregate_id: &str, command: Command) -> Outcome {
        match self.cqrs.execute(aggregate_id, command).await {
            Ok(()) => Outcome::Applied,
            Err(AggregateError::AggregateConflict) => Outcome::Conflict,
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

/// Times `samples` loads of `aggregate_id` through the peer's event store (no snapshots): read every
/// event, deserialize it, apply it.
pub async fn hydration(
    pool: PgPool,
    aggregate_id: &str,
    events: usize,
    samples: usize,
) -> anyhow::Result<Histogram<u64>> {
    let store = PersistedEventStore::<PostgresEventRepository, PeerCrossReference>::new_event_store(
        PostgresEventRepository::new(pool),
    );
    let mut latency = histogram();
    for n in 0..samples + crate::hydration::WARMUP {
        let started = Instant::now();
        let context = store
            .load_aggregate(aggregate_id)
            .await
            .map_err(|e| anyhow::anyhow!("peer failed to load {aggregate_id}: {e}"))?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            context.current_sequence == events,
            "peer loaded {aggregate_id} at sequence {}, expected {events}",
            context.current_sequence
        );
        if n >= crate::hydration::WARMUP {
            record(&mut latency, elapsed);
        }
    }
    Ok(latency)
}
