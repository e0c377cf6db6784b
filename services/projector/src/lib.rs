//! The projector: consumes events from Kafka, upcasts them and keeps the Neo4j and PostgreSQL read
//! models up to date.
#![deny(missing_docs)]

pub mod apply;
pub mod models;
pub mod neo4j;
pub mod projection;

use eventfold_avro::{RegistryClient, RegistrySettings};
use eventfold_kafka::KafkaSettings;
use eventfold_postgres::PgSettings;
use eventfold_runtime::{Env, Ops, Server, ServiceSettings, SettingsError};
use neo4j::Neo4jSettings;

/// Name in logs, metrics and `/healthz`.
pub const SERVICE: &str = "projector";

/// Default port of the projector's HTTP endpoint.
pub const DEFAULT_PORT: u16 = 8083;

/// Everything the projector reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address and log format.
    pub service: ServiceSettings,
    /// The PostgreSQL read models (and the event store for rebuilds).
    pub database: PgSettings,
    /// The brokers to consume from.
    pub kafka: KafkaSettings,
    /// The schema registry for Avro decoding.
    pub registry: RegistrySettings,
    /// The graph read models.
    pub neo4j: Neo4jSettings,
}

impl Settings {
    /// Reads the settings, naming the variable on error.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            service: ServiceSettings::from_env(env, DEFAULT_PORT)?,
            database: PgSettings::from_env(env)?,
            kafka: KafkaSettings::from_env(env)?,
            registry: RegistrySettings::from_env(env)?,
            neo4j: Neo4jSettings::from_env(env)?,
        })
    }
}

/// A failure while starting the projector.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener could not be bound.
    #[error("cannot bind the HTTP listener: {0}")]
    Bind(#[from] std::io::Error),
    /// The Neo4j settings were refused by the driver.
    #[error("invalid Neo4j settings: {0}")]
    Neo4j(#[from] neo4rs::Error),
}

/// Binds the listener and prepares the clients; connections are made lazily.
pub async fn build(settings: Settings) -> Result<Server, StartError> {
    let pool = settings.database.pool_lazy();
    let registry = RegistryClient::new(settings.registry.clone());
    let graph = settings.neo4j.graph()?;
    let ops = Ops::new(SERVICE)
        .with_check(eventfold_postgres::readiness_check(pool))
        .with_check(settings.kafka.readiness_check())
        .with_check(registry.readiness_check())
        .with_check(neo4j::readiness_check(graph));
    Ok(Server::bind(SERVICE, settings.service.http_addr, ops.router()).await?)
}
