//! `eventfold-relay-bench` (`make bench-relay`): the outbox relay measured on the running stack.
//!
//! 1. Throughput: a fresh database `eventfold_bench_relay` with `BENCH_RELAY_EVENTS` (1,000,000)
//!    CrossReference events and their outbox rows written up front; one in-process relay publishes
//!    them; events/s from its start until Kafka acknowledged the last one.
//! 2. Lag: a second relay on a fresh topic (broker-stamped `LogAppendTime`) while the write side
//!    (the in-process command bus) runs `BENCH_RELAY_RATE` (2,000) cmd/s for
//!    `BENCH_RELAY_LAG_SECONDS` (20), after the drained outbox was vacuumed and a checkpoint;
//!    lag = broker append time of each record - the commit timestamp of the transaction that
//!    wrote it (`track_commit_timestamp`, on in the local stack), p50/p99; the lag from the
//!    event's `recorded_at` (set at insert, before commit) is printed beside it.
//!
//! Not a test: it prints figures and its performance targets. Relay settings (`RELAY_*`, `KAFKA_*`) are
//! taken from the environment like the service's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use eventfold_domain::{Aggregate, parse_command};
use eventfold_kafka::{Envelope, KafkaSettings};
use eventfold_postgres::repository::prepare;
use eventfold_postgres::{BusConfig, CommandBus, EventStore, NewEvent};
use eventfold_reference::CrossReference;
use eventfold_relay_bench::{
    Running, delete_bench_topics, meta, prefill, recreate, register_schemas,
};
use eventfold_runtime::{Env, Shutdown};
use hdrhistogram::Histogram;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Timestamp;
use sqlx::PgPool;

/// mimalloc, as in the outbox-relay binary it measures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DB: &str = "eventfold_bench_relay";

/// Topic prefixes of the two phases, each followed by the run's start time (ms).
const TOPIC_BASES: &[&str] = &["bench", "benchlag"];

struct Config {
    maintenance_url: String,
    events: usize,
    aggregates: usize,
    rate: usize,
    lag_seconds: u64,
    /// `BENCH_RELAY_DUMP`: a file for every lag-phase record (commit µs, lag µs, recorded_at µs).
    dump: Option<String>,
}

impl Config {
    fn from_env(env: &Env) -> Result<Self, String> {
        let number = |var: &str, default: usize| {
            eventfold_postgres::bus::positive(env, var, default).map_err(|e| e.to_string())
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
            dump: env.raw("BENCH_RELAY_DUMP").map(str::to_owned),
        })
    }

    fn database_url(&self) -> String {
        eventfold_relay_bench::database_url(&self.maintenance_url, DB)
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
    let kafka = KafkaSettings::from_env(&env)?;
    delete_bench_topics(&kafka, TOPIC_BASES).await;
    let pool = recreate(&config.maintenance_url, DB).await?;
    let chain = chain();

    let started = Instant::now();
    let ids: Vec<String> = (0..config.aggregates)
        .map(|a| format!("xref-{a}"))
        .collect();
    prefill(
        &pool,
        CrossReference::TYPE,
        &ids,
        config.events / config.aggregates,
        &chain,
    )
    .await?;
    println!(
        "relay bench: pre-filled {} events ({} aggregates) in {:.1} s",
        config.events,
        config.aggregates,
        started.elapsed().as_secs_f64()
    );

    let throughput = throughput(&env, &config, &pool).await?;
    settle_database(&pool).await?;
    let lag = lag(&env, &config, &pool).await?;
    delete_bench_topics(&kafka, TOPIC_BASES).await;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let (main, basis) = match &lag.from_commit {
        Some(h) => (h, "commit"),
        None => (&lag.from_recorded, "recorded_at"),
    };
    let (p50, p99, max) = (ms(main, 0.5), ms(main, 0.99), main.max() as f64 / 1000.0);
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
        "| outbox lag p50 ({basis} -> Kafka append) at {} cmd/s, {} records | {p50:.1} ms | | |",
        config.rate,
        main.len()
    );
    println!(
        "| outbox lag p99 | {p99:.1} ms | <= 20 ms | {} |",
        judge(p99 <= 20.0)
    );
    println!("| outbox lag max | {max:.1} ms | | |");
    if lag.from_commit.is_some() {
        let r = &lag.from_recorded;
        println!(
            "| lag from recorded_at (insert, before commit) p50 / p99 / max | {:.1} / {:.1} / {:.1} ms | | |",
            ms(r, 0.5),
            ms(r, 0.99),
            r.max() as f64 / 1000.0
        );
    }
    println!(
        "(commit = pg_xact_commit_timestamp of the writing transaction, taken as its commit starts, \
         before the WAL flush; broker LogAppendTime has 1 ms resolution; {} commands written in the \
         lag phase)",
        lag.written
    );
    if lag.from_commit.is_none() {
        println!("(track_commit_timestamp is off: lag measured from recorded_at, the insert)");
    }
    pool.close().await;
    Ok(())
}

