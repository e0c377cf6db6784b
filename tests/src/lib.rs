//! Test kit for eventfold's integration tests: where the real servers are, and typed helpers to reach
//! them. Addresses come from the environment (set by `make test`), defaulting to the local stack of
//! `make up`; with the `testcontainers` feature, a server whose address is unset is started in Docker.
#![deny(missing_docs)]

pub mod auth;
pub mod confidence;
#[cfg(feature = "testcontainers")]
mod containers;
pub mod pipeline;
pub mod registry_gate;
pub mod relay;
pub mod xref;

use std::time::Duration;

use eventfold_avro::{Catalog, RegistryClient, RegistrySettings};
use eventfold_kafka::KafkaSettings;
use eventfold_postgres::PgSettings;
use eventfold_runtime::Env;
use projector::neo4j::Neo4jSettings;

/// The addresses of the real servers and running services the tests talk to.
#[derive(Debug, Clone)]
pub struct Stack {
    /// PostgreSQL.
    pub database: PgSettings,
    /// Kafka brokers.
    pub kafka: KafkaSettings,
    /// Schema registry.
    pub registry: RegistrySettings,
    /// Neo4j over Bolt.
    pub neo4j: Neo4jSettings,
}

impl Stack {
    /// Reads the server addresses from the environment, starting containers for unset ones when the
    /// `testcontainers` feature is on.
    pub async fn from_env() -> Self {
        #[allow(unused_mut)]
        let mut env = Env::from_process();
        #[cfg(feature = "testcontainers")]
        containers::start_missing(&mut env).await;
        Self {
            database: PgSettings::from_env(&env).expect("DATABASE_URL"),
            kafka: KafkaSettings::from_env(&env).expect("KAFKA_* settings"),
            registry: RegistrySettings::from_env(&env).expect("SCHEMA_REGISTRY_URL"),
            neo4j: Neo4jSettings::from_env(&env).expect("NEO4J_* settings"),
        }
    }

    /// Registers every schema of this build for topic prefix `prefix`, as `eventfold schemas
    /// register` does before any service starts: the relay only looks schema ids up, so a test
    /// with a topic prefix of its own registers it before starting a relay or encoding.
    pub async fn register_schemas(&self, prefix: &str) {
        let client = RegistryClient::new(self.registry.clone());
        let catalog = Catalog::embedded().expect("the embedded schemas");
        eventfold_cli::register::register_all(&catalog, &client, prefix)
            .await
            .unwrap_or_else(|(what, e)| panic!("registering {what} for prefix {prefix}: {e}"));
    }

    /// A pool as the migration role (`DATABASE_URL`), with the migrations applied.
    pub async fn admin_pool(&self) -> sqlx::PgPool {
        let pool = sqlx::PgPool::connect_with(self.database.connect_options())
            .await
            .expect("connect to PostgreSQL as the migration role");
        eventfold_postgres::MIGRATOR
            .run(&pool)
            .await
            .expect("run migrations");
        pool
    }

    /// A pool as a login role that is only a member of `eventfold_writer` (the command service's
    /// privileges), created on first use.
    pub async fn writer_pool(&self) -> sqlx::PgPool {
        let admin = self.admin_pool().await;
        login_role(&admin, "ef_test_writer", "eventfold_writer").await;
        let options = self
            .database
            .connect_options()
            .username("ef_test_writer")
            .password("ef_test_writer");
        sqlx::PgPool::connect_with(options)
            .await
            .expect("connect as ef_test_writer")
    }

    /// `DATABASE_URL` for the `ef_test_writer` login role (created on first use).
    pub async fn writer_url(&self) -> String {
        self.writer_pool().await.close().await;
        self.role_url("ef_test_writer", None)
    }

    /// `DATABASE_URL` for test login role `role` (password = role), on `database` or the stack's.
    pub fn role_url(&self, role: &str, database: Option<&str>) -> String {
        let url = &self.database.url;
        let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        match database {
            None => format!("{scheme}://{role}:{role}@{host}"),
            Some(db) => {
                let server = host.split_once('/').map_or(host, |(h, _)| h);
                format!("{scheme}://{role}:{role}@{server}/{db}")
            }
        }
    }

    /// Starts the command service in-process on a free port, logging in as the writer role.
    pub async fn spawn_command_service(&self, extra: &[(&str, &str)]) -> Spawned {
        let url = self.writer_url().await;
        let mut pairs = vec![("DATABASE_URL", url.as_str())];
        pairs.extend_from_slice(extra);
        let env = self.service_env(&pairs);
        let settings = command_service::Settings::from_env(&env).expect("settings");
        spawn(
            command_service::SERVICE,
            command_service::build(settings).await.expect("start"),
        )
    }

    /// The environment a service under test would get, pointing at this stack and trusting the
    /// kit's tokens.
    pub fn service_env(&self, extra: &[(&str, &str)]) -> Env {
        let mut pairs: Vec<(String, String)> = vec![
            ("HTTP_ADDR".into(), "127.0.0.1:0".into()),
            ("ADMIN_ADDR".into(), "127.0.0.1:0".into()),
            ("DATABASE_URL".into(), self.database.url.clone()),
            (
                "KAFKA_BOOTSTRAP_SERVERS".into(),
                self.kafka.bootstrap_servers.clone(),
            ),
            ("SCHEMA_REGISTRY_URL".into(), self.registry.url.clone()),
            ("NEO4J_URI".into(), self.neo4j.uri.clone()),
            ("NEO4J_USER".into(), self.neo4j.user.clone()),
            ("NEO4J_PASSWORD".into(), self.neo4j.password.clone()),
        ];
        // Services under test trust the kit's token issuer (`auth::token`).
        pairs.extend(
            auth::service_env()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v)),
        );
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push(((*k).into(), (*v).into()));
        }
        Env::from_pairs(pairs)
    }
}

