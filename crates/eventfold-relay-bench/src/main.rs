//! `eventfold-relay-bench` (`make bench-relay`): the outbox relay of issue 6 on the running stack.
//!
//! 1. Throughput: a fresh database `eventfold_bench_relay` with `BENCH_RELAY_EVENTS` (1,000,000)
//!    CrossReference events and their outbox rows written up front; one in-process relay publishes
//!    them; events/s from its start until Kafka acknowledged the last one.
//! 2. Lag: a second relay on a fresh topic (broker-stamped `LogAppendTime`) while the write side
//!    (the in-process command bus) runs `BENCH_RELAY_RATE` (2,000) cmd/s for
//!    `BENCH_RELAY_LAG_SECONDS` (20); lag = broker append time of each record - the event's
//!    `recorded_at` (set at insert, just before commit), p50/p99.
//!
//! Not a test: it prints figures and the targets. Relay settings (`RELAY_*`, `KAFKA_*`) are
//! taken from the environment like the service's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use eventfold_domain::{Aggregate, parse_command};
use eventfold_kafka::{Envelope, KafkaSettings};
use eventfold_postgres::repository::prepare;
use eventfold_postgres::{
    Actor, ActorKind, BusConfig, CommandBus, CommandMeta, EventStore, NewEvent, shard_key,
};
use eventfold_reference::CrossReference;
use eventfold_runtime::{Env, Shutdown};
use hdrhistogram::Histogram;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Timestamp;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

const DB: &str = "eventfold_bench_relay";

struct Config {
    maintenance_url: String,
    events: usize,
    aggregates: usize,
    rate: usize,
    lag_seconds: u64,
}

impl Config {
    fn from_env(env: &Env) -> Result<Self, String> {
        let number = |var: &str, default: usize| -> Result<usize, String> {
            let v: usize = env.parse(var, default).map_err(|e| e.to_string())?;
            if v == 0 {
                return Err(format!("{var} must be at least 1"));
            }
            Ok(v)
        };
        let events = number("BENCH_RELAY_EVENTS", 1_000_000)?;
        let aggregates = number("BENCH_RELAY_AGGREGATES", 10_000)?;
        if events % aggregates != 0 {
            return Err(format!(
                "BENCH_RELAY_EVENTS ({events}) must be a multiple of BENCH_RELAY_AGGREGATES ({aggregates})"
            ));
        }
        Ok(Self {
            maintenance_url: env
                .required("BENCH_DATABASE_URL")
                .map_err(|e| e.to_string())?,
            events,
            aggregates,
            rate: number("BENCH_RELAY_RATE", 2000)?,
            lag_seconds: number("BENCH_RELAY_LAG_SECONDS", 20)? as u64,
        })
    }

