//! `VerseProcessing` (seed 000, Part 2): one verse going through the pipeline's phases
//! (linguistic, theological, intertextual, validation), each run started, then completed or
//! failed, and retried after a failure.
//!
//! | state        | StartVerseProcessing | CompleteVerseProcessing | FailVerseProcessing | RetryVerseProcessing |
//! |--------------|----------------------|-------------------------|---------------------|----------------------|
//! | `Initial`    | → `Processing`       | –                       | –                   | –                    |
//! | `Processing` | –                    | → `Completed`           | → `Failed`          | –                    |
//! | `Completed`  | → `Processing`       | –                       | –                   | –                    |
//! | `Failed`     | –                    | –                       | –                   | → `Processing`       |
//!
//! The seed gives the three events and their payloads; where it is silent this module chooses:
//! - The aggregate id is the verse (e.g. `GEN.1.1`); its identity (`verse_id`, `book`, `chapter`,
//!   `verse`) is fixed by the first start, and a later start with another identity is refused
//!   (`verse_mismatch`). After a completed phase the next phase (or a re-run of the same one, e.g.
//!   for a new pipeline version) is started with `StartVerseProcessing`.
//! - A failed phase is retried with `RetryVerseProcessing` (no body): it emits
//!   `VerseProcessingStarted` again for the same phase with the next `attempt` number (a field the
//!   seed lacks; 1 for a first run). Starting another phase over a failure is an invalid transition.
//! - `retry_count` in `VerseProcessingFailed` is computed by the aggregate: how many retries of this
//!   phase run preceded the failure (0 on the first attempt). `will_retry` is
//!   `retryable && retry_count < 3` ([`MAX_AUTOMATIC_RETRIES`]), the retry policy a scheduler
//!   follows; an operator may still retry by hand when it is false.
//! - Completing or failing names the phase, which must be the running one (`phase_mismatch`), so a
//!   late message from an older run cannot close a newer one.
//! - `chapter` and `verse` are in `1..=999`; `duration_ms` at most 2^53 − 1; `quality_score` in
//!   `0..=1`; `stack_trace` at most 65,536 characters; times come from the envelope.

mod complete;
mod fail;
mod retry;
mod start;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use eventfold_domain::{Aggregate, DomainError, EventCategory, StateMachine};
use serde::{Deserialize, Serialize};

pub use complete::{CompleteVerseProcessing, VerseProcessingCompleted};
pub use fail::{FailVerseProcessing, MAX_AUTOMATIC_RETRIES, VerseProcessingFailed};
pub use retry::RetryVerseProcessing;
pub use start::{MAX_CHAPTER_OR_VERSE, StartVerseProcessing, VerseProcessingStarted};

use crate::registry::edge;

/// A pipeline phase (the seed's `phase` values).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Morphology, syntax.
    Linguistic,
    /// Theological analysis.
    Theological,
    /// Links to other texts.
    Intertextual,
    /// Final validation.
    Validation,
}

/// Where the verse's current phase run stands.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingStatus {
    /// Never started (no events).
    #[default]
    Pending,
    /// A phase is running.
    Processing,
    /// The last phase run completed.
    Completed,
    /// The last phase run failed.
    Failed,
}

/// The result of a completed phase, as kept in the state (agent results stay in the event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PhaseOutcome {
    /// How long the phase took.
    pub duration_ms: u64,
    /// Quality score in `0..=1`.
    pub quality_score: f64,
}

/// The last failure, as kept in the state (the stack trace stays in the event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Failure {
    /// Phase that failed.
    pub phase: Phase,
    /// Error class.
    pub error_type: String,
    /// Error message.
    pub error_message: String,
    /// Retries that preceded this failure.
    pub retry_count: u32,
    /// Whether the retry policy will retry.
    pub will_retry: bool,
}

/// The processing state of one verse, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VerseProcessing {
    /// Status of the current (or last) phase run.
    pub status: ProcessingStatus,
    /// Verse id, e.g. `GEN.1.1`.
    pub verse_id: String,
    /// Book, e.g. `GEN`.
    pub book: String,
    /// Chapter number.
    pub chapter: u32,
    /// Verse number.
    pub verse: u32,
    /// Verse text as given at the last start.
    pub text_content: String,
    /// The current (or last) phase.
    pub phase: Option<Phase>,
    /// Attempt number of the current phase run (1 = first try).
    pub attempt: u32,
    /// Latest outcome of every completed phase.
    pub completed_phases: BTreeMap<Phase, PhaseOutcome>,
    /// The last failure, cleared when the phase completes.
    pub last_failure: Option<Failure>,
}

