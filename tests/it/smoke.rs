//! Smoke test: a real round trip through each server of the stack, and the three services answering.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use apache_avro::types::Value;
use eventfold_avro::{Compatibility, RegistryClient};
use eventfold_tests::{Spawned, Stack, eventually, running_service_admin_urls, spawn, unique};
use neo4rs::query;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde::{Deserialize, Serialize};

const SMOKE_SCHEMA: &str = r#"{
  "type": "record",
  "name": "SmokeRecorded",
  "namespace": "io.eventfold.smoke",
  "fields": [
    {"name": "id", "type": "string"},
    {"name": "seq", "type": "long"},
    {"name": "note", "type": "string"}
  ]
}"#;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SmokeRecorded {
    id: String,
    seq: i64,
    note: String,
}

#[tokio::test]
async fn postgres_answers_a_query_and_keeps_a_row() {
    let stack = Stack::from_env().await;
    let pool = sqlx::PgPool::connect_with(stack.database.connect_options())
        .await
        .expect("connect to PostgreSQL");
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(version.starts_with(char::is_numeric), "{version}");

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("CREATE TEMP TABLE smoke (id uuid PRIMARY KEY, note text NOT NULL)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO smoke VALUES ($1, $2)")
        .bind(id)
        .bind("ünïcödé ✓")
        .execute(&mut *tx)
        .await
        .unwrap();
    let note: String = sqlx::query_scalar("SELECT note FROM smoke WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(note, "ünïcödé ✓");
}

#[tokio::test]
async fn an_avro_record_goes_through_the_registry_and_a_three_partition_topic_and_back() {
    let stack = Stack::from_env().await;
    let registry = RegistryClient::new(stack.registry.clone());
    registry
        .set_compatibility(Compatibility::Backward)
        .await
        .expect("set compatibility");
    assert_eq!(
        registry.compatibility().await.unwrap(),
        Some(Compatibility::Backward)
    );

    let topic = unique("smoke");
    stack
        .kafka
        .ensure_topic(&topic, 3, 1)
        .await
        .expect("create topic");

    // Encode in the Confluent wire format, registering the schema under the topic-record subject.
    let sr = stack.registry.converter_settings().unwrap();
    let encoder = AvroEncoder::new(sr.clone());
    let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
        topic.clone(),
        SuppliedSchema::new(
            Some("io.eventfold.smoke.SmokeRecorded".to_owned()),
            SchemaType::Avro,
            SMOKE_SCHEMA.to_owned(),
        ),
    );
    let records: Vec<SmokeRecorded> = (0..30)
        .map(|seq| SmokeRecorded {
            id: format!("aggregate-{seq}"),
            seq,
            note: format!("record {seq} of the smoke test"),
        })
        .collect();
    let producer: FutureProducer = stack
        .kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let mut schema_ids = BTreeSet::new();
    for record in &records {
        let bytes = encoder
            .encode_struct(record, &strategy)
            .await
            .expect("encode");
        assert_eq!(bytes[0], 0, "Confluent magic byte");
        schema_ids.insert(u32::from_be_bytes(bytes[1..5].try_into().unwrap()));
        producer
            .send(
                FutureRecord::to(&topic).key(&record.id).payload(&bytes),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    assert_eq!(schema_ids.len(), 1, "one schema id for one schema");

    // Consume back with a fresh consumer group and decode.
    let consumer: StreamConsumer = stack
        .kafka
        .client_config()
        .set("group.id", unique("smoke-group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let decoder = AvroDecoder::new(sr);
    let mut received: HashMap<String, (SmokeRecorded, i32)> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while received.len() < records.len() {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of 30 records consumed", received.len()))
            .expect("consume");
        let decoded = decoder.decode(msg.payload()).await.expect("decode");
        let record: SmokeRecorded = apache_avro::from_value(&decoded.value).unwrap();
        assert!(matches!(decoded.value, Value::Record(_)));
        received.insert(record.id.clone(), (record, msg.partition()));
    }
    for record in &records {
        assert_eq!(&received[&record.id].0, record);
    }
    let partitions: BTreeSet<i32> = received.values().map(|(_, p)| *p).collect();
    assert_eq!(
        partitions,
        BTreeSet::from([0, 1, 2]),
        "30 keys spread over 3 partitions"
    );
}

#[tokio::test]
async fn neo4j_writes_and_reads_a_node_over_bolt() {
    let stack = Stack::from_env().await;
    let graph = stack.neo4j.graph().expect("neo4j settings");
    let id = unique("smoke");
    graph
        .run(
            query("CREATE (:SmokeTest {id: $id, note: $note})-[:LINKS {weight: 0.5}]->(:SmokeTest {id: $id + '-b'})")
                .param("id", id.clone())
                .param("note", "ünïcödé ✓"),
        )
        .await
        .expect("cypher write");
    let mut rows = graph
        .execute(
            query(
                "MATCH (a:SmokeTest {id: $id})-[r:LINKS]->(b) RETURN a.note AS note, r.weight AS w, b.id AS b",
            )
            .param("id", id.clone()),
        )
        .await
        .expect("cypher read");
    let row = rows.next().await.unwrap().expect("one row");
    assert_eq!(row.get::<String>("note").unwrap(), "ünïcödé ✓");
    assert_eq!(row.get::<f64>("w").unwrap(), 0.5);
    assert_eq!(row.get::<String>("b").unwrap(), format!("{id}-b"));
    graph
        .run(
            query("MATCH (n:SmokeTest) WHERE n.id STARTS WITH $id DETACH DELETE n").param("id", id),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn the_services_started_by_make_up_are_ready() {
    let http = eventfold_tests::auth::operator();
    for (service, url) in running_service_admin_urls() {
        let resp = http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("{service} at {url} does not answer (is `make up` done?): {e}")
            });
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert_eq!(status, 200, "{service} not ready: {body}");
        let metrics = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains(&format!("eventfold_up{{service=\"{service}\"}} 1")),
            "{service} metrics: {metrics}"
        );
    }
}

/// Starts each service in-process on port 0 against the stack, after registering the schemas of
/// their topic prefix (the default, `eventfold.`), as `make up` does.
async fn spawn_services(stack: &Stack, extra: &[(&str, &str)]) -> Vec<Spawned> {
    stack.register_schemas("eventfold.").await;
    let env = stack.service_env(extra);
    vec![
        spawn(
            command_service::SERVICE,
            command_service::build(command_service::Settings::from_env(&env).unwrap())
                .await
                .unwrap(),
        ),
        spawn(
            outbox_relay::SERVICE,
            outbox_relay::build(outbox_relay::Settings::from_env(&env).unwrap())
                .await
                .unwrap(),
        ),
        spawn(
            projector::SERVICE,
            projector::build(projector::Settings::from_env(&env).unwrap())
                .await
                .unwrap(),
        ),
    ]
}

#[tokio::test]
async fn each_service_is_ready_against_the_stack_and_stops_on_shutdown() {
    let stack = Stack::from_env().await;
    let http = eventfold_tests::auth::operator();
    for Spawned {
        name: service,
        admin_url: url,
        shutdown,
        handle,
        ..
    } in spawn_services(&stack, &[]).await
    {
        let status = eventually("service ready", Duration::from_secs(30), || {
            let http = http.clone();
            let url = url.clone();
            async move {
                let r = http.get(format!("{url}/readyz")).send().await.ok()?;
                (r.status() == 200).then_some(r.status())
            }
        })
        .await;
        assert_eq!(status, 200, "{service}");
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .unwrap_or_else(|_| panic!("{service} did not stop within 10 s"))
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn readyz_is_503_and_names_kafka_when_the_broker_is_unreachable() {
    let stack = Stack::from_env().await;
    // Port 1 on loopback: nothing listens there, so the metadata request fails.
    let services = spawn_services(&stack, &[("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")]).await;
    let http = eventfold_tests::auth::operator();
    for Spawned {
        name: service,
        admin_url: url,
        shutdown,
        ..
    } in services
    {
        let resp = http.get(format!("{url}/readyz")).send().await.unwrap();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        if service == "command-service" {
            assert_eq!(status, 200, "command-service does not need Kafka: {body}");
        } else {
            assert_eq!(status, 503, "{service}: {body}");
            assert_ne!(body["checks"]["kafka"], "ok", "{service}: {body}");
            assert_eq!(body["checks"]["postgres"], "ok", "{service}: {body}");
        }
        shutdown.trigger();
    }
}
