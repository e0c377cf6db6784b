//! `Sentence` (seed 001, M1.4/M1.5 and M2.6): one sentence of an interview, its text (editable),
//! the machine analyses generated for it, and a user's override of that analysis which wins over
//! every later machine analysis until it is cleared.
//!
//! | state        | CreateSentence | EditSentence | GenerateAnalysis | OverrideAnalysis | ClearAnalysisOverride      |
//! |--------------|----------------|--------------|------------------|------------------|----------------------------|
//! | `Initial`    | → `Created`    | –            | –                | –                | –                          |
//! | `Created`    | –              | stays        | → `Analyzed`     | → `Overridden`   | –                          |
//! | `Analyzed`   | –              | stays        | stays            | → `Overridden`   | –                          |
//! | `Overridden` | –              | stays        | stays            | stays            | → `Analyzed` or `Created`  |
//!
//! The seed names the events (`SentenceCreated`, `SentenceEdited`, `AnalysisGenerated`,
//! `AnalysisOverridden`, `AnalysisCleared`) but not their payloads; this module chooses:
//! - `SentenceCreated { interview_id, index, text, speaker, start_ms, end_ms }`;
//!   `SentenceEdited { old_text, new_text, editor_type }` (`human` or `ai`; an edit must change the
//!   text: `text_unchanged`).
//! - `AnalysisGenerated { model, model_version, classification, keywords, topics, domain_keywords,
//!   confidence, raw_ref }`: the latest machine analysis replaces the previous one.
//! - `AnalysisOverridden { fields_overridden, note }`: field-level corrections keyed by the names of
//!   [`Sentence::effective_analysis`] (`function_type`, `keywords`, ...). Overrides accumulate (a
//!   later override of the same field wins) and are kept while machine analyses keep arriving, so
//!   the effective analysis shows the user's values over any machine analysis, earlier or later.
//! - `AnalysisCleared { reason }` clears the user override (not the machine analysis): the latest
//!   machine analysis shows again. Clearing when nothing is overridden is an invalid transition.
//! - Caps: text 10,000 characters, names 256, lists 1,000 items; `end_ms >= start_ms`
//!   (`time_range_inverted`); `confidence` in `0..=1`; an empty override is refused
//!   (`empty_override`). Who edited or overrode is the envelope's actor.

mod clear_override;
mod create;
mod edit;
mod generate_analysis;
mod override_analysis;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::sync::LazyLock;

use eventfold_domain::{Aggregate, DomainError, EventCategory, StateMachine};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use clear_override::{AnalysisCleared, ClearAnalysisOverride};
pub use create::{CreateSentence, SentenceCreated};
pub use edit::{EditSentence, EditorType, SentenceEdited};
pub use generate_analysis::{AnalysisGenerated, GenerateAnalysis};
pub use override_analysis::{AnalysisOverridden, OverrideAnalysis};

use crate::registry::edge;

/// The latest machine analysis, as kept in the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Analysis {
    /// Model that produced it.
    pub model: String,
    /// Model version.
    pub model_version: String,
    /// Classification results (`function_type`, `structure_type`, `purpose`, ...).
    pub classification: Map<String, Value>,
    /// Keywords.
    pub keywords: Vec<String>,
    /// Topics.
    pub topics: Vec<String>,
    /// Domain-specific keywords.
    pub domain_keywords: Vec<String>,
    /// Confidence in `0..=1`, if the model gave one.
    pub confidence: Option<f64>,
    /// Reference to the raw model output, if stored elsewhere.
    pub raw_ref: Option<String>,
}

/// The user's corrections, as kept in the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AnalysisOverride {
    /// Corrected fields, accumulated over overrides (later wins).
    pub fields: Map<String, Value>,
    /// Note of the latest override.
    pub note: Option<String>,
}

/// The state of one sentence, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Sentence {
    /// True once created.
    pub created: bool,
    /// Interview it belongs to.
    pub interview_id: String,
    /// Position in the interview (0-based).
    pub index: u32,
    /// Current text.
    pub text: String,
    /// Speaker, if known.
    pub speaker: Option<String>,
    /// Start offset in the recording, in milliseconds.
    pub start_ms: Option<u64>,
    /// End offset in the recording, in milliseconds.
    pub end_ms: Option<u64>,
    /// True once the text was edited.
    pub edited: bool,
    /// Latest machine analysis.
    pub analysis: Option<Analysis>,
    /// The user's override, while not cleared.
    pub analysis_override: Option<AnalysisOverride>,
}

impl Sentence {
    /// The analysis as users see it: the machine analysis flattened (classification entries,
    /// `keywords`, `topics`, `domain_keywords`, `confidence`) with the override's fields on top.
    pub fn effective_analysis(&self) -> Map<String, Value> {
        let mut view = Map::new();
        if let Some(a) = &self.analysis {
            view.extend(a.classification.clone());
            view.insert("keywords".into(), Value::from(a.keywords.clone()));
            view.insert("topics".into(), Value::from(a.topics.clone()));
            view.insert(
                "domain_keywords".into(),
                Value::from(a.domain_keywords.clone()),
            );
            if let Some(c) = a.confidence {
                view.insert("confidence".into(), Value::from(c));
            }
        }
        if let Some(o) = &self.analysis_override {
            view.extend(o.fields.clone());
        }
        view
    }
}

