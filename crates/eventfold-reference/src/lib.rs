//! The reference domains of eventfold: the aggregates that the seed systems run on the platform.
//!
//! - [`biblos`] (seed 000): [`CrossReference`] (discover, validate with the seed's confidence
//!   arithmetic, refine, identify a typological connection) and [`VerseProcessing`] (started,
//!   completed, failed, retried) and [`VerseOracle`] (necessity, LXX divergence, prophetic proof).
//! - [`interview`] (seed 001): [`Interview`] (created, status changed, metadata updated) and
//!   [`Sentence`] (created, edited, machine analysis, user override that wins until cleared).
//! - [`opportunity`] (seed 002): [`Opportunity`] (created, updated, validated, archived) and
//!   [`User`] (registered, profile updated, deactivated), whose events have two schema versions
//!   and upcasters from the first to the second.
//! - [`cim`] (seed 003): [`Workflow`] (a Mealy state machine: started, approval requested,
//!   approved, completed, failed, timed out) and [`Graph`] (created, nodes added — v1 and v2 —,
//!   edges connected, conceptual points mapped).
//!
//! Each aggregate is a decider built on [`eventfold_domain::Aggregate`]: commands arrive as JSON
//! through [`eventfold_domain::parse_command`], `decide` is pure (no clock, no I/O; times come from
//! the command or the event envelope), events serialize to their payload only. The
//! [`registry`] lists the aggregate types for the command-service.
//!
//! Where it sits: command-service (decide + append) and projector (read payloads) depend on this
//! crate; it depends only on `eventfold-domain`, serde and chrono, never on tokio, sqlx or Kafka.
#![deny(missing_docs)]

pub mod biblos;
pub mod cim;
pub mod fields;
pub mod interview;
pub mod opportunity;
pub mod registry;

#[cfg(test)]
mod conformance;

pub use biblos::cross_reference::CrossReference;
pub use biblos::verse_oracle::VerseOracle;
pub use biblos::verse_processing::VerseProcessing;
pub use cim::graph::Graph;
pub use cim::workflow::Workflow;
pub use interview::interview::Interview;
pub use interview::sentence::Sentence;
pub use opportunity::opportunity::Opportunity;
pub use opportunity::user::User;
pub use registry::{
    AGGREGATE_TYPES, AggregateVisitor, command_names, event_types, mermaid, read_stored, upcasters,
    visit,
};
