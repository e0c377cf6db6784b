//! StartVerseProcessing: the pipeline starts a phase on a verse (the first, or the next after a
//! completed one).

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, Phase, ProcessingStatus, VerseProcessing};
use crate::fields::{self, MAX_NAME_CHARS, MAX_TEXT_CHARS};

/// Highest chapter or verse number accepted (Psalm 119 has 176 verses).
pub const MAX_CHAPTER_OR_VERSE: u32 = 999;

/// Starts `phase` on the verse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartVerseProcessing {
    /// Verse id, e.g. `GEN.1.1`.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub verse_id: String,
    /// Book, e.g. `GEN`.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub book: String,
    /// Chapter number, `1..=999`.
    #[schemars(range(min = 1, max = MAX_CHAPTER_OR_VERSE))]
    pub chapter: u32,
    /// Verse number, `1..=999`.
    #[schemars(range(min = 1, max = MAX_CHAPTER_OR_VERSE))]
    pub verse: u32,
    /// The verse text to process.
    #[schemars(length(min = 1, max = crate::fields::MAX_TEXT_CHARS))]
    pub text_content: String,
    /// Phase to run.
    pub phase: Phase,
}

/// A phase run started (seed `VerseProcessingStartedEvent`; category processing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VerseProcessingStarted {
    /// Verse id.
    pub verse_id: String,
    /// Book.
    pub book: String,
    /// Chapter number.
    pub chapter: u32,
    /// Verse number.
    pub verse: u32,
    /// The verse text.
    pub text_content: String,
    /// Phase started.
    pub phase: Phase,
    /// Attempt number of this phase run: 1 for a start, 2.. for retries (not in the seed).
    pub attempt: u32,
}

fn chapter_or_verse(field: &str, n: u32) -> Result<(), DomainError> {
    if !(1..=MAX_CHAPTER_OR_VERSE).contains(&n) {
        return Err(DomainError::rule(
            "reference_out_of_range",
            format!("{field} must be between 1 and {MAX_CHAPTER_OR_VERSE}"),
        ));
    }
    Ok(())
}

impl VerseProcessing {
    pub(super) fn start(&self, c: &StartVerseProcessing) -> Result<Vec<Event>, DomainError> {
        fields::required("/verse_id", &c.verse_id, MAX_NAME_CHARS)?;
        fields::required("/book", &c.book, MAX_NAME_CHARS)?;
        chapter_or_verse("/chapter", c.chapter)?;
        chapter_or_verse("/verse", c.verse)?;
        fields::required("/text_content", &c.text_content, MAX_TEXT_CHARS)?;
        let same_verse = (c.verse_id.as_str(), c.book.as_str(), c.chapter, c.verse)
            == (
                self.verse_id.as_str(),
                self.book.as_str(),
                self.chapter,
                self.verse,
            );
        if self.status != ProcessingStatus::Pending && !same_verse {
            return Err(DomainError::rule(
                "verse_mismatch",
                format!(
                    "this aggregate processes {} ({} {}:{})",
                    self.verse_id, self.book, self.chapter, self.verse
                ),
            ));
        }
        Ok(vec![Event::VerseProcessingStarted(
            VerseProcessingStarted {
                verse_id: c.verse_id.clone(),
                book: c.book.clone(),
                chapter: c.chapter,
                verse: c.verse,
                text_content: c.text_content.clone(),
                phase: c.phase,
                attempt: 1,
            },
        )])
    }

    pub(super) fn on_started(self, e: &VerseProcessingStarted) -> Self {
        Self {
            status: ProcessingStatus::Processing,
            verse_id: e.verse_id.clone(),
            book: e.book.clone(),
            chapter: e.chapter,
            verse: e.verse,
            text_content: e.text_content.clone(),
            phase: Some(e.phase),
            attempt: e.attempt,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};

    use super::super::fixtures::*;
    use super::*;
    use crate::biblos::verse_processing::Command;

    fn rule(c: StartVerseProcessing) -> &'static str {
        given::<VerseProcessing>([])
            .when(Command::StartVerseProcessing(c))
            .outcome()
            .expect_err("expected a rule error")
            .code()
    }

    #[test]
    fn starts_the_first_phase_of_a_verse() {
        let state = given::<VerseProcessing>([])
            .when(Command::StartVerseProcessing(start(Phase::Linguistic)))
            .then([started(Phase::Linguistic, 1)]);
        assert_eq!(state.state_name(), "Processing");
        assert_eq!(state.phase, Some(Phase::Linguistic));
        assert_eq!(state.attempt, 1);
    }

    #[test]
    fn starts_the_next_phase_after_a_completed_one() {
        let state =
            given::<VerseProcessing>([started(Phase::Linguistic, 1), completed(Phase::Linguistic)])
                .when(Command::StartVerseProcessing(start(Phase::Theological)))
                .then([started(Phase::Theological, 1)]);
        assert_eq!(state.phase, Some(Phase::Theological));
        assert!(state.completed_phases.contains_key(&Phase::Linguistic));
    }

    #[test]
    fn refuses_to_start_while_a_phase_is_running() {
        given::<VerseProcessing>([started(Phase::Linguistic, 1)])
            .when(Command::StartVerseProcessing(start(Phase::Theological)))
            .then_error(DomainError::InvalidTransition {
                state: "Processing",
                command: "StartVerseProcessing",
            });
    }

    #[test]
    fn refuses_to_start_another_phase_over_a_failure() {
        given::<VerseProcessing>([started(Phase::Linguistic, 1), failed(Phase::Linguistic, 0)])
            .when(Command::StartVerseProcessing(start(Phase::Theological)))
            .then_error(DomainError::InvalidTransition {
                state: "Failed",
                command: "StartVerseProcessing",
            });
    }

    #[test]
    fn refuses_another_verse_on_the_same_aggregate() {
        let c = StartVerseProcessing {
            verse_id: "GEN.1.2".into(),
            verse: 2,
            ..start(Phase::Theological)
        };
        let code =
            given::<VerseProcessing>([started(Phase::Linguistic, 1), completed(Phase::Linguistic)])
                .when(Command::StartVerseProcessing(c))
                .outcome()
                .unwrap_err()
                .code();
        assert_eq!(code, "verse_mismatch");
    }

    #[test]
    fn refuses_chapter_zero() {
        let c = StartVerseProcessing {
            chapter: 0,
            ..start(Phase::Linguistic)
        };
        assert_eq!(rule(c), "reference_out_of_range");
    }

    #[test]
    fn refuses_a_verse_number_above_the_cap() {
        let c = StartVerseProcessing {
            verse: MAX_CHAPTER_OR_VERSE + 1,
            ..start(Phase::Linguistic)
        };
        assert_eq!(rule(c), "reference_out_of_range");
    }

    #[test]
    fn refuses_an_empty_verse_text() {
        let c = StartVerseProcessing {
            text_content: String::new(),
            ..start(Phase::Linguistic)
        };
        assert_eq!(rule(c), "empty_field");
    }

    #[test]
    fn refuses_a_verse_text_over_ten_thousand_characters() {
        let c = StartVerseProcessing {
            text_content: "א".repeat(MAX_TEXT_CHARS + 1),
            ..start(Phase::Linguistic)
        };
        assert_eq!(rule(c), "text_too_long");
    }

    #[test]
    fn refuses_a_nul_in_the_book() {
        let c = StartVerseProcessing {
            book: "G\u{0}N".into(),
            ..start(Phase::Linguistic)
        };
        assert_eq!(rule(c), "nul_in_string");
    }
}
