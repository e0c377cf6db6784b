//! `Opportunity` (seed 002): an AI opportunity found in the market, validated by reviewers and
//! eventually archived.
//!
//! | state        | CreateOpportunity | UpdateOpportunity | ValidateOpportunity | ArchiveOpportunity |
//! |--------------|-------------------|-------------------|---------------------|--------------------|
//! | `Initial`    | → `Discovered`    | –                 | –                   | –                  |
//! | `Discovered` | –                 | stays             | → `Validated`       | → `Archived`       |
//! | `Validated`  | –                 | stays             | stays               | → `Archived`       |
//! | `Archived`   | –                 | –                 | –                   | –                  |
//!
//! Events and versions (seed 002 "Opportunity Events v1.0 → v2.0"; schema versions 1 → 2):
//! - `OpportunityCreated` v2 `{ opportunity_id, title, description, ai_solution_type,
//!   ai_solution_category, market_size_estimate, confidence_score }`; v1 had `market_size` and
//!   neither `ai_solution_category` nor `confidence_score`.
//! - `OpportunityUpdated` v2 `{ title, description, market_size_estimate, confidence_score }`
//!   (absent = unchanged); v1 had `market_size` and no `confidence_score`.
//! - `OpportunityValidated { validator_id, score, comment }` and `OpportunityArchived { reason }`,
//!   version 1 only.
//!
//! The v1 → v2 upcaster ([`upcasters`]): `market_size` is renamed `market_size_estimate`;
//! `ai_solution_category` is derived from `ai_solution_type` with [`AiSolutionType::category`];
//! `confidence_score` gets the seed's default 0.7 (on `OpportunityUpdated` a missing score stays
//! `null`, "unchanged"). v2 also widened the `ai_solution_type` enum with `generative_ai` and
//! `recommendation`: every v1 symbol is still valid, so the step only checks the value is one of
//! them.
//!
//! Rules: titles are required names (at most 256 characters), descriptions free text, scores and
//! confidences in `0..=1`, `market_size_estimate` at most 2^53 − 1; an update that changes nothing
//! is refused (`empty_update`); an archived opportunity is read-only.

mod archive;
mod create;
mod update;
mod validate;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::sync::LazyLock;

use eventfold_domain::{Aggregate, DomainError, EventCategory, StateMachine, Upcaster, Upcasters};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use archive::{ArchiveOpportunity, OpportunityArchived};
pub use create::{CreateOpportunity, OpportunityCreated};
pub use update::{OpportunityUpdated, UpdateOpportunity};
pub use validate::{OpportunityValidated, ValidateOpportunity};

use crate::registry::edge;

/// The kind of AI a solution uses (v2 added `generative_ai` and `recommendation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AiSolutionType {
    /// Natural language processing.
    Nlp,
    /// Computer vision.
    ComputerVision,
    /// Classic machine learning.
    MachineLearning,
    /// Speech recognition or synthesis.
    Speech,
    /// Robotics.
    Robotics,
    /// Generative AI (since v2).
    GenerativeAi,
    /// Recommender systems (since v2).
    Recommendation,
}

/// The `ai_solution_type` symbols of schema version 1.
pub const V1_SOLUTION_TYPES: &[&str] = &[
    "nlp",
    "computer_vision",
    "machine_learning",
    "speech",
    "robotics",
];

/// The broad category of a solution, derived from its [`AiSolutionType`] (since v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AiSolutionCategory {
    /// Text and language.
    NaturalLanguageProcessing,
    /// Images and video.
    ComputerVision,
    /// Prediction from data.
    PredictiveAnalytics,
    /// Audio and speech.
    SpeechAndAudio,
    /// Physical automation.
    Automation,
    /// Content generation.
    GenerativeAi,
}

impl AiSolutionType {
    /// Every solution type, in declaration order.
    pub const ALL: [Self; 7] = [
        Self::Nlp,
        Self::ComputerVision,
        Self::MachineLearning,
        Self::Speech,
        Self::Robotics,
        Self::GenerativeAi,
        Self::Recommendation,
    ];

