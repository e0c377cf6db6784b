//! The projector: consumes events from Kafka, upcasts them and keeps the Neo4j and PostgreSQL read
//! models up to date.
#![deny(missing_docs)]

pub mod admin;
pub mod apply;
pub mod consumer;
pub mod engine;
pub mod metrics;
pub mod models;
pub mod neo4j;
pub mod openapi;
pub mod parking;
pub mod process;
pub mod projection;
pub mod read_api;
pub mod rebuild;
pub mod replay;
pub mod state;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use eventfold_avro::{AvroCodec, Catalog, RegistryClient, RegistrySettings};
use eventfold_kafka::KafkaSettings;
use eventfold_postgres::{PgSettings, bus::positive};
use eventfold_runtime::{
    Env, Ops, ReadinessCheck, Routes, Server, ServiceSettings, SettingsError, Shutdown,
};
use neo4j::Neo4jSettings;
use rdkafka::producer::FutureProducer;

use consumer::ConsumerSettings;
use engine::{Mode, Processor, backoff};
use parking::{Parking, dlt_topic};
use projection::Projection;
use rebuild::Stores;

/// Name in logs, metrics and `/healthz`.
pub const SERVICE: &str = "projector";

/// Default port of the projector's public listener (the read API); the admin listener (ops
/// routes, read models and parked events) defaults to this + 1000.
pub const DEFAULT_PORT: u16 = 8083;

/// The projector's own settings.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// `PROJECTOR_READ_MODELS`: comma-separated read models to run (empty = all).
    pub read_models: Vec<String>,
    /// `PROJECTOR_GROUP_PREFIX` (`eventfold-projector-`): consumer group = prefix + read model.
    pub group_prefix: String,
    /// `PROJECTOR_CONSUMER_GROUP`: the consumer group itself, for a process running one read
    /// model (e.g. a new group for a blue/green switch of the consumer).
    pub consumer_group: Option<String>,
    /// `KAFKA_TOPIC_PREFIX` (`eventfold.`): topic = prefix + aggregate type.
    pub topic_prefix: String,
    /// `KAFKA_TOPIC_PARTITIONS` (12) and `KAFKA_TOPIC_REPLICATION` (1) of topics created at start.
    pub partitions: i32,
    /// Replication factor of topics created at start.
    pub replication: i32,
    /// `PROJECTOR_BATCH_SIZE` (2000): most records per transaction.
    pub batch_size: usize,
    /// `PROJECTOR_BATCH_WAIT_MS` (5): wait for more records after the first of a batch.
    pub batch_wait_ms: u64,
    /// `PROJECTOR_MAX_ATTEMPTS` (3): attempts of a refused batch before parking.
    pub max_attempts: u32,
    /// `KAFKA_SESSION_TIMEOUT_MS` (10000).
    pub session_timeout_ms: u32,
    /// `KAFKA_MAX_POLL_INTERVAL_MS` (300000).
    pub max_poll_interval_ms: u32,
    /// `PROJECTOR_STATE_POLL_MS` (1000): how often the read models' generation is checked.
    pub state_poll_ms: u64,
    /// `PROJECTOR_APPLY_TIMEOUT_MS` (30000): longest time one transaction may take before the
    /// batch is split (see [`engine::Processor::apply`]).
    pub apply_timeout_ms: u64,
}

