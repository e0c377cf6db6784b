//! `Interview` (seed 001, M1.4/M1.5): an uploaded interview of a project, moving through the
//! analysis pipeline's statuses, with editable metadata.
//!
//! | state        | CreateInterview | ChangeInterviewStatus                       | UpdateInterviewMetadata |
//! |--------------|-----------------|---------------------------------------------|-------------------------|
//! | `Initial`    | → `Created`     | –                                           | –                       |
//! | `Created`    | –               | → `Processing`, `Failed`, `Archived`        | stays                   |
//! | `Processing` | –               | → `Completed`, `Failed`, `Archived`         | stays                   |
//! | `Completed`  | –               | → `Processing` (re-analysis), `Archived`    | stays                   |
//! | `Failed`     | –               | → `Processing` (retry), `Archived`          | stays                   |
//! | `Archived`   | –               | –                                           | –                       |
//!
//! The seed names the three events only; this module chooses their payloads the way the seed's
//! pipeline and projection handlers use them (a project, a title and source file, a language, the
//! time of the interview, open metadata):
//! - `InterviewCreated { project_id, title, source, language, started_at, metadata }`.
//! - `InterviewStatusChanged { from_status, to_status, reason }`; statuses are `created`,
//!   `processing`, `completed`, `failed`, `archived`. A status pair outside the table above is a
//!   rule error (`status_transition_not_allowed`), so is a change to the current status
//!   (`status_unchanged`); an archived interview is read-only (invalid transition).
//! - `InterviewMetadataUpdated { title, language, metadata_diff }`: absent fields keep their value;
//!   `metadata_diff` is merged key by key and a `null` value removes the key (JSON merge patch, one
//!   level). An update that changes nothing is refused (`empty_update`).
//! - `language` is a BCP 47 tag (ASCII letters, digits and `-`, at most 35 characters:
//!   `invalid_language_tag`); `started_at` is RFC 3339 and, being a domain time, comes from the
//!   command; the event time is the envelope's `occurred_at`.

mod change_status;
mod create;
mod update_metadata;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use eventfold_domain::{Aggregate, DomainError, EventCategory, StateMachine};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use change_status::{ChangeInterviewStatus, InterviewStatusChanged};
pub use create::{CreateInterview, InterviewCreated};
pub use update_metadata::{InterviewMetadataUpdated, UpdateInterviewMetadata};

use crate::registry::edge;

/// Pipeline status of an interview.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InterviewStatus {
    /// Uploaded, not yet processed.
    Created,
    /// Being analysed.
    Processing,
    /// Analysis finished.
    Completed,
    /// Analysis failed.
    Failed,
    /// Retired; read-only.
    Archived,
}

impl InterviewStatus {
    /// The state name for this status.
    pub fn state_name(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Processing => "Processing",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Archived => "Archived",
        }
    }
}

/// The state of one interview, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Interview {
    /// Pipeline status; `None` before creation.
    pub status: Option<InterviewStatus>,
    /// Project the interview belongs to.
    pub project_id: String,
    /// Title.
    pub title: String,
    /// Where it came from, e.g. the uploaded file name.
    pub source: String,
    /// BCP 47 language tag.
    pub language: Option<String>,
    /// When the interview took place.
    pub started_at: Option<DateTime<Utc>>,
    /// Open metadata.
    pub metadata: Map<String, Value>,
}

/// A command to an interview; the variant name is the command name in the URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Command {
    /// See [`CreateInterview`].
    CreateInterview(CreateInterview),
    /// See [`ChangeInterviewStatus`].
    ChangeInterviewStatus(ChangeInterviewStatus),
    /// See [`UpdateInterviewMetadata`].
    UpdateInterviewMetadata(UpdateInterviewMetadata),
}

impl Command {
    /// The command names, in declaration order.
    pub const NAMES: &'static [&'static str] = &[
        "CreateInterview",
        "ChangeInterviewStatus",
        "UpdateInterviewMetadata",
    ];
}

