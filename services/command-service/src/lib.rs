//! The write side of eventfold: HTTP in, aggregates decide, events and outbox rows committed to
//! PostgreSQL together, many commands per statement.
#![deny(missing_docs)]

pub mod api;
pub mod domains;
pub mod openapi;
pub mod problem;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventfold_postgres::bus::BusMetrics;
use eventfold_postgres::{BusConfig, EventStore, PgSettings, RetryPolicy, SnapshotPolicy};
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
    /// `COMMAND_BODY_LIMIT_BYTES`: largest command body (default 1 MiB).
    pub body_limit: usize,
    /// Batching, cache, retry and snapshot settings of the command buses.
    pub bus: BusConfig,
}

impl Settings {
    /// Reads the settings, naming the variable on error.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let positive = |var: &str, default: usize| -> Result<usize, SettingsError> {
            let v: usize = env.parse(var, default)?;
            if v == 0 {
                return Err(SettingsError::Invalid {
                    var: var.into(),
                    value: "0".into(),
                    reason: "must be at least 1".into(),
                });
            }
            Ok(v)
        };
        let defaults = BusConfig::default();
        Ok(Self {
            service: ServiceSettings::from_env(env, DEFAULT_PORT)?,
            database: PgSettings::from_env(env)?,
            body_limit: positive("COMMAND_BODY_LIMIT_BYTES", 1024 * 1024)?,
            bus: BusConfig {
                writers: positive("COMMAND_WRITERS", defaults.writers)?,
                max_batch: positive("COMMAND_MAX_BATCH", defaults.max_batch)?,
                cache_capacity: positive("AGGREGATE_CACHE_SIZE", defaults.cache_capacity)?,
                retry: RetryPolicy {
                    max_attempts: positive("COMMAND_RETRY_ATTEMPTS", 8)? as u32,
                    base_delay: Duration::from_millis(env.parse("COMMAND_RETRY_BASE_MS", 4)?),
                },
                snapshots: SnapshotPolicy {
                    every: env.parse("SNAPSHOT_EVERY", defaults.snapshots.every)?,
                    keep: positive("SNAPSHOT_KEEP", defaults.snapshots.keep as usize)? as u32,
                },
                metrics: None,
            },
        })
    }
}

/// Binds the listener, starts a command bus per aggregate type and wires the routes; the
/// database is connected lazily.
pub async fn build(settings: Settings) -> std::io::Result<Server> {
    let pool = settings.database.pool_lazy();
    let store = EventStore::new(pool.clone());
    let ops = Ops::new(SERVICE).with_check(eventfold_postgres::readiness_check(pool));
    let bus_metrics = BusMetrics::register(ops.registry()).map_err(std::io::Error::other)?;
    let http_metrics = api::HttpMetrics::register(ops.registry()).map_err(std::io::Error::other)?;
    let api = api::Api {
        domains: domains::Domains::start(&store, &settings.bus, Some(bus_metrics)),
        store,
        in_flight: Arc::new(Mutex::new(HashSet::new())),
        metrics: http_metrics,
    };
    let router = ops.router().merge(api::router(api, settings.body_limit));
    Server::bind(SERVICE, settings.service.http_addr, router).await
}