/// Creates login role `name` (password = name) in group role `group` unless it exists; roles are
/// cluster-wide and tests run concurrently, so creations are serialized by an advisory lock.
pub async fn login_role(admin: &sqlx::PgPool, name: &str, group: &str) {
    let mut tx = admin.begin().await.expect("begin");
    sqlx::query("SELECT pg_advisory_xact_lock(771001)")
        .execute(&mut *tx)
        .await
        .expect("lock");
    sqlx::query(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN \
         CREATE ROLE {name} LOGIN PASSWORD '{name}' IN ROLE {group}; END IF; END $$"
    ))
    .execute(&mut *tx)
    .await
    .expect("create a test login role");
    tx.commit().await.expect("commit");
}

/// Declares the test kit's own PostgreSQL read model (`confidence`) and grants the role of every
/// declared read model to `login`, as `make up` does for the stack's projector. Roles are
/// cluster-wide: this runs in the stack's database, serialized by an advisory lock there.
pub async fn grant_read_models(stack: &Stack, login: &str) {
    let admin = stack.admin_pool().await;
    let mut tx = admin.begin().await.expect("begin");
    sqlx::query("SELECT pg_advisory_xact_lock(771002)")
        .execute(&mut *tx)
        .await
        .expect("lock");
    sqlx::query("SELECT eventfold_declare_read_model('confidence')")
        .execute(&mut *tx)
        .await
        .expect("declare the confidence read model");
    sqlx::query("SELECT eventfold_grant_read_models($1)")
        .bind(login)
        .execute(&mut *tx)
        .await
        .expect("grant the read models' roles");
    tx.commit().await.expect("commit");
    admin.close().await;
}

/// Runs `scripts/stack/<script>.sh <action>` (e.g. `kafka`, `stop`), asserting it succeeds.
pub fn stack_script(script: &str, action: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../scripts/stack/{script}.sh"));
    let status = std::process::Command::new("bash")
        .arg(path)
        .arg(action)
        .status()
        .unwrap_or_else(|e| panic!("run {script}.sh: {e}"));
    assert!(status.success(), "{script}.sh {action}");
}

/// A service started in-process: its base URLs, its shutdown signal and its task.
pub struct Spawned {
    /// Service name.
    pub name: &'static str,
    /// `http://127.0.0.1:<port>` of the public listener (API and `/healthz`).
    pub url: String,
    /// `http://127.0.0.1:<port>` of the admin listener (`/readyz`, `/metrics`, admin API).
    pub admin_url: String,
    /// Fires the graceful shutdown.
    pub shutdown: eventfold_runtime::Shutdown,
    /// The serving task.
    pub handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Spawned {
    /// Signals shutdown and waits up to 30 s for the service to finish serving.
    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .unwrap_or_else(|_| panic!("{} stops within 30 s", self.name))
            .expect("join")
            .expect("serve");
    }
}

/// Serves `server` on the current runtime until its shutdown fires.
pub fn spawn(name: &'static str, server: eventfold_runtime::Server) -> Spawned {
    let url = format!("http://{}", server.local_addr().expect("bound"));
    let admin_url = format!("http://{}", server.admin_addr().expect("bound"));
    let shutdown = eventfold_runtime::Shutdown::new();
    let handle = tokio::spawn(server.run_until_stopped(shutdown.clone()));
    Spawned {
        name,
        url,
        admin_url,
        shutdown,
        handle,
    }
}

/// Admin URLs (`/readyz`, `/metrics`) of the services started by `make up`
/// (`EVENTFOLD_*_ADMIN_URL`, defaulting to the stack's admin ports).
pub fn running_service_admin_urls() -> Vec<(&'static str, String)> {
    let env = Env::from_process();
    vec![
        (
            "command-service",
            env.string("EVENTFOLD_COMMAND_ADMIN_URL", "http://127.0.0.1:9080"),
        ),
        (
            "outbox-relay",
            env.string("EVENTFOLD_RELAY_ADMIN_URL", "http://127.0.0.1:9082"),
        ),
        (
            "projector",
            env.string("EVENTFOLD_PROJECTOR_ADMIN_URL", "http://127.0.0.1:9083"),
        ),
    ]
}

/// A name unique to this test run, for topics, groups, subjects and labels.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Sends command `name` with `body` to `aggregate_type`/`id` through the HTTP API at `base`;
/// panics with the answer unless the command was applied.
pub async fn send_command(
    http: &reqwest::Client,
    base: &str,
    aggregate_type: &str,
    id: &str,
    name: &str,
    body: serde_json::Value,
) {
    let r = http
        .post(format!("{base}/v1/{aggregate_type}/{id}/commands/{name}"))
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = r.status();
    assert!(
        status.is_success(),
        "{aggregate_type}/{id} {name}: {status} {}",
        r.text().await.unwrap_or_default()
    );
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout` naming `what`.
#[track_caller]
pub fn eventually<T, F, Fut>(
    what: &'static str,
    timeout: Duration,
    mut check: F,
) -> impl Future<Output = T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let caller = std::panic::Location::caller();
    async move {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{what}: not reached within {timeout:?} (at {caller})");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
