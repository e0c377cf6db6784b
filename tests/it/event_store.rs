//! The event store against the real PostgreSQL: append and read, optimistic concurrency, command
//! idempotency under concurrency, append-only privileges, and a commit-safe global feed.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use eventfold_postgres::{
    Actor, ActorKind, AppendError, AppendOutcome, CommandMeta, CommandRecord, EventStore,
    FeedCursor, NewEvent,
};
use eventfold_tests::{Stack, unique};
use uuid::Uuid;

fn meta() -> CommandMeta {
    CommandMeta {
        command_id: Uuid::new_v4(),
        correlation_id: Uuid::new_v4(),
        causation_id: None,
        actor: Actor {
            kind: ActorKind::User,
            id: "tester".into(),
        },
        tenant: "default".into(),
        metadata: serde_json::json!({"source": "test"}),
        occurred_at: Utc::now(),
    }
}

fn event(n: i64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "ThingHappened".into(),
        schema_version: 1,
        category: "domain".into(),
        payload: serde_json::json!({"n": n}),
    }
}

fn record(name: &str) -> CommandRecord {
    CommandRecord {
        command_name: name.into(),
        request_hash: vec![1, 2, 3],
        response: serde_json::json!({"ok": true}),
    }
}

#[tokio::test]
async fn appends_events_with_outbox_rows_and_reads_them_back_in_version_order() {
    let stack = Stack::from_env().await;
    let store = EventStore::new(stack.writer_pool().await);
    let id = unique("thing");
    let outcome = store
        .append(
            "Thing",
            &id,
            0,
            &[event(1), event(2)],
            &meta(),
            &record("Do"),
        )
        .await
        .unwrap();
    let AppendOutcome::Appended { version, positions } = outcome else {
        panic!("expected an append, got {outcome:?}")
    };
    assert_eq!(version, 2);
    assert!(positions[0] < positions[1]);
    let events = store
        .load("default", "Thing", &id, 0, None, None, None)
        .await
        .unwrap();
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(events[1].payload, serde_json::json!({"n": 2}));
    // The stack's relay may already have taken the rows: "Thing" has no Avro schema, so it parks
    // them (one statement moves a row from `outbox` to `outbox_parked`).
    let outbox: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM outbox WHERE aggregate_id = $1) \
              + (SELECT count(*) FROM outbox_parked WHERE aggregate_id = $1)",
    )
    .bind(&id)
    .fetch_one(&stack.admin_pool().await)
    .await
    .unwrap();
    assert_eq!(outbox, 2);
    let at_one = store
        .load("default", "Thing", &id, 0, Some(1), None, None)
        .await
        .unwrap();
    assert_eq!(at_one.len(), 1);
}

#[tokio::test]
async fn a_stale_expected_version_is_a_conflict_naming_the_current_version_and_writes_nothing() {
    let stack = Stack::from_env().await;
    let store = EventStore::new(stack.writer_pool().await);
    let id = unique("thing");
    store
        .append("Thing", &id, 0, &[event(1)], &meta(), &record("Do"))
        .await
        .unwrap();
    let losing = meta();
    let err = store
        .append("Thing", &id, 0, &[event(2)], &losing, &record("Do"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::Conflict { current_version: 1 }),
        "{err:?}"
    );
    assert_eq!(
        store
            .current_version("default", "Thing", &id)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.command(losing.command_id).await.unwrap(), None);
}

