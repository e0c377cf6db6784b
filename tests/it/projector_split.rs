//! A batch whose transaction times out is split and retried in smaller pieces, never repeated
//! whole (RELIABILITY.md C6), on the real PostgreSQL read model: one aggregate's version-guard
//! row is held by another transaction's row lock, so every transaction that includes that
//! aggregate times out (the server's `lock_timeout` = the apply timeout). While it is held, the
//! events before it are applied (the split reached them), the ones behind it wait (order is
//! kept), and when the lock is released every event is applied exactly once.
//!
//! An engine that repeats a timed-out batch whole applies nothing while the lock is held, so
//! this test fails on it.

use std::time::Duration;

use eventfold_kafka::Envelope;
use eventfold_runtime::Shutdown;
use eventfold_tests::pipeline::{Pipeline, opportunity_chain};
use eventfold_tests::{Stack, eventually};
use projector::engine::{Item, Mode, Processor};
use projector::metrics::ProjectorMetrics;
use projector::parking::{Origin, Parking};
use projector::projection::ProjectedEvent;
use projector::state;

/// Aggregates in the batch and events per aggregate.
const AGGREGATES: usize = 8;
const VERSIONS: usize = 2;
/// The aggregate whose version-guard row another transaction holds.
const HELD: usize = 5;

