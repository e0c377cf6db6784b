//! The write side of eventfold: HTTP in, aggregates decide, events and outbox rows committed to
//! PostgreSQL together, many commands per statement.
#![deny(missing_docs)]

pub mod api;
mod audit;
pub mod domains;
pub mod openapi;
pub mod problem;
pub mod stats;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use eventfold_auth::{AuthSettings, Authenticator};
use eventfold_postgres::bus::{BusMetrics, positive};
use eventfold_postgres::{BusConfig, EventStore, PgSettings};
use eventfold_runtime::{Env, Ops, RequestLimits, Routes, Server, ServiceSettings, SettingsError};

/// Name in logs, metrics and `/healthz`.
pub const SERVICE: &str = "command-service";

/// Default HTTP port of the command service.
pub const DEFAULT_PORT: u16 = 8080;

/// Everything the command service reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen addresses (public and admin) and log format.
    pub service: ServiceSettings,
    /// The event store database.
    pub database: PgSettings,
    /// `COMMAND_BODY_LIMIT_BYTES`: largest command body (default 1 MiB).
    pub body_limit: usize,
    /// Batching, cache, retry and snapshot settings of the command buses.
    pub bus: BusConfig,
    /// Concurrent requests and time per request of the API.
    pub limits: RequestLimits,
    /// How callers are authenticated (`AUTH_*`).
    pub auth: AuthSettings,
    /// How the event store statistics are maintained (`EVENT_STATS_*`).
    pub stats: stats::StatsSettings,
}

impl Settings {
    /// Reads the settings, naming the variable on error.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            service: ServiceSettings::from_env(env, DEFAULT_PORT)?,
            database: PgSettings::from_env(env)?,
            body_limit: positive(env, "COMMAND_BODY_LIMIT_BYTES", 1024 * 1024)?,
            bus: BusConfig::from_env(env)?,
            limits: RequestLimits::from_env(env)?,
            auth: AuthSettings::from_env(env)?,
            stats: stats::StatsSettings::from_env(env)?,
        })
    }
}

/// Binds the public and admin listeners, starts a command bus per aggregate type and wires the
/// routes, and starts the event statistics maintainer; the database is connected lazily.
pub async fn build(settings: Settings) -> std::io::Result<Server> {
    let pool = settings.database.pool_lazy();
    let store = EventStore::new(pool.clone());
    let ops = Ops::new(SERVICE).with_check(eventfold_postgres::readiness_check(pool.clone()));
    let bus_metrics = BusMetrics::register(ops.registry()).map_err(std::io::Error::other)?;
    let http_metrics = api::HttpMetrics::register(ops.registry()).map_err(std::io::Error::other)?;
    let auth = Authenticator::for_service(SERVICE, settings.auth.clone())
        .map_err(std::io::Error::other)?;
    let alive: stats::Alive = Arc::new(());
    stats::spawn_maintainer(pool.clone(), settings.stats, Arc::downgrade(&alive));
    let api = api::Api {
        domains: domains::Domains::start(&store, &settings.bus, Some(bus_metrics.clone())),
        store,
        in_flight: Arc::new(Mutex::new(HashSet::new())),
        metrics: http_metrics,
        bus_metrics: Some(bus_metrics),
        stats: settings.stats,
        alive,
    };
    // No admin API yet: the admin listener serves the ops routes only.
    let routes = Routes {
        public: settings
            .limits
            .apply(api::router(api, auth, settings.body_limit)),
        admin: axum::Router::new(),
    };
    Server::bind(SERVICE, &settings.service, &ops, routes).await
}
