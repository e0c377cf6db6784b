//! What the pipeline benchmarks share: a fresh database per benchmark, bulk pre-filled events
//! with their outbox rows, the schemas of a run's topic prefix registered, services run
//! in-process and read through their `/metrics`.

use std::time::Duration;

use anyhow::Context;
use eventfold_avro::{Catalog, RegistryClient, RegistrySettings};
use eventfold_kafka::KafkaSettings;
use eventfold_postgres::{Actor, ActorKind, CommandMeta, NewEvent, shard_key};
use eventfold_runtime::{Env, Server, Shutdown};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// Deletes the topics of runs of a benchmark: names made of one of `bases`, a run id of hex digits
/// and a dot. Called before a run (for runs that were interrupted) and after it: a broker keeping
/// every run's partitions spends ever more of its time in garbage collection pauses, which the
/// next run's latency figures would show.
pub async fn delete_bench_topics(kafka: &KafkaSettings, bases: &'static [&'static str]) {
    let doomed = move |name: &str| {
        bases.iter().any(|base| {
            name.strip_prefix(base)
                .and_then(|rest| rest.split_once('.'))
                .is_some_and(|(run, _)| {
                    !run.is_empty() && run.bytes().all(|c| c.is_ascii_hexdigit())
                })
        })
    };
    match kafka.delete_topics_where(doomed).await {
        Ok(names) if !names.is_empty() => {
            println!("bench: deleted {} topics of benchmark runs", names.len());
        }
        Ok(_) => {}
        Err(e) => eprintln!("bench: cannot delete the benchmark's topics: {e}"),
    }
}

/// Registers every schema of this build for topic prefix `prefix` in the registry of `env`, as
/// `eventfold schemas register` does before a deployment's services start: the relay only looks
/// schema ids up, and a run's prefix is new.
pub async fn register_schemas(env: &Env, prefix: &str) -> anyhow::Result<()> {
    let client = RegistryClient::new(RegistrySettings::from_env(env)?);
    let catalog = Catalog::embedded()?;
    eventfold_cli::register::register_all(&catalog, &client, prefix)
        .await
        .map_err(|(what, e)| anyhow::anyhow!("registering {what} for prefix {prefix}: {e}"))?;
    Ok(())
}

/// `maintenance_url` with its database replaced by `db`.
pub fn database_url(maintenance_url: &str, db: &str) -> String {
    let base = maintenance_url
        .rsplit_once('/')
        .map_or(maintenance_url, |(b, _)| b);
    format!("{base}/{db}")
}

/// Drops and creates database `db` (through `maintenance_url`), migrated.
pub async fn recreate(maintenance_url: &str, db: &str) -> anyhow::Result<PgPool> {
    let mut conn = PgConnection::connect(maintenance_url)
        .await
        .context("connect to the maintenance database (is the stack up? `make up`)")?;
    for statement in [
        format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        format!("CREATE DATABASE {db}"),
    ] {
        sqlx::raw_sql(&statement).execute(&mut conn).await?;
    }
    conn.close().await.ok();
    let pool = PgPoolOptions::new()
        .max_connections(32)
        .connect(&database_url(maintenance_url, db))
        .await?;
    eventfold_postgres::MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Writes `versions` events to each of `ids` (aggregate `aggregate_type`): `chain[0]` first,
/// `chain[1]` for every later version, with their outbox rows; 10 versions of every aggregate
/// per statement. `{id}` in a payload's JSON text is replaced by the aggregate id.
pub async fn prefill(
    pool: &PgPool,
    aggregate_type: &str,
    ids: &[String],
    versions: usize,
    chain: &[NewEvent; 2],
) -> anyhow::Result<()> {
    let keys: Vec<i32> = ids.iter().map(|id| shard_key(id)).collect();
    let versions = versions as i32;
    let mut from = 1;
    while from <= versions {
        let to = (from + 9).min(versions);
        sqlx::query(
            "WITH e AS ( \
                INSERT INTO events (event_id, event_type, schema_version, category, aggregate_type, \
                    aggregate_id, version, occurred_at, correlation_id, actor_kind, actor_id, tenant, payload) \
                SELECT gen_random_uuid(), CASE WHEN v = 1 THEN $1 ELSE $2 END, \
                    CASE WHEN v = 1 THEN $3 ELSE $4 END, CASE WHEN v = 1 THEN $5 ELSE $6 END, \
                    $13, ids.id, v, now(), gen_random_uuid(), 'agent', 'bench', 'default', \
                    replace(CASE WHEN v = 1 THEN $7::text ELSE $8::text END, '{id}', ids.id)::jsonb \
                FROM generate_series($9::int, $10::int) AS v, UNNEST($11::text[]) AS ids(id) \
                ORDER BY v \
                RETURNING position, aggregate_id, version \
             ) \
             INSERT INTO outbox (shard_key, event_position, aggregate_type, aggregate_id, version) \
             SELECT k.key, e.position, $13, e.aggregate_id, e.version \
             FROM e JOIN UNNEST($11::text[], $12::int[]) AS k(id, key) ON k.id = e.aggregate_id \
             ORDER BY e.position",
        )
        .bind(&chain[0].event_type)
        .bind(&chain[1].event_type)
        .bind(chain[0].schema_version)
        .bind(chain[1].schema_version)
        .bind(&chain[0].category)
        .bind(&chain[1].category)
        .bind(chain[0].payload.to_string())
        .bind(chain[1].payload.to_string())
        .bind(from)
        .bind(to)
        .bind(ids)
        .bind(&keys)
        .bind(aggregate_type)
        .execute(pool)
        .await
        .context("pre-fill the outbox")?;
        from = to + 1;
    }
    for statement in ["VACUUM ANALYZE outbox", "ANALYZE events"] {
        sqlx::raw_sql(statement).execute(pool).await?;
    }
    Ok(())
}

/// A service running in-process on a free port.
pub struct Running {
    /// `http://127.0.0.1:<port>` of its admin listener (`/readyz`, `/metrics`).
    pub url: String,
    shutdown: Shutdown,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Serves `server` until [`Running::stop`].
    pub fn start(server: Server) -> anyhow::Result<Self> {
        // `/metrics` is served on the admin listener only.
        let url = format!("http://{}", server.admin_addr()?);
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(server.run_until_stopped(shutdown.clone()));
        Ok(Self {
            url,
            shutdown,
            handle,
        })
    }

    /// The Prometheus text of its `/metrics`.
    pub async fn metrics(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        Ok(http
            .get(format!("{}/metrics", self.url))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .text()
            .await?)
    }

    /// The value of the sample `name` (with its labels, as printed) in its metrics, 0 if absent.
    pub async fn metric(&self, http: &reqwest::Client, name: &str) -> anyhow::Result<f64> {
        Ok(sample(&self.metrics(http).await?, name).unwrap_or(0.0))
    }

    /// Graceful shutdown, then waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        self.handle.await??;
        Ok(())
    }
}

/// The value of sample `name` (including its `{labels}`) in Prometheus text.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
        .trim()
        .parse()
        .ok()
}

/// The metadata of a benchmark command.
pub fn meta() -> CommandMeta {
    CommandMeta {
        command_id: uuid::Uuid::new_v4(),
        correlation_id: uuid::Uuid::new_v4(),
        causation_id: None,
        actor: Actor {
            kind: ActorKind::Agent,
            id: "bench".into(),
        },
        tenant: "default".into(),
        metadata: serde_json::json!({}),
        occurred_at: chrono::Utc::now(),
    }
}
