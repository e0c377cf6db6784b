//! The pure core of eventfold: an aggregate is a Mealy machine (`decide` + `apply`), its events know
//! their type name, schema version and category, and every refusal is a typed [`DomainError`].
//! [`upcast`] brings older stored payload versions to the latest on every read path.
//!
//! This crate does no I/O and must not depend on tokio, sqlx, rdkafka or neo4rs; the event store,
//! the relay and the projector are built on top of it.
#![deny(missing_docs)]

mod aggregate;
mod error;
mod events_macro;
mod state_machine;
pub mod testing;
pub mod upcast;

pub use aggregate::{Aggregate, DomainEvent, EventCategory, parse_command};
pub use error::{CommandError, DomainError};
#[doc(hidden)]
pub use schemars as __schemars;
pub use state_machine::{StateMachine, Transition};
pub use upcast::{KnownField, PreparedUpcast, StoredEventError, UpcastError, Upcaster, Upcasters};
