//! The projector's admin paths against its live consumer: a replay of parked events and the live
//! writer serialise per aggregate, a Neo4j writer that missed a rebuild is fenced off, a consumer
//! never trusts a position ahead of the read model's own offsets, and records deleted by
//! retention are caught up from the event store instead of skipped.

use std::sync::Arc;
use std::time::Duration;

use eventfold_avro::{AvroCodec, Catalog};
use eventfold_runtime::Shutdown;
use eventfold_tests::Stack;
use eventfold_tests::confidence::Confidence;
use eventfold_tests::pipeline::Pipeline;
use eventfold_tests::relay::xref_chain;
use projector::consumer;
use projector::engine::{Item, Mode, Processor};
use projector::parking::{Origin, Parking};
use projector::projection::{ProjectedEvent, Projection};
use projector::rebuild;
use projector::state;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};

async fn validations(p: &Pipeline, id: &str) -> (i64, i64) {
    sqlx::query_as::<_, (i64, i64)>(
        "SELECT validations::bigint, last_version FROM rm_confidence_g1.xrefs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&p.db.admin)
    .await
    .expect("the cross-reference row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_of_parked_events_waits_for_the_live_writer_of_the_same_aggregate() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let model: Arc<dyn Projection> = Arc::new(Confidence);
    let stores = p.stores();
    let shutdown = Shutdown::new();
    let id = "race-1".to_owned();
    let chain = xref_chain(3);
    p.append("CrossReference", std::slice::from_ref(&id), &chain[..1])
        .await;
    state::ensure(&stores.pool, &*model).await.unwrap();
    let live = p.processor(&model, 1, Mode::Consume);
    live.target.setup(&*model).await.unwrap();
    rebuild::replay_all(&live, &stores.pool, 100, &shutdown)
        .await
        .unwrap();
    assert_eq!(validations(&p, &id).await, (0, 1));
    eventfold_tests::relay::append_events_of(
        &p.db.admin,
        "CrossReference",
        std::slice::from_ref(&id),
        &chain[1..],
        1,
        10,
    )
    .await;

    // Version 2 was parked (refused, since fixed): the aggregate is blocked, so an operator may
    // replay it while the live consumer delivers the same events.
    sqlx::query(
        "INSERT INTO parked_events (read_model, aggregate_type, aggregate_id, version, reason, error) \
         VALUES ('confidence', 'CrossReference', $1, 2, 'refused', 'fixed since')",
    )
    .bind(&id)
    .execute(&p.db.admin)
    .await
    .unwrap();

    // Hold the read-model row, so that both writers are inside their transactions at once.
    let mut hold = p.db.admin.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM rm_confidence_g1.xrefs WHERE id = $1 FOR UPDATE")
        .bind(&id)
        .execute(&mut *hold)
        .await
        .unwrap();
    let consumer_path = {
        let (live, pool, shutdown) = (live.clone(), stores.pool.clone(), shutdown.clone());
        tokio::spawn(async move { rebuild::replay_all(&live, &pool, 100, &shutdown).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let replay = {
        let (model, stores, shutdown, key) = (
            model.clone(),
            stores.clone(),
            shutdown.clone(),
            projector::target::AggregateKey::new("default", "CrossReference", id.clone()),
        );
        tokio::spawn(
            async move { rebuild::replay_parked(&model, &stores, Some(key), &shutdown).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    hold.rollback().await.unwrap();
    let applied = consumer_path.await.unwrap().expect("consumer path");
    let replayed = replay.await.unwrap().expect("replay");
    assert_eq!(
        validations(&p, &id).await,
        (2, 3),
        "two validations applied once each (consumer applied {}, replay {replayed:?})",
        applied.applied
    );
    p.drop_all().await;
}

/// The `CROSS_REFERENCE` relationships of `id` in the pipeline's graph.
async fn cross_references(p: &Pipeline, id: &str) -> i64 {
    let stores = p.stores();
    let q = format!(
        "MATCH ()-[x:CROSS_REFERENCE{}]->() WHERE x.id = $id RETURN count(x) AS n",
        p.suffix
    );
    let mut rows = stores
        .graph
        .execute(neo4rs::query(&q).param("id", id))
        .await
        .unwrap();
    let row = rows.next().await.unwrap().expect("a count");
    row.get::<i64>("n").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_neo4j_writer_that_missed_a_rebuild_is_fenced_off() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let model = Pipeline::model("graph");
    let stores = p.stores();
    let shutdown = Shutdown::new();
    let ids: Vec<String> = (0..5).map(|i| format!("fence-{i}")).collect();
    p.append("CrossReference", &ids, &xref_chain(2)).await;
    let before = state::ensure(&stores.pool, &*model).await.unwrap();
    // A writer of the live generation (e.g. a projector paused across the rebuild).
    let stale = p.processor(&model, before.generation, Mode::Consume);
    stale.target.setup(&*model).await.unwrap();
    rebuild::replay_all(&stale, &stores.pool, 100, &shutdown)
        .await
        .expect("the live writer applies before the rebuild");

    let report = rebuild::rebuild(&model, &stores, &shutdown)
        .await
        .expect("rebuild");
    assert_eq!(report.applied, 10);

    let late = "fence-late".to_owned();
    p.append(
        "CrossReference",
        std::slice::from_ref(&late),
        &xref_chain(1),
    )
    .await;
    let refused = rebuild::replay_all(&stale, &stores.pool, 100, &shutdown).await;
    assert!(
        matches!(refused, Err(rebuild::RebuildError::Interrupted)),
        "the stale writer must stop, got {refused:?}"
    );
    let fenced = stale.apply_once(&[], None).await;
    assert!(
        matches!(fenced, Err(projector::apply::ApplyError::Fenced(_))),
        "{fenced:?}"
    );
    assert_eq!(
        cross_references(&p, &late).await,
        0,
        "a fenced writer wrote"
    );
    assert_eq!(report.generation, before.generation + 1);
    // The writer of the new generation applies it.
    let current = p.processor(&model, report.generation, Mode::Consume);
    rebuild::replay_all(&current, &stores.pool, 100, &shutdown)
        .await
        .unwrap();
    assert_eq!(cross_references(&p, &late).await, 1);
    p.drop_all().await;
}

/// Runs the `confidence` read model's consumer in-process until the returned shutdown fires.
fn run_consumer(
    stack: &Stack,
    p: &Pipeline,
    model: &Arc<dyn Projection>,
) -> (Shutdown, tokio::task::JoinHandle<()>) {
    let stores = p.stores();
    let rx = state::watch_state(
        stores.pool.clone(),
        "confidence",
        state::ModelState {
            generation: 1,
            rebuilding: false,
        },
        Duration::from_millis(200),
    );
    let sr = stack.registry.converter_settings().unwrap();
    let codec = Arc::new(AvroCodec::new(sr, Arc::new(Catalog::embedded().unwrap())));
    let make = {
        let (model, template) = (model.clone(), p.processor(model, 1, Mode::Consume));
        move |s: state::ModelState| Processor {
            target: state::target(&*model, s.generation, &stores),
            ..template.clone()
        }
    };
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(consumer::run(
        p.consumer_settings(),
        codec,
        make,
        rx,
        shutdown.clone(),
    ));
    (shutdown, worker)
}

/// The high watermark of every partition of `topic`.
fn high_watermarks(stack: &Stack, topic: &str) -> TopicPartitionList {
    let c: BaseConsumer = stack.kafka.client_config().create().unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for part in md.topics()[0].partitions() {
        let (_, high) = c
            .fetch_watermarks(topic, part.id(), Duration::from_secs(10))
            .unwrap();
        tpl.add_partition_offset(topic, part.id(), Offset::Offset(high))
            .unwrap();
    }
    tpl
}

/// Publishes `ids` x `versions` cross-reference events through a relay and waits for the outbox
/// to drain.
async fn publish(p: &Pipeline, ids: &[String], versions: usize) {
    p.append("CrossReference", ids, &xref_chain(versions)).await;
    let relay = p.relay("r1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while p.db.outbox_len().await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "outbox not drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_starts_at_the_read_models_offsets_not_at_a_committed_group_offset_ahead_of_them()
 {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let ids: Vec<String> = (0..100).map(|i| format!("x-{i}")).collect();
    publish(&p, &ids, 3).await;
    let topic = format!("{}CrossReference", p.db.prefix);
    // Another generation (or another process sharing the group) committed the group's
    // offsets at the end of every partition; this read model has applied nothing.
    let mut group = stack.kafka.client_config();
    group.set("group.id", format!("{}confidence", p.group_prefix));
    let committer: BaseConsumer = group.create().unwrap();
    committer
        .commit(&high_watermarks(&stack, &topic), CommitMode::Sync)
        .unwrap();
    drop(committer);

    let model: Arc<dyn Projection> = Arc::new(Confidence);
    let (shutdown, worker) = run_consumer(&stack, &p, &model);
    p.caught_up_with(&model, Duration::from_secs(60)).await;
    shutdown.trigger();
    worker.await.unwrap();
    let total: i64 =
        sqlx::query_scalar("SELECT sum(validations)::bigint FROM rm_confidence_g1.xrefs")
            .fetch_one(&p.db.admin)
            .await
            .unwrap();
    assert_eq!(total, 200);
    p.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_past_the_stored_offset_are_not_applied_and_the_partition_is_rewound() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let model: Arc<dyn Projection> = Arc::new(Confidence);
    let stores = p.stores();
    let ids = vec!["gap-1".to_owned()];
    p.append("CrossReference", &ids, &xref_chain(2)).await;
    state::ensure(&stores.pool, &*model).await.unwrap();
    let live = p.processor(&model, 1, Mode::Consume);
    live.target.setup(&*model).await.unwrap();
    // The event store's rows as if they were records 7 and 8 of partition 0: offsets 0-6 were
    // never applied, so nothing may be applied and the partition goes back to 0.
    let mut items = Vec::new();
    let rows = sqlx::query(
        "SELECT position, event_id, event_type, schema_version, aggregate_type, aggregate_id, \
         version, correlation_id, causation_id, command_id, tenant, actor_kind, actor_id, \
         occurred_at, recorded_at, metadata ->> 'traceparent' AS traceparent, payload \
         FROM events ORDER BY position",
    )
    .fetch_all(&p.db.admin)
    .await
    .unwrap();
    for (offset, row) in (7..).zip(&rows) {
        let envelope = eventfold_kafka::Envelope::from_event_row(row).unwrap();
        let sqlx::types::Json(payload): sqlx::types::Json<serde_json::Value> =
            sqlx::Row::try_get(row, "payload").unwrap();
        items.push(Item {
            origin: Origin {
                record: Some(("t".into(), 0, offset)),
                ..Origin::default()
            },
            event: Ok(ProjectedEvent { envelope, payload }),
        });
    }
    let outcome = live.apply_once(&items, None).await.unwrap();
    assert_eq!(outcome.applied, 0, "{outcome:?}");
    assert_eq!(outcome.rewind.get(&("t".to_owned(), 0)), Some(&0));
    assert!(outcome.next_offsets.is_empty(), "{outcome:?}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_confidence_g1.xrefs")
        .fetch_one(&p.db.admin)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    p.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_model_behind_the_log_start_catches_up_from_the_event_store() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let ids: Vec<String> = (0..60).map(|i| format!("x-{i}")).collect();
    publish(&p, &ids, 3).await;
    let topic = format!("{}CrossReference", p.db.prefix);
    // Retention deleted every record published so far.
    let admin: AdminClient<DefaultClientContext> = stack.kafka.client_config().create().unwrap();
    let deleted = admin
        .delete_records(
            &high_watermarks(&stack, &topic),
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    assert!(
        deleted
            .elements()
            .iter()
            .any(|e| e.offset() != Offset::Offset(0))
    );
    // Later events still arrive through Kafka.
    eventfold_tests::relay::append_events_of(
        &p.db.admin,
        "CrossReference",
        &ids,
        &xref_chain(4)[3..],
        3,
        100,
    )
    .await;
    let relay = p.relay("r2");

    let model: Arc<dyn Projection> = Arc::new(Confidence);
    let (shutdown, worker) = run_consumer(&stack, &p, &model);
    p.caught_up_with(&model, Duration::from_secs(90)).await;
    shutdown.trigger();
    worker.await.unwrap();
    relay.stop().await;
    let total: i64 =
        sqlx::query_scalar("SELECT sum(validations)::bigint FROM rm_confidence_g1.xrefs")
            .fetch_one(&p.db.admin)
            .await
            .unwrap();
    assert_eq!(total, 60 * 3, "every validation applied exactly once");
    let report = p.audit_with(&model).await;
    assert!(report.is_clean(), "{report:#?}");
    p.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_copy_refused_at_parking_time_follows_later_one_per_parked_event() {
    use projector::parking::{Reason, ToPark};
    use rdkafka::admin::{AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
    use rdkafka::producer::FutureProducer;

    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let dlt = format!("{}dlt.confidence", p.db.prefix);
    // The dead-letter topic refuses every copy at first (max.message.bytes below any record).
    let admin: AdminClient<DefaultClientContext> = stack.kafka.client_config().create().unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&dlt, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "100")],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");
    let producer: FutureProducer = stack
        .kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    let parking = Parking::new(
        p.db.admin.clone(),
        "confidence",
        Some((producer, dlt.clone())),
    );
    let poison = |offset: i64| ToPark {
        origin: Origin {
            record: Some(("t".into(), 0, offset)),
            key: Some(b"agg-1".to_vec()),
            value: Some(vec![7; 300]),
            headers: vec![("event_id".into(), Some(b"e".to_vec()))],
        },
        event_id: Some(format!("e-{offset}")),
        event_type: Some("CrossReferenceValidated".into()),
        aggregate: Some(projector::target::AggregateKey::new(
            "default",
            "CrossReference",
            "agg-1",
        )),
        version: Some(offset + 1),
        reason: Reason::Refused,
        error: "refused by the handler".into(),
        attempts: 3,
    };
    // Parked twice each, as a retried batch would: the parking is idempotent.
    let mut ids = Vec::new();
    for offset in [0, 1] {
        let first = parking.park(&poison(offset), None).await;
        let again = parking.park(&poison(offset), None).await.unwrap();
        if let Ok(id) = first {
            assert_eq!(id, again);
        }
        ids.push(again);
    }
    assert_eq!(parking.dead_letters_pending().await.unwrap(), 2);

    let alter =
        AlterConfig::new(ResourceSpecifier::Topic(&dlt)).set("max.message.bytes", "1048588");
    let altered = admin
        .alter_configs(&[alter], &AdminOptions::new())
        .await
        .unwrap();
    assert!(altered.iter().all(|r| r.is_ok()), "{altered:?}");
    // The projector's sender task runs this step until the queue is empty.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while parking.dead_letters_pending().await.unwrap() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "copies not sent");
        let _ = parking.send_dead_letters().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let copied = dead_letter_ids(&stack, &dlt, 2).await;
    assert_eq!(copied, ids, "one dead-letter record per parked event");
    p.drop_all().await;
}

/// The `dlt_parked_id` header of every record of `topic`, sorted, once there are `n`.
async fn dead_letter_ids(stack: &Stack, topic: &str, n: usize) -> Vec<i64> {
    use rdkafka::Message;
    use rdkafka::message::Headers;
    let c: BaseConsumer = stack
        .kafka
        .client_config()
        .set("group.id", eventfold_tests::unique("dlt-check"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut ids = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ids.len() < n && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let id = m.headers().and_then(|h| {
                h.iter()
                    .find(|x| x.key == "dlt_parked_id")
                    .and_then(|x| x.value)
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok())
            });
            ids.extend(id);
        }
    }
    // Anything beyond `n` would be a second copy of a parking.
    while let Some(Ok(_)) = c.poll(Duration::from_secs(2)) {
        ids.push(-1);
    }
    ids.sort_unstable();
    ids
}