#[tokio::test]
async fn of_two_concurrent_writers_at_the_same_version_exactly_one_wins() {
    let stack = Stack::from_env().await;
    let store = EventStore::new(stack.writer_pool().await);
    let id = unique("thing");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                store
                    .append("Thing", &id, 0, &[event(i)], &meta(), &record("Do"))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(AppendOutcome::Appended { .. }) => won += 1,
            Err(AppendError::Conflict { current_version }) => {
                assert_eq!(current_version, 1);
                conflicts += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((won, conflicts), (1, 7));
}

#[tokio::test]
async fn a_repeated_command_id_appends_nothing_even_when_the_repeats_race() {
    let stack = Stack::from_env().await;
    let store = EventStore::new(stack.writer_pool().await);
    let id = unique("thing");
    let m = meta();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (store, id, m) = (store.clone(), id.clone(), m.clone());
            tokio::spawn(async move {
                store
                    .append("Thing", &id, 0, &[event(1)], &m, &record("Do"))
                    .await
            })
        })
        .collect();
    let mut appended = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            AppendOutcome::Appended { .. } => appended += 1,
            AppendOutcome::Duplicate(r) => assert_eq!(r, record("Do")),
        }
    }
    assert_eq!(appended, 1);
    assert_eq!(
        store
            .current_version("default", "Thing", &id)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn the_writer_role_can_insert_and_select_events_but_not_update_delete_or_truncate() {
    let stack = Stack::from_env().await;
    let pool = stack.writer_pool().await;
    let store = EventStore::new(pool.clone());
    let id = unique("thing");
    store
        .append("Thing", &id, 0, &[event(1)], &meta(), &record("Do"))
        .await
        .unwrap();
    for sql in [
        "UPDATE events SET payload = '{}' WHERE aggregate_id = $1",
        "DELETE FROM events WHERE aggregate_id = $1",
    ] {
        let err = sqlx::query(sql).bind(&id).execute(&pool).await.unwrap_err();
        let code = err.as_database_error().and_then(|e| e.code()).unwrap();
        assert_eq!(code, "42501", "{sql}: {err}");
    }
    let err = sqlx::query("TRUNCATE events CASCADE")
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).unwrap(),
        "42501"
    );

    // Even the owning (migration) role is refused by the triggers.
    let admin = stack.admin_pool().await;
    for sql in [
        "UPDATE events SET payload = '{}' WHERE aggregate_id = $1",
        "DELETE FROM events WHERE aggregate_id = $1",
    ] {
        let err = sqlx::query(sql)
            .bind(&id)
            .execute(&admin)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    // TRUNCATE needs an exclusive lock before its trigger runs; other tests hold transactions on
    // `events`, and a waiting TRUNCATE would queue their next writes behind it. So ask with a short
    // lock timeout and retry until the lock is granted and the trigger answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut tx = admin.begin().await.unwrap();
        sqlx::query("SET LOCAL lock_timeout = '200ms'")
            .execute(&mut *tx)
            .await
            .unwrap();
        let err = sqlx::query("TRUNCATE events CASCADE")
            .execute(&mut *tx)
            .await
            .unwrap_err();
        tx.rollback().await.unwrap();
        if err.as_database_error().and_then(|e| e.code()).as_deref() == Some("55P03") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "events stayed locked"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert!(err.to_string().contains("append-only"), "{err}");
        break;
    }
    assert_eq!(
        store
            .current_version("default", "Thing", &id)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn the_feed_never_skips_an_event_that_commits_late_with_a_smaller_position() {
    let stack = Stack::from_env().await;
    let pool = stack.writer_pool().await;
    let store = EventStore::new(pool.clone());
    let tag = unique("late");

    // Start the feed at the current end.
    let mut cursor = FeedCursor::default();
    loop {
        let page = store.feed(cursor, 10_000, None, None).await.unwrap();
        match page.last() {
            Some(last) => {
                cursor = FeedCursor {
                    tx_id: last.tx_id,
                    position: last.position,
                }
            }
            None => break,
        }
    }

    // T1 takes a position first and holds its transaction open.
    let mut slow = pool.begin().await.unwrap();
    let slow_pos: i64 = sqlx::query_scalar(
        "INSERT INTO events (event_id, event_type, schema_version, category, aggregate_type, aggregate_id, \
         version, occurred_at, correlation_id, actor_kind, actor_id, tenant, payload) \
         VALUES ($1, 'Late', 1, 'domain', 'Thing', $2, 1, now(), $3, 'system', 't', 'default', '{}') RETURNING position",
    )
    .bind(Uuid::new_v4())
    .bind(format!("{tag}-slow"))
    .bind(Uuid::new_v4())
    .fetch_one(&mut *slow)
    .await
    .unwrap();

    // Many later events commit with larger positions while T1 is open; a reader drains the feed.
    let mut seen = HashSet::new();
    for i in 0..20 {
        let id = format!("{tag}-{i}");
        store
            .append("Thing", &id, 0, &[event(i)], &meta(), &record("Do"))
            .await
            .unwrap();
        for e in store.feed(cursor, 1000, None, None).await.unwrap() {
            cursor = FeedCursor {
                tx_id: e.tx_id,
                position: e.position,
            };
            seen.insert(e.position);
        }
    }
    assert!(!seen.contains(&slow_pos), "uncommitted event visible");
    slow.commit().await.unwrap();

    // After T1 commits, the reader still gets it, and every other event of the test too (other
    // tests' open transactions may hold some back for a while, never forever).
    let ours: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM events WHERE aggregate_id LIKE $1")
            .bind(format!("{tag}-%"))
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(ours.len(), 21);
    assert!(ours.contains(&slow_pos));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ours.iter().all(|p| seen.contains(p)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "feed skipped events: missing {:?}",
            ours.iter()
                .filter(|p| !seen.contains(p))
                .collect::<Vec<_>>()
        );
        for e in store.feed(cursor, 1000, None, None).await.unwrap() {
            cursor = FeedCursor {
                tx_id: e.tx_id,
                position: e.position,
            };
            seen.insert(e.position);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
