//! The write side of eventfold: HTTP in, aggregates decide, events and outbox rows committed to
//! PostgreSQL in one transaction.
#![deny(missing_docs)]

use eventfold_postgres::PgSettings;
use eventfold_runtime::{Env, Ops, Server, ServiceSettings, SettingsError};

/// Name in logs, metrics and `/healthz`.
pub const SERVICE: &str = "command-service";

/// Default HTTP port of the command service.
pub const DEFAULT_PORT: u16 = 8080;

/// Everything the command service reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address and log format.
    pub service: ServiceSettings,
    /// The event store database.
    pub database: PgSettings,
}

impl Settings {
    /// Reads the settings, naming the variable on error.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            service: ServiceSettings::from_env(env, DEFAULT_PORT)?,
            database: PgSettings::from_env(env)?,
        })
    }
}

/// Binds the listener and wires the routes; dependencies are connected lazily.
pub async fn build(settings: Settings) -> std::io::Result<Server> {
    let pool = settings.database.pool_lazy();
    let ops = Ops::new(SERVICE).with_check(eventfold_postgres::readiness_check(pool));
    Server::bind(SERVICE, settings.service.http_addr, ops.router()).await
}
