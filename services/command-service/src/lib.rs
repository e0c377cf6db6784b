//! The write side of eventfold: HTTP in, aggregates decide, events and outbox rows committed to
//! PostgreSQL in one transaction.
#![deny(missing_docs)]

use std::net::SocketAddr;

use eventfold_postgres::PgSettings;
use eventfold_runtime::{Env, Ops, ServiceSettings, SettingsError, Shutdown};
use tokio::net::TcpListener;

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

/// A bound, ready-to-run command service.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
}

impl App {
    /// Binds the listener and wires the routes; dependencies are connected lazily.
    pub async fn build(settings: Settings) -> std::io::Result<Self> {
        let pool = settings.database.pool_lazy();
        let ops = Ops::new("command-service").with_check(eventfold_postgres::readiness_check(pool));
        let listener = TcpListener::bind(settings.service.http_addr).await?;
        Ok(Self {
            listener,
            router: ops.router(),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` fires, finishing requests in flight.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> std::io::Result<()> {
        tracing::info!(addr = %self.local_addr()?, "command-service listening");
        eventfold_runtime::serve_on(self.listener, self.router, shutdown).await
    }
}
