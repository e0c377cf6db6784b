//! `CrossReference` (seed 000, Parts 2, 4 and 6): a candidate link between two verses, discovered
//! by a pipeline, then validated, refined by the oracle engines and linked typologically.
//!
//! States and transitions (`state_machine()` prints them as Mermaid):
//!
//! | state        | DiscoverCrossReference | ValidateCrossReference          | RefineCrossReference | IdentifyTypologicalConnection |
//! |--------------|------------------------|---------------------------------|----------------------|-------------------------------|
//! | `Initial`    | → `Discovered`         | –                               | –                    | –                             |
//! | `Discovered` | –                      | → `Validated`/`Rejected`/stays  | stays                | stays                         |
//! | `Validated`  | –                      | → `Rejected` or stays           | stays                | stays                         |
//! | `Rejected`   | –                      | → `Validated` or stays          | –                    | –                             |
//!
//! Rules taken from the seed:
//! - Validation moves the confidence by the seed's arithmetic ([`validation_delta`]): a base delta
//!   per result (approved +0.1, rejected −0.2, modified 0, escalated +0.05) plus
//!   `(passed / checks − 0.5) × 0.1` when theological checks are given, clamped to `0..=1`. The
//!   event carries `confidence_before` and `confidence_after`, so replay never recomputes.
//! - Status: approved → `validated`, rejected → `rejected`, modified and escalated keep the status.
//!
//! Where the seed is silent, this module chooses:
//! - Identity: the seed names a cross-reference `"{source_ref}:{target_ref}"` (Part 6) and puts that
//!   id into `cross_ref_id` of later events; [`CrossReference::cross_ref_id`] derives it the same
//!   way, so clients should use it as the aggregate id. Projectors should key on the envelope's
//!   `aggregate_id`, which is always right.
//! - `CrossReferenceValidated` also carries the resulting `status` (the seed's projector wrote the
//!   validation result into the status column; a projector needs the status itself).
//! - Re-validation is allowed after approval and after rejection (a later reviewer may overturn a
//!   verdict; the benchmark validates repeatedly); refining or linking a rejected cross-reference is
//!   an invalid transition.
//! - A verse cannot cross-reference itself (`self_reference`); a typological connection must join
//!   the cross-reference's own two verses, in either direction (`typology_refs_mismatch`).
//! - Ranges: confidences, strengths in `0..=1`; `semantic_similarity` is a cosine in `-1..=1`;
//!   `fractal_depth` in `1..=64`; every number finite.
//! - Timestamps are not in the payloads: the envelope's `occurred_at` is the event time (the seed's
//!   `timestamp`), so `validation_history` entries have none either.

mod discover;
mod refine;
mod typology;
mod validate;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::sync::LazyLock;

use eventfold_domain::{Aggregate, DomainError, EventCategory, StateMachine};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use discover::{CrossReferenceDiscovered, DiscoverCrossReference, DiscoveryMethod};
pub use refine::{CrossReferenceRefined, RefineCrossReference, RefinementType};
pub use typology::{
    IdentifyTypologicalConnection, MAX_FRACTAL_DEPTH, TypologicalConnectionIdentified,
};
pub use validate::{
    CrossReferenceValidated, ValidateCrossReference, ValidationRecord, ValidationResult,
    confidence_after, validation_delta,
};

use crate::registry::edge;

/// Lifecycle status, as the seed stores it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CrossReferenceStatus {
    /// Not discovered yet (no events).
    #[default]
    Pending,
    /// Discovered, not yet approved or rejected.
    Discovered,
    /// Approved by the latest deciding validation.
    Validated,
    /// Rejected by the latest deciding validation.
    Rejected,
}

/// The state of one cross-reference, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CrossReference {
    /// Lifecycle status.
    pub status: CrossReferenceStatus,
    /// Verse the link starts from, e.g. `GEN.1.1`.
    pub source_ref: String,
    /// Verse the link points to, e.g. `JHN.1.1`.
    pub target_ref: String,
    /// Kind of connection, e.g. `thematic`.
    pub connection_type: String,
    /// How it was discovered.
    pub discovery_method: Option<DiscoveryMethod>,
    /// Semantic similarity measured at discovery.
    pub semantic_similarity: f64,
    /// Current confidence in `0..=1`.
    pub confidence: f64,
    /// Every validation, oldest first.
    pub validation_history: Vec<ValidationRecord>,
    /// Enrichments merged from refinements (later keys win).
    pub enrichments: Map<String, Value>,
    /// Typological connections identified on this link, oldest first.
    pub typological_connections: Vec<TypologicalConnectionIdentified>,
}

impl CrossReference {
    /// The seed's id for this cross-reference: `"{source_ref}:{target_ref}"`.
    pub fn cross_ref_id(&self) -> String {
        format!("{}:{}", self.source_ref, self.target_ref)
    }
}

/// A command to a cross-reference; the variant name is the command name in the URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Command {
    /// See [`DiscoverCrossReference`].
    DiscoverCrossReference(DiscoverCrossReference),
    /// See [`ValidateCrossReference`].
    ValidateCrossReference(ValidateCrossReference),
    /// See [`RefineCrossReference`].
    RefineCrossReference(RefineCrossReference),
    /// See [`IdentifyTypologicalConnection`].
    IdentifyTypologicalConnection(IdentifyTypologicalConnection),
}

