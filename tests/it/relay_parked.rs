//! The outbox relay's parked rows against the real stack: a dead-letter copy that reaches the
//! dead-letter topic even when the topic refused it at parking time, release (CLI and HTTP) that
//! brings an aggregate's parked chain to both read models in order with nothing overtaking it,
//! discard, and a parking that cannot interleave with a release.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use eventfold_avro::{Catalog, subject_for, topic_for};
use eventfold_cli::cli::{Cli, Command, OutboxCommand, OutboxParked};
use eventfold_postgres::NewEvent;
use eventfold_tests::pipeline::{PARTITIONS, Pipeline, opportunity_chain};
use eventfold_tests::registry_gate::RegistryGate;
use eventfold_tests::relay::{
    Consumed, RelayDb, RelayProcess, append_events, append_events_of, check_in_order,
    consume_until, versions_by_aggregate, xref_chain,
};
use eventfold_tests::{Stack, eventually};
use outbox_relay::dlt::dlt_topic;
use outbox_relay::outbox::{self, Park};
use outbox_relay::parked::{self, AggregateRef};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use serde_json::{Value, json};

async fn metrics(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of metric line `series` (name with labels) in Prometheus text.
fn series(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))?
        .trim()
        .parse()
        .ok()
}

async fn parked_rows(pool: &sqlx::PgPool, aggregate_id: &str) -> Vec<(i64, i64, Option<i64>)> {
    sqlx::query_as(
        "SELECT id, version, blocked_by FROM outbox_parked WHERE aggregate_id = $1 ORDER BY id",
    )
    .bind(aggregate_id)
    .fetch_all(pool)
    .await
    .expect("outbox_parked")
}

fn header(c: &Consumed, name: &str, raw: &HashMap<(i32, i64), Vec<(String, String)>>) -> String {
    raw[&(c.partition, c.offset)]
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("header {name} missing"))
}

/// Every record of `topic` with its headers as text, read from the beginning until `n` arrived.
async fn dlt_records(
    stack: &Stack,
    topic: &str,
    n: usize,
) -> (Vec<Consumed>, HashMap<(i32, i64), Vec<(String, String)>>) {
    let records = consume_until(stack, topic, Duration::from_secs(60), |r| r.len() >= n).await;
    // consume_until keeps the envelope; read the dead-letter headers with a consumer of our own.
    let consumer: BaseConsumer = stack
        .kafka
        .client_config()
        .set("group.id", eventfold_tests::unique("dlt-check"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut raw = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while raw.len() < records.len() && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            use rdkafka::Message;
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            raw.insert((m.partition(), m.offset()), headers);
        }
    }
    (records, raw)
}

fn admin(stack: &Stack) -> AdminClient<DefaultClientContext> {
    stack.kafka.client_config().create().expect("admin client")
}

/// Records in `topic` (sum of the high watermarks).
fn topic_len(stack: &Stack, topic: &str) -> i64 {
    let consumer: BaseConsumer = stack
        .kafka
        .client_config()
        .set("group.id", eventfold_tests::unique("dlt-len"))
        .create()
        .expect("consumer");
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    meta.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum()
}

