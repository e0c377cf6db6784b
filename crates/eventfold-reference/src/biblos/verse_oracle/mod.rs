//! `VerseOracle` (seed 000, Part 2, "Oracle Engine Events"): what the oracle engines found about
//! one verse. The aggregate id is the verse id (e.g. `ISA.7.14`).
//!
//! States and transitions (`state_machine()` prints them as Mermaid):
//!
//! | state      | CalculateNecessity | DetectLXXDivergence | ComputePropheticProof |
//! |------------|--------------------|---------------------|-----------------------|
//! | `Initial`  | → `Recorded`       | → `Recorded`        | → `Recorded`          |
//! | `Recorded` | stays              | stays               | stays                 |
//!
//! Oracle results are findings, not a lifecycle: every command is accepted in every state, and a
//! later result of the same kind replaces the earlier one (necessity per target verse, LXX
//! divergence per divergence type, one prophetic proof per verse). The events are the seed's
//! `NecessityCalculated`, `LXXDivergenceDetected` and `PropheticProofComputed`, category `oracle`.
//!
//! Where the seed is silent, this module chooses:
//! - One aggregate per verse: the seed gives `LXXDivergenceDetected` a `verse_id` and
//!   `NecessityCalculated` a `source_verse`, and names `Verse` as an aggregate type; the prophetic
//!   proof is recorded on the verse it proves (the fulfilment), with the prophecies it combines
//!   in `prophecy_ids`. `decide` does not know the aggregate id, so the first verse named
//!   (`source_verse` or `verse_id`) becomes the aggregate's verse and later events must name the
//!   same one (`verse_mismatch`); clients use that verse as the aggregate id.
//! - A verse does not necessitate itself (`self_reference`); an LXX divergence has two different
//!   readings (`readings_identical`).
//! - Ranges: `necessity_score`, `manuscript_confidence` in `0..=1` (`confidence_out_of_range`);
//!   probabilities (`compound_probability`, `bayesian_posterior`, `prior_used`) in `0..=1` and
//!   `log_probability` at most 0 (`probability_out_of_range`); `bayes_factor` at least 0
//!   (`bayes_factor_out_of_range`); at least one prophecy (`no_prophecies`), none twice
//!   (`duplicate_prophecy_id`); every number finite.

mod necessity;
mod proof;
mod septuagint;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use eventfold_domain::{Aggregate, DomainError, EventCategory, StateMachine};
use serde::{Deserialize, Serialize};

pub use necessity::{CalculateNecessity, NecessityCalculated};
pub use proof::{ComputePropheticProof, PropheticProofComputed};
pub use septuagint::{DetectLXXDivergence, LXXDivergenceDetected};

use crate::registry::edge;

/// The oracle findings about one verse, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VerseOracle {
    /// Whether any oracle result has been recorded.
    pub recorded: bool,
    /// The verse, once an event named it.
    pub verse_id: Option<String>,
    /// The latest necessity towards each target verse.
    pub necessities: BTreeMap<String, NecessityCalculated>,
    /// The latest LXX divergence of each divergence type.
    pub lxx_divergences: BTreeMap<String, LXXDivergenceDetected>,
    /// The latest prophetic proof.
    pub prophetic_proof: Option<PropheticProofComputed>,
}

impl VerseOracle {
    /// Refuses `verse` when an earlier event named another verse.
    fn same_verse(&self, field: &str, verse: &str) -> Result<(), DomainError> {
        match &self.verse_id {
            Some(v) if v != verse => Err(DomainError::rule(
                "verse_mismatch",
                format!("{field} must be {v}, the verse of this oracle"),
            )),
            _ => Ok(()),
        }
    }

    /// Marks the state recorded and fixes its verse.
    fn recorded_on(mut self, verse: Option<&str>) -> Self {
        self.recorded = true;
        if self.verse_id.is_none() {
            self.verse_id = verse.map(str::to_owned);
        }
        self
    }
}

/// A command to a verse oracle; the variant name is the command name in the URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Command {
    /// See [`CalculateNecessity`].
    CalculateNecessity(CalculateNecessity),
    /// See [`DetectLXXDivergence`].
    DetectLXXDivergence(DetectLXXDivergence),
    /// See [`ComputePropheticProof`].
    ComputePropheticProof(ComputePropheticProof),
}

impl Command {
    /// The command names, in declaration order.
    pub const NAMES: &'static [&'static str] = &[
        "CalculateNecessity",
        "DetectLXXDivergence",
        "ComputePropheticProof",
    ];
}

eventfold_domain::domain_events! {
    /// An event of a verse oracle; it serializes to its payload only (the type name travels in
    /// the envelope), and [`DomainEvent::from_payload`] reads it back by type name.
    pub enum Event for "VerseOracle" {
        /// See [`NecessityCalculated`].
        NecessityCalculated,
        /// See [`LXXDivergenceDetected`].
        LXXDivergenceDetected,
        /// See [`PropheticProofComputed`].
        PropheticProofComputed,
    }
    category: |_e| EventCategory::Oracle
}

const NECESSITY: &[&str] = &["NecessityCalculated"];
const DIVERGENCE: &[&str] = &["LXXDivergenceDetected"];
const PROOF: &[&str] = &["PropheticProofComputed"];

/// The transition table; `decide` consults it before anything else.
static MACHINE: LazyLock<StateMachine> = LazyLock::new(|| StateMachine {
    aggregate_type: VerseOracle::TYPE,
    initial: "Initial",
    transitions: vec![
        edge("Initial", "CalculateNecessity", NECESSITY, "Recorded"),
        edge("Initial", "DetectLXXDivergence", DIVERGENCE, "Recorded"),
        edge("Initial", "ComputePropheticProof", PROOF, "Recorded"),
        edge("Recorded", "CalculateNecessity", NECESSITY, "Recorded"),
        edge("Recorded", "DetectLXXDivergence", DIVERGENCE, "Recorded"),
        edge("Recorded", "ComputePropheticProof", PROOF, "Recorded"),
    ],
});

impl Aggregate for VerseOracle {
    const TYPE: &'static str = "VerseOracle";
    type Command = Command;
    type Event = Event;

    fn command_names() -> &'static [&'static str] {
        Command::NAMES
    }

    fn command_name(command: &Command) -> &'static str {
        match command {
            Command::CalculateNecessity(_) => "CalculateNecessity",
            Command::DetectLXXDivergence(_) => "DetectLXXDivergence",
            Command::ComputePropheticProof(_) => "ComputePropheticProof",
        }
    }

    fn state_name(&self) -> &'static str {
        if self.recorded { "Recorded" } else { "Initial" }
    }

    fn decide(&self, command: &Command) -> Result<Vec<Event>, DomainError> {
        if !MACHINE.allows(self.state_name(), Self::command_name(command)) {
            return Err(self.invalid(command));
        }
        match command {
            Command::CalculateNecessity(c) => self.calculate_necessity(c),
            Command::DetectLXXDivergence(c) => self.detect_divergence(c),
            Command::ComputePropheticProof(c) => self.compute_proof(c),
        }
    }

    fn apply(self, event: &Event) -> Self {
        match event {
            Event::NecessityCalculated(e) => self.on_necessity(e),
            Event::LXXDivergenceDetected(e) => self.on_divergence(e),
            Event::PropheticProofComputed(e) => self.on_proof(e),
        }
    }

    fn state_machine() -> StateMachine {
        MACHINE.clone()
    }
}