/// A command to a sentence; the variant name is the command name in the URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Command {
    /// See [`CreateSentence`].
    CreateSentence(CreateSentence),
    /// See [`EditSentence`].
    EditSentence(EditSentence),
    /// See [`GenerateAnalysis`].
    GenerateAnalysis(GenerateAnalysis),
    /// See [`OverrideAnalysis`].
    OverrideAnalysis(OverrideAnalysis),
    /// See [`ClearAnalysisOverride`].
    ClearAnalysisOverride(ClearAnalysisOverride),
}

impl Command {
    /// The command names, in declaration order.
    pub const NAMES: &'static [&'static str] = &[
        "CreateSentence",
        "EditSentence",
        "GenerateAnalysis",
        "OverrideAnalysis",
        "ClearAnalysisOverride",
    ];
}

eventfold_domain::domain_events! {
    /// An event of a sentence; serializes to its payload only. `AnalysisCleared` comes last because
    /// its only field is optional (the plain `Deserialize` tries the variants in order).
    pub enum Event for "Sentence" {
        /// See [`SentenceCreated`].
        SentenceCreated,
        /// See [`SentenceEdited`].
        SentenceEdited,
        /// See [`AnalysisGenerated`].
        AnalysisGenerated,
        /// See [`AnalysisOverridden`].
        AnalysisOverridden,
        /// See [`AnalysisCleared`].
        AnalysisCleared,
    }
    category: |_| EventCategory::Domain
}

const EDITED: &[&str] = &["SentenceEdited"];
const GENERATED: &[&str] = &["AnalysisGenerated"];
const OVERRIDDEN: &[&str] = &["AnalysisOverridden"];
const CLEARED: &[&str] = &["AnalysisCleared"];

/// The transition table; `decide` consults it before anything else.
static MACHINE: LazyLock<StateMachine> = LazyLock::new(|| {
    let mut transitions = vec![edge(
        "Initial",
        "CreateSentence",
        &["SentenceCreated"],
        "Created",
    )];
    for (from, after_analysis) in [
        ("Created", "Analyzed"),
        ("Analyzed", "Analyzed"),
        ("Overridden", "Overridden"),
    ] {
        transitions.push(edge(from, "EditSentence", EDITED, from));
        transitions.push(edge(from, "GenerateAnalysis", GENERATED, after_analysis));
        transitions.push(edge(from, "OverrideAnalysis", OVERRIDDEN, "Overridden"));
    }
    transitions.push(edge(
        "Overridden",
        "ClearAnalysisOverride",
        CLEARED,
        "Analyzed",
    ));
    transitions.push(edge(
        "Overridden",
        "ClearAnalysisOverride",
        CLEARED,
        "Created",
    ));
    StateMachine {
        aggregate_type: Sentence::TYPE,
        initial: "Initial",
        transitions,
    }
});

impl Aggregate for Sentence {
    const TYPE: &'static str = "Sentence";
    type Command = Command;
    type Event = Event;

    fn command_names() -> &'static [&'static str] {
        Command::NAMES
    }

    fn command_name(command: &Command) -> &'static str {
        match command {
            Command::CreateSentence(_) => "CreateSentence",
            Command::EditSentence(_) => "EditSentence",
            Command::GenerateAnalysis(_) => "GenerateAnalysis",
            Command::OverrideAnalysis(_) => "OverrideAnalysis",
            Command::ClearAnalysisOverride(_) => "ClearAnalysisOverride",
        }
    }

    fn state_name(&self) -> &'static str {
        if !self.created {
            "Initial"
        } else if self.analysis_override.is_some() {
            "Overridden"
        } else if self.analysis.is_some() {
            "Analyzed"
        } else {
            "Created"
        }
    }

    fn decide(&self, command: &Command) -> Result<Vec<Event>, DomainError> {
        if !MACHINE.allows(self.state_name(), Self::command_name(command)) {
            return Err(self.invalid(command));
        }
        match command {
            Command::CreateSentence(c) => self.create(c),
            Command::EditSentence(c) => self.edit(c),
            Command::GenerateAnalysis(c) => self.generate_analysis(c),
            Command::OverrideAnalysis(c) => self.override_analysis(c),
            Command::ClearAnalysisOverride(c) => self.clear_override(c),
        }
    }

    fn apply(self, event: &Event) -> Self {
        match event {
            Event::SentenceCreated(e) => self.on_created(e),
            Event::SentenceEdited(e) => self.on_edited(e),
            Event::AnalysisGenerated(e) => self.on_analysis_generated(e),
            Event::AnalysisOverridden(e) => self.on_analysis_overridden(e),
            Event::AnalysisCleared(e) => self.on_analysis_cleared(e),
        }
    }

    fn state_machine() -> StateMachine {
        MACHINE.clone()
    }
}