/// A command to a verse's processing; the variant name is the command name in the URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Command {
    /// See [`StartVerseProcessing`].
    StartVerseProcessing(StartVerseProcessing),
    /// See [`CompleteVerseProcessing`].
    CompleteVerseProcessing(CompleteVerseProcessing),
    /// See [`FailVerseProcessing`].
    FailVerseProcessing(FailVerseProcessing),
    /// See [`RetryVerseProcessing`].
    RetryVerseProcessing(RetryVerseProcessing),
}

impl Command {
    /// The command names, in declaration order.
    pub const NAMES: &'static [&'static str] = &[
        "StartVerseProcessing",
        "CompleteVerseProcessing",
        "FailVerseProcessing",
        "RetryVerseProcessing",
    ];
}

eventfold_domain::domain_events! {
    /// An event of a verse's processing; serializes to its payload only.
    pub enum Event for "VerseProcessing" {
        /// See [`VerseProcessingStarted`].
        VerseProcessingStarted,
        /// See [`VerseProcessingCompleted`].
        VerseProcessingCompleted,
        /// See [`VerseProcessingFailed`].
        VerseProcessingFailed,
    }
    category: |_| EventCategory::Processing
}

const STARTED: &[&str] = &["VerseProcessingStarted"];

/// The transition table; `decide` consults it before anything else.
static MACHINE: LazyLock<StateMachine> = LazyLock::new(|| StateMachine {
    aggregate_type: VerseProcessing::TYPE,
    initial: "Initial",
    transitions: vec![
        edge("Initial", "StartVerseProcessing", STARTED, "Processing"),
        edge(
            "Processing",
            "CompleteVerseProcessing",
            &["VerseProcessingCompleted"],
            "Completed",
        ),
        edge(
            "Processing",
            "FailVerseProcessing",
            &["VerseProcessingFailed"],
            "Failed",
        ),
        edge("Failed", "RetryVerseProcessing", STARTED, "Processing"),
        edge("Completed", "StartVerseProcessing", STARTED, "Processing"),
    ],
});

impl VerseProcessing {
    /// The running phase, or `phase_mismatch` when `phase` is another one.
    fn running(&self, phase: Phase) -> Result<Phase, DomainError> {
        match self.phase {
            Some(running) if running == phase => Ok(running),
            running => Err(DomainError::rule(
                "phase_mismatch",
                format!("/phase is {phase:?} but the running phase is {running:?}"),
            )),
        }
    }
}

impl Aggregate for VerseProcessing {
    const TYPE: &'static str = "VerseProcessing";
    type Command = Command;
    type Event = Event;

    fn command_names() -> &'static [&'static str] {
        Command::NAMES
    }

    fn command_name(command: &Command) -> &'static str {
        match command {
            Command::StartVerseProcessing(_) => "StartVerseProcessing",
            Command::CompleteVerseProcessing(_) => "CompleteVerseProcessing",
            Command::FailVerseProcessing(_) => "FailVerseProcessing",
            Command::RetryVerseProcessing(_) => "RetryVerseProcessing",
        }
    }

    fn state_name(&self) -> &'static str {
        match self.status {
            ProcessingStatus::Pending => "Initial",
            ProcessingStatus::Processing => "Processing",
            ProcessingStatus::Completed => "Completed",
            ProcessingStatus::Failed => "Failed",
        }
    }

    fn decide(&self, command: &Command) -> Result<Vec<Event>, DomainError> {
        if !MACHINE.allows(self.state_name(), Self::command_name(command)) {
            return Err(self.invalid(command));
        }
        match command {
            Command::StartVerseProcessing(c) => self.start(c),
            Command::CompleteVerseProcessing(c) => self.complete(c),
            Command::FailVerseProcessing(c) => self.fail(c),
            Command::RetryVerseProcessing(c) => self.retry(c),
        }
    }

    fn apply(self, event: &Event) -> Self {
        match event {
            Event::VerseProcessingStarted(e) => self.on_started(e),
            Event::VerseProcessingCompleted(e) => self.on_completed(e),
            Event::VerseProcessingFailed(e) => self.on_failed(e),
        }
    }

    fn state_machine() -> StateMachine {
        MACHINE.clone()
    }
}
