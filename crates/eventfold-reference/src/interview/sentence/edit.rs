//! EditSentence: a person (or an AI assistant) corrects the sentence's text.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{Event, Sentence};
use crate::fields::{self, MAX_TEXT_CHARS};

/// Who changed the text.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EditorType {
    /// A person (the default: the user edit API).
    #[default]
    Human,
    /// An AI assistant.
    Ai,
}

/// Replaces the sentence's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditSentence {
    /// The new text.
    #[schemars(length(min = 1, max = crate::fields::MAX_TEXT_CHARS))]
    pub new_text: String,
    /// Who changed it; defaults to `human`.
    #[serde(default)]
    pub editor_type: EditorType,
}

/// The sentence's text was edited (seed 001 `SentenceEdited`; category domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SentenceEdited {
    /// Text before.
    pub old_text: String,
    /// Text after.
    pub new_text: String,
    /// Who changed it.
    pub editor_type: EditorType,
}

impl Sentence {
    pub(super) fn edit(&self, c: &EditSentence) -> Result<Vec<Event>, DomainError> {
        fields::required("/new_text", &c.new_text, MAX_TEXT_CHARS)?;
        if c.new_text == self.text {
            return Err(DomainError::rule(
                "text_unchanged",
                "/new_text equals the current text",
            ));
        }
        Ok(vec![Event::SentenceEdited(SentenceEdited {
            old_text: self.text.clone(),
            new_text: c.new_text.clone(),
            editor_type: c.editor_type,
        })])
    }

    pub(super) fn on_edited(mut self, e: &SentenceEdited) -> Self {
        self.text = e.new_text.clone();
        self.edited = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};

    use super::super::fixtures::*;
    use super::*;
    use crate::interview::sentence::Command;

    fn edit(text: &str) -> Command {
        Command::EditSentence(EditSentence {
            new_text: text.into(),
            editor_type: EditorType::Human,
        })
    }

    fn edited(old: &str, new: &str) -> Event {
        Event::SentenceEdited(SentenceEdited {
            old_text: old.into(),
            new_text: new.into(),
            editor_type: EditorType::Human,
        })
    }

    #[test]
    fn edits_the_text_and_remembers_the_old_one() {
        let state = given::<Sentence>([created()])
            .when(edit("We shipped it in March."))
            .then([edited("We shipped it in may.", "We shipped it in March.")]);
        assert_eq!(state.text, "We shipped it in March.");
        assert!(state.edited);
        assert_eq!(state.state_name(), "Created");
    }

    #[test]
    fn editing_keeps_the_analysis_and_the_override() {
        for (past, name) in [
            (vec![created(), generated("gpt-4o")], "Analyzed"),
            (
                vec![created(), generated("gpt-4o"), overridden()],
                "Overridden",
            ),
        ] {
            let state = given::<Sentence>(past)
                .when(edit("Edited."))
                .then([edited("We shipped it in may.", "Edited.")]);
            assert_eq!(state.state_name(), name);
        }
    }

    #[test]
    fn refuses_to_edit_before_creation() {
        given::<Sentence>([])
            .when(edit("x"))
            .then_error(DomainError::InvalidTransition {
                state: "Initial",
                command: "EditSentence",
            });
    }

    #[test]
    fn refuses_an_edit_that_changes_nothing() {
        let err = given::<Sentence>([created()])
            .when(edit("We shipped it in may."))
            .outcome()
            .unwrap_err();
        assert_eq!(err.code(), "text_unchanged");
    }

    #[test]
    fn refuses_a_nul_in_the_new_text() {
        let err = given::<Sentence>([created()])
            .when(edit("a\u{0}"))
            .outcome()
            .unwrap_err();
        assert_eq!(err.code(), "nul_in_string");
    }

    #[test]
    fn refuses_blank_new_text() {
        let err = given::<Sentence>([created()])
            .when(edit(" "))
            .outcome()
            .unwrap_err();
        assert_eq!(err.code(), "empty_field");
    }
}
