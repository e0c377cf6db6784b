//! `eventfold-projector-bench` (`make bench-projector`): the projector measured on the running
//! stack.
//!
//! 1. PostgreSQL: a fresh database `eventfold_bench_projector` with `BENCH_PROJ_EVENTS`
//!    (1,000,000) Opportunity events (`BENCH_PROJ_AGGREGATES` aggregates) relayed to fresh topics;
//!    one in-process projector (read model `opportunities`) consumes them: events/s.
//! 2. End to end: the command bus writes `BENCH_PROJ_RATE` (1,000) cmd/s for `BENCH_PROJ_SECONDS`
//!    (20) through the relay into the same projector; latency = event recorded (the command's
//!    commit) to applied in the read model, from the projector's histogram
//!    `eventfold_projector_visible_seconds` (interpolated within its buckets), p50/p99.
//! 3. Rebuild: `eventfold rebuild opportunities` of everything in that event store.
//! 4. Neo4j: a fresh database `eventfold_bench_projector_graph` with `BENCH_PROJ_GRAPH_EVENTS`
//!    (1,000,000) CrossReference events; one in-process projector (read model `graph`, its own
//!    label suffix) consumes them: events/s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use eventfold_domain::{Aggregate, parse_command};
use eventfold_postgres::repository::prepare;
use eventfold_postgres::{BusConfig, CommandBus, EventStore, NewEvent};
use eventfold_reference::{CrossReference, Opportunity};
use eventfold_relay_bench::{
    Running, database_url, delete_bench_topics, meta, prefill, recreate, register_schemas,
};
use eventfold_runtime::{Env, Shutdown};

/// mimalloc, as in the projector binary it measures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DB_PG: &str = "eventfold_bench_projector";
const DB_GRAPH: &str = "eventfold_bench_projector_graph";

/// Topic prefixes of the two read models, each followed by the run id.
const TOPIC_BASES: &[&str] = &["benchproj", "benchgraph"];
/// The projector's histogram of event recorded -> applied.
const VISIBLE: &str = "eventfold_projector_visible_seconds";
/// Its series for the read model `opportunities`.
const OPPORTUNITIES: &str = "read_model=\"opportunities\"";
/// The relay's histogram of event recorded -> acknowledged by Kafka.
const RELAY_LAG: &str = "eventfold_relay_publish_lag_seconds";

struct Config {
    maintenance_url: String,
    events: usize,
    aggregates: usize,
    graph_events: usize,
    graph_aggregates: usize,
    rate: usize,
    seconds: u64,
}

