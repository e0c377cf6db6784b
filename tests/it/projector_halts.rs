//! The projection engine against a store failure that is not about an event: a PostgreSQL error
//! no event can cause (here a real missing relation, 42P01) halts the read model with its reason
//! (gauge, `/readyz` check text) and is retried; nothing is parked, and the batch applies once
//! the table is back.

use std::time::Duration;

use eventfold_kafka::Envelope;
use eventfold_postgres::NewEvent;
use eventfold_runtime::Shutdown;
use eventfold_tests::pipeline::{Pipeline, opportunity_chain};
use eventfold_tests::{Stack, eventually};
use projector::engine::{Item, Mode, Processor};
use projector::metrics::ProjectorMetrics;
use projector::parking::{Origin, Parking};
use projector::projection::ProjectedEvent;
use projector::state;
use serde_json::{Value, json};

/// An item as the consumer would hand it over: record `offset` of partition 0 of `topic`.
fn item(topic: &str, offset: i64, aggregate_type: &str, id: &str, version: i64, e: Value) -> Item {
    let (event_type, payload) = (e["type"].as_str().unwrap().to_owned(), e["payload"].clone());
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
                event_type,
                aggregate_type: aggregate_type.into(),
                aggregate_id: id.into(),
                aggregate_version: version,
                correlation_id: uuid::Uuid::new_v4().to_string(),
                tenant: "t1".into(),
                occurred_at: "2026-12-01T00:00:00+00:00".into(),
                recorded_at: "2026-12-01T00:00:00+00:00".into(),
                ..Envelope::default()
            },
            payload,
        }),
    }
}

fn typed(e: &NewEvent) -> Value {
    json!({"type": e.event_type, "payload": e.payload})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_halts_the_read_model_parks_nothing_and_resumes() {
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
        apply_timeout: Duration::from_secs(30),
        ..pipeline.processor(&p, generation, Mode::Consume)
    };

    let topic = format!("{}Opportunity", pipeline.db.prefix);
    let mut items = Vec::new();
    for n in 0..20 {
        let id = format!("o-{n}");
        for (v, e) in opportunity_chain(3, "halt").iter().enumerate() {
            items.push(item(
                &topic,
                items.len() as i64,
                "Opportunity",
                &id,
                v as i64 + 1,
                typed(e),
            ));
        }
    }
    // A real missing relation: the read model's table is gone (e.g. dropped by hand).
    sqlx::query(&format!("DROP TABLE {schema}.opportunities"))
        .execute(&stores.pool)
        .await
        .unwrap();

    let shutdown = Shutdown::new();
    let task = {
        let (proc, items, shutdown) = (proc.clone(), items.clone(), shutdown.clone());
        tokio::spawn(async move { proc.apply(&items, &shutdown).await })
    };
    let halted = metrics.halted.with_label_values(&["opportunities"]);
    let retries = metrics
        .retries
        .with_label_values(&["opportunities", "halted"]);
    eventually(
        "the read model never halted",
        Duration::from_secs(30),
        || {
            let (g, r) = (halted.get(), retries.get());
            async move { (g == 1 && r >= 4).then_some(()) }
        },
    )
    .await;
    let reason = metrics.halts.check().expect_err("/readyz names the halt");
    assert!(
        reason.contains("halted opportunities: 42P01"),
        "readiness text: {reason}"
    );
    assert!(
        !task.is_finished(),
        "a halted batch must be retried, not given up"
    );
    let parked = Parking::new(stores.pool.clone(), "opportunities", None);
    assert_eq!(
        parked.count().await.unwrap(),
        0,
        "a store error parked events"
    );
    assert_eq!(
        metrics
            .retries
            .with_label_values(&["opportunities", "refused"])
            .get(),
        0,
        "a store error counted as a refusal"
    );

    // The operator puts the table back: the same batch applies, in order, and the halt clears.
    target.setup(&*p).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the batch did not resume")
        .unwrap()
        .expect("applied");
    assert_eq!((outcome.applied, outcome.parked), (60, 0));
    assert_eq!(halted.get(), 0);
    assert_eq!(metrics.halts.check(), Ok(()));
    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT aggregate_id, last_version FROM {schema}.opportunities ORDER BY aggregate_id"
    ))
    .fetch_all(&stores.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|(_, v)| *v == 3), "{rows:?}");
    assert_eq!(parked.count().await.unwrap(), 0);
    shutdown.trigger();
    pipeline.drop_all().await;
}
