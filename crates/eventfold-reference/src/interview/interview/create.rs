//! CreateInterview: an interview of a project is uploaded.

use chrono::{DateTime, Utc};
use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Event, Interview, InterviewStatus, language_tag};
use crate::fields::{self, MAX_NAME_CHARS, MAX_TEXT_CHARS};

/// Creates the interview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInterview {
    /// Project it belongs to.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub project_id: String,
    /// Title, at most 256 characters.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub title: String,
    /// Where it came from (file name, URL), at most 10,000 characters.
    #[schemars(length(min = 1, max = crate::fields::MAX_TEXT_CHARS))]
    pub source: String,
    /// BCP 47 language tag, e.g. `en`.
    #[serde(default)]
    #[schemars(extend("pattern" = crate::interview::interview::LANGUAGE_TAG_PATTERN))]
    pub language: Option<String>,
    /// When the interview took place (RFC 3339).
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// Open metadata.
    #[serde(default)]
    #[schemars(extend("maxProperties" = crate::fields::MAX_ITEMS, "propertyNames" = {"minLength": 1, "maxLength": crate::fields::MAX_NAME_CHARS}))]
    pub metadata: Map<String, Value>,
}

/// An interview was created (seed 001 `InterviewCreated`; category domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InterviewCreated {
    /// Project it belongs to.
    pub project_id: String,
    /// Title.
    pub title: String,
    /// Where it came from.
    pub source: String,
    /// BCP 47 language tag.
    pub language: Option<String>,
    /// When the interview took place.
    pub started_at: Option<DateTime<Utc>>,
    /// Open metadata.
    pub metadata: Map<String, Value>,
}

impl Interview {
    pub(super) fn create(&self, c: &CreateInterview) -> Result<Vec<Event>, DomainError> {
        fields::required("/project_id", &c.project_id, MAX_NAME_CHARS)?;
        fields::required("/title", &c.title, MAX_NAME_CHARS)?;
        fields::required("/source", &c.source, MAX_TEXT_CHARS)?;
        language_tag("/language", c.language.as_deref())?;
        fields::json_object("/metadata", &c.metadata)?;
        Ok(vec![Event::InterviewCreated(InterviewCreated {
            project_id: c.project_id.clone(),
            title: c.title.clone(),
            source: c.source.clone(),
            language: c.language.clone(),
            started_at: c.started_at,
            metadata: c.metadata.clone(),
        })])
    }

    pub(super) fn on_created(self, e: &InterviewCreated) -> Self {
        Self {
            status: Some(InterviewStatus::Created),
            project_id: e.project_id.clone(),
            title: e.title.clone(),
            source: e.source.clone(),
            language: e.language.clone(),
            started_at: e.started_at,
            metadata: e.metadata.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};
    use serde_json::json;

    use super::super::fixtures::*;
    use super::*;
    use crate::interview::interview::Command;

    fn rule(c: CreateInterview) -> &'static str {
        given::<Interview>([])
            .when(Command::CreateInterview(c))
            .outcome()
            .expect_err("expected a rule error")
            .code()
    }

    #[test]
    fn creates_an_interview_in_a_project() {
        let state = given::<Interview>([])
            .when(Command::CreateInterview(create()))
            .then([created()]);
        assert_eq!(state.state_name(), "Created");
        assert_eq!(state.project_id, "default-project");
        assert_eq!(state.language.as_deref(), Some("en"));
    }

    #[test]
    fn refuses_to_create_an_interview_twice() {
        use InterviewStatus::*;
        let paths: &[&[InterviewStatus]] = &[
            &[],
            &[Processing],
            &[Processing, Completed],
            &[Failed],
            &[Archived],
        ];
        for path in paths {
            let mut past = vec![created()];
            let mut from = Created;
            for to in *path {
                past.push(status_changed(from, *to));
                from = *to;
            }
            let state = Interview::replay(&past).state_name();
            given::<Interview>(past)
                .when(Command::CreateInterview(create()))
                .then_error(DomainError::InvalidTransition {
                    state,
                    command: "CreateInterview",
                });
        }
    }

    #[test]
    fn refuses_an_empty_project_id() {
        let c = CreateInterview {
            project_id: String::new(),
            ..create()
        };
        assert_eq!(rule(c), "empty_field");
    }

    #[test]
    fn refuses_a_title_over_the_cap() {
        let c = CreateInterview {
            title: "t".repeat(MAX_NAME_CHARS + 1),
            ..create()
        };
        assert_eq!(rule(c), "text_too_long");
    }

    #[test]
    fn refuses_a_nul_in_the_source() {
        let c = CreateInterview {
            source: "a\u{0}.txt".into(),
            ..create()
        };
        assert_eq!(rule(c), "nul_in_string");
    }

    #[test]
    fn refuses_a_malformed_language_tag() {
        let c = CreateInterview {
            language: Some("english please".into()),
            ..create()
        };
        assert_eq!(rule(c), "invalid_language_tag");
    }

    #[test]
    fn refuses_a_nul_in_the_language_tag() {
        let c = CreateInterview {
            language: Some("e\u{0}n".into()),
            ..create()
        };
        assert_eq!(rule(c), "nul_in_string");
    }

    #[test]
    fn refuses_a_nul_in_a_metadata_value() {
        let c = CreateInterview {
            metadata: json!({"interviewer": "\u{0}"}).as_object().unwrap().clone(),
            ..create()
        };
        assert_eq!(rule(c), "nul_in_string");
    }
}
