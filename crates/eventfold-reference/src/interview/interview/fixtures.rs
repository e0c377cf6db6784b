//! Sample commands and events shared by the interview tests.

use chrono::{TimeZone, Utc};
use serde_json::json;

use super::*;

pub(super) fn create() -> CreateInterview {
    CreateInterview {
        project_id: "default-project".into(),
        title: "Interview 7".into(),
        source: "uploads/interview-7.txt".into(),
        language: Some("en".into()),
        started_at: Some(Utc.with_ymd_and_hms(2025, 10, 16, 9, 30, 0).unwrap()),
        metadata: json!({"interviewer": "R. Silva", "site": "Lisbon"})
            .as_object()
            .unwrap()
            .clone(),
    }
}

pub(super) fn created() -> Event {
    let c = create();
    Event::InterviewCreated(InterviewCreated {
        project_id: c.project_id,
        title: c.title,
        source: c.source,
        language: c.language,
        started_at: c.started_at,
        metadata: c.metadata,
    })
}

pub(super) fn status_changed(from: InterviewStatus, to: InterviewStatus) -> Event {
    Event::InterviewStatusChanged(InterviewStatusChanged {
        from_status: from,
        to_status: to,
        reason: None,
    })
}

/// Representative commands of every kind (every target status), for the state machine check.
pub(super) fn samples() -> Vec<Command> {
    use InterviewStatus::*;
    let mut samples = vec![Command::CreateInterview(create())];
    for to in [Created, Processing, Completed, Failed, Archived] {
        samples.push(Command::ChangeInterviewStatus(ChangeInterviewStatus {
            to_status: to,
            reason: None,
        }));
    }
    samples.push(Command::UpdateInterviewMetadata(UpdateInterviewMetadata {
        title: Some("Interview 7 (corrected)".into()),
        ..Default::default()
    }));
    samples
}
