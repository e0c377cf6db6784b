//! Commands through hydrate → decide → append on the real PostgreSQL, with the seed 000
//! CrossReference aggregate: transparent conflict retries, strict expected versions, idempotent
//! command ids, and temporal reads.

use chrono::Utc;
use eventfold_domain::Aggregate;
use eventfold_postgres::{EventStore, HandleError, RetryPolicy, handle, hydrate};
use eventfold_reference::CrossReference;
use eventfold_tests::xref::{discover, meta, validate};
use eventfold_tests::{Stack, unique};

#[tokio::test]
async fn concurrent_validations_are_all_applied_by_retrying_conflicts_transparently() {
    let stack = Stack::from_env().await;
    let store = EventStore::new(stack.writer_pool().await);
    let id = unique("xref");
    handle::<CrossReference>(
        &store,
        &id,
        &discover(),
        &meta(),
        b"d",
        None,
        RetryPolicy::default(),
    )
    .await
    .unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                let policy = RetryPolicy {
                    max_attempts: 50,
                    ..RetryPolicy::default()
                };
                handle::<CrossReference>(&store, &id, &validate(), &meta(), &[i], None, policy)
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("no conflict surfaces");
    }
    let (state, version) = hydrate::<CrossReference>(&store, "default", &id, None, None)
        .await
        .unwrap();
    assert_eq!(version, 7);
    assert_eq!(state.state_name(), "Validated");
    let versions: Vec<i64> = store
        .load("default", CrossReference::TYPE, &id, 0, None, None, None)
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, (1..=7).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_stale_expected_version_is_refused_without_retry_and_writes_nothing() {
    let stack = Stack::from_env().await;
    let store = EventStore::new(stack.writer_pool().await);
    let id = unique("xref");
    let p = RetryPolicy::default();
    handle::<CrossReference>(&store, &id, &discover(), &meta(), b"d", Some(0), p)
        .await
        .unwrap();
    let err = handle::<CrossReference>(&store, &id, &validate(), &meta(), b"v", Some(0), p)
        .await
        .unwrap_err();
    assert!(
        matches!(err, HandleError::Conflict { current_version: 1 }),
        "{err:?}"
    );
    assert_eq!(
        store
            .current_version("default", CrossReference::TYPE, &id)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_repeated_command_id_replays_the_first_result_and_a_different_request_is_refused() {
    let stack = Stack::from_env().await;
    let store = EventStore::new(stack.writer_pool().await);
    let id = unique("xref");
    let p = RetryPolicy::default();
    let m = meta();
    let first = handle::<CrossReference>(&store, &id, &discover(), &m, b"same", None, p)
        .await
        .unwrap();
    // The same request again: even though Discover is now an invalid transition, the first
    // result is replayed and nothing is appended.
    let again = handle::<CrossReference>(&store, &id, &discover(), &m, b"same", None, p)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(
        (again.version, &again.event_ids),
        (first.version, &first.event_ids)
    );
    let err = handle::<CrossReference>(&store, &id, &validate(), &m, b"other", None, p)
        .await
        .unwrap_err();
    assert!(
        matches!(err, HandleError::IdempotencyMismatch(_)),
        "{err:?}"
    );
    assert_eq!(
        store
            .current_version("default", CrossReference::TYPE, &id)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn an_invalid_transition_is_a_domain_error_and_writes_nothing() {
    let stack = Stack::from_env().await;
    let store = EventStore::new(stack.writer_pool().await);
    let id = unique("xref");
    let m = meta();
    let err = handle::<CrossReference>(
        &store,
        &id,
        &validate(),
        &m,
        b"v",
        None,
        RetryPolicy::default(),
    )
    .await
    .unwrap_err();
    let HandleError::Domain(e) = err else {
        panic!("expected a domain error, got {err:?}")
    };
    assert_eq!(e.code(), "invalid_transition");
    assert_eq!(
        store
            .current_version("default", CrossReference::TYPE, &id)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.command(m.command_id).await.unwrap(), None);
}

#[tokio::test]
async fn state_can_be_read_at_a_version_and_as_of_a_past_time() {
    let stack = Stack::from_env().await;
    let store = EventStore::new(stack.writer_pool().await);
    let id = unique("xref");
    let p = RetryPolicy::default();
    handle::<CrossReference>(&store, &id, &discover(), &meta(), b"d", None, p)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    handle::<CrossReference>(&store, &id, &validate(), &meta(), b"v", None, p)
        .await
        .unwrap();
    let (at_one, v1) = hydrate::<CrossReference>(&store, "default", &id, Some(1), None)
        .await
        .unwrap();
    assert_eq!((at_one.state_name(), v1), ("Discovered", 1));
    let (then, vt) = hydrate::<CrossReference>(&store, "default", &id, None, Some(between))
        .await
        .unwrap();
    assert_eq!((then.state_name(), vt), ("Discovered", 1));
    let (now, vn) = hydrate::<CrossReference>(&store, "default", &id, None, None)
        .await
        .unwrap();
    assert_eq!((now.state_name(), vn), ("Validated", 2));
}
