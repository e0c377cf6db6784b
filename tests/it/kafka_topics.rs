//! Topics created by `ensure_topic` carry the retention and min-ISR the operator chose, read back
//! from the real broker with the admin client's DescribeConfigs.

use std::time::Duration;

use eventfold_kafka::{KafkaError, KafkaSettings};
use eventfold_runtime::Env;
use eventfold_tests::unique;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// The process's Kafka settings with the topic variables replaced by `topic_vars`, so a
/// `KAFKA_TOPIC_*` exported in the shell cannot change what a test expects.
fn settings(
    topic_vars: &[(&str, &str)],
) -> Result<KafkaSettings, eventfold_runtime::SettingsError> {
    let mut pairs: Vec<(String, String)> = Env::from_process()
        .pairs()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("KAFKA_TOPIC_"))
        .collect();
    pairs.extend(
        topic_vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    KafkaSettings::from_env(&Env::from_pairs(pairs))
}

/// The value of `name` in `topic`'s configuration, as the broker reports it.
async fn topic_config(kafka: &KafkaSettings, topic: &str, name: &str) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().unwrap();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let mut results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
        .await
        .expect("describe configs");
    let resource = results
        .remove(0)
        .unwrap_or_else(|code| panic!("describe configs of {topic}: {code:?}"));
    resource.get(name).and_then(|entry| entry.value.clone())
}

/// Whether the cluster's metadata lists `topic`.
fn topic_exists(kafka: &KafkaSettings, topic: &str) -> bool {
    let consumer: BaseConsumer = kafka.client_config().create().unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    metadata.topics().iter().any(|t| t.name() == topic)
}

async fn delete(kafka: &KafkaSettings, prefix: String) {
    kafka
        .delete_topics_where(move |name| name.starts_with(&prefix))
        .await
        .expect("delete the test's topics");
}

#[tokio::test]
async fn a_created_topic_keeps_its_events_forever_by_default() {
    let kafka = settings(&[]).unwrap();
    let topic = unique("topics-default");
    kafka
        .ensure_topic(&topic, 3, 1)
        .await
        .expect("create topic");

    let retention = topic_config(&kafka, &topic, "retention.ms").await;
    let min_isr = topic_config(&kafka, &topic, "min.insync.replicas").await;
    delete(&kafka, topic).await;
    assert_eq!(retention.as_deref(), Some("-1"));
    assert_eq!(
        min_isr.as_deref(),
        Some("1"),
        "replication 1 needs min ISR 1"
    );
}

#[tokio::test]
async fn an_explicit_retention_is_honoured_and_an_existing_topic_is_left_alone() {
    // Not a week: the local broker's own default (log.retention.hours=168) must not pass for it.
    let three_days = (3 * 24 * 3600 * 1000_i64 + 1).to_string();
    let kafka = settings(&[("KAFKA_TOPIC_RETENTION_MS", &three_days)]).unwrap();
    let topic = unique("topics-3d");
    kafka
        .ensure_topic(&topic, 1, 1)
        .await
        .expect("create topic");
    let first = topic_config(&kafka, &topic, "retention.ms").await;

    // A second start with another setting finds the topic and changes nothing.
    let forever = settings(&[]).unwrap();
    forever
        .ensure_topic(&topic, 1, 1)
        .await
        .expect("topic exists");
    let second = topic_config(&kafka, &topic, "retention.ms").await;
    delete(&kafka, topic).await;
    assert_eq!(first.as_deref(), Some(three_days.as_str()));
    assert_eq!(second.as_deref(), Some(three_days.as_str()));
}

#[tokio::test]
async fn a_min_isr_above_the_replication_factor_creates_nothing() {
    let kafka = settings(&[("KAFKA_TOPIC_MIN_ISR", "2")]).unwrap();
    let topic = unique("topics-isr");
    let err = kafka.ensure_topic(&topic, 1, 1).await.unwrap_err();
    assert!(
        matches!(
            err,
            KafkaError::MinIsrAboveReplication {
                min_isr: 2,
                replication: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("KAFKA_TOPIC_MIN_ISR"), "{err}");
    assert!(!topic_exists(&kafka, &topic), "{topic} was created anyway");
}

#[test]
fn a_bad_retention_is_refused_naming_the_variable() {
    for bad in ["forever", "0", "-5", "1.5"] {
        let err = settings(&[("KAFKA_TOPIC_RETENTION_MS", bad)]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("KAFKA_TOPIC_RETENTION_MS"),
            "{bad}: {message}"
        );
        assert!(message.contains(bad), "{bad}: {message}");
    }
}

/// `ensure_topic` returns only once the leader of every partition serves it: a first write right
/// after it (from a fresh client, as a relay's first batch) finds no partition still loading.
#[tokio::test]
async fn ensure_topic_returns_once_every_partition_is_served() {
    let kafka = settings(&[]).unwrap();
    let prefix = unique("t-ready-");
    for i in 0..3 {
        let topic = format!("{prefix}.T{i}");
        kafka.ensure_topic(&topic, 12, 1).await.unwrap();
        let consumer: BaseConsumer = kafka.client_config().create().unwrap();
        for p in 0..12 {
            consumer
                .fetch_watermarks(&topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{topic}/{p} not served after ensure_topic: {e}"));
        }
    }
    delete(&kafka, prefix).await;
}