impl ProjectorConfig {
    /// Reads the projector variables.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        // PROJECTOR_READ_MODEL (one, as the Helm chart sets it) or PROJECTOR_READ_MODELS (a list).
        let list = match env.string("PROJECTOR_READ_MODELS", "") {
            l if l.trim().is_empty() => env.string("PROJECTOR_READ_MODEL", ""),
            l => l,
        };
        let read_models = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>();
        if let Err(unknown) = models::registry().only(&read_models) {
            return Err(SettingsError::Invalid {
                var: "PROJECTOR_READ_MODELS".into(),
                value: read_models.join(","),
                reason: format!("unknown read model `{unknown}`"),
            });
        }
        if env
            .raw("PROJECTOR_CONSUMER_GROUP")
            .is_some_and(|g| !g.trim().is_empty())
            && read_models.len() != 1
        {
            return Err(SettingsError::Invalid {
                var: "PROJECTOR_CONSUMER_GROUP".into(),
                value: env.string("PROJECTOR_CONSUMER_GROUP", ""),
                reason: "needs exactly one read model in PROJECTOR_READ_MODEL(S)".into(),
            });
        }
        let session_timeout_ms = positive(env, "KAFKA_SESSION_TIMEOUT_MS", 10_000)? as u32;
        Ok(Self {
            read_models,
            group_prefix: env.string("PROJECTOR_GROUP_PREFIX", "eventfold-projector-"),
            consumer_group: env
                .raw("PROJECTOR_CONSUMER_GROUP")
                .filter(|g| !g.trim().is_empty())
                .map(str::to_owned),
            topic_prefix: env.string("KAFKA_TOPIC_PREFIX", "eventfold."),
            partitions: positive(env, "KAFKA_TOPIC_PARTITIONS", 12)? as i32,
            replication: positive(env, "KAFKA_TOPIC_REPLICATION", 1)? as i32,
            batch_size: positive(env, "PROJECTOR_BATCH_SIZE", 2000)?,
            batch_wait_ms: env.parse("PROJECTOR_BATCH_WAIT_MS", 5)?,
            max_attempts: positive(env, "PROJECTOR_MAX_ATTEMPTS", 3)? as u32,
            session_timeout_ms,
            max_poll_interval_ms: positive(env, "KAFKA_MAX_POLL_INTERVAL_MS", 300_000)? as u32,
            state_poll_ms: positive(env, "PROJECTOR_STATE_POLL_MS", 1000)? as u64,
            apply_timeout_ms: positive(
                env,
                "PROJECTOR_APPLY_TIMEOUT_MS",
                engine::APPLY_TIMEOUT.as_millis() as usize,
            )? as u64,
        })
    }
}

/// Everything the projector reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen addresses (public and admin) and log format.
    pub service: ServiceSettings,
    /// The PostgreSQL read models (and the event store for rebuilds).
    pub database: PgSettings,
    /// The brokers to consume from.
    pub kafka: KafkaSettings,
    /// The schema registry for Avro decoding.
    pub registry: RegistrySettings,
    /// The graph read models.
    pub neo4j: Neo4jSettings,
    /// Read models, groups, batches.
    pub projector: ProjectorConfig,
    /// How callers of the read and admin APIs are authenticated (`AUTH_*`).
    pub auth: eventfold_auth::AuthSettings,
    /// How the process managers reach the command service (`PROCESS_*`).
    pub process: process::runtime::RuntimeSettings,
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
            projector: ProjectorConfig::from_env(env)?,
            auth: eventfold_auth::AuthSettings::from_env(env)?,
            process: process::runtime::RuntimeSettings::from_env(env)?,
        })
    }
}

