//! The projection engine with a read model written here, as a user of the library would: the
//! projector's consumer runs in-process on it. Duplicated records (the outbox rows re-inserted, so
//! the relay publishes every event a second time) change nothing, and the audit is clean.

use std::sync::Arc;
use std::time::Duration;

use eventfold_avro::{AvroCodec, Catalog};
use eventfold_runtime::Shutdown;
use eventfold_tests::Stack;
use eventfold_tests::confidence::Confidence;
use eventfold_tests::pipeline::Pipeline;
use eventfold_tests::relay::xref_chain;
use projector::consumer;
use projector::engine::{Mode, Processor};
use projector::parking::Parking;
use projector::projection::Projection;
use projector::state;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_library_read_model_skips_duplicates_and_audits_clean() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let ids: Vec<String> = (0..200).map(|i| format!("x-{i}")).collect();
    p.append("CrossReference", &ids, &xref_chain(5)).await;
    let relay = p.relay("r1");

    let projection: Arc<dyn Projection> = Arc::new(Confidence);
    let stores = p.stores();
    let initial = state::ensure(&stores.pool, &*projection).await.unwrap();
    let rx = state::watch_state(
        stores.pool.clone(),
        "confidence",
        initial,
        Duration::from_millis(200),
    );
    let sr = stack.registry.converter_settings().unwrap();
    let codec = Arc::new(AvroCodec::new(sr, Arc::new(Catalog::embedded().unwrap())));
    let settings = p.consumer_settings();
    let parking = Parking::new(stores.pool.clone(), "confidence", None);
    let (proj, st) = (projection.clone(), stores.clone());
    let make = move |s: state::ModelState| Processor {
        projection: proj.clone(),
        target: state::target(&*proj, s.generation, &st),
        parking: parking.clone(),
        max_attempts: 3,
        metrics: None,
        mode: Mode::Consume,
        apply_timeout: projector::engine::APPLY_TIMEOUT,
    };
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(consumer::run(settings, codec, make, rx, shutdown.clone()));

    p.caught_up_with(&projection, Duration::from_secs(60)).await;
    let validations = || async {
        sqlx::query_scalar::<_, i64>("SELECT sum(validations)::bigint FROM rm_confidence_g1.xrefs")
            .fetch_one(&p.db.admin)
            .await
            .unwrap()
    };
    assert_eq!(validations().await, 200 * 4);

    let consumed = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM rm_confidence_g1._offsets",
        )
        .fetch_one(&p.db.admin)
        .await
        .unwrap()
    };
    let end = consumed().await;
    assert_eq!(end, 1000, "one record per event so far");
    // Every event published a second time (as after a relay crash between ack and delete).
    sqlx::query(
        "INSERT INTO outbox (shard_key, event_position, aggregate_type, aggregate_id, version) \
         SELECT 7, position, aggregate_type, aggregate_id, version FROM events ORDER BY position",
    )
    .execute(&p.db.admin)
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while p.db.outbox_len().await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "outbox not drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = consumed().await;
        if now >= end + 1000 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "duplicates not consumed ({end} -> {now})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(validations().await, 200 * 4, "a duplicate took effect");
    let report = p.audit_with(&projection).await;
    assert!(
        report.is_clean() && report.expected_rows == 200,
        "{report:#?}"
    );

    shutdown.trigger();
    worker.await.unwrap();
    relay.stop().await;
    p.drop_all().await;
}
