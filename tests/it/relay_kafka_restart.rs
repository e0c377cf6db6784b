//! The outbox relay while the Kafka broker is stopped and started again mid-stream: it waits the
//! outage out and resumes; every event arrives, in order. Its own test binary, because stopping the
//! broker would disturb any other test running beside it.

use std::time::Duration;

use eventfold_tests::relay::{RelayDb, append_events, consume_complete, xref_chain};
use eventfold_tests::{Stack, eventually, spawn};

fn kafka(action: &str) {
    eventfold_tests::stack_script("kafka", action);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_waits_out_a_broker_restart_and_loses_nothing() {
    const AGGREGATES: usize = 500;
    const VERSIONS: usize = 12;
    let stack = Stack::from_env().await;
    let db = RelayDb::create(&stack).await;
    let settings = outbox_relay::Settings::from_env(&db.env(&[])).expect("settings");
    let relay = spawn(
        outbox_relay::SERVICE,
        outbox_relay::build(settings).await.expect("start relay"),
    );
    let ids: Vec<String> = (0..AGGREGATES).map(|i| format!("xref-{i}")).collect();
    let chain = xref_chain(VERSIONS);
    // A third before the outage, a third while the broker is down, the rest after it is back.
    let third = VERSIONS / 3;
    append_events(&db.admin, &ids, &chain[..third], 0, 100).await;
    eventually(
        "the first third published",
        Duration::from_secs(60),
        || async { (db.outbox_len().await == 0).then_some(()) },
    )
    .await;
    kafka("stop");
    append_events(&db.admin, &ids, &chain[third..2 * third], third as i64, 100).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        db.outbox_len().await,
        (AGGREGATES * third) as i64,
        "nothing is deleted while the broker is down"
    );
    kafka("start");
    append_events(&db.admin, &ids, &chain[2 * third..], 2 * third as i64, 100).await;
    eventually(
        "outbox drained after the restart",
        Duration::from_secs(120),
        || async { (db.outbox_len().await == 0).then_some(()) },
    )
    .await;
    let (records, duplicates) = consume_complete(&stack, &db.topic(), AGGREGATES, VERSIONS).await;
    println!(
        "broker restart: {} events, {} records, {duplicates} duplicates",
        AGGREGATES * VERSIONS,
        records.len()
    );
    relay.shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), relay.handle)
        .await
        .expect("relay stops")
        .expect("join")
        .expect("serve");
    db.drop_database().await;
}
