//! The projector against the real stack: commands over HTTP through the relay into both read
//! models (audited against a from-scratch replay), duplicate delivery, scaling 1 → 3 → 1 while
//! 20,000 events flow, and a poison event that parks its aggregate until a fix and a replay.

use std::time::Duration;

use eventfold_tests::Stack;
use eventfold_tests::pipeline::{Pipeline, opportunity_chain};
use eventfold_tests::relay::{metric_value, xref_chain};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::Client;
use serde_json::{Value, json};

async fn post(http: &Client, url: &str, body: Value) -> reqwest::Response {
    http.post(url).json(&body).send().await.expect("POST")
}

async fn command(http: &Client, base: &str, t: &str, id: &str, name: &str, body: Value) {
    let r = post(http, &format!("{base}/v1/{t}/{id}/commands/{name}"), body).await;
    let status = r.status();
    assert!(
        status.is_success(),
        "{t}/{id} {name}: {status} {}",
        r.text().await.unwrap()
    );
}

/// The process's metrics, or empty text while it is still starting.
async fn metrics_text(http: &Client, url: &str) -> String {
    match http.get(format!("{url}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn assert_clean(report: &projector::rebuild::AuditReport) {
    assert!(report.is_clean(), "audit: {report:#?}");
    assert!(
        report.expected_rows > 0,
        "audit compared nothing: {report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_over_http_reach_both_read_models_and_duplicates_change_nothing() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let api = p.command_service().await;
    let relay = p.relay("r1");
    let projector = p.projector("p1", &[]);
    let http = eventfold_tests::auth::operator();
    let base = api.url.as_str();

    for i in 0..20 {
        let id = format!("opp-{i}");
        command(
            &http,
            base,
            "Opportunity",
            &id,
            "CreateOpportunity",
            json!({
            "opportunity_id": id, "title": format!("Opportunity {i} 'quoted' \"x\" ✓"),
            "description": "d", "ai_solution_type": if i % 2 == 0 { "nlp" } else { "speech" },
            "market_size_estimate": 1000 + i}),
        )
        .await;
        command(
            &http,
            base,
            "Opportunity",
            &id,
            "UpdateOpportunity",
            json!({"confidence_score": 0.9}),
        )
        .await;
        command(
            &http,
            base,
            "Opportunity",
            &id,
            "ValidateOpportunity",
            json!({"validator_id": "u-1", "score": 0.8}),
        )
        .await;
    }
    for i in 0..5 {
        let id = format!("user-{i}");
        command(
            &http,
            base,
            "User",
            &id,
            "RegisterUser",
            json!({"user_id": id, "email": format!("u{i}@example.org")}),
        )
        .await;
    }
    for i in 0..20 {
        let id = format!("GEN.1.{i}:JHN.1.{i}");
        command(
            &http,
            base,
            "CrossReference",
            &id,
            "DiscoverCrossReference",
            json!({
                "source_ref": format!("GEN.1.{i}"), "target_ref": format!("JHN.1.{i}"),
                "connection_type": "thematic", "initial_confidence": 0.5,
                "discovery_method": "embedding", "feature_vector": [0.1], "semantic_similarity": 0.8
            }),
        )
        .await;
        command(
            &http,
            base,
            "CrossReference",
            &id,
            "ValidateCrossReference",
            json!({
            "validator_agent": "theology", "validation_result": "approved",
            "reasoning": "MATCH (n) DETACH DELETE n // injection text, stored verbatim"}),
        )
        .await;
    }
    command(
        &http,
        base,
        "Interview",
        "int-1",
        "CreateInterview",
        json!({"project_id": "proj-1", "title": "Kick-off", "source": "upload"}),
    )
    .await;
    command(
        &http,
        base,
        "Sentence",
        "sen-1",
        "CreateSentence",
        json!({"interview_id": "int-1", "index": 0, "text": "We need faster reports."}),
    )
    .await;
    command(
        &http,
        base,
        "Sentence",
        "sen-1",
        "GenerateAnalysis",
        json!({
        "model": "m", "model_version": "1", "classification": {"intent": "need"}}),
    )
    .await;
    command(
        &http,
        base,
        "Sentence",
        "sen-1",
        "OverrideAnalysis",
        json!({"fields_overridden": {"intent": "complaint"}}),
    )
    .await;

    p.caught_up("opportunities", Duration::from_secs(90)).await;
    p.caught_up("graph", Duration::from_secs(90)).await;
    assert_clean(&p.audit("opportunities").await);
    assert_clean(&p.audit("graph").await);
    assert_eq!(
        p.graph_count("MATCH (:Verse{g})-[r:CROSS_REFERENCE{g}]->(:Verse{g}) RETURN count(r) AS n")
            .await,
        20
    );
    assert!(p.parked("opportunities").await.is_empty());
    assert!(p.parked("graph").await.is_empty());

    // The query API serves the opportunities read model.
    let list: Value = http
        .get(format!(
            "{}/v1/read/opportunities?ai_solution_type=nlp&limit=100",
            projector.url
        ))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(10), "{list}");

    // Duplicates: forget every stored and committed offset and consume everything again.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&p.db.admin)
        .await
        .unwrap();
    projector.stop().await;
    sqlx::query("TRUNCATE rm_opportunities_g1._offsets")
        .execute(&p.db.admin)
        .await
        .unwrap();
    let graph = p.stack.neo4j.graph().unwrap();
    graph
        .run(neo4rs::query(&format!(
            "MATCH (o:ProjectorOffset{}) DELETE o",
            p.suffix
        )))
        .await
        .unwrap();
    let again = p.projector("p1-again", &[("PROJECTOR_GROUP_PREFIX", "fresh-group.")]);
    let skipped_all = |text: &str| {
        let sum: f64 = ["opportunities", "graph"]
            .iter()
            .filter_map(|m| {
                metric_value(
                    text,
                    &format!(
                        "eventfold_projector_events_total{{outcome=\"skipped\",read_model=\"{m}\"}}"
                    ),
                )
            })
            .sum();
        sum as i64 >= events
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let text = metrics_text(&http, &again.admin_url).await;
        if skipped_all(&text) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redelivery not skipped:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let text = metrics_text(&http, &again.admin_url).await;
    for m in ["opportunities", "graph"] {
        let applied = metric_value(
            &text,
            &format!("eventfold_projector_events_total{{outcome=\"applied\",read_model=\"{m}\"}}"),
        )
        .unwrap_or(0.0);
        assert_eq!(applied, 0.0, "{m} applied a redelivered event:\n{text}");
    }
    assert_clean(&p.audit("opportunities").await);
    assert_clean(&p.audit("graph").await);
    again.stop().await;
    relay.stop().await;
    api.shutdown.trigger();
    p.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_one_to_three_to_one_while_20000_events_flow_loses_and_doubles_nothing() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let relay = p.relay("r1");
    let first = p.projector("p1", &[]);
    let opps: Vec<String> = (0..1000).map(|i| format!("o-{i}")).collect();
    let xrefs: Vec<String> = (0..1000).map(|i| format!("x-{i}")).collect();
    let writer = {
        let admin = p.db.admin.clone();
        let (opps, xrefs) = (opps.clone(), xrefs.clone());
        tokio::spawn(async move {
            let oc = opportunity_chain(10, "scaled");
            let xc = xref_chain(10);
            // Ten rounds of one event per aggregate, so the stream lasts while instances change.
            for v in 0..10 {
                eventfold_tests::relay::append_events_of(
                    &admin,
                    "Opportunity",
                    &opps,
                    &oc[v..v + 1],
                    v as i64,
                    200,
                )
                .await;
                eventfold_tests::relay::append_events_of(
                    &admin,
                    "CrossReference",
                    &xrefs,
                    &xc[v..v + 1],
                    v as i64,
                    200,
                )
                .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = p.projector("p2", &[]);
    let third = p.projector("p3", &[]);
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Back to one: one leaves gracefully, one is killed.
    second.stop().await;
    third.signal("KILL");
    writer.await.expect("writer");
    p.caught_up("opportunities", Duration::from_secs(120)).await;
    p.caught_up("graph", Duration::from_secs(120)).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&p.db.admin)
        .await
        .unwrap();
    assert_eq!(events, 20_000);
    assert!(p.parked("opportunities").await.is_empty());
    assert!(p.parked("graph").await.is_empty());
    assert_clean(&p.audit("opportunities").await);
    assert_clean(&p.audit("graph").await);
    first.stop().await;
    relay.stop().await;
    p.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_event_parks_its_aggregate_until_fixed_and_replayed() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let relay = p.relay("r1");
    let projector = p.projector("p1", &[("PROJECTOR_READ_MODELS", "opportunities")]);
    let http = eventfold_tests::auth::operator();
    // The "bug": the read model refuses one title (as a handler bug or a schema mismatch would).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('rm_opportunities_g1.opportunities')::text")
                .fetch_one(&p.db.admin)
                .await
                .unwrap();
        if exists.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "read model never set up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sqlx::query(
        "ALTER TABLE rm_opportunities_g1.opportunities ADD CONSTRAINT no_poison \
         CHECK (title <> 'POISON')",
    )
    .execute(&p.db.admin)
    .await
    .unwrap();
    let healthy: Vec<String> = (0..10).map(|i| format!("ok-{i}")).collect();
    p.append(
        "Opportunity",
        &["bad-1".to_string()],
        &opportunity_chain(3, "POISON"),
    )
    .await;
    p.append("Opportunity", &healthy, &opportunity_chain(3, "fine"))
        .await;
    // Raw garbage on the topic: no envelope, not Avro.
    let producer: FutureProducer = stack.kafka.client_config().create().unwrap();
    producer
        .send(
            FutureRecord::to(&format!("{}Opportunity", p.db.prefix))
                .key("garbage")
                .payload("not avro at all"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    p.caught_up("opportunities", Duration::from_secs(90)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let parked = p.parked("opportunities").await;
        if parked.values().sum::<i64>() >= 4 {
            assert_eq!(parked.get("refused"), Some(&1), "{parked:?}");
            assert_eq!(parked.get("behind_parked"), Some(&2), "{parked:?}");
            assert_eq!(parked.get("undecodable"), Some(&1), "{parked:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "parked: {parked:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let row: Option<i64> = sqlx::query_scalar(
        "SELECT last_version FROM rm_opportunities_g1.opportunities WHERE aggregate_id = 'bad-1'",
    )
    .fetch_optional(&p.db.admin)
    .await
    .unwrap();
    assert_eq!(row, None, "the poison aggregate must not be half applied");
    let listed: Value = http
        .get(format!("{}/v1/parked/opportunities", projector.admin_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(4),
        "{listed}"
    );

    // Replaying before the fix changes nothing and says why.
    let r = post(
        &http,
        &format!("{}/v1/parked/opportunities/replay", projector.admin_url),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 409);
    // The fix, then the replay completes the aggregate.
    sqlx::query("ALTER TABLE rm_opportunities_g1.opportunities DROP CONSTRAINT no_poison")
        .execute(&p.db.admin)
        .await
        .unwrap();
    let r = post(
        &http,
        &format!("{}/v1/parked/opportunities/replay", projector.admin_url),
        json!({"aggregate_type": "Opportunity", "aggregate_id": "bad-1"}),
    )
    .await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replayed"][0]["applied"], 3, "{body}");
    assert_eq!(body["replayed"][0]["released"], 3, "{body}");
    let row: Option<i64> = sqlx::query_scalar(
        "SELECT last_version FROM rm_opportunities_g1.opportunities WHERE aggregate_id = 'bad-1'",
    )
    .fetch_optional(&p.db.admin)
    .await
    .unwrap();
    assert_eq!(row, Some(3));
    // The garbage record can never be applied: an operator discards it.
    let left: Value = http
        .get(format!("{}/v1/parked/opportunities", projector.admin_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = left["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{left}");
    assert_eq!(items[0]["reason"], "undecodable");
    let id = items[0]["id"].as_i64().unwrap();
    let r = http
        .delete(format!(
            "{}/v1/parked/opportunities/{id}",
            projector.admin_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_clean(&p.audit("opportunities").await);
    // New events of the replayed aggregate flow again.
    eventfold_tests::relay::append_events_of(
        &p.db.admin,
        "Opportunity",
        &["bad-1".to_string()],
        &opportunity_chain(4, "POISON")[3..],
        3,
        1,
    )
    .await;
    p.caught_up("opportunities", Duration::from_secs(60)).await;
    assert!(p.parked("opportunities").await.is_empty());
    projector.stop().await;
    relay.stop().await;
    p.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_while_events_flow_switches_generations_without_gaps_or_double_effects() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let relay = p.relay("r1");
    let projector = p.projector("p1", &[]);
    let http = eventfold_tests::auth::operator();
    let opps: Vec<String> = (0..300).map(|i| format!("o-{i}")).collect();
    let xrefs: Vec<String> = (0..300).map(|i| format!("x-{i}")).collect();
    let oc = opportunity_chain(6, "rebuilt");
    let xc = xref_chain(6);
    eventfold_tests::relay::append_events_of(&p.db.admin, "Opportunity", &opps, &oc[..3], 0, 100)
        .await;
    eventfold_tests::relay::append_events_of(
        &p.db.admin,
        "CrossReference",
        &xrefs,
        &xc[..3],
        0,
        100,
    )
    .await;
    p.caught_up("opportunities", Duration::from_secs(60)).await;
    p.caught_up("graph", Duration::from_secs(60)).await;

    // Events keep coming while both read models are rebuilt from the event store.
    let writer = {
        let admin = p.db.admin.clone();
        let (opps, xrefs, oc, xc) = (opps.clone(), xrefs.clone(), oc.clone(), xc.clone());
        tokio::spawn(async move {
            for v in 3..6 {
                eventfold_tests::relay::append_events_of(
                    &admin,
                    "Opportunity",
                    &opps,
                    &oc[v..v + 1],
                    v as i64,
                    50,
                )
                .await;
                eventfold_tests::relay::append_events_of(
                    &admin,
                    "CrossReference",
                    &xrefs,
                    &xc[v..v + 1],
                    v as i64,
                    50,
                )
                .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let stores = p.stores();
    let shutdown = eventfold_runtime::Shutdown::new();
    let pg = projector::rebuild::rebuild(&Pipeline::model("opportunities"), &stores, &shutdown)
        .await
        .expect("rebuild opportunities");
    assert_eq!(pg.generation, 2);
    assert!(pg.applied >= 900, "{pg:?}");
    // The Neo4j read model is rebuilt in place: its projectors stop meanwhile and are not ready.
    let graph_rebuild = {
        let stores = stores.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            projector::rebuild::rebuild(&Pipeline::model("graph"), &stores, &shutdown).await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = http
            .get(format!("{}/readyz", projector.admin_url))
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 503) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never said 503 during the rebuild"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let graph = graph_rebuild.await.unwrap().expect("rebuild graph");
    // Rebuilt in place, under a new epoch (the generation) that fences off older writers.
    assert_eq!(graph.generation, 2);
    writer.await.unwrap();

    p.caught_up("opportunities", Duration::from_secs(60)).await;
    p.caught_up("graph", Duration::from_secs(60)).await;
    assert!(p.parked("opportunities").await.is_empty());
    assert!(p.parked("graph").await.is_empty());
    assert_clean(&p.audit("opportunities").await);
    assert_clean(&p.audit("graph").await);
    // The query API reads the new generation.
    let one: Value = http
        .get(format!("{}/v1/read/opportunities/o-7", projector.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["last_version"], 6, "{one}");
    let live: i32 = sqlx::query_scalar(
        "SELECT generation FROM projector_read_models WHERE name = 'opportunities'",
    )
    .fetch_one(&p.db.admin)
    .await
    .unwrap();
    assert_eq!(live, 2);
    let ready = http
        .get(format!("{}/readyz", projector.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    projector.stop().await;
    relay.stop().await;
    p.drop_all().await;
}

/// A record missing from Kafka (here its outbox row removed before the relay ran, as if lost
/// between the store and the topic) leaves a version gap; the projector fills it from the event
/// store, in order, instead of parking the aggregate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_missing_from_kafka_is_filled_from_the_event_store() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let ids: Vec<String> = (0..40).map(|i| format!("gap-{i}")).collect();
    p.append("Opportunity", &ids, &opportunity_chain(4, "gap"))
        .await;
    // Ten aggregates lose version 1, ten version 2, ten versions 2 and 3.
    let lost = sqlx::query(
        "DELETE FROM outbox WHERE aggregate_type = 'Opportunity' AND ( \
           (version = 1 AND aggregate_id = ANY($1)) OR (version = 2 AND aggregate_id = ANY($2)) \
           OR (version IN (2, 3) AND aggregate_id = ANY($3)))",
    )
    .bind(&ids[0..10])
    .bind(&ids[10..20])
    .bind(&ids[20..30])
    .execute(&p.db.admin)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(lost, 40);
    let relay = p.relay("r1");
    let projector = p.projector("p1", &[("PROJECTOR_READ_MODELS", "opportunities")]);
    p.caught_up("opportunities", Duration::from_secs(90)).await;
    assert!(p.parked("opportunities").await.is_empty());
    assert_clean(&p.audit("opportunities").await);
    let text = metrics_text(&eventfold_tests::auth::operator(), &projector.admin_url).await;
    let filled = metric_value(
        &text,
        "eventfold_projector_events_total{outcome=\"gap_filled\",read_model=\"opportunities\"}",
    );
    assert_eq!(filled, Some(40.0), "{text}");
    projector.stop().await;
    relay.stop().await;
    p.drop_all().await;
}
