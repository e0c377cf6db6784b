//! Kafka plumbing shared by the outbox relay, the projector and the tests: one place that turns
//! settings into `rdkafka` client configs, creates topics and probes the brokers.
//!
//! Domain code never depends on this crate.
#![deny(missing_docs)]

pub mod envelope;

use std::time::Duration;

use eventfold_runtime::{Env, SettingsError};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;

pub use envelope::{Envelope, EnvelopeError};

/// A Kafka operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The client library reported an error.
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// Topic creation was refused for a reason other than "already exists".
    #[error("cannot create topic {topic}: {code:?}")]
    TopicCreation {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// A blocking client call could not run.
    #[error("kafka client task failed: {0}")]
    Task(String),
    /// A partition of the topic had no leader serving it within the wait.
    #[error("topic {topic} partition {partition} is not served by a leader yet: {error}")]
    TopicNotReady {
        /// The topic.
        topic: String,
        /// The partition that was not ready.
        partition: i32,
        /// The last error its leader gave.
        error: String,
    },
    /// The topic would refuse every `acks=all` write: more in-sync replicas required than it has.
    #[error(
        "cannot create topic {topic}: KAFKA_TOPIC_MIN_ISR={min_isr} exceeds its replication factor {replication}"
    )]
    MinIsrAboveReplication {
        /// The topic.
        topic: String,
        /// The `min.insync.replicas` asked for.
        min_isr: i32,
        /// The replication factor asked for.
        replication: i32,
    },
}

/// Where the brokers are and how to authenticate to them.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `KAFKA_BOOTSTRAP_SERVERS`: comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// `KAFKA_SECURITY_PROTOCOL`: `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: String,
    /// `KAFKA_SASL_MECHANISM`, e.g. `SCRAM-SHA-512`, when SASL is used.
    pub sasl_mechanism: Option<String>,
    /// `KAFKA_SASL_USERNAME`.
    pub sasl_username: Option<String>,
    /// `KAFKA_SASL_PASSWORD`.
    pub sasl_password: Option<String>,
    /// `KAFKA_TOPIC_RETENTION_MS`: `retention.ms` of the topics [`Self::ensure_topic`] creates;
    /// -1 (default) keeps every event forever, so a late or new consumer can still read from the start.
    pub topic_retention_ms: i64,
    /// `KAFKA_TOPIC_MIN_ISR`: `min.insync.replicas` of created topics; unset means 1 below
    /// replication factor 3 and 2 from 3 on (an `acks=all` write then survives one broker loss).
    pub topic_min_isr: Option<i32>,
}

impl KafkaSettings {
    /// Reads the Kafka variables; the bootstrap list defaults to the local stack's broker.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let security_protocol = env.string("KAFKA_SECURITY_PROTOCOL", "plaintext");
        if !matches!(
            security_protocol.to_ascii_lowercase().as_str(),
            "plaintext" | "ssl" | "sasl_plaintext" | "sasl_ssl"
        ) {
            return Err(SettingsError::Invalid {
                var: "KAFKA_SECURITY_PROTOCOL".into(),
                value: security_protocol,
                reason: "expected plaintext, ssl, sasl_plaintext or sasl_ssl".into(),
            });
        }
        eventfold_runtime::settings::refuse_insecure(
            env,
            "KAFKA_SECURITY_PROTOCOL",
            &security_protocol,
            !matches!(
                security_protocol.to_ascii_lowercase().as_str(),
                "ssl" | "sasl_ssl"
            ),
            "KAFKA_INSECURE",
            "a plaintext connection to the brokers is refused",
        )?;
        let topic_retention_ms: i64 = env.parse("KAFKA_TOPIC_RETENTION_MS", -1)?;
        // 0 would make the broker delete events as soon as a segment rolls: never what an event
        // log wants, so it is refused rather than passed on.
        if topic_retention_ms != -1 && topic_retention_ms <= 0 {
            return Err(SettingsError::Invalid {
                var: "KAFKA_TOPIC_RETENTION_MS".into(),
                value: topic_retention_ms.to_string(),
                reason: "expected -1 (keep forever) or a positive number of milliseconds".into(),
            });
        }
        let topic_min_isr = match env.raw("KAFKA_TOPIC_MIN_ISR") {
            None => None,
            Some(_) => match env.parse::<i32>("KAFKA_TOPIC_MIN_ISR", 1)? {
                n if n >= 1 => Some(n),
                n => {
                    return Err(SettingsError::Invalid {
                        var: "KAFKA_TOPIC_MIN_ISR".into(),
                        value: n.to_string(),
                        reason: "expected a positive number of replicas".into(),
                    });
                }
            },
        };
        Ok(Self {
            bootstrap_servers: env.string("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            security_protocol,
            sasl_mechanism: env.raw("KAFKA_SASL_MECHANISM").map(str::to_owned),
            sasl_username: env.raw("KAFKA_SASL_USERNAME").map(str::to_owned),
            sasl_password: env.raw("KAFKA_SASL_PASSWORD").map(str::to_owned),
            topic_retention_ms,
            topic_min_isr,
        })
    }