/// Record `offset` of partition 0 of `topic`: version `version` of Opportunity `id`.
fn item(
    topic: &str,
    offset: i64,
    id: &str,
    version: i64,
    e: &eventfold_postgres::NewEvent,
) -> Item {
    Item {
        origin: Origin {
            record: Some((topic.to_owned(), 0, offset)),
            key: Some(id.as_bytes().to_vec()),
            value: None,
            headers: Vec::new(),
        },
        event: Ok(ProjectedEvent {
            envelope: Envelope {
                event_id: uuid::Uuid::new_v4().to_string(),
                event_type: e.event_type.clone(),
                aggregate_type: "Opportunity".into(),
                aggregate_id: id.into(),
                aggregate_version: version,
                correlation_id: uuid::Uuid::new_v4().to_string(),
                tenant: "t1".into(),
                occurred_at: "2026-12-01T00:00:00+00:00".into(),
                recorded_at: "2026-12-01T00:00:00+00:00".into(),
                ..Envelope::default()
            },
            payload: e.payload.clone(),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_postgres_batch_is_split_applied_in_order_and_exactly_once() {
    let stack = Stack::from_env().await;
    let pipeline = Pipeline::create(&stack).await;
    let p = Pipeline::model("opportunities");
    let stores = pipeline.stores();
    let generation = state::ensure(&stores.pool, &*p).await.unwrap().generation;
    let target = state::target(&*p, generation, &stores);
    target.setup(&*p).await.unwrap();
    let schema = projector::target::pg_schema(p.name(), generation);
    let metrics = ProjectorMetrics::register(eventfold_runtime::Ops::new("projector").registry());
    let proc = Processor {
        metrics: Some(metrics.clone()),
        apply_timeout: Duration::from_millis(1500),
        ..pipeline.processor(&p, generation, Mode::Consume)
    };

    let topic = format!("{}Opportunity", pipeline.db.prefix);
    let mut items = Vec::new();
    for n in 0..AGGREGATES {
        let id = format!("o-{n}");
        for (v, e) in opportunity_chain(VERSIONS, "split").iter().enumerate() {
            items.push(item(&topic, items.len() as i64, &id, v as i64 + 1, e));
        }
    }
    let held_id = format!("o-{HELD}");
    // The held aggregate's version-guard row (its stream: tenant `t1`, as in the events) exists
    // (version 0, nothing applied) and another session holds its row lock, as a long transaction
    // of another writer would.
    sqlx::query(&format!(
        "INSERT INTO {schema}._versions (tenant, aggregate_type, aggregate_id, last_version) \
         VALUES ('t1', 'Opportunity', $1, 0)"
    ))
    .bind(&held_id)
    .execute(&stores.pool)
    .await
    .unwrap();
    let mut holder = stores.pool.begin().await.unwrap();
    sqlx::query(&format!(
        "SELECT 1 FROM {schema}._versions \
         WHERE tenant = 't1' AND aggregate_type = 'Opportunity' AND aggregate_id = $1 \
         FOR UPDATE"
    ))
    .bind(&held_id)
    .execute(&mut *holder)
    .await
    .unwrap();

    let shutdown = Shutdown::new();
    let started = std::time::Instant::now();
    let task = {
        let (proc, items, shutdown) = (proc.clone(), items.clone(), shutdown.clone());
        tokio::spawn(async move { proc.apply(&items, &shutdown).await })
    };
    let versions = || {
        let (pool, schema) = (stores.pool.clone(), schema.clone());
        async move {
            let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
                "SELECT aggregate_id, last_version FROM {schema}.opportunities \
                 ORDER BY aggregate_id"
            ))
            .fetch_all(&pool)
            .await
            .unwrap();
            rows
        }
    };
    let splits = metrics.splits.with_label_values(&["opportunities"]);
    let timeouts = metrics
        .retries
        .with_label_values(&["opportunities", "timeout"]);
    // 16 -> 8 + 8; the second 8 -> 4 + 4; its first 4 -> 2 + 2; the held pair -> 1 + 1: four
    // splits, then the held aggregate's first event alone is retried with back-off.
    let before: Vec<(String, i64)> = (0..HELD).map(|n| (format!("o-{n}"), 2)).collect();
    eventually(
        "the events before the held aggregate were not applied while it was held",
        Duration::from_secs(60),
        || {
            let (v, s) = (versions(), splits.get());
            let before = before.clone();
            async move { (s >= 4 && v.await == before).then_some(()) }
        },
    )
    .await;
    let reached = started.elapsed();
    // Let the lone held event be retried a few times: nothing else may move meanwhile.
    eventually(
        "the held event was not retried on its own",
        Duration::from_secs(30),
        || {
            let t = timeouts.get();
            async move { (t >= 6).then_some(()) }
        },
    )
    .await;
    assert_eq!(
        versions().await,
        before,
        "an event behind the held one was applied out of order"
    );
    assert_eq!(
        splits.get(),
        4,
        "only timed-out batches of more than one event are split"
    );
    assert!(
        !task.is_finished(),
        "the held event must be retried, not given up"
    );
    let applied = metrics
        .events
        .with_label_values(&["opportunities", "applied"]);
    assert_eq!(applied.get(), (HELD * VERSIONS) as u64);
    let offsets = target.offsets().await.unwrap();
    assert_eq!(
        offsets.get(&(topic.clone(), 0)),
        Some(&((HELD * VERSIONS) as i64)),
        "the stored offset follows what was applied"
    );

    holder.rollback().await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the batch did not finish after the lock was released")
        .unwrap()
        .expect("applied");
    // Each event was applied by exactly one piece: the pieces' counts add up to the batch.
    assert_eq!(
        (outcome.applied, outcome.skipped, outcome.parked),
        (AGGREGATES * VERSIONS, 0, 0)
    );
    assert_eq!(applied.get(), (AGGREGATES * VERSIONS) as u64);
    let all: Vec<(String, i64)> = (0..AGGREGATES).map(|n| (format!("o-{n}"), 2)).collect();
    assert_eq!(versions().await, all);
    assert_eq!(
        outcome.next_offsets.get(&(topic.clone(), 0)),
        Some(&((AGGREGATES * VERSIONS) as i64))
    );
    assert_eq!(splits.get(), 4);
    let parked = Parking::new(stores.pool.clone(), "opportunities", None);
    assert_eq!(parked.count().await.unwrap(), 0);
    // The same batch delivered again changes nothing: everything is below the stored offset.
    let again = proc.apply(&items, &shutdown).await.expect("applied");
    assert_eq!((again.applied, again.skipped), (0, AGGREGATES * VERSIONS));
    eprintln!(
        "split reached the events before the held one after {reached:?}; {} timeouts",
        timeouts.get()
    );
    shutdown.trigger();
    pipeline.drop_all().await;
}
