//! Events written by an older build (schema version 1 JSON rows) hydrate to the v2 state on the
//! real PostgreSQL, through the same upcasters the projector uses; the stored rows stay v1.

use chrono::Utc;
use eventfold_domain::Aggregate;
use eventfold_postgres::{
    Actor, ActorKind, AppendOutcome, CommandMeta, CommandRecord, EventStore, NewEvent, hydrate,
};
use eventfold_reference::opportunity::opportunity::{AiSolutionCategory, AiSolutionType};
use eventfold_reference::opportunity::user::{NotificationSettings, UserPreferences};
use eventfold_reference::{Opportunity, User};
use eventfold_tests::{Stack, unique};
use serde_json::{Value, json};
use uuid::Uuid;

fn meta() -> CommandMeta {
    CommandMeta {
        command_id: Uuid::new_v4(),
        correlation_id: Uuid::new_v4(),
        causation_id: None,
        actor: Actor {
            kind: ActorKind::System,
            id: "old-build".into(),
        },
        tenant: "default".into(),
        metadata: json!({"build": "v1"}),
        occurred_at: Utc::now(),
    }
}

fn v1(event_type: &str, payload: Value) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.into(),
        schema_version: 1,
        category: "domain".into(),
        payload,
    }
}

/// Appends `events` as an old build would have: version 1 payloads.
async fn append_v1(store: &EventStore, aggregate_type: &str, id: &str, events: &[NewEvent]) {
    let record = CommandRecord {
        command_name: "Import".into(),
        request_hash: vec![1],
        response: json!({}),
    };
    let outcome = store
        .append(aggregate_type, id, 0, events, &meta(), &record)
        .await
        .expect("append v1 rows");
    assert!(
        matches!(outcome, AppendOutcome::Appended { .. }),
        "{outcome:?}"
    );
}

async fn stored_versions(store: &EventStore, aggregate_type: &str, id: &str) -> Vec<(i32, Value)> {
    sqlx::query_as(
        "SELECT schema_version, payload FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY version",
    )
    .bind(aggregate_type)
    .bind(id)
    .fetch_all(store.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn opportunity_v1_events_hydrate_to_the_v2_state() {
    let stack = Stack::from_env().await;
    let store = EventStore::new(stack.writer_pool().await);
    let id = unique("opportunity");
    let created = json!({"opportunity_id": "123", "title": "AI Chatbot", "description": "",
                         "ai_solution_type": "nlp", "market_size": 1000000});
    let updated = json!({"title": null, "description": "Now by email too", "market_size": 2500000});
    append_v1(
        &store,
        Opportunity::TYPE,
        &id,
        &[
            v1("OpportunityCreated", created.clone()),
            v1("OpportunityUpdated", updated),
        ],
    )
    .await;

    let (state, version) = hydrate::<Opportunity>(&store, "default", &id, None, None)
        .await
        .expect("hydrate v1 rows");
    assert_eq!(version, 2);
    assert_eq!(state.state_name(), "Discovered");
    assert_eq!(state.market_size_estimate, 2_500_000, "renamed and updated");
    assert_eq!(state.ai_solution_type, Some(AiSolutionType::Nlp));
    assert_eq!(
        state.ai_solution_category,
        Some(AiSolutionCategory::NaturalLanguageProcessing),
        "derived from the type"
    );
    assert_eq!(state.confidence_score, 0.7, "the seed's default");
    assert_eq!(state.description, "Now by email too");

    let rows = stored_versions(&store, Opportunity::TYPE, &id).await;
    assert_eq!(rows[0], (1, created), "the stored event is never rewritten");
}

#[tokio::test]
async fn user_v1_events_hydrate_to_the_v1_1_state() {
    let stack = Stack::from_env().await;
    let store = EventStore::new(stack.writer_pool().await);
    let id = unique("user");
    append_v1(
        &store,
        User::TYPE,
        &id,
        &[
            v1(
                "UserRegistered",
                json!({"user_id": "456", "email": "user@example.com", "display_name": null,
                       "expertise_domains": "ai, machine learning,,nlp "}),
            ),
            v1(
                "UserProfileUpdated",
                json!({"display_name": "Ada", "expertise_domains": null}),
            ),
        ],
    )
    .await;

    let (state, version) = hydrate::<User>(&store, "default", &id, None, None)
        .await
        .expect("hydrate v1 rows");
    assert_eq!(version, 2);
    assert_eq!(state.state_name(), "Active");
    assert_eq!(
        state.expertise_domains,
        vec!["ai", "machine learning", "nlp"],
        "split, trimmed, empty parts dropped"
    );
    assert_eq!(state.display_name.as_deref(), Some("Ada"));
    assert_eq!(state.user_preferences, UserPreferences::default());
    assert_eq!(state.notification_settings, NotificationSettings::default());
    let rows = stored_versions(&store, User::TYPE, &id).await;
    assert!(rows.iter().all(|(v, _)| *v == 1), "{rows:?}");
}

#[tokio::test]
async fn a_stored_version_without_an_upcaster_path_is_a_typed_error_naming_the_event() {
    let stack = Stack::from_env().await;
    let store = EventStore::new(stack.writer_pool().await);
    let id = unique("opportunity");
    let mut newer = v1(
        "OpportunityCreated",
        json!({"opportunity_id": "1", "title": "t", "description": "", "ai_solution_type": "nlp",
               "market_size_estimate": 1, "ai_solution_category": "natural_language_processing",
               "confidence_score": 0.5, "region": "EU"}),
    );
    newer.schema_version = 3;
    append_v1(&store, Opportunity::TYPE, &id, &[newer]).await;
    let err = hydrate::<Opportunity>(&store, "default", &id, None, None)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("OpportunityCreated") && text.contains("v3"),
        "{text}"
    );
}