/// A failure while starting the projector.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener (public or admin) could not be bound.
    #[error("cannot bind an HTTP listener: {0}")]
    Bind(#[from] std::io::Error),
    /// The Neo4j settings were refused by the driver.
    #[error("invalid Neo4j settings: {0}")]
    Neo4j(#[from] neo4rs::Error),
    /// The schema catalog or registry settings are unusable.
    #[error("schemas: {0}")]
    Schemas(String),
    /// The authentication settings are unusable (e.g. the key set cannot be read).
    #[error("authentication: {0}")]
    Auth(#[from] eventfold_auth::AuthError),
    /// The dead-letter producer could not be created.
    #[error("kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// `/readyz` check `read_models`: fails while any read model this process runs is rebuilt.
fn rebuilding_check(pool: sqlx::PgPool, names: Vec<&'static str>) -> ReadinessCheck {
    ReadinessCheck::new("read_models", move || {
        let (pool, names) = (pool.clone(), names.clone());
        async move {
            let rebuilding: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM projector_read_models WHERE rebuilding AND name = ANY($1)",
            )
            .bind(&names)
            .fetch_all(&pool)
            .await
            .map_err(|e| e.to_string())?;
            if rebuilding.is_empty() {
                Ok(())
            } else {
                Err(format!("rebuilding: {}", rebuilding.join(", ")))
            }
        }
    })
}

/// `/readyz` check `halted`: fails, naming the reason, while a read model this process runs is
/// halted by a store error (permission, read-only transaction, missing table) or by a schema
/// registry that refuses the credentials.
pub fn halted_check(halts: metrics::Halts) -> ReadinessCheck {
    ReadinessCheck::new("halted", move || {
        let halts = halts.clone();
        async move { halts.check() }
    })
}

/// Sends the read model's queued dead-letter copies every few seconds (a copy that could not be
/// sent when its event was parked, e.g. while Kafka was down), until shutdown.
async fn send_dead_letters(
    parking: Parking,
    metrics: metrics::ProjectorMetrics,
    shutdown: Shutdown,
) {
    let name = parking.read_model();
    let mut attempt = 0;
    loop {
        let wait = match parking.send_dead_letters().await {
            Ok(n) if n > 0 => Duration::ZERO,
            Ok(_) => {
                attempt = 0;
                Duration::from_secs(2)
            }
            Err(e) => {
                tracing::warn!(read_model = name, error = %e, "dead-letter copies not sent; retrying");
                attempt += 1;
                backoff(attempt)
            }
        };
        if let Ok(n) = parking.dead_letters_pending().await {
            metrics.dlt_pending.with_label_values(&[name]).set(n);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// `/readyz` check `log_start`: fails while a read model catches up from the event store because
/// retention deleted records it never applied.
fn log_start_check(behind: prometheus::IntGaugeVec) -> ReadinessCheck {
    ReadinessCheck::new("log_start", move || {
        let behind = behind.clone();
        async move {
            let names: Vec<String> = prometheus::core::Collector::collect(&behind)
                .iter()
                .flat_map(|f| f.get_metric().to_vec())
                .filter(|m| m.get_gauge().get_value() > 0.0)
                .flat_map(|m| {
                    m.get_label()
                        .iter()
                        .map(|l| l.value().to_owned())
                        .collect::<Vec<_>>()
                })
                .collect();
            if names.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "behind the log start, catching up from the event store: {}",
                    names.join(", ")
                ))
            }
        }
    })
}

/// Binds the public and admin listeners and prepares the clients; connections are made lazily, consumers start
/// when the server runs and stop (finishing the batch in hand) on shutdown.
pub async fn build(settings: Settings) -> Result<Server, StartError> {
    let pool = settings.database.pool_lazy();
    let registry_client = RegistryClient::new(settings.registry.clone());
    let graph = settings.neo4j.graph()?;
    let cfg = settings.projector.clone();
    let registry = Arc::new(
        models::registry()
            .only(&cfg.read_models)
            .map_err(|n| StartError::Schemas(format!("unknown read model {n}")))?,
    );
    let names: Vec<&'static str> = registry.all().iter().map(|p| p.name()).collect();
    let ops = Ops::new(SERVICE)
        .with_check(eventfold_postgres::readiness_check(pool.clone()))
        .with_check(settings.kafka.readiness_check())
        .with_check(registry_client.readiness_check())
        .with_check(neo4j::readiness_check(graph.clone()))
        .with_check(rebuilding_check(pool.clone(), names));
    let metrics = metrics::ProjectorMetrics::register(ops.registry());
    let ops = ops
        .with_check(halted_check(metrics.halts.clone()))
        .with_check(log_start_check(metrics.behind_log_start.clone()));
    let catalog = Catalog::embedded().map_err(|e| StartError::Schemas(e.to_string()))?;
    let sr = settings
        .registry
        .converter_settings()
        .map_err(|e| StartError::Schemas(e.to_string()))?;
    let codec = Arc::new(AvroCodec::new(sr, Arc::new(catalog)));
    let mut producer_config = settings.kafka.client_config();
    producer_config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0");
    let dlt: FutureProducer = producer_config.create()?;
    let stores = Stores {
        pool: pool.clone(),
        graph: graph.clone(),
        graph_suffix: settings.neo4j.label_suffix.clone(),
        batch: cfg.batch_size,
    };
    let consumer_settings = ConsumerSettings {
        kafka: settings.kafka.clone(),
        topic_prefix: cfg.topic_prefix.clone(),
        group_prefix: cfg.group_prefix.clone(),
        group: cfg.consumer_group.clone(),
        batch_size: cfg.batch_size,
        batch_wait: Duration::from_millis(cfg.batch_wait_ms),
        session_timeout_ms: cfg.session_timeout_ms,
        max_poll_interval_ms: cfg.max_poll_interval_ms,
    };
    // Public: the read API only. Admin: read models and parked events (beside the ops routes).
    let auth = eventfold_auth::Authenticator::for_service(SERVICE, settings.auth.clone())?;
    let mut routes = Routes {
        public: axum::Router::new(),
        admin: eventfold_auth::protect(
            admin::router(registry.clone(), stores.clone()),
            auth.clone(),
            eventfold_auth::scope::ADMIN,
        )
        .merge(eventfold_runtime::openapi::route(openapi::admin_document())),
    };
    if registry.get("opportunities").is_some() {
        let live = state::watch_state(
            pool.clone(),
            "opportunities",
            state::ModelState {
                generation: 1,
                rebuilding: false,
            },
            Duration::from_millis(cfg.state_poll_ms),
        );
        routes.public = eventfold_auth::protect(
            read_api::router(pool.clone(), live),
            auth,
            eventfold_auth::scope::READ_MODELS_READ,
        )
        .merge(eventfold_runtime::openapi::route(openapi::read_document()));
    }
    let mut server = Server::bind(SERVICE, &settings.service, &ops, routes).await?;
    for p in registry.all().iter().cloned() {
        let worker = Worker {
            projection: p,
            stores: stores.clone(),
            codec: codec.clone(),
            consumer: consumer_settings.clone(),
            dlt: dlt.clone(),
            metrics: metrics.clone(),
            config: cfg.clone(),
        };
        server = server.with_worker(move |shutdown| worker.run(shutdown));
    }
    let process_metrics = process::runtime::ProcessMetrics::register(ops.registry())
        .map_err(|e| StartError::Schemas(format!("metrics: {e}")))?;
    let replay_seconds = prometheus::GaugeVec::new(
        prometheus::Opts::new(
            "projector_last_replay_seconds",
            "Duration of the latest replay or rebuild of each read model (table replay_runs)",
        ),
        &["read_model", "kind"],
    )
    .and_then(|g| ops.registry().register(Box::new(g.clone())).map(|()| g))
    .map_err(|e| StartError::Schemas(format!("metrics: {e}")))?;
    {
        let (pool, every) = (pool.clone(), Duration::from_millis(cfg.state_poll_ms));
        server = server
            .with_worker(move |shutdown| watch_replays(pool, replay_seconds, every, shutdown));
    }
    for pm in process::managers::all() {
        if registry.get(pm.name()).is_none() {
            continue;
        }
        let state = state::watch_state(
            pool.clone(),
            pm.name(),
            state::ModelState {
                generation: 1,
                rebuilding: false,
            },
            Duration::from_millis(cfg.state_poll_ms),
        );
        let (pool, settings, metrics) = (
            pool.clone(),
            settings.process.clone(),
            process_metrics.clone(),
        );
        server = server.with_worker(move |shutdown| {
            process::runtime::run(pm, pool, state, settings, metrics, shutdown)
        });
    }
    Ok(server)
}

/// Publishes the latest replay and rebuild durations of every read model (from `replay_runs`,
/// written by `eventfold replay`, `eventfold rebuild` and the admin API) every `every`
/// (`PROJECTOR_STATE_POLL_MS`).
async fn watch_replays(
    pool: sqlx::PgPool,
    gauge: prometheus::GaugeVec,
    every: Duration,
    shutdown: Shutdown,
) {
    loop {
        let latest: Result<Vec<(String, String, f64)>, sqlx::Error> = sqlx::query_as(
            "SELECT DISTINCT ON (read_model, kind) read_model, kind, seconds FROM replay_runs \
             ORDER BY read_model, kind, finished_at DESC, id DESC",
        )
        .fetch_all(&pool)
        .await;
        match latest {
            Ok(rows) => {
                for (model, kind, seconds) in rows {
                    gauge.with_label_values(&[&model, &kind]).set(seconds);
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read replay_runs"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// Everything one read model's consumer needs.
struct Worker {
    projection: Arc<dyn Projection>,
    stores: Stores,
    codec: Arc<AvroCodec>,
    consumer: ConsumerSettings,
    dlt: FutureProducer,
    metrics: metrics::ProjectorMetrics,
    config: ProjectorConfig,
}

impl Worker {
    async fn run(self, shutdown: Shutdown) {
        let p = self.projection.clone();
        let name = p.name();
        // Wait for the stores and create the topics (a new installation has neither).
        let mut attempt = 0;
        let initial = loop {
            match self.prepare().await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(read_model = name, error = %e, "cannot start yet; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(attempt)) => {}
                        _ = shutdown.wait() => return,
                    }
                    attempt += 1;
                }
            }
        };
        let parking = Parking::new(
            self.stores.pool.clone(),
            name,
            Some((self.dlt.clone(), dlt_topic(&self.config.topic_prefix, name))),
        );
        tokio::spawn(send_dead_letters(
            parking.clone(),
            self.metrics.clone(),
            shutdown.clone(),
        ));
        let state = state::watch_state(
            self.stores.pool.clone(),
            name,
            initial,
            Duration::from_millis(self.config.state_poll_ms),
        );
        let (stores, metrics, max_attempts) = (
            self.stores.clone(),
            self.metrics.clone(),
            self.config.max_attempts,
        );
        let apply_timeout = Duration::from_millis(self.config.apply_timeout_ms);
        let make = move |s: state::ModelState| Processor {
            projection: p.clone(),
            target: state::target(&*p, s.generation, &stores),
            parking: parking.clone(),
            max_attempts,
            metrics: Some(metrics.clone()),
            mode: Mode::Consume,
            apply_timeout,
        };
        consumer::run(self.consumer, self.codec, make, state, shutdown).await;
    }

    async fn prepare(&self) -> Result<state::ModelState, String> {
        let p = &*self.projection;
        let s = state::ensure(&self.stores.pool, p)
            .await
            .map_err(|e| e.to_string())?;
        let topics = p
            .aggregate_types()
            .iter()
            .map(|t| format!("{}{t}", self.config.topic_prefix))
            .chain([dlt_topic(&self.config.topic_prefix, p.name())]);
        for topic in topics {
            self.consumer
                .kafka
                .ensure_topic(&topic, self.config.partitions, self.config.replication)
                .await
                .map_err(|e| e.to_string())?;
        }
        let parked = Parking::new(self.stores.pool.clone(), p.name(), None)
            .count()
            .await
            .map_err(|e| e.to_string())?;
        self.metrics
            .parked
            .with_label_values(&[p.name()])
            .set(parked);
        Ok(s)
    }
}