impl Command {
    /// The command names, in declaration order.
    pub const NAMES: &'static [&'static str] = &[
        "DiscoverCrossReference",
        "ValidateCrossReference",
        "RefineCrossReference",
        "IdentifyTypologicalConnection",
    ];
}

eventfold_domain::domain_events! {
    /// An event of a cross-reference; it serializes to its payload only (the type name travels in
    /// the envelope), and [`DomainEvent::from_payload`] reads it back by type name.
    pub enum Event for "CrossReference" {
        /// See [`CrossReferenceDiscovered`].
        CrossReferenceDiscovered,
        /// See [`CrossReferenceValidated`].
        CrossReferenceValidated,
        /// See [`CrossReferenceRefined`].
        CrossReferenceRefined,
        /// See [`TypologicalConnectionIdentified`].
        TypologicalConnectionIdentified,
    }
    category: |e| match e {
        Self::CrossReferenceDiscovered(_) | Self::CrossReferenceRefined(_) => {
            EventCategory::Discovery
        }
        Self::CrossReferenceValidated(_) => EventCategory::Validation,
        Self::TypologicalConnectionIdentified(_) => EventCategory::Oracle,
    }
}

const DISCOVERED: &[&str] = &["CrossReferenceDiscovered"];
const VALIDATED: &[&str] = &["CrossReferenceValidated"];
const REFINED: &[&str] = &["CrossReferenceRefined"];
const IDENTIFIED: &[&str] = &["TypologicalConnectionIdentified"];

/// The transition table; `decide` consults it before anything else.
static MACHINE: LazyLock<StateMachine> = LazyLock::new(|| StateMachine {
    aggregate_type: CrossReference::TYPE,
    initial: "Initial",
    transitions: vec![
        edge(
            "Initial",
            "DiscoverCrossReference",
            DISCOVERED,
            "Discovered",
        ),
        edge(
            "Discovered",
            "ValidateCrossReference",
            VALIDATED,
            "Validated",
        ),
        edge(
            "Discovered",
            "ValidateCrossReference",
            VALIDATED,
            "Rejected",
        ),
        edge(
            "Discovered",
            "ValidateCrossReference",
            VALIDATED,
            "Discovered",
        ),
        edge("Discovered", "RefineCrossReference", REFINED, "Discovered"),
        edge(
            "Discovered",
            "IdentifyTypologicalConnection",
            IDENTIFIED,
            "Discovered",
        ),
        edge(
            "Validated",
            "ValidateCrossReference",
            VALIDATED,
            "Validated",
        ),
        edge("Validated", "ValidateCrossReference", VALIDATED, "Rejected"),
        edge("Validated", "RefineCrossReference", REFINED, "Validated"),
        edge(
            "Validated",
            "IdentifyTypologicalConnection",
            IDENTIFIED,
            "Validated",
        ),
        edge("Rejected", "ValidateCrossReference", VALIDATED, "Validated"),
        edge("Rejected", "ValidateCrossReference", VALIDATED, "Rejected"),
    ],
});

impl Aggregate for CrossReference {
    const TYPE: &'static str = "CrossReference";
    type Command = Command;
    type Event = Event;

    fn command_names() -> &'static [&'static str] {
        Command::NAMES
    }

    fn command_name(command: &Command) -> &'static str {
        match command {
            Command::DiscoverCrossReference(_) => "DiscoverCrossReference",
            Command::ValidateCrossReference(_) => "ValidateCrossReference",
            Command::RefineCrossReference(_) => "RefineCrossReference",
            Command::IdentifyTypologicalConnection(_) => "IdentifyTypologicalConnection",
        }
    }

    fn state_name(&self) -> &'static str {
        match self.status {
            CrossReferenceStatus::Pending => "Initial",
            CrossReferenceStatus::Discovered => "Discovered",
            CrossReferenceStatus::Validated => "Validated",
            CrossReferenceStatus::Rejected => "Rejected",
        }
    }

    fn decide(&self, command: &Command) -> Result<Vec<Event>, DomainError> {
        if !MACHINE.allows(self.state_name(), Self::command_name(command)) {
            return Err(self.invalid(command));
        }
        match command {
            Command::DiscoverCrossReference(c) => self.discover(c),
            Command::ValidateCrossReference(c) => self.validate(c),
            Command::RefineCrossReference(c) => self.refine(c),
            Command::IdentifyTypologicalConnection(c) => self.identify_typology(c),
        }
    }

    fn apply(self, event: &Event) -> Self {
        match event {
            Event::CrossReferenceDiscovered(e) => self.on_discovered(e),
            Event::CrossReferenceValidated(e) => self.on_validated(e),
            Event::CrossReferenceRefined(e) => self.on_refined(e),
            Event::TypologicalConnectionIdentified(e) => self.on_typology_identified(e),
        }
    }

    fn state_machine() -> StateMachine {
        MACHINE.clone()
    }
}