impl Config {
    fn from_env(env: &Env) -> Result<Self, String> {
        let number = |var: &str, default: usize| {
            eventfold_postgres::bus::positive(env, var, default).map_err(|e| e.to_string())
        };
        let c = Self {
            maintenance_url: env
                .required("BENCH_DATABASE_URL")
                .map_err(|e| e.to_string())?,
            events: number("BENCH_PROJ_EVENTS", 1_000_000)?,
            aggregates: number("BENCH_PROJ_AGGREGATES", 100_000)?,
            graph_events: number("BENCH_PROJ_GRAPH_EVENTS", 1_000_000)?,
            graph_aggregates: number("BENCH_PROJ_GRAPH_AGGREGATES", 100_000)?,
            rate: number("BENCH_PROJ_RATE", 1000)?,
            seconds: number("BENCH_PROJ_SECONDS", 20)? as u64,
        };
        for (e, a, what) in [
            (c.events, c.aggregates, "BENCH_PROJ_EVENTS"),
            (
                c.graph_events,
                c.graph_aggregates,
                "BENCH_PROJ_GRAPH_EVENTS",
            ),
        ] {
            if e % a != 0 {
                return Err(format!("{what} must be a multiple of its aggregate count"));
            }
        }
        Ok(c)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    eventfold_runtime::telemetry::init(eventfold_runtime::telemetry::LogFormat::Text);
    let config = Config::from_env(&env).unwrap_or_else(|e| {
        eprintln!("eventfold-projector-bench: {e}");
        std::process::exit(2)
    });
    let http = reqwest::Client::new();
    let run = format!("{:08x}", fastrand::u32(..));
    let kafka = eventfold_kafka::KafkaSettings::from_env(&env)?;
    delete_bench_topics(&kafka, TOPIC_BASES).await;

    // 1. PostgreSQL read model from pre-filled topics.
    let pool = recreate(&config.maintenance_url, DB_PG).await?;
    let ids: Vec<String> = (0..config.aggregates).map(|a| format!("opp-{a}")).collect();
    prefill(
        &pool,
        Opportunity::TYPE,
        &ids,
        config.events / config.aggregates,
        &opportunity_chain(),
    )
    .await?;
    let url = database_url(&config.maintenance_url, DB_PG);
    let prefix = format!("benchproj{run}.");
    relay_all(&env, &url, &prefix, config.events, &http).await?;
    let projector = start_projector(&env, &url, &prefix, "opportunities", &run).await?;
    let pg_rate = drain(&projector, &http, "opportunities", config.events).await?;

    // 2. End to end at a steady command rate.
    let relay = start_relay(&env, &url, &prefix).await?;
    let before = projector.metrics(&http).await?;
    let relay_before = relay.metrics(&http).await?;
    let written = write_commands(&pool, &ids, config.rate, config.seconds).await?;
    drain(
        &projector,
        &http,
        "opportunities",
        config.events + written as usize,
    )
    .await?;
    let after = projector.metrics(&http).await?;
    let (p50, p99, seen) = latency(&before, &after, VISIBLE, Some(OPPORTUNITIES));
    let relay_after = relay.metrics(&http).await?;
    let (r50, r99, _) = latency(&relay_before, &relay_after, RELAY_LAG, None);
    relay.stop().await?;
    projector.stop().await?;

    // 3. Rebuild from the event store.
    let stores = projector::rebuild::Stores {
        pool: pool.clone(),
        graph: projector::neo4j::Neo4jSettings::from_env(&env)?.graph()?,
        graph_suffix: String::new(),
        batch: 5000,
    };
    let model = projector::models::registry()
        .get("opportunities")
        .cloned()
        .expect("opportunities read model");
    let rebuilt = projector::rebuild::rebuild(&model, &stores, &Shutdown::new()).await?;
    pool.close().await;

    // 4. Neo4j read model from pre-filled topics.
    let gpool = recreate(&config.maintenance_url, DB_GRAPH).await?;
    let gids: Vec<String> = (0..config.graph_aggregates)
        .map(|a| format!("x{a}"))
        .collect();
    prefill(
        &gpool,
        CrossReference::TYPE,
        &gids,
        config.graph_events / config.graph_aggregates,
        &xref_chain(),
    )
    .await?;
    let gurl = database_url(&config.maintenance_url, DB_GRAPH);
    let gprefix = format!("benchgraph{run}.");
    relay_all(&env, &gurl, &gprefix, config.graph_events, &http).await?;
    let gprojector = start_projector(&env, &gurl, &gprefix, "graph", &run).await?;
    let neo_rate = drain(&gprojector, &http, "graph", config.graph_events).await?;
    gprojector.stop().await?;
    let judge = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!();
    println!("| measure | value | target | |");
    println!("|---|---|---|---|");
    println!(
        "| PostgreSQL read model, pre-filled topics of {} events, one instance | {pg_rate:.0} events/s | >= 20,000 | {} |",
        config.events,
        judge(pg_rate >= 20_000.0)
    );
    println!(
        "| Neo4j read model, pre-filled topics of {} events, one instance | {neo_rate:.0} events/s | >= 5,000 | {} |",
        config.graph_events,
        judge(neo_rate >= 5_000.0)
    );
    println!(
        "| end to end (recorded -> applied) p50 at {} cmd/s, {seen} events | {:.1} ms | | |",
        config.rate,
        p50 * 1000.0
    );
    println!(
        "| end to end p99 | {:.1} ms | <= 100 ms | {} |",
        p99 * 1000.0,
        judge(seen > 0 && p99 <= 0.1)
    );
    println!(
        "| of which recorded -> in Kafka (relay) p50 / p99 | {:.1} / {:.1} ms | | |",
        r50 * 1000.0,
        r99 * 1000.0
    );
    println!(
        "| rebuild of {} events (opportunities, new generation) | {:.1} s | <= 60 s | {} |",
        rebuilt.applied,
        rebuilt.seconds,
        judge(rebuilt.seconds <= 60.0)
    );
    println!("({written} commands written in the end-to-end phase)");
    let graph_model = projector::models::registry()
        .get("graph")
        .cloned()
        .expect("graph read model");
    projector::target::Target::Neo4j {
        graph: stores.graph.clone(),
        g: format!("_b{run}"),
        fence: None,
    }
    .drop_all(&*graph_model)
    .await?;
    gpool.close().await;
    delete_bench_topics(&kafka, TOPIC_BASES).await;

    Ok(())
}

async fn start_relay(env: &Env, url: &str, prefix: &str) -> anyhow::Result<Running> {
    let mut env = env.clone();
    env.set("DATABASE_URL", url);
    env.set("HTTP_ADDR", "127.0.0.1:0");
    env.set("KAFKA_TOPIC_PREFIX", prefix);
    let settings = outbox_relay::Settings::from_env(&env)?;
    Running::start(outbox_relay::build(settings).await?)
}

/// Registers the schemas of `prefix`, then publishes the whole outbox with one relay and stops it.
async fn relay_all(
    env: &Env,
    url: &str,
    prefix: &str,
    events: usize,
    http: &reqwest::Client,
) -> anyhow::Result<()> {
    register_schemas(env, prefix).await?;
    let started = Instant::now();
    let relay = start_relay(env, url, prefix).await?;
    loop {
        let published = relay
            .metric(http, "eventfold_relay_published_total")
            .await?;
        if published as usize >= events {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("the relay published {published} of {events} in 900 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    relay.stop().await?;
    println!(
        "projector bench: {events} events relayed to {prefix}* in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn start_projector(
    env: &Env,
    url: &str,
    prefix: &str,
    model: &str,
    run: &str,
) -> anyhow::Result<Running> {
    let mut env = env.clone();
    env.set("DATABASE_URL", url);
    env.set("HTTP_ADDR", "127.0.0.1:0");
    env.set("KAFKA_TOPIC_PREFIX", prefix);
    env.set("PROJECTOR_READ_MODELS", model);
    env.set("PROJECTOR_GROUP_PREFIX", format!("bench-{run}-"));
    env.set("NEO4J_LABEL_SUFFIX", format!("_b{run}"));
    let settings = projector::Settings::from_env(&env)?;
    Running::start(projector::build(settings).await?)
}

/// Waits until `model` has applied `events` events; returns events/s since the first applied.
async fn drain(
    projector: &Running,
    http: &reqwest::Client,
    model: &str,
    events: usize,
) -> anyhow::Result<f64> {
    let name =
        format!("eventfold_projector_events_total{{outcome=\"applied\",read_model=\"{model}\"}}");
    let started = Instant::now();
    let mut first: Option<(Instant, f64)> = None;
    let mut last_report = Instant::now();
    loop {
        let applied = projector.metric(http, &name).await?;
        if applied > 0.0 && first.is_none() {
            first = Some((Instant::now(), applied));
        }
        if applied as usize >= events {
            let (t0, n0) = first.expect("some applied");
            let secs = t0.elapsed().as_secs_f64().max(1e-3);
            println!(
                "projector bench: {model}: {applied} applied, {:.1} s in all",
                started.elapsed().as_secs_f64()
            );
            return Ok((applied - n0) / secs);
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            println!(
                "  {model}: {applied} applied after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("{model} applied {applied} of {events} in 1800 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `rate` UpdateOpportunity commands per second on `ids` for `seconds`; returns how many
/// were accepted.
async fn write_commands(
    pool: &sqlx::PgPool,
    ids: &[String],
    rate: usize,
    seconds: u64,
) -> anyhow::Result<u64> {
    let bus = CommandBus::<Opportunity>::start(EventStore::new(pool.clone()), BusConfig::default());
    let written = Arc::new(AtomicU64::new(0));
    let per_tick = (rate / 100).max(1);
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut next = 0usize;
    let mut tasks = Vec::new();
    while Instant::now() < deadline {
        interval.tick().await;
        for _ in 0..per_tick {
            let id = ids[next % ids.len()].clone();
            next += 1;
            let (bus, written) = (bus.clone(), written.clone());
            tasks.push(tokio::spawn(async move {
                let command = parse_command::<Opportunity>(
                    "UpdateOpportunity",
                    serde_json::json!({"confidence_score": 0.5}),
                )
                .expect("update");
                if bus.handle(id, command, meta(), vec![], None).await.is_ok() {
                    written.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(written.load(Ordering::Relaxed))
}

/// p50 and p99 (seconds) of the samples observed between two scrapes of histogram `metric`
/// (only its series with label `label`, e.g. `read_model="graph"`, when given), interpolated
/// linearly within buckets; and how many there were.
fn latency(before: &str, after: &str, metric: &str, label: Option<&str>) -> (f64, f64, u64) {
    let bucket_prefix = format!("{metric}_bucket{{");
    let buckets = |text: &str| -> Vec<(f64, f64)> {
        let mut out: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|l| {
                // Label order is the encoder's choice (`le` comes last in the
                // prometheus crate), so pick the labels out by name.
                let labels = l.strip_prefix(&bucket_prefix)?;
                let (labels, count) = labels.rsplit_once("} ")?;
                if label.is_some_and(|want| !labels.split(',').any(|x| x == want)) {
                    return None;
                }
                let le = labels
                    .split(',')
                    .find_map(|x| x.strip_prefix("le=\""))?
                    .trim_end_matches('"');
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                let count: f64 = count.trim().parse().ok()?;
                Some((le, count))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    };
    let (b0, b1) = (buckets(before), buckets(after));
    let delta: Vec<(f64, f64)> = b1
        .iter()
        .map(|(le, c)| {
            let old = b0.iter().find(|(l, _)| l == le).map_or(0.0, |(_, c)| *c);
            (*le, c - old)
        })
        .collect();
    let total = delta.last().map_or(0.0, |(_, c)| *c);
    let quantile = |q: f64| -> f64 {
        let want = q * total;
        let mut prev = (0.0, 0.0);
        for (le, c) in &delta {
            if *c >= want {
                if le.is_infinite() {
                    return prev.0;
                }
                let span = (c - prev.1).max(1.0);
                return prev.0 + (le - prev.0) * ((want - prev.1) / span);
            }
            prev = (*le, *c);
        }
        prev.0
    };
    (quantile(0.5), quantile(0.99), total as u64)
}

fn events_of<A: Aggregate>(commands: &[(&str, serde_json::Value)]) -> [NewEvent; 2] {
    let mut state = A::default();
    let mut out = Vec::new();
    for (name, body) in commands {
        let command = parse_command::<A>(name, body.clone()).expect("command");
        let events = state.decide(&command).expect("decide");
        let prepared = prepare::<A>(&command, &events, out.len() as i64, uuid::Uuid::nil(), &[])
            .expect("prepare");
        for e in &events {
            state = state.apply(e);
        }
        out.extend(prepared.events);
    }
    [out[0].clone(), out[1].clone()]
}

/// Created, then updated.
fn opportunity_chain() -> [NewEvent; 2] {
    events_of::<Opportunity>(&[
        (
            "CreateOpportunity",
            serde_json::json!({"opportunity_id": "{id}", "title": "Bench opportunity {id}",
                "description": "d", "ai_solution_type": "nlp", "market_size_estimate": 1000}),
        ),
        (
            "UpdateOpportunity",
            serde_json::json!({"market_size_estimate": 2000, "confidence_score": 0.8}),
        ),
    ])
}

/// Discovered, then validated.
fn xref_chain() -> [NewEvent; 2] {
    events_of::<CrossReference>(&[
        (
            "DiscoverCrossReference",
            serde_json::json!({"source_ref": "GEN.{id}", "target_ref": "JHN.{id}",
                "connection_type": "thematic", "initial_confidence": 0.5,
                "discovery_method": "embedding", "feature_vector": [0.25, -0.5],
                "semantic_similarity": 0.75}),
        ),
        (
            "ValidateCrossReference",
            serde_json::json!({"validator_agent": "theological_validator",
                "validation_result": "approved", "reasoning": "the same creative Word"}),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::{OPPORTUNITIES, VISIBLE, latency};

    const NAME: &str = "eventfold_projector_visible_seconds_bucket";

    fn scrape(counts: &[(&str, u64)]) -> String {
        let mut s = String::from("# TYPE eventfold_projector_visible_seconds histogram\n");
        for (le, c) in counts {
            s.push_str(&format!("{NAME}{{read_model=\"graph\",le=\"{le}\"}} 999\n"));
            s.push_str(&format!(
                "{NAME}{{read_model=\"opportunities\",le=\"{le}\"}} {c}\n"
            ));
        }
        s
    }

    #[test]
    fn latency_reads_the_delta_of_one_read_models_buckets() {
        let before = scrape(&[("0.01", 10), ("0.1", 10), ("+Inf", 10)]);
        let after = scrape(&[("0.01", 60), ("0.1", 110), ("+Inf", 110)]);
        let (p50, p99, seen) = latency(&before, &after, VISIBLE, Some(OPPORTUNITIES));
        assert_eq!(seen, 100);
        assert!((p50 - 0.01).abs() < 1e-9, "p50 {p50}");
        assert!(p99 > 0.09 && p99 <= 0.1, "p99 {p99}");
    }

    #[test]
    fn latency_of_no_samples_is_zero_events() {
        let s = scrape(&[("0.01", 5), ("+Inf", 5)]);
        assert_eq!(latency(&s, &s, VISIBLE, Some(OPPORTUNITIES)).2, 0);
    }
}