/// Vacuums the drained outbox and checkpoints, so that the lag phase does not pay for the
/// throughput phase's million deleted rows and dirty pages (as a relay in steady state would not).
async fn settle_database(pool: &PgPool) -> anyhow::Result<()> {
    let started = Instant::now();
    // One statement each: VACUUM cannot run in the implicit transaction of a multi-statement query.
    for sql in [
        "VACUUM (ANALYZE) outbox",
        "VACUUM (ANALYZE) events",
        "CHECKPOINT",
    ] {
        sqlx::raw_sql(sql).execute(pool).await?;
    }
    println!(
        "relay bench: vacuumed outbox and events, checkpointed ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
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

/// A relay on the benchmark's database publishing to topics of `prefix` (registered first, by
/// [`register_schemas`], outside any timing).
async fn start_relay(env: &Env, config: &Config, prefix: &str) -> anyhow::Result<Running> {
    let mut env = env.clone();
    env.set("DATABASE_URL", config.database_url());
    env.set("HTTP_ADDR", "127.0.0.1:0");
    env.set("KAFKA_TOPIC_PREFIX", prefix);
    let settings = outbox_relay::Settings::from_env(&env)?;
    Running::start(outbox_relay::build(settings).await?)
}

/// Events/s of one relay draining the pre-filled outbox.
async fn throughput(env: &Env, config: &Config, pool: &PgPool) -> anyhow::Result<f64> {
    let prefix = format!("bench{}.", chrono::Utc::now().timestamp_millis());
    register_schemas(env, &prefix).await?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let relay = start_relay(env, config, &prefix).await?;
    let mut last_report = Instant::now();
    loop {
        let published = relay
            .metric(&http, "eventfold_relay_published_total")
            .await? as u64;
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

/// Commit-to-append lag while the command bus writes `rate` cmd/s.
async fn lag(env: &Env, config: &Config, pool: &PgPool) -> anyhow::Result<Lag> {
    let prefix = format!("benchlag{}.", chrono::Utc::now().timestamp_millis());
    register_schemas(env, &prefix).await?;
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
            let mut samples = Vec::new();
            loop {
                let msg = tokio::select! {
                    m = consumer.recv() => m,
                    _ = stop.wait() => return samples,
                };
                let Ok(msg) = msg else { continue };
                received.fetch_add(1, Ordering::Relaxed);
                let Timestamp::LogAppendTime(appended_ms) = msg.timestamp() else {
                    continue;
                };
                let Some((event_id, recorded)) = msg
                    .headers()
                    .and_then(|h| Envelope::from_headers(h).ok())
                    .and_then(|e| {
                        let at = chrono::DateTime::parse_from_rfc3339(&e.recorded_at).ok()?;
                        Some((e.event_id, at))
                    })
                else {
                    continue;
                };
                if recorded < warmup_until {
                    continue;
                }
                samples.push(Sample {
                    event_id,
                    appended_us: appended_ms * 1000,
                    recorded_us: recorded.timestamp_micros(),
                });
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
    let samples = consumer_task.await?;
    relay.stop().await?;
    let got = received.load(Ordering::Relaxed);
    if got < written {
        bail!("only {got} of {written} records arrived within 60 s");
    }
    let commits = commit_times(pool).await?;
    let mut lag = Lag {
        from_commit: commits.as_ref().map(|_| histogram()),
        from_recorded: histogram(),
        written,
    };
    if let (Some(path), Some(commits)) = (&config.dump, commits.as_ref()) {
        let lines: String = samples
            .iter()
            .filter_map(|s| {
                let c = commits.get(&s.event_id)?;
                Some(format!("{c} {} {}\n", s.appended_us - c, s.recorded_us))
            })
            .collect();
        std::fs::write(path, lines)?;
        println!("relay bench: lag-phase records written to {path}");
    }
    for s in &samples {
        let _ = lag
            .from_recorded
            .record((s.appended_us - s.recorded_us).max(1) as u64);
        if let (Some(h), Some(commits)) = (lag.from_commit.as_mut(), commits.as_ref()) {
            match commits.get(&s.event_id) {
                Some(committed_us) => {
                    let _ = h.record((s.appended_us - committed_us).max(1) as u64);
                }
                None => bail!("event {} has no commit timestamp", s.event_id),
            }
        }
    }
    Ok(lag)
}

/// One record of the lag phase as consumed: its event, broker append and `recorded_at` (µs).
struct Sample {
    event_id: String,
    appended_us: i64,
    recorded_us: i64,
}

/// Lag histograms (µs) of the lag phase.
struct Lag {
    /// Broker append - the writing transaction's commit timestamp; `None` without
    /// `track_commit_timestamp`.
    from_commit: Option<Histogram<u64>>,
    /// Broker append - `recorded_at` (the insert, before commit).
    from_recorded: Histogram<u64>,
    /// Commands accepted in the phase.
    written: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram")
}

/// Commit timestamp (µs) of every lag-phase event, by event id; `None` when PostgreSQL does not
/// track commit timestamps (`track_commit_timestamp = off`).
async fn commit_times(pool: &PgPool) -> anyhow::Result<Option<HashMap<String, i64>>> {
    let tracked: String = sqlx::query_scalar("SHOW track_commit_timestamp")
        .fetch_one(pool)
        .await?;
    if tracked != "on" {
        return Ok(None);
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event_id::text, \
                (EXTRACT(EPOCH FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint \
         FROM events WHERE aggregate_id LIKE 'lag-%'",
    )
    .fetch_all(pool)
    .await?;
    Ok(Some(rows.into_iter().collect()))
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
