//! F14: Neo4j stopped for 30 s while events flow. The graph read model retries (a store outage is
//! never a reason to park), catches up after the restart and equals a replay of the event store;
//! the PostgreSQL read model, in its own consumer group, keeps up meanwhile.
//! Its own test binary: it stops the stack's Neo4j, which no other test may see.

use std::time::Duration;

use eventfold_tests::Stack;
use eventfold_tests::pipeline::{Pipeline, opportunity_chain};
use eventfold_tests::relay::xref_chain;

fn neo4j(action: &str) {
    eventfold_tests::stack_script("neo4j", action);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn neo4j_down_for_30_s_parks_nothing_and_the_graph_catches_up() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let relay = p.relay("r1");
    let projector = p.projector("p1", &[]);
    let xrefs: Vec<String> = (0..500).map(|i| format!("x-{i}")).collect();
    let opps: Vec<String> = (0..500).map(|i| format!("o-{i}")).collect();
    let xc = xref_chain(4);
    let oc = opportunity_chain(4, "outage");
    eventfold_tests::relay::append_events_of(
        &p.db.admin,
        "CrossReference",
        &xrefs,
        &xc[..2],
        0,
        100,
    )
    .await;
    p.caught_up("graph", Duration::from_secs(60)).await;

    neo4j("stop");
    let stopped = tokio::time::Instant::now();
    eventfold_tests::relay::append_events_of(
        &p.db.admin,
        "CrossReference",
        &xrefs,
        &xc[2..],
        2,
        100,
    )
    .await;
    eventfold_tests::relay::append_events_of(&p.db.admin, "Opportunity", &opps, &oc, 0, 100).await;
    // The PostgreSQL read model does not wait for Neo4j.
    p.caught_up("opportunities", Duration::from_secs(25)).await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(stopped.elapsed())).await;
    assert!(
        p.parked("graph").await.is_empty(),
        "an outage parked events"
    );
    neo4j("start");

    p.caught_up("graph", Duration::from_secs(120)).await;
    assert!(p.parked("graph").await.is_empty());
    assert!(p.parked("opportunities").await.is_empty());
    for m in ["graph", "opportunities"] {
        let report = p.audit(m).await;
        assert!(report.is_clean() && report.expected_rows > 0, "{report:#?}");
    }
    projector.stop().await;
    relay.stop().await;
    p.drop_all().await;
}
