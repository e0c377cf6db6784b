//! Sample commands and events shared by the verse-processing tests.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;

pub(super) fn start(phase: Phase) -> StartVerseProcessing {
    StartVerseProcessing {
        verse_id: "GEN.1.1".into(),
        book: "GEN".into(),
        chapter: 1,
        verse: 1,
        text_content: "In the beginning God created the heaven and the earth.".into(),
        phase,
    }
}

pub(super) fn started(phase: Phase, attempt: u32) -> Event {
    let c = start(phase);
    Event::VerseProcessingStarted(VerseProcessingStarted {
        verse_id: c.verse_id,
        book: c.book,
        chapter: c.chapter,
        verse: c.verse,
        text_content: c.text_content,
        phase,
        attempt,
    })
}

pub(super) fn complete(phase: Phase) -> CompleteVerseProcessing {
    CompleteVerseProcessing {
        phase,
        duration_ms: 1250,
        agent_results: BTreeMap::from([(
            "morphology".to_owned(),
            json!({"lemmas": ["ἀρχή"], "confidence": 0.9})
                .as_object()
                .unwrap()
                .clone(),
        )]),
        quality_score: 0.92,
    }
}

pub(super) fn completed(phase: Phase) -> Event {
    let c = complete(phase);
    Event::VerseProcessingCompleted(VerseProcessingCompleted {
        verse_id: "GEN.1.1".into(),
        phase,
        duration_ms: c.duration_ms,
        agent_results: c.agent_results,
        quality_score: c.quality_score,
    })
}

pub(super) fn fail(phase: Phase) -> FailVerseProcessing {
    FailVerseProcessing {
        phase,
        error_type: "TimeoutError".into(),
        error_message: "agent did not answer within 30 s".into(),
        stack_trace: Some("at agents/theology.py:42".into()),
        retryable: true,
    }
}

/// The failure a retryable [`fail`] emits after `retry_count` retries.
pub(super) fn failed(phase: Phase, retry_count: u32) -> Event {
    let c = fail(phase);
    Event::VerseProcessingFailed(VerseProcessingFailed {
        verse_id: "GEN.1.1".into(),
        phase,
        error_type: c.error_type,
        error_message: c.error_message,
        stack_trace: c.stack_trace,
        retry_count,
        will_retry: retry_count < MAX_AUTOMATIC_RETRIES,
    })
}

/// Representative commands of every kind, for the state machine check.
pub(super) fn samples() -> Vec<Command> {
    vec![
        Command::StartVerseProcessing(start(Phase::Linguistic)),
        Command::StartVerseProcessing(start(Phase::Theological)),
        Command::CompleteVerseProcessing(complete(Phase::Linguistic)),
        Command::CompleteVerseProcessing(complete(Phase::Theological)),
        Command::FailVerseProcessing(fail(Phase::Linguistic)),
        Command::FailVerseProcessing(fail(Phase::Theological)),
        Command::RetryVerseProcessing(RetryVerseProcessing {}),
    ]
}