    fn database_url(&self) -> String {
        let base = self
            .maintenance_url
            .rsplit_once('/')
            .map_or(self.maintenance_url.as_str(), |(b, _)| b);
        format!("{base}/{DB}")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    eventfold_runtime::telemetry::init(eventfold_runtime::telemetry::LogFormat::Text);
    let config = Config::from_env(&env).unwrap_or_else(|e| {
        eprintln!("eventfold-relay-bench: {e}");
        std::process::exit(2)
    });
    let pool = recreate(&config).await?;
    let chain = chain();

    let started = Instant::now();
    prefill(&pool, &config, &chain).await?;
    println!(
        "relay bench: pre-filled {} events ({} aggregates) in {:.1} s",
        config.events,
        config.aggregates,
        started.elapsed().as_secs_f64()
    );

    let throughput = throughput(&env, &config, &pool).await?;
    let (lag, written) = lag(&env, &config, &pool).await?;
    let p50 = lag.value_at_quantile(0.5) as f64 / 1000.0;
    let p99 = lag.value_at_quantile(0.99) as f64 / 1000.0;
    let max = lag.max() as f64 / 1000.0;
    let judge = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!();
    println!("| measure | value | target | |");
    println!("|---|---|---|---|");
    println!(
        "| publish throughput, pre-filled outbox of {} events, one relay | {throughput:.0} events/s | >= 50,000 | {} |",
        config.events,
        judge(throughput >= 50_000.0)
    );
    println!(
        "| outbox lag p50 (commit -> Kafka append) at {} cmd/s, {} records | {p50:.1} ms | | |",
        config.rate,
        lag.len()
    );
    println!(
        "| outbox lag p99 | {p99:.1} ms | <= 20 ms | {} |",
        judge(p99 <= 20.0)
    );
    println!("| outbox lag max | {max:.1} ms | | |");
    println!(
        "(lag: broker LogAppendTime has 1 ms resolution; {written} commands written in the lag phase)"
    );
    pool.close().await;
    Ok(())
}

/// Drops and creates the bench database, migrated.
async fn recreate(config: &Config) -> anyhow::Result<PgPool> {
    let mut conn = PgConnection::connect(&config.maintenance_url)
        .await
        .context("connect to the maintenance database (is the stack up? `make up`)")?;
    for statement in [
        format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"),
        format!("CREATE DATABASE {DB}"),
    ] {
        sqlx::raw_sql(&statement).execute(&mut conn).await?;
    }
    conn.close().await.ok();
    let pool = PgPoolOptions::new()
        .max_connections(32)
        .connect(&config.database_url())
        .await?;
    eventfold_postgres::MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// A discovered and a validated event, as the command side stores them.
fn chain() -> [NewEvent; 2] {
    let discover = parse_command::<CrossReference>(
        "DiscoverCrossReference",
        serde_json::json!({
            "source_ref": "GEN.1.1", "target_ref": "JHN.1.1", "connection_type": "thematic",
            "initial_confidence": 0.5, "discovery_method": "embedding",
            "feature_vector": [0.25, -0.5, 0.125, 0.75], "semantic_similarity": 0.75
        }),
    )
    .expect("discover command");
    let validate = validate_command();
    let state = CrossReference::default();
    let discovered = state.decide(&discover).expect("discover");
    let state = discovered.iter().fold(state, |s, e| s.apply(e));
    let validated = state.decide(&validate).expect("validate");
    let first = prepare::<CrossReference>(&discover, &discovered, 0, uuid::Uuid::nil(), &[])
        .expect("prepare");
    let second = prepare::<CrossReference>(&validate, &validated, 1, uuid::Uuid::nil(), &[])
        .expect("prepare");
    [first.events[0].clone(), second.events[0].clone()]
}

fn validate_command() -> <CrossReference as Aggregate>::Command {
    parse_command::<CrossReference>(
        "ValidateCrossReference",
        serde_json::json!({
            "validator_agent": "theological_validator", "validation_result": "approved",
            "reasoning": "In the beginning: the same creative Word",
            "theological_checks": {"patristic": true, "canonical": true}
        }),
    )
    .expect("validate command")
}

/// Writes `events` events (discovered, then validated) and their outbox rows, 10 versions of every
/// aggregate per statement.
async fn prefill(pool: &PgPool, config: &Config, chain: &[NewEvent; 2]) -> anyhow::Result<()> {
    let ids: Vec<String> = (0..config.aggregates)
        .map(|a| format!("xref-{a}"))
        .collect();
    let keys: Vec<i32> = ids.iter().map(|id| shard_key(id)).collect();
    let versions = (config.events / config.aggregates) as i32;
    let mut from = 1;
    while from <= versions {
        let to = (from + 9).min(versions);
        sqlx::query(
            "WITH e AS ( \
                INSERT INTO events (event_id, event_type, schema_version, category, aggregate_type, \
                    aggregate_id, version, occurred_at, correlation_id, actor_kind, actor_id, tenant, payload) \
                SELECT gen_random_uuid(), CASE WHEN v = 1 THEN $1 ELSE $2 END, \
                    CASE WHEN v = 1 THEN $3 ELSE $4 END, CASE WHEN v = 1 THEN $5 ELSE $6 END, \
                    'CrossReference', ids.id, v, now(), gen_random_uuid(), 'agent', 'bench', 'default', \
                    CASE WHEN v = 1 THEN $7::jsonb ELSE $8::jsonb END \
                FROM generate_series($9::int, $10::int) AS v, UNNEST($11::text[]) AS ids(id) \
                ORDER BY v \
                RETURNING position, aggregate_id, version \
             ) \
             INSERT INTO outbox (shard_key, event_position, aggregate_type, aggregate_id, version) \
             SELECT k.key, e.position, 'CrossReference', e.aggregate_id, e.version \
             FROM e JOIN UNNEST($11::text[], $12::int[]) AS k(id, key) ON k.id = e.aggregate_id \
             ORDER BY e.position",
        )
        .bind(&chain[0].event_type)
        .bind(&chain[1].event_type)
        .bind(chain[0].schema_version)
        .bind(chain[1].schema_version)
        .bind(&chain[0].category)
        .bind(&chain[1].category)
        .bind(&chain[0].payload)
        .bind(&chain[1].payload)
        .bind(from)
        .bind(to)
        .bind(&ids)
        .bind(&keys)
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

/// An in-process relay on the bench database and `prefix`.
struct RunningRelay {
    url: String,
    shutdown: Shutdown,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_relay(env: &Env, config: &Config, prefix: &str) -> anyhow::Result<RunningRelay> {
    let mut env = env.clone();
    env.set("DATABASE_URL", config.database_url());
    env.set("HTTP_ADDR", "127.0.0.1:0");
    env.set("KAFKA_TOPIC_PREFIX", prefix);
    let settings = outbox_relay::Settings::from_env(&env)?;
    let server = outbox_relay::build(settings).await?;
    let url = format!("http://{}", server.local_addr()?);
    let shutdown = Shutdown::new();
    let handle = tokio::spawn(server.run_until_stopped(shutdown.clone()));
    Ok(RunningRelay {
        url,
        shutdown,
        handle,
    })
}

impl RunningRelay {
    async fn published(&self, http: &reqwest::Client) -> anyhow::Result<u64> {
        let text = http
            .get(format!("{}/metrics", self.url))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("eventfold_relay_published_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as u64)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        self.handle.await??;
        Ok(())
    }
}

/// Events/s of one relay draining the pre-filled outbox.
async fn throughput(env: &Env, config: &Config, pool: &PgPool) -> anyhow::Result<f64> {
    let prefix = format!("bench{}.", chrono::Utc::now().timestamp_millis());
    let http = reqwest::Client::new();
    let started = Instant::now();
    let relay = start_relay(env, config, &prefix).await?;
    let mut last_report = Instant::now();
    loop {
        let published = relay.published(&http).await?;
        if published >= config.events as u64 {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            println!(
                "  {published} published after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the relay published only {published} events in 600 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    relay.stop().await?;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(pool)
        .await?;
    println!(
        "relay bench: {} events acknowledged in {seconds:.2} s ({left} outbox rows left after the final delete)",
        config.events
    );
    Ok(config.events as f64 / seconds)
}

/// Commit-to-append lag while the command bus writes `rate` cmd/s; returns the histogram (µs).
async fn lag(env: &Env, config: &Config, pool: &PgPool) -> anyhow::Result<(Histogram<u64>, u64)> {
    let prefix = format!("benchlag{}.", chrono::Utc::now().timestamp_millis());
    let topic = format!("{prefix}CrossReference");
    let kafka = KafkaSettings::from_env(env)?;
    create_log_append_topic(&kafka, &topic, env.parse("KAFKA_TOPIC_PARTITIONS", 12)?).await?;
    let relay = start_relay(env, config, &prefix).await?;

    let consumer: StreamConsumer = kafka
        .client_config()
        .set("group.id", format!("{prefix}lag"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let received = Arc::new(AtomicU64::new(0));
    let stop_consumer = Shutdown::new();
    let warmup_until = chrono::Utc::now() + chrono::Duration::seconds(2);
    let consumer_task = {
        let received = received.clone();
        let stop = stop_consumer.clone();
        tokio::spawn(async move {
            let mut lag = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            loop {
                let msg = tokio::select! {
                    m = consumer.recv() => m,
                    _ = stop.wait() => return lag,
                };
                let Ok(msg) = msg else { continue };
                received.fetch_add(1, Ordering::Relaxed);
                let Timestamp::LogAppendTime(appended_ms) = msg.timestamp() else {
                    continue;
                };
                let Some(recorded) = msg
                    .headers()
                    .and_then(|h| Envelope::from_headers(h).ok())
                    .and_then(|e| chrono::DateTime::parse_from_rfc3339(&e.recorded_at).ok())
                else {
                    continue;
                };
                if recorded < warmup_until {
                    continue;
                }
                let micros = appended_ms * 1000 - recorded.timestamp_micros();
                let _ = lag.record(micros.max(1) as u64);
            }
        })
    };

    let bus =
        CommandBus::<CrossReference>::start(EventStore::new(pool.clone()), BusConfig::default());
    let written = Arc::new(AtomicU64::new(0));
    let ids: Vec<String> = (0..config.rate).map(|i| format!("lag-{i}")).collect();
    let tick = Duration::from_millis(10);
    let per_tick = (config.rate / 100).max(1);
    let mut interval = tokio::time::interval(tick);
    let deadline = Instant::now() + Duration::from_secs(config.lag_seconds);
    let mut next = 0usize;
    let mut tasks = Vec::new();
    while Instant::now() < deadline {
        interval.tick().await;
        for _ in 0..per_tick {
            let id = ids[next % ids.len()].clone();
            let first = next < ids.len();
            next += 1;
            let bus = bus.clone();
            let written = written.clone();
            tasks.push(tokio::spawn(async move {
                let command = if first {
                    parse_command::<CrossReference>(
                        "DiscoverCrossReference",
                        serde_json::json!({
                            "source_ref": "GEN.1.1", "target_ref": "JHN.1.1",
                            "connection_type": "thematic", "initial_confidence": 0.5,
                            "discovery_method": "embedding", "feature_vector": [0.1],
                            "semantic_similarity": 0.5
                        }),
                    )
                    .expect("discover")
                } else {
                    validate_command()
                };
                if bus.handle(id, command, meta(), vec![], None).await.is_ok() {
                    written.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let written = written.load(Ordering::Relaxed);
    let wait_until = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < written && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_consumer.trigger();
    let histogram = consumer_task.await?;
    relay.stop().await?;
    let got = received.load(Ordering::Relaxed);
    if got < written {
        bail!("only {got} of {written} records arrived within 60 s");
    }
    Ok((histogram, written))
}

fn meta() -> CommandMeta {
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

/// Creates `topic` with the broker's append time as record timestamp (the ack moment).
async fn create_log_append_topic(
    kafka: &KafkaSettings,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create()?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
        .set("message.timestamp.type", "LogAppendTime");
    for result in admin
        .create_topics([&new_topic], &AdminOptions::new())
        .await?
    {
        if let Err((t, code)) = result {
            bail!("cannot create {t}: {code:?}");
        }
    }
    Ok(())
}
