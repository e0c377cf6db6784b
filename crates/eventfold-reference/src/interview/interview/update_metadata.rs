//! UpdateInterviewMetadata: a person corrects the title or language or edits metadata.

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Event, Interview, language_tag};
use crate::fields::{self, MAX_NAME_CHARS};

/// Changes the given fields; absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateInterviewMetadata {
    /// New title.
    #[serde(default)]
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub title: Option<String>,
    /// New BCP 47 language tag.
    #[serde(default)]
    #[schemars(extend("pattern" = crate::interview::interview::LANGUAGE_TAG_PATTERN))]
    pub language: Option<String>,
    /// Metadata keys to set; a `null` value removes the key.
    #[serde(default)]
    #[schemars(extend("maxProperties" = crate::fields::MAX_ITEMS, "propertyNames" = {"minLength": 1, "maxLength": crate::fields::MAX_NAME_CHARS}))]
    pub metadata_diff: Map<String, Value>,
}

/// The interview's metadata changed (seed 001 `InterviewMetadataUpdated`; category domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InterviewMetadataUpdated {
    /// New title, if changed.
    pub title: Option<String>,
    /// New language, if changed.
    pub language: Option<String>,
    /// Metadata keys set (`null` = removed).
    pub metadata_diff: Map<String, Value>,
}

impl Interview {
    pub(super) fn update_metadata(
        &self,
        c: &UpdateInterviewMetadata,
    ) -> Result<Vec<Event>, DomainError> {
        if let Some(title) = &c.title {
            fields::required("/title", title, MAX_NAME_CHARS)?;
        }
        language_tag("/language", c.language.as_deref())?;
        fields::json_object("/metadata_diff", &c.metadata_diff)?;
        if c.title.is_none() && c.language.is_none() && c.metadata_diff.is_empty() {
            return Err(DomainError::rule(
                "empty_update",
                "give a title, a language or a metadata_diff",
            ));
        }
        Ok(vec![Event::InterviewMetadataUpdated(
            InterviewMetadataUpdated {
                title: c.title.clone(),
                language: c.language.clone(),
                metadata_diff: c.metadata_diff.clone(),
            },
        )])
    }

    pub(super) fn on_metadata_updated(mut self, e: &InterviewMetadataUpdated) -> Self {
        if let Some(title) = &e.title {
            self.title = title.clone();
        }
        if let Some(language) = &e.language {
            self.language = Some(language.clone());
        }
        for (key, value) in &e.metadata_diff {
            if value.is_null() {
                self.metadata.remove(key);
            } else {
                self.metadata.insert(key.clone(), value.clone());
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};
    use serde_json::json;

    use super::super::fixtures::*;
    use super::*;
    use crate::interview::interview::{Command, InterviewStatus};

    fn diff(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn rule(c: UpdateInterviewMetadata) -> &'static str {
        given::<Interview>([created()])
            .when(Command::UpdateInterviewMetadata(c))
            .outcome()
            .expect_err("expected a rule error")
            .code()
    }

    #[test]
    fn renames_an_interview_and_keeps_the_rest() {
        let c = UpdateInterviewMetadata {
            title: Some("Interview 7 (corrected)".into()),
            ..Default::default()
        };
        let state = given::<Interview>([created()])
            .when(Command::UpdateInterviewMetadata(c))
            .then([Event::InterviewMetadataUpdated(InterviewMetadataUpdated {
                title: Some("Interview 7 (corrected)".into()),
                language: None,
                metadata_diff: Map::new(),
            })]);
        assert_eq!(state.title, "Interview 7 (corrected)");
        assert_eq!(state.language.as_deref(), Some("en"));
        assert_eq!(state.state_name(), "Created");
    }

    #[test]
    fn merges_metadata_and_removes_keys_set_to_null() {
        let c = UpdateInterviewMetadata {
            metadata_diff: diff(json!({"interviewer": null, "duration_min": 45})),
            ..Default::default()
        };
        let state = given::<Interview>([created()])
            .when(Command::UpdateInterviewMetadata(c.clone()))
            .then([Event::InterviewMetadataUpdated(InterviewMetadataUpdated {
                title: None,
                language: None,
                metadata_diff: c.metadata_diff,
            })]);
        assert_eq!(
            Value::Object(state.metadata),
            json!({"duration_min": 45, "site": "Lisbon"})
        );
    }

    #[test]
    fn updates_metadata_in_every_status_but_archived() {
        use InterviewStatus::*;
        for path in [
            vec![],
            vec![status_changed(Created, Processing)],
            vec![
                status_changed(Created, Processing),
                status_changed(Processing, Completed),
            ],
            vec![status_changed(Created, Failed)],
        ] {
            let past: Vec<Event> = std::iter::once(created()).chain(path).collect();
            let c = UpdateInterviewMetadata {
                language: Some("pt-BR".into()),
                ..Default::default()
            };
            let state = given::<Interview>(past)
                .when(Command::UpdateInterviewMetadata(c))
                .outcome();
            assert!(state.is_ok(), "{state:?}");
        }
    }

    #[test]
    fn an_archived_interview_is_read_only() {
        let c = UpdateInterviewMetadata {
            title: Some("x".into()),
            ..Default::default()
        };
        given::<Interview>([
            created(),
            status_changed(InterviewStatus::Created, InterviewStatus::Archived),
        ])
        .when(Command::UpdateInterviewMetadata(c))
        .then_error(DomainError::InvalidTransition {
            state: "Archived",
            command: "UpdateInterviewMetadata",
        });
    }

    #[test]
    fn refuses_to_update_before_creation() {
        given::<Interview>([])
            .when(Command::UpdateInterviewMetadata(UpdateInterviewMetadata {
                title: Some("x".into()),
                ..Default::default()
            }))
            .then_error(DomainError::InvalidTransition {
                state: "Initial",
                command: "UpdateInterviewMetadata",
            });
    }

    #[test]
    fn refuses_an_update_that_changes_nothing() {
        assert_eq!(rule(UpdateInterviewMetadata::default()), "empty_update");
    }

    #[test]
    fn refuses_a_blank_title() {
        let c = UpdateInterviewMetadata {
            title: Some("   ".into()),
            ..Default::default()
        };
        assert_eq!(rule(c), "empty_field");
    }

    #[test]
    fn refuses_a_malformed_language_tag() {
        let c = UpdateInterviewMetadata {
            language: Some("-x".into()),
            ..Default::default()
        };
        assert_eq!(rule(c), "invalid_language_tag");
    }

    #[test]
    fn refuses_a_nul_in_a_metadata_key() {
        let c = UpdateInterviewMetadata {
            metadata_diff: diff(json!({"a\u{0}": 1})),
            ..Default::default()
        };
        assert_eq!(rule(c), "nul_in_string");
    }
}
