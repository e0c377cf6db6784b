//! Sample commands and events shared by the sentence tests.

use serde_json::json;

use super::*;

pub(super) fn create() -> CreateSentence {
    CreateSentence {
        interview_id: "7f1c0d1e-interview-7".into(),
        index: 3,
        text: "We shipped it in may.".into(),
        speaker: Some("S1".into()),
        start_ms: Some(12_000),
        end_ms: Some(14_500),
    }
}

pub(super) fn created() -> Event {
    let c = create();
    Event::SentenceCreated(SentenceCreated {
        interview_id: c.interview_id,
        index: c.index,
        text: c.text,
        speaker: c.speaker,
        start_ms: c.start_ms,
        end_ms: c.end_ms,
    })
}

pub(super) fn generate(model: &str) -> GenerateAnalysis {
    GenerateAnalysis {
        model: model.into(),
        model_version: "2025-08-01".into(),
        classification: json!({
            "function_type": "declarative",
            "structure_type": "simple",
            "purpose": "informing"
        })
        .as_object()
        .unwrap()
        .clone(),
        keywords: vec!["shipping".into()],
        topics: vec!["release".into()],
        domain_keywords: vec!["launch".into()],
        confidence: Some(0.87),
        raw_ref: None,
    }
}

pub(super) fn generated(model: &str) -> Event {
    let c = generate(model);
    Event::AnalysisGenerated(AnalysisGenerated {
        model: c.model,
        model_version: c.model_version,
        classification: c.classification,
        keywords: c.keywords,
        topics: c.topics,
        domain_keywords: c.domain_keywords,
        confidence: c.confidence,
        raw_ref: c.raw_ref,
    })
}

pub(super) fn override_function_type() -> OverrideAnalysis {
    OverrideAnalysis {
        fields_overridden: json!({"function_type": "interrogative"})
            .as_object()
            .unwrap()
            .clone(),
        note: Some("it is asked, not stated".into()),
    }
}

pub(super) fn overridden() -> Event {
    let c = override_function_type();
    Event::AnalysisOverridden(AnalysisOverridden {
        fields_overridden: c.fields_overridden,
        note: c.note,
    })
}

/// Representative commands of every kind, for the state machine check.
pub(super) fn samples() -> Vec<Command> {
    vec![
        Command::CreateSentence(create()),
        Command::EditSentence(EditSentence {
            new_text: "We shipped it in March.".into(),
            editor_type: EditorType::Human,
        }),
        Command::GenerateAnalysis(generate("gpt-4o")),
        Command::OverrideAnalysis(override_function_type()),
        Command::ClearAnalysisOverride(ClearAnalysisOverride::default()),
    ]
}
