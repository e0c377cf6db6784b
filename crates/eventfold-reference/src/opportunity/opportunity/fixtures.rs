//! Sample commands and events shared by the opportunity tests.

use super::*;

pub(super) fn create() -> CreateOpportunity {
    CreateOpportunity {
        opportunity_id: "123".into(),
        title: "AI Chatbot".into(),
        description: "Answers support tickets".into(),
        ai_solution_type: AiSolutionType::Nlp,
        market_size_estimate: 1_000_000,
        confidence_score: Some(0.8),
    }
}

pub(super) fn created() -> Event {
    Event::OpportunityCreated(OpportunityCreated {
        opportunity_id: "123".into(),
        title: "AI Chatbot".into(),
        description: "Answers support tickets".into(),
        ai_solution_type: AiSolutionType::Nlp,
        ai_solution_category: AiSolutionCategory::NaturalLanguageProcessing,
        market_size_estimate: 1_000_000,
        confidence_score: 0.8,
    })
}

pub(super) fn validate(score: f64) -> ValidateOpportunity {
    ValidateOpportunity {
        validator_id: "reviewer-1".into(),
        score,
        comment: Some("solid".into()),
    }
}

pub(super) fn validated(score: f64) -> Event {
    let c = validate(score);
    Event::OpportunityValidated(OpportunityValidated {
        validator_id: c.validator_id,
        score,
        comment: c.comment,
    })
}

pub(super) fn archive() -> ArchiveOpportunity {
    ArchiveOpportunity {
        reason: "market vanished".into(),
    }
}

pub(super) fn archived() -> Event {
    Event::OpportunityArchived(OpportunityArchived {
        reason: "market vanished".into(),
    })
}

/// Representative commands of every kind, for the state machine check.
pub(super) fn samples() -> Vec<Command> {
    vec![
        Command::CreateOpportunity(create()),
        Command::UpdateOpportunity(UpdateOpportunity {
            title: Some("AI Chatbot 2".into()),
            ..Default::default()
        }),
        Command::ValidateOpportunity(validate(0.9)),
        Command::ArchiveOpportunity(archive()),
    ]
}