    /// Settings for a plaintext broker list (tests, local stack).
    pub fn plaintext(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            security_protocol: "plaintext".into(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            topic_retention_ms: -1,
            topic_min_isr: None,
        }
    }

    /// A client config with the connection and security settings applied.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("security.protocol", &self.security_protocol)
            .set("socket.keepalive.enable", "true");
        if let Some(m) = &self.sasl_mechanism {
            config.set("sasl.mechanism", m);
        }
        if let Some(u) = &self.sasl_username {
            config.set("sasl.username", u);
        }
        if let Some(p) = &self.sasl_password {
            config.set("sasl.password", p);
        }
        config
    }

    /// `min.insync.replicas` of a topic created with `replication` replicas.
    pub fn min_isr_for(&self, replication: i32) -> i32 {
        self.topic_min_isr
            .unwrap_or(if replication < 3 { 1 } else { 2 })
    }

    /// Creates `topic` with `partitions`, `replication`, [`Self::topic_retention_ms`] and
    /// [`Self::min_isr_for`] unless it exists already (an existing topic's configs are left as
    /// they are: changing retention is an operator's decision, not a side effect of a start).
    pub async fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication: i32,
    ) -> Result<(), KafkaError> {
        let min_isr = self.min_isr_for(replication);
        if min_isr > replication {
            return Err(KafkaError::MinIsrAboveReplication {
                topic: topic.to_owned(),
                min_isr,
                replication,
            });
        }
        let retention = self.topic_retention_ms.to_string();
        let min_isr_value = min_isr.to_string();
        let admin: AdminClient<DefaultClientContext> = self.client_config().create()?;
        let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication))
            .set("retention.ms", &retention)
            .set("min.insync.replicas", &min_isr_value);
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics([&new_topic], &options).await? {
            match result {
                Ok(_) => tracing::info!(
                    topic,
                    partitions,
                    replication,
                    min_isr,
                    retention_ms = self.topic_retention_ms,
                    "created topic"
                ),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(KafkaError::TopicCreation { topic, code }),
            }
        }
        let name = topic.to_owned();
        tokio::task::spawn_blocking(move || wait_until_served(&admin, &name, TOPIC_READY_WAIT))
            .await
            .map_err(|e| KafkaError::Task(e.to_string()))?
    }

    /// Deletes every topic whose name satisfies `doomed`; the names it asked the cluster to delete.
    pub async fn delete_topics_where(
        &self,
        doomed: impl Fn(&str) -> bool + Send + 'static,
    ) -> Result<Vec<String>, KafkaError> {
        let names = self
            .metadata(Duration::from_secs(10), move |m| {
                m.topics()
                    .iter()
                    .map(|t| t.name().to_owned())
                    .filter(|n| doomed(n))
                    .collect::<Vec<_>>()
            })
            .await?;
        if !names.is_empty() {
            let admin: AdminClient<DefaultClientContext> = self.client_config().create()?;
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
            admin.delete_topics(&refs, &options).await?;
        }
        Ok(names)
    }

    /// Asks the cluster for its metadata; `Ok` with the broker count when it answers.
    pub async fn probe(&self, timeout: Duration) -> Result<usize, KafkaError> {
        self.metadata(timeout, |m| m.brokers().len()).await
    }

    /// Fetches the cluster's metadata (a blocking call, run off the async threads) and reads
    /// `read` from it.
    async fn metadata<T: Send + 'static>(
        &self,
        timeout: Duration,
        read: impl FnOnce(&Metadata) -> T + Send + 'static,
    ) -> Result<T, KafkaError> {
        let config = self.client_config();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create()?;
            Ok(read(&consumer.fetch_metadata(None, timeout)?))
        })
        .await
        .map_err(|e| KafkaError::Task(e.to_string()))?
    }

    /// A `/readyz` check named `kafka` that passes when the cluster answers a metadata request.
    pub fn readiness_check(&self) -> eventfold_runtime::ReadinessCheck {
        let settings = self.clone();
        eventfold_runtime::ReadinessCheck::new("kafka", move || {
            let settings = settings.clone();
            async move {
                match settings.probe(Duration::from_secs(2)).await {
                    Ok(0) => Err("cluster answered with no brokers".to_owned()),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
    }
}

/// How long [`KafkaSettings::ensure_topic`] waits for every partition of a topic to be served.
const TOPIC_READY_WAIT: Duration = Duration::from_secs(60);

/// Waits until the leader of every partition of `topic` serves it (answers a list-offsets
/// request), or fails after `wait`.
///
/// A topic is announced as created before its leaders have loaded its partitions. An idempotent
/// producer writing at that moment can have its first request refused (not leader) while its
/// second is accepted, and the broker, holding no state for the producer yet, takes the second
/// as the start of the sequence: the first request's records are then lost although acked as
/// persisted. Producing only to partitions already served closes that window.
fn wait_until_served(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    wait: Duration,
) -> Result<(), KafkaError> {
    let client = admin.inner();
    let deadline = std::time::Instant::now() + wait;
    let mut pending: Vec<i32> = Vec::new();
    let mut last = String::from("no metadata yet");
    loop {
        if pending.is_empty() {
            match client.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                Ok(md) => {
                    if let Some(t) = md.topics().iter().find(|t| t.name() == topic)
                        && t.error().is_none()
                    {
                        pending = t.partitions().iter().map(|p| p.id()).collect();
                    }
                }
                Err(e) => last = e.to_string(),
            }
        }
        if !pending.is_empty() {
            pending.retain(
                |p| match client.fetch_watermarks(topic, *p, Duration::from_secs(5)) {
                    Ok(_) => false,
                    Err(e) => {
                        last = e.to_string();
                        true
                    }
                },
            );
            if pending.is_empty() {
                return Ok(());
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(KafkaError::TopicNotReady {
                topic: topic.to_owned(),
                partition: pending.first().copied().unwrap_or(-1),
                error: last,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_plaintext_brokers_unless_waived() {
        let prod = |protocol: &str, waive: &str| {
            KafkaSettings::from_env(&Env::from_pairs([
                ("EVENTFOLD_PROFILE", "production"),
                ("KAFKA_SECURITY_PROTOCOL", protocol),
                ("KAFKA_INSECURE", waive),
            ]))
        };
        for plain in ["plaintext", "sasl_plaintext"] {
            let e = prod(plain, "").unwrap_err().to_string();
            assert!(e.contains("KAFKA_INSECURE"), "{e}");
            assert!(prod(plain, "true").is_ok());
        }
        assert!(prod("sasl_ssl", "").is_ok());
    }

    #[test]
    fn refuses_an_unknown_security_protocol() {
        let env = Env::from_pairs([("KAFKA_SECURITY_PROTOCOL", "carrier-pigeon")]);
        let err = KafkaSettings::from_env(&env).unwrap_err();
        assert!(err.to_string().contains("KAFKA_SECURITY_PROTOCOL"), "{err}");
    }

    #[test]
    fn passes_sasl_credentials_to_the_client() {
        let env = Env::from_pairs([
            ("KAFKA_BOOTSTRAP_SERVERS", "b1:9092,b2:9092"),
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "relay"),
            ("KAFKA_SASL_PASSWORD", "secret"),
        ]);
        let config = KafkaSettings::from_env(&env).unwrap().client_config();
        assert_eq!(config.get("bootstrap.servers"), Some("b1:9092,b2:9092"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("relay"));
    }

    #[test]
    fn keeps_events_forever_unless_told_otherwise() {
        let settings = KafkaSettings::from_env(&Env::default()).unwrap();
        assert_eq!(settings.topic_retention_ms, -1);
        let env = Env::from_pairs([("KAFKA_TOPIC_RETENTION_MS", "604800000")]);
        let settings = KafkaSettings::from_env(&env).unwrap();
        assert_eq!(settings.topic_retention_ms, 604_800_000);
    }

    #[test]
    fn refuses_a_retention_that_is_not_a_duration_or_forever() {
        for bad in ["7d", "0", "-2"] {
            let env = Env::from_pairs([("KAFKA_TOPIC_RETENTION_MS", bad)]);
            let err = KafkaSettings::from_env(&env).unwrap_err();
            assert!(
                err.to_string().contains("KAFKA_TOPIC_RETENTION_MS"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn min_isr_follows_the_replication_factor_unless_set() {
        let settings = KafkaSettings::from_env(&Env::default()).unwrap();
        assert_eq!(settings.min_isr_for(1), 1);
        assert_eq!(settings.min_isr_for(2), 1);
        assert_eq!(settings.min_isr_for(3), 2);
        let env = Env::from_pairs([("KAFKA_TOPIC_MIN_ISR", "3")]);
        assert_eq!(KafkaSettings::from_env(&env).unwrap().min_isr_for(3), 3);
        for bad in ["0", "-1", "two"] {
            let env = Env::from_pairs([("KAFKA_TOPIC_MIN_ISR", bad)]);
            let err = KafkaSettings::from_env(&env).unwrap_err();
            assert!(
                err.to_string().contains("KAFKA_TOPIC_MIN_ISR"),
                "{bad}: {err}"
            );
        }
    }
}