eventfold_domain::domain_events! {
    /// An event of an interview; serializes to its payload only.
    pub enum Event for "Interview" {
        /// See [`InterviewCreated`].
        InterviewCreated,
        /// See [`InterviewStatusChanged`].
        InterviewStatusChanged,
        /// See [`InterviewMetadataUpdated`].
        InterviewMetadataUpdated,
    }
    category: |_| EventCategory::Domain
}

const CHANGED: &[&str] = &["InterviewStatusChanged"];
const UPDATED: &[&str] = &["InterviewMetadataUpdated"];

/// Status changes allowed from each status (the table in the module doc).
pub(crate) const STATUS_CHANGES: &[(InterviewStatus, InterviewStatus)] = {
    use InterviewStatus::*;
    &[
        (Created, Processing),
        (Created, Failed),
        (Created, Archived),
        (Processing, Completed),
        (Processing, Failed),
        (Processing, Archived),
        (Completed, Processing),
        (Completed, Archived),
        (Failed, Processing),
        (Failed, Archived),
    ]
};

/// The transition table; `decide` consults it before anything else.
static MACHINE: LazyLock<StateMachine> = LazyLock::new(|| {
    let mut transitions = vec![edge(
        "Initial",
        "CreateInterview",
        &["InterviewCreated"],
        "Created",
    )];
    for (from, to) in STATUS_CHANGES {
        transitions.push(edge(
            from.state_name(),
            "ChangeInterviewStatus",
            CHANGED,
            to.state_name(),
        ));
    }
    for state in ["Created", "Processing", "Completed", "Failed"] {
        transitions.push(edge(state, "UpdateInterviewMetadata", UPDATED, state));
    }
    StateMachine {
        aggregate_type: Interview::TYPE,
        initial: "Initial",
        transitions,
    }
});

impl Aggregate for Interview {
    const TYPE: &'static str = "Interview";
    type Command = Command;
    type Event = Event;

    fn command_names() -> &'static [&'static str] {
        Command::NAMES
    }

    fn command_name(command: &Command) -> &'static str {
        match command {
            Command::CreateInterview(_) => "CreateInterview",
            Command::ChangeInterviewStatus(_) => "ChangeInterviewStatus",
            Command::UpdateInterviewMetadata(_) => "UpdateInterviewMetadata",
        }
    }

    fn state_name(&self) -> &'static str {
        self.status.map_or("Initial", InterviewStatus::state_name)
    }

    fn decide(&self, command: &Command) -> Result<Vec<Event>, DomainError> {
        if !MACHINE.allows(self.state_name(), Self::command_name(command)) {
            return Err(self.invalid(command));
        }
        match command {
            Command::CreateInterview(c) => self.create(c),
            Command::ChangeInterviewStatus(c) => self.change_status(c),
            Command::UpdateInterviewMetadata(c) => self.update_metadata(c),
        }
    }

    fn apply(self, event: &Event) -> Self {
        match event {
            Event::InterviewCreated(e) => self.on_created(e),
            Event::InterviewStatusChanged(e) => self.on_status_changed(e),
            Event::InterviewMetadataUpdated(e) => self.on_metadata_updated(e),
        }
    }

    fn state_machine() -> StateMachine {
        MACHINE.clone()
    }
}

/// The JSON Schema pattern of [`language_tag`] (which also caps the length at 35).
pub(crate) const LANGUAGE_TAG_PATTERN: &str = "^[A-Za-z][A-Za-z0-9-]{1,34}$";

/// A BCP 47 language tag, loosely: 2 to 35 ASCII letters, digits and hyphens, starting with a
/// letter.
pub(crate) fn language_tag(field: &str, tag: Option<&str>) -> Result<(), DomainError> {
    let Some(tag) = tag else { return Ok(()) };
    crate::fields::text(field, tag, crate::fields::MAX_NAME_CHARS)?;
    let well_formed = (2..=35).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_alphabetic())
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !well_formed {
        return Err(DomainError::rule(
            "invalid_language_tag",
            format!("{field} must be a BCP 47 language tag such as en or pt-BR"),
        ));
    }
    Ok(())
}
