//! The outbox relay: moves committed outbox rows from PostgreSQL to Kafka as Avro records.
#![deny(missing_docs)]

use eventfold_avro::{RegistryClient, RegistrySettings};
use eventfold_kafka::KafkaSettings;
use eventfold_postgres::PgSettings;
use eventfold_runtime::{Env, Ops, Server, ServiceSettings, SettingsError};

/// Name in logs, metrics and `/healthz`.
pub const SERVICE: &str = "outbox-relay";

/// Default port of the relay's ops endpoint.
pub const DEFAULT_PORT: u16 = 8082;

/// Everything the relay reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Ops listen address and log format.
    pub service: ServiceSettings,
    /// The event store holding the outbox.
    pub database: PgSettings,
    /// The brokers to publish to.
    pub kafka: KafkaSettings,
    /// The schema registry for Avro subjects.
    pub registry: RegistrySettings,
}

impl Settings {
    /// Reads the settings, naming the variable on error.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            service: ServiceSettings::from_env(env, DEFAULT_PORT)?,
            database: PgSettings::from_env(env)?,
            kafka: KafkaSettings::from_env(env)?,
            registry: RegistrySettings::from_env(env)?,
        })
    }
}

/// Binds the ops listener and prepares the clients; connections are made lazily.
pub async fn build(settings: Settings) -> std::io::Result<Server> {
    let pool = settings.database.pool_lazy();
    let registry = RegistryClient::new(settings.registry.clone());
    let ops = Ops::new(SERVICE)
        .with_check(eventfold_postgres::readiness_check(pool))
        .with_check(settings.kafka.readiness_check())
        .with_check(registry.readiness_check());
    Server::bind(SERVICE, settings.service.http_addr, ops.router()).await
}