async fn append_one(db: &RelayDb, id: &str, after: i64, event: &NewEvent) {
    append_events(
        &db.admin,
        &[id.to_owned()],
        std::slice::from_ref(event),
        after,
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_copy_refused_at_parking_time_is_retried_until_the_topic_has_every_parking() {
    let stack = Stack::from_env().await;
    let db = RelayDb::create(&stack).await;
    let dlt = dlt_topic(&db.prefix);
    // The dead-letter topic exists but refuses every record (max.message.bytes far below any copy):
    // the relay's first sends fail.
    let admin = admin(&stack);
    let created = admin
        .create_topics(
            &[NewTopic::new(&dlt, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "100")],
            &AdminOptions::new(),
        )
        .await
        .expect("create the dead-letter topic");
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");
    let relay = db.spawn_relay(&[]).await;

    let chain = xref_chain(3);
    let mut broken = chain[1].clone();
    broken.payload = json!({"not": "a validation"});
    append_one(&db, "bad-1", 0, &chain[0]).await;
    append_one(&db, "bad-1", 1, &broken).await;
    append_one(&db, "bad-1", 2, &chain[2]).await;
    let parked = eventually("bad-1 parked", Duration::from_secs(60), || async {
        let rows = parked_rows(&db.admin, "bad-1").await;
        (rows.len() == 2).then_some(rows)
    })
    .await;
    // The copies are queued and the sends fail: nothing reached the topic.
    eventually(
        "dead-letter sends failing",
        Duration::from_secs(30),
        || async {
            let text = metrics(&relay.admin_url).await;
            (series(&text, "eventfold_relay_errors_total{stage=\"dlt\"}").unwrap_or(0.0) >= 2.0
                && series(&text, "eventfold_relay_dlt_pending") == Some(2.0)
                && series(&text, "eventfold_relay_outbox_parked") == Some(2.0))
            .then_some(())
        },
    )
    .await;
    assert_eq!(topic_len(&stack, &dlt), 0);
    // The alert rules name metrics this relay exports.
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../helm/alerts/outbox-relay.rules.yaml"),
    )
    .expect("alert rules");
    let text = metrics(&relay.admin_url).await;
    let named: BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("eventfold_relay_"))
        .collect();
    assert!(named.len() >= 2, "{named:?}");
    for m in named {
        assert!(
            text.lines().any(|l| l.starts_with(m)),
            "alert rule metric {m} not exported"
        );
    }

    // The topic accepts records again: the copies follow, without anyone asking.
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic(&dlt)).set("max.message.bytes", "1048588");
    let altered = admin
        .alter_configs(&[alter], &AdminOptions::new())
        .await
        .expect("alter the dead-letter topic");
    assert!(altered.iter().all(|r| r.is_ok()), "{altered:?}");
    let (records, raw) = dlt_records(&stack, &dlt, 2).await;
    eventually("copies confirmed", Duration::from_secs(30), || async {
        let text = metrics(&relay.admin_url).await;
        (series(&text, "eventfold_relay_dlt_pending") == Some(0.0)
            && series(&text, "eventfold_relay_dlt_sent_total") == Some(2.0))
        .then_some(())
    })
    .await;
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_dlt")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(queued, 0);
    // Exactly one copy per parked row: the same ids, versions, events and payloads.
    assert_eq!(topic_len(&stack, &dlt), 2);
    let copies: BTreeSet<(i64, i64)> = records
        .iter()
        .map(|c| {
            (
                header(c, "dlt_parked_id", &raw).parse().unwrap(),
                c.envelope.aggregate_version,
            )
        })
        .collect();
    let rows: BTreeSet<(i64, i64)> = parked.iter().map(|(id, v, _)| (*id, *v)).collect();
    assert_eq!(copies, rows);
    for c in &records {
        assert_eq!(c.key, "bad-1");
        let (payload, event_id): (Value, uuid::Uuid) = sqlx::query_as(
            "SELECT payload, event_id FROM events WHERE aggregate_id = 'bad-1' AND version = $1",
        )
        .bind(c.envelope.aggregate_version)
        .fetch_one(&db.admin)
        .await
        .unwrap();
        assert_eq!(c.envelope.event_id, event_id.to_string());
        assert_eq!(serde_json::from_slice::<Value>(&c.value).unwrap(), payload);
        let kind = header(c, "dlt_reason", &raw);
        let expected = if c.envelope.aggregate_version == 2 {
            "encode"
        } else {
            "behind_parked"
        };
        assert_eq!(kind, expected);
        assert_eq!(header(c, "dlt_source", &raw), "outbox-relay");
    }

    // Released, the rows are still unencodable: parked again, and each new parking has its copy.
    let http = eventfold_tests::auth::operator();
    let r = http
        .post(format!("{}/v1/outbox/parked/release", relay.admin_url))
        .json(&json!({"aggregate_type": "CrossReference", "aggregate_id": "bad-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["released"][0]["versions"], json!([2, 3]), "{body}");
    let (records, raw) = dlt_records(&stack, &dlt, 4).await;
    let by_id: BTreeSet<(String, String)> = records
        .iter()
        .map(|c| {
            (
                header(c, "dlt_parked_id", &raw),
                header(c, "dlt_parked_at", &raw),
            )
        })
        .collect();
    assert_eq!(
        by_id.len(),
        4,
        "two parkings of each row, each with its own copy"
    );
    assert_eq!(parked_rows(&db.admin, "bad-1").await.len(), 2);

    // Discard: named aggregate only, with the note about the event store and rebuilds.
    let r = http
        .post(format!("{}/v1/outbox/parked/discard", relay.admin_url))
        .json(&json!({"all": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_aggregate");
    let r = http
        .post(format!("{}/v1/outbox/parked/discard", relay.admin_url))
        .json(&json!({"aggregate_type": "CrossReference", "aggregate_id": "bad-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["discarded"]["versions"], json!([2, 3]), "{body}");
    assert!(body["note"].as_str().unwrap().contains("rebuild"), "{body}");
    let r = http
        .post(format!("{}/v1/outbox/parked/discard", relay.admin_url))
        .json(&json!({"aggregate_type": "CrossReference", "aggregate_id": "bad-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{}/v1/outbox/parked", relay.admin_url))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["items"], json!([]), "{body}");
    relay.stop().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_read_behind_a_parked_row_is_not_parked_once_that_row_was_released() {
    let stack = Stack::from_env().await;
    let db = RelayDb::create(&stack).await;
    let shards = 16u32;
    // This test plays the relay: it owns every shard at epoch 1.
    sqlx::query(
        "INSERT INTO relay_shards (shard, epoch, owner) SELECT s, 1, 'test' FROM generate_series(0, 15) s",
    )
    .execute(&db.admin)
    .await
    .unwrap();
    let chain = xref_chain(3);
    for (v, e) in chain.iter().enumerate() {
        append_one(&db, "race-1", v as i64, e).await;
    }
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM outbox ORDER BY id")
        .fetch_all(&db.admin)
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    // Version 1 fails and is parked; the relay has already read version 2 as waiting behind it.
    let head = Park {
        id: ids[0],
        epoch: 1,
        kind: "encode",
        reason: "test".into(),
        blocked_by: None,
    };
    assert_eq!(outbox::park(&db.admin, shards, &[head]).await.unwrap(), 1);
    let aggregate: AggregateRef = "CrossReference/race-1".parse().unwrap();
    // An operator releases the aggregate before that read's parking runs.
    let released = parked::release(&db.admin, &aggregate)
        .await
        .unwrap()
        .expect("released");
    assert_eq!(released.ids, vec![ids[0]]);
    let behind = Park {
        id: ids[1],
        epoch: 1,
        kind: "behind_parked",
        reason: format!("behind parked outbox row {}", ids[0]),
        blocked_by: Some(ids[0]),
    };
    // The stale parking moves nothing: version 2 stays in the outbox behind the released row,
    // under the same ids, so the next read publishes 1, 2, 3 in order.
    assert_eq!(outbox::park(&db.admin, shards, &[behind]).await.unwrap(), 0);
    let now: Vec<(i64, i64)> = sqlx::query_as("SELECT id, version FROM outbox ORDER BY id")
        .fetch_all(&db.admin)
        .await
        .unwrap();
    assert_eq!(now, vec![(ids[0], 1), (ids[1], 2), (ids[2], 3)]);
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_parked")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(parked, 0);
    // Both parkings were real (the first one's copy is queued), the stale one queued nothing.
    let queued: Vec<i64> = sqlx::query_scalar("SELECT parked_id FROM outbox_dlt ORDER BY id")
        .fetch_all(&db.admin)
        .await
        .unwrap();
    assert_eq!(queued, vec![ids[0]]);
    // `eventfold outbox parked release --all` finds every parked aggregate (as the relay's role).
    let head = Park {
        id: ids[0],
        epoch: 1,
        kind: "encode",
        reason: "again".into(),
        blocked_by: None,
    };
    assert_eq!(outbox::park(&db.admin, shards, &[head]).await.unwrap(), 1);
    let env = stack.service_env(&[("DATABASE_URL", db.relay_url.as_str())]);
    let o = eventfold_cli::outbox::release(&env, None)
        .await
        .expect("runs");
    assert!(o.ok, "{:?}", o.err);
    assert_eq!(o.out.len(), 1, "{:?}", o.out);
    assert!(o.out[0].contains("CrossReference/race-1"), "{}", o.out[0]);
    let outbox_len: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(outbox_len, 3);
    db.drop_database().await;
}

/// The versions `name` has applied, per stream (tenant, type, id).
async fn applied(p: &Pipeline, name: &str) -> HashMap<projector::target::AggregateKey, i64> {
    let model = Pipeline::model(name);
    let stores = p.stores();
    let state = projector::state::ensure(&stores.pool, &*model)
        .await
        .expect("state");
    projector::state::target(&*model, state.generation, &stores)
        .versions()
        .await
        .unwrap_or_default()
}

/// The stream of `id` of tenant `default` (the events of this test are written as `default`).
fn key(aggregate_type: &str, id: &str) -> projector::target::AggregateKey {
    projector::target::AggregateKey::new("default", aggregate_type, id)
}

/// `eventfold outbox parked …` as the relay's role (the least an operator needs).
async fn cli(p: &Pipeline, command: OutboxParked) -> eventfold_cli::cli::Outcome {
    let cli = Cli {
        command: Command::Outbox(OutboxCommand::Parked(command)),
    };
    let env = p
        .stack
        .service_env(&[("DATABASE_URL", p.db.relay_url.as_str())]);
    eventfold_cli::cli::run(cli, &env).await.expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_aggregate_reaches_both_read_models_in_order_and_nothing_overtakes_it() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let catalog = Catalog::embedded().expect("catalog");
    let xrefs = xref_chain(6);
    let opps = opportunity_chain(3, "released");
    // The registry refuses the schemas of the aggregates' second events (422: a refusal of the
    // schema itself, not a missing one, which would halt the relay): those rows park.
    let gate = RegistryGate::start(&stack.registry.url, "relay", "s3cret").await;
    let mut subjects = Vec::new();
    for e in [&xrefs[1], &opps[1]] {
        let file = catalog
            .get(&e.event_type, e.schema_version as u32)
            .expect("schema");
        let subject = subject_for(
            &topic_for(&p.db.prefix, &file.aggregate_type),
            &file.fullname,
        );
        gate.refuse_subject(&subject, true);
        subjects.push(subject);
    }
    let relay = RelayProcess::start(
        &p.db,
        "relay-a",
        &[
            ("KAFKA_TOPIC_PARTITIONS", PARTITIONS),
            ("SCHEMA_REGISTRY_URL", gate.url.as_str()),
            ("SCHEMA_REGISTRY_USERNAME", "relay"),
            ("SCHEMA_REGISTRY_PASSWORD", "s3cret"),
        ],
    );
    let projector = p.projector("projector-a", &[]);

    append_events_of(
        &p.db.admin,
        "CrossReference",
        &["px-1".into()],
        &xrefs[..4],
        0,
        1,
    )
    .await;
    p.append("Opportunity", &["po-1".into()], &opps).await;
    let parked = eventually("rows parked", Duration::from_secs(60), || async {
        let n = parked_rows(&p.db.admin, "px-1").await.len()
            + parked_rows(&p.db.admin, "po-1").await.len();
        (n == 5).then_some(n)
    })
    .await;
    assert_eq!(parked, 5);
    // A later event of the parked aggregate waits behind the chain.
    append_events_of(
        &p.db.admin,
        "CrossReference",
        &["px-1".into()],
        &xrefs[4..5],
        4,
        1,
    )
    .await;
    eventually("v5 parked behind", Duration::from_secs(30), || async {
        (parked_rows(&p.db.admin, "px-1").await.len() == 4).then_some(())
    })
    .await;
    let px1: AggregateRef = "CrossReference/px-1".parse().unwrap();
    let listed = cli(
        &p,
        OutboxParked::List {
            aggregate: Some(px1.clone()),
            limit: 100,
        },
    )
    .await;
    assert!(listed.ok, "{:?}", listed.err);
    let lines: Vec<Value> = listed
        .out
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let versions: Vec<i64> = lines
        .iter()
        .map(|l| l["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![2, 3, 4, 5]);
    assert_eq!(lines[0]["reason"], "encode");
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap()
            .contains("schema registry refused"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["reason"], "behind_parked");
    for key in ["id", "aggregate_type", "aggregate_id", "parked_at"] {
        assert!(!lines[0][key].is_null(), "{key}: {}", lines[0]);
    }
    eventually("metric of parked rows", Duration::from_secs(30), || async {
        let text = metrics(&relay.admin_url).await;
        (series(&text, "eventfold_relay_outbox_parked") == Some(6.0)).then_some(())
    })
    .await;
    // Both read models hold version 1 only.
    eventually("version 1 applied", Duration::from_secs(60), || async {
        let g = applied(&p, "graph").await;
        let o = applied(&p, "opportunities").await;
        (g.get(&key("CrossReference", "px-1")) == Some(&1)
            && o.get(&key("Opportunity", "po-1")) == Some(&1))
        .then_some(())
    })
    .await;
    let parked_ids: BTreeSet<i64> = sqlx::query_scalar("SELECT id FROM outbox_parked")
        .fetch_all(&p.db.admin)
        .await
        .unwrap()
        .into_iter()
        .collect();

    // The operator fixes the registry and releases: one aggregate by the CLI, one over HTTP, and
    // px-1 gets a new event right after its release.
    for s in &subjects {
        gate.refuse_subject(s, false);
    }
    let released = cli(
        &p,
        OutboxParked::Release {
            aggregate: Some(px1),
            all: false,
        },
    )
    .await;
    assert!(released.ok, "{:?}", released.err);
    append_events_of(
        &p.db.admin,
        "CrossReference",
        &["px-1".into()],
        &xrefs[5..6],
        5,
        1,
    )
    .await;
    let r = eventfold_tests::auth::operator()
        .post(format!("{}/v1/outbox/parked/release", relay.admin_url))
        .json(&json!({"aggregate_type": "Opportunity", "aggregate_id": "po-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let records = consume_until(
        &stack,
        &format!("{}CrossReference", p.db.prefix),
        Duration::from_secs(60),
        |r| {
            r.iter()
                .any(|c| c.key == "px-1" && c.envelope.aggregate_version == 6)
        },
    )
    .await;
    let px = &versions_by_aggregate(&records)["px-1"];
    check_in_order("px-1", px, 6);
    let records = consume_until(
        &stack,
        &format!("{}Opportunity", p.db.prefix),
        Duration::from_secs(60),
        |r| {
            r.iter()
                .any(|c| c.key == "po-1" && c.envelope.aggregate_version == 3)
        },
    )
    .await;
    check_in_order("po-1", &versions_by_aggregate(&records)["po-1"], 3);

    p.caught_up("graph", Duration::from_secs(60)).await;
    p.caught_up("opportunities", Duration::from_secs(60)).await;
    assert_eq!(
        applied(&p, "graph").await[&key("CrossReference", "px-1")],
        6
    );
    assert_eq!(
        applied(&p, "opportunities").await[&key("Opportunity", "po-1")],
        3
    );
    // Nothing arrived out of order or twice for the projector: nothing parked there, and each
    // read model equals a replay of the event store.
    for name in ["graph", "opportunities"] {
        assert!(
            p.parked(name).await.is_empty(),
            "{name}: {:?}",
            p.parked(name).await
        );
        let report = p.audit(name).await;
        assert!(report.is_clean(), "{name}: {report:?}");
    }
    assert_eq!(parked_rows(&p.db.admin, "px-1").await, vec![]);
    // Every parking has its dead-letter copy.
    let (copies, raw) = dlt_records(&stack, &dlt_topic(&p.db.prefix), parked_ids.len()).await;
    let copied: BTreeSet<i64> = copies
        .iter()
        .map(|c| header(c, "dlt_parked_id", &raw).parse().unwrap())
        .collect();
    assert_eq!(copied, parked_ids);
    eventually("metric back to 0", Duration::from_secs(30), || async {
        let text = metrics(&relay.admin_url).await;
        (series(&text, "eventfold_relay_outbox_parked") == Some(0.0)).then_some(())
    })
    .await;
    projector.stop().await;
    relay.stop().await;
    p.drop_all().await;
}