    /// The documented mapping from solution type to category, used by `decide` and by the v1 → v2
    /// upcaster: nlp → natural_language_processing, computer_vision → computer_vision,
    /// machine_learning → predictive_analytics, speech → speech_and_audio, robotics → automation,
    /// generative_ai → generative_ai, recommendation → predictive_analytics.
    pub fn category(self) -> AiSolutionCategory {
        use AiSolutionCategory as C;
        match self {
            Self::Nlp => C::NaturalLanguageProcessing,
            Self::ComputerVision => C::ComputerVision,
            Self::MachineLearning | Self::Recommendation => C::PredictiveAnalytics,
            Self::Speech => C::SpeechAndAudio,
            Self::Robotics => C::Automation,
            Self::GenerativeAi => C::GenerativeAi,
        }
    }
}

/// The seed's default confidence for opportunities written before v2.
pub const DEFAULT_CONFIDENCE: f64 = 0.7;

/// Lifecycle status of an opportunity.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OpportunityStatus {
    /// Not created yet.
    #[default]
    Initial,
    /// Created, not yet validated.
    Discovered,
    /// Validated at least once.
    Validated,
    /// Retired; read-only.
    Archived,
}

/// The state of one opportunity, folded from its events (always at the latest schema).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Opportunity {
    /// Lifecycle status.
    pub status: OpportunityStatus,
    /// The seed's opportunity id.
    pub opportunity_id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Kind of AI.
    pub ai_solution_type: Option<AiSolutionType>,
    /// Category derived from the type.
    pub ai_solution_category: Option<AiSolutionCategory>,
    /// Estimated market size (currency units).
    pub market_size_estimate: u64,
    /// Confidence in the opportunity, `0..=1`.
    pub confidence_score: f64,
    /// Validation scores, oldest first.
    pub validation_scores: Vec<f64>,
    /// Why it was archived.
    pub archive_reason: Option<String>,
}

/// A command to an opportunity; the variant name is the command name in the URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Command {
    /// See [`CreateOpportunity`].
    CreateOpportunity(CreateOpportunity),
    /// See [`UpdateOpportunity`].
    UpdateOpportunity(UpdateOpportunity),
    /// See [`ValidateOpportunity`].
    ValidateOpportunity(ValidateOpportunity),
    /// See [`ArchiveOpportunity`].
    ArchiveOpportunity(ArchiveOpportunity),
}

impl Command {
    /// The command names, in declaration order.
    pub const NAMES: &'static [&'static str] = &[
        "CreateOpportunity",
        "UpdateOpportunity",
        "ValidateOpportunity",
        "ArchiveOpportunity",
    ];
}

eventfold_domain::domain_events! {
    /// An event of an opportunity; serializes to its payload only, at the latest schema version.
    pub enum Event for "Opportunity" {
        /// See [`OpportunityCreated`].
        OpportunityCreated,
        /// See [`OpportunityUpdated`].
        OpportunityUpdated,
        /// See [`OpportunityValidated`].
        OpportunityValidated,
        /// See [`OpportunityArchived`].
        OpportunityArchived,
    }
    category: |_| EventCategory::Domain,
    upcasters: upcasters(),
}

static UPCASTERS: LazyLock<Upcasters> = LazyLock::new(|| {
    Upcasters::default()
        .with(
            Upcaster::new("OpportunityCreated", 1)
                .widen_enum("ai_solution_type", V1_SOLUTION_TYPES)
                .rename("market_size", "market_size_estimate")
                .derive("ai_solution_category", derive_category)
                .default_value("confidence_score", json!(DEFAULT_CONFIDENCE)),
        )
        .with(
            Upcaster::new("OpportunityUpdated", 1)
                .rename("market_size", "market_size_estimate")
                .default_value("confidence_score", Value::Null),
        )
});

