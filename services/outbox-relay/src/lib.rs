//! The outbox relay: moves committed outbox rows from PostgreSQL to Kafka as Avro records.
//!
//! - [`shards`]: which shards of the outbox this instance owns (advisory locks on a dedicated
//!   connection, fencing epochs, a fair share among the live relays).
//! - [`outbox`]: the SQL of reading, deleting and parking outbox rows.
//! - [`publisher`]: the loop that turns owned rows into Kafka records and deletes them once acked.
//! - [`dlt`]: the dead-letter copies of parked rows, sent until Kafka acknowledged them.
//! - [`parked`] and [`admin`]: list, release and discard parked rows (SQL and HTTP routes).
#![deny(missing_docs)]

pub mod admin;
pub mod deleter;
pub mod dlt;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod parked;
pub mod publisher;
pub mod shards;

use std::sync::Arc;
use std::time::Duration;

use eventfold_auth::scope;
use eventfold_avro::{AvroCodec, Catalog, RegistryClient, RegistrySettings};
use eventfold_kafka::KafkaSettings;
use eventfold_postgres::PgSettings;
use eventfold_postgres::bus::positive;
use eventfold_runtime::{Env, Ops, Routes, Server, ServiceSettings, SettingsError};

/// Name in logs, metrics and `/healthz`.
pub const SERVICE: &str = "outbox-relay";

/// Default port of the relay's public listener (`/healthz` only); the admin listener (ops
/// routes and the parked-row API) defaults to this + 1000.
pub const DEFAULT_PORT: u16 = 8082;

/// How the relay splits, reads and publishes the outbox.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `RELAY_SHARDS` (16): the outbox is split into this many shards by `shard_key % shards`. Every
    /// relay of one database must use the same number.
    pub shards: u32,
    /// `RELAY_BATCH_SIZE` (5000): outbox rows read and published per batch.
    pub batch_size: usize,
    /// `RELAY_POLL_INTERVAL_MS` (500): the polling fallback when no notification arrives.
    pub poll_interval: Duration,
    /// `RELAY_LEASE_MS` (3000): the lock connection's `idle_session_timeout`; a relay that stops
    /// answering for this long loses its shards. Ownership is re-checked every lease / 3.
    pub lease: Duration,
    /// `RELAY_ID` (host name and a random suffix): this instance's name in `relay_shards`.
    pub relay_id: String,
    /// `KAFKA_TOPIC_PREFIX` (`eventfold.`): topic of an aggregate type = prefix + type name.
    pub topic_prefix: String,
    /// `KAFKA_TOPIC_PARTITIONS` (12): partitions of topics the relay creates.
    pub partitions: i32,
    /// `KAFKA_TOPIC_REPLICATION` (1): replication factor of topics the relay creates.
    pub replication: i32,
    /// `KAFKA_LINGER_MS` (1): how long the producer waits to fill a request.
    pub linger_ms: u32,
    /// `KAFKA_COMPRESSION` (`lz4`): producer compression codec.
    pub compression: String,
}

impl RelayConfig {
    /// Reads the relay variables, naming the variable on error.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let shards = positive(env, "RELAY_SHARDS", 16)?;
        let shards = u32::try_from(shards)
            .ok()
            .filter(|s| *s <= 4096)
            .ok_or_else(|| SettingsError::Invalid {
                var: "RELAY_SHARDS".into(),
                value: shards.to_string(),
                reason: "must be between 1 and 4096".into(),
            })?;
        let lease_ms = positive(env, "RELAY_LEASE_MS", 3000)?;
        if lease_ms < 300 {
            return Err(SettingsError::Invalid {
                var: "RELAY_LEASE_MS".into(),
                value: lease_ms.to_string(),
                reason: "must be at least 300".into(),
            });
        }
        let default_id = format!(
            "{}-{:08x}",
            env.string("HOSTNAME", "relay"),
            fastrand::u32(..)
        );
        Ok(Self {
            shards,
            batch_size: positive(env, "RELAY_BATCH_SIZE", 5000)?,
            poll_interval: Duration::from_millis(
                positive(env, "RELAY_POLL_INTERVAL_MS", 500)? as u64
            ),
            lease: Duration::from_millis(lease_ms as u64),
            relay_id: env.string("RELAY_ID", &default_id),
            topic_prefix: env.string("KAFKA_TOPIC_PREFIX", "eventfold."),
            partitions: positive(env, "KAFKA_TOPIC_PARTITIONS", 12)? as i32,
            replication: positive(env, "KAFKA_TOPIC_REPLICATION", 1)? as i32,
            linger_ms: env.parse("KAFKA_LINGER_MS", 1)?,
            compression: env.string("KAFKA_COMPRESSION", "lz4"),
        })
    }
}

