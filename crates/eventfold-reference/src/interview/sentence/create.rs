//! CreateSentence: the pipeline splits an interview into sentences.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, Sentence};
use crate::fields::{self, MAX_NAME_CHARS, MAX_TEXT_CHARS};

/// Creates the sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSentence {
    /// Interview it belongs to.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub interview_id: String,
    /// Position in the interview (0-based).
    pub index: u32,
    /// The text.
    #[schemars(length(min = 1, max = crate::fields::MAX_TEXT_CHARS))]
    pub text: String,
    /// Speaker, if known.
    #[serde(default)]
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub speaker: Option<String>,
    /// Start offset in the recording, in milliseconds.
    #[serde(default)]
    #[schemars(range(max = crate::fields::MAX_SAFE_INTEGER))]
    pub start_ms: Option<u64>,
    /// End offset in the recording, in milliseconds (not before `start_ms`).
    #[serde(default)]
    #[schemars(range(max = crate::fields::MAX_SAFE_INTEGER))]
    pub end_ms: Option<u64>,
}

/// A sentence was created (seed 001 `SentenceCreated`; category domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SentenceCreated {
    /// Interview it belongs to.
    pub interview_id: String,
    /// Position in the interview.
    pub index: u32,
    /// The text.
    pub text: String,
    /// Speaker, if known.
    pub speaker: Option<String>,
    /// Start offset, in milliseconds.
    pub start_ms: Option<u64>,
    /// End offset, in milliseconds.
    pub end_ms: Option<u64>,
}

impl Sentence {
    pub(super) fn create(&self, c: &CreateSentence) -> Result<Vec<Event>, DomainError> {
        fields::required("/interview_id", &c.interview_id, MAX_NAME_CHARS)?;
        fields::required("/text", &c.text, MAX_TEXT_CHARS)?;
        if let Some(speaker) = &c.speaker {
            fields::required("/speaker", speaker, MAX_NAME_CHARS)?;
        }
        if let Some(start) = c.start_ms {
            fields::safe_integer("/start_ms", start)?;
        }
        if let Some(end) = c.end_ms {
            fields::safe_integer("/end_ms", end)?;
        }
        if let (Some(start), Some(end)) = (c.start_ms, c.end_ms)
            && end < start
        {
            return Err(DomainError::rule(
                "time_range_inverted",
                "/end_ms must not be before /start_ms",
            ));
        }
        Ok(vec![Event::SentenceCreated(SentenceCreated {
            interview_id: c.interview_id.clone(),
            index: c.index,
            text: c.text.clone(),
            speaker: c.speaker.clone(),
            start_ms: c.start_ms,
            end_ms: c.end_ms,
        })])
    }

    pub(super) fn on_created(self, e: &SentenceCreated) -> Self {
        Self {
            created: true,
            interview_id: e.interview_id.clone(),
            index: e.index,
            text: e.text.clone(),
            speaker: e.speaker.clone(),
            start_ms: e.start_ms,
            end_ms: e.end_ms,
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
    use crate::fields::MAX_SAFE_INTEGER;
    use crate::interview::sentence::Command;

    fn rule(c: CreateSentence) -> &'static str {
        given::<Sentence>([])
            .when(Command::CreateSentence(c))
            .outcome()
            .expect_err("expected a rule error")
            .code()
    }

    #[test]
    fn creates_a_sentence_of_an_interview() {
        let state = given::<Sentence>([])
            .when(Command::CreateSentence(create()))
            .then([created()]);
        assert_eq!(state.state_name(), "Created");
        assert!(!state.edited);
    }

    #[test]
    fn refuses_to_create_a_sentence_twice() {
        for past in [
            vec![created()],
            vec![created(), generated("gpt-4o")],
            vec![created(), overridden()],
        ] {
            let state = Sentence::replay(&past).state_name();
            given::<Sentence>(past)
                .when(Command::CreateSentence(create()))
                .then_error(DomainError::InvalidTransition {
                    state,
                    command: "CreateSentence",
                });
        }
    }

    #[test]
    fn refuses_an_end_before_the_start() {
        let c = CreateSentence {
            start_ms: Some(2000),
            end_ms: Some(1000),
            ..create()
        };
        assert_eq!(rule(c), "time_range_inverted");
    }

    #[test]
    fn refuses_an_offset_beyond_exact_json_integers() {
        let c = CreateSentence {
            end_ms: Some(MAX_SAFE_INTEGER + 1),
            ..create()
        };
        assert_eq!(rule(c), "number_out_of_range");
    }

    #[test]
    fn refuses_empty_text() {
        let c = CreateSentence {
            text: "\n".into(),
            ..create()
        };
        assert_eq!(rule(c), "empty_field");
    }

    #[test]
    fn refuses_text_over_ten_thousand_characters() {
        let c = CreateSentence {
            text: "🙂".repeat(MAX_TEXT_CHARS + 1),
            ..create()
        };
        assert_eq!(rule(c), "text_too_long");
    }

    #[test]
    fn refuses_a_nul_in_the_speaker() {
        let c = CreateSentence {
            speaker: Some("S\u{0}1".into()),
            ..create()
        };
        assert_eq!(rule(c), "nul_in_string");
    }

    #[test]
    fn refuses_an_empty_interview_id() {
        let c = CreateSentence {
            interview_id: String::new(),
            ..create()
        };
        assert_eq!(rule(c), "empty_field");
    }
}