/// [`AiSolutionType::category`] as JSON values, for the upcaster (no serde round trip per event).
static CATEGORY_BY_TYPE: LazyLock<Vec<(String, Value)>> = LazyLock::new(|| {
    AiSolutionType::ALL
        .iter()
        .filter_map(|t| {
            let name = serde_json::to_value(t).ok()?.as_str()?.to_owned();
            Some((name, serde_json::to_value(t.category()).ok()?))
        })
        .collect()
});

/// The v2 `ai_solution_category` of a v1 payload, from its `ai_solution_type`.
fn derive_category(p: &eventfold_domain::upcast::Payload) -> Result<Value, String> {
    let t = p.get("ai_solution_type").and_then(Value::as_str);
    CATEGORY_BY_TYPE
        .iter()
        .find(|(k, _)| Some(k.as_str()) == t)
        .map(|(_, c)| c.clone())
        .ok_or_else(|| format!("cannot derive a category from ai_solution_type {t:?}"))
}

/// The steps that bring older opportunity events to the latest schema version.
pub fn upcasters() -> &'static Upcasters {
    &UPCASTERS
}

const UPDATED: &[&str] = &["OpportunityUpdated"];
const VALIDATED: &[&str] = &["OpportunityValidated"];
const ARCHIVED: &[&str] = &["OpportunityArchived"];

/// The transition table; `decide` consults it before anything else.
static MACHINE: LazyLock<StateMachine> = LazyLock::new(|| StateMachine {
    aggregate_type: Opportunity::TYPE,
    initial: "Initial",
    transitions: vec![
        edge(
            "Initial",
            "CreateOpportunity",
            &["OpportunityCreated"],
            "Discovered",
        ),
        edge("Discovered", "UpdateOpportunity", UPDATED, "Discovered"),
        edge("Validated", "UpdateOpportunity", UPDATED, "Validated"),
        edge("Discovered", "ValidateOpportunity", VALIDATED, "Validated"),
        edge("Validated", "ValidateOpportunity", VALIDATED, "Validated"),
        edge("Discovered", "ArchiveOpportunity", ARCHIVED, "Archived"),
        edge("Validated", "ArchiveOpportunity", ARCHIVED, "Archived"),
    ],
});

impl Aggregate for Opportunity {
    const TYPE: &'static str = "Opportunity";
    type Command = Command;
    type Event = Event;

    fn command_names() -> &'static [&'static str] {
        Command::NAMES
    }

    fn command_name(command: &Command) -> &'static str {
        match command {
            Command::CreateOpportunity(_) => "CreateOpportunity",
            Command::UpdateOpportunity(_) => "UpdateOpportunity",
            Command::ValidateOpportunity(_) => "ValidateOpportunity",
            Command::ArchiveOpportunity(_) => "ArchiveOpportunity",
        }
    }

    fn state_name(&self) -> &'static str {
        match self.status {
            OpportunityStatus::Initial => "Initial",
            OpportunityStatus::Discovered => "Discovered",
            OpportunityStatus::Validated => "Validated",
            OpportunityStatus::Archived => "Archived",
        }
    }

    fn decide(&self, command: &Command) -> Result<Vec<Event>, DomainError> {
        if !MACHINE.allows(self.state_name(), Self::command_name(command)) {
            return Err(self.invalid(command));
        }
        match command {
            Command::CreateOpportunity(c) => self.create(c),
            Command::UpdateOpportunity(c) => self.update(c),
            Command::ValidateOpportunity(c) => self.validate(c),
            Command::ArchiveOpportunity(c) => self.archive(c),
        }
    }

    fn apply(self, event: &Event) -> Self {
        match event {
            Event::OpportunityCreated(e) => self.on_created(e),
            Event::OpportunityUpdated(e) => self.on_updated(e),
            Event::OpportunityValidated(e) => self.on_validated(e),
            Event::OpportunityArchived(e) => self.on_archived(e),
        }
    }

    fn state_machine() -> StateMachine {
        MACHINE.clone()
    }
}