/// Everything the relay reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen addresses (public and admin) and log format.
    pub service: ServiceSettings,
    /// The event store holding the outbox.
    pub database: PgSettings,
    /// The brokers to publish to.
    pub kafka: KafkaSettings,
    /// The schema registry for Avro subjects.
    pub registry: RegistrySettings,
    /// Sharding, batching and topics.
    pub relay: RelayConfig,
    /// How callers of the admin API are authenticated (`AUTH_*`).
    pub auth: eventfold_auth::AuthSettings,
}

impl Settings {
    /// Reads the settings, naming the variable on error.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            service: ServiceSettings::from_env(env, DEFAULT_PORT)?,
            database: PgSettings::from_env(env)?,
            kafka: KafkaSettings::from_env(env)?,
            registry: RegistrySettings::from_env(env)?,
            relay: RelayConfig::from_env(env)?,
            auth: eventfold_auth::AuthSettings::from_env(env)?,
        })
    }
}

/// Binds the public and admin listeners and prepares the relay; it starts publishing when the server runs and
/// stops (finishing the batch in hand, releasing its shards) when the server's shutdown fires.
pub async fn build(settings: Settings) -> std::io::Result<Server> {
    let pool = settings.database.pool_lazy();
    let registry = RegistryClient::new(settings.registry.clone());
    let ops = Ops::new(SERVICE)
        .with_check(eventfold_postgres::readiness_check(pool.clone()))
        .with_check(settings.kafka.readiness_check())
        .with_check(registry.readiness_check());
    let metrics = metrics::RelayMetrics::register(ops.registry());
    let ops = ops.with_check(publishing_check(metrics.halt.clone()));
    let catalog = Catalog::embedded().map_err(std::io::Error::other)?;
    let sr = settings
        .registry
        .converter_settings()
        .map_err(std::io::Error::other)?;
    let codec = Arc::new(AvroCodec::new(sr, Arc::new(catalog)));
    let relay = publisher::Relay {
        config: settings.relay.clone(),
        database: settings.database.clone(),
        pool,
        kafka: settings.kafka.clone(),
        codec,
        metrics,
        dlt_wake: Arc::new(tokio::sync::Notify::new()),
    };
    let auth = eventfold_auth::Authenticator::for_service(SERVICE, settings.auth.clone())
        .map_err(std::io::Error::other)?;
    // The relay has no public API: its public listener answers `/healthz` only.
    let routes = Routes {
        public: axum::Router::new(),
        // The admin API needs a token with the admin scope.
        admin: eventfold_auth::protect(admin::router(relay.pool.clone()), auth, scope::ADMIN)
            .merge(eventfold_runtime::openapi::route(openapi::admin_document())),
    };
    let server = Server::bind(SERVICE, &settings.service, &ops, routes).await?;
    Ok(server.with_worker(move |shutdown| relay.run(shutdown)))
}

/// `/readyz` check `publishing`: fails, naming the reason (the subject whose schema is not
/// registered, the registry's refusal of the credentials), while publishing is halted by a
/// configuration error.
pub fn publishing_check(halt: metrics::Halt) -> eventfold_runtime::ReadinessCheck {
    eventfold_runtime::ReadinessCheck::new("publishing", move || {
        let halt = halt.clone();
        async move { halt.check() }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_zero_or_too_many_shards_and_a_short_lease() {
        for (var, value) in [
            ("RELAY_SHARDS", "0"),
            ("RELAY_SHARDS", "5000"),
            ("RELAY_LEASE_MS", "100"),
            ("RELAY_BATCH_SIZE", "many"),
        ] {
            let err = RelayConfig::from_env(&Env::from_pairs([(var, value)])).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn defaults_suit_the_local_stack() {
        let c = RelayConfig::from_env(&Env::from_pairs::<_, &str, &str>([])).unwrap();
        assert_eq!((c.shards, c.partitions, c.replication), (16, 12, 1));
        assert_eq!(c.topic_prefix, "eventfold.");
        assert!(c.relay_id.starts_with("relay-"), "{}", c.relay_id);
    }
}
