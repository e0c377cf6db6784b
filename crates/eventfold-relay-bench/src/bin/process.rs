//! `eventfold-process-bench` (`make bench-process`): a process manager measured on the running
//! stack, with seed 000's `discovery` (one completed verse → one `DiscoverCrossReference` per
//! candidate, each to its own aggregate).
//!
//! 1. Throughput: a fresh database `eventfold_bench_process` with `BENCH_PM_VERSES` (2,000)
//!    verses started and completed (pre-filled), relayed to fresh topics; then one projector
//!    running only the process manager (in-process) and the command service (in-process, release,
//!    authentication on) it sends to. Events in/s (completions handled per second) and commands
//!    applied/s, between the first and the last command applied.
//! 2. One saga hop, end to end: with the relay and the process manager running, `BENCH_PM_HOPS`
//!    (200) verses one after another: from the completion's commit (`recorded_at`) to the first
//!    discovery's commit, p50/p99/max. That hop is relay → Kafka → inbox → react → dispatch over
//!    HTTP → command applied.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use eventfold_domain::Aggregate;
use eventfold_postgres::NewEvent;
use eventfold_reference::VerseProcessing;
use eventfold_relay_bench::{
    Running, database_url, delete_bench_topics, prefill, recreate, register_schemas,
};
use eventfold_runtime::Env;
use serde_json::json;

/// mimalloc, as in the binaries it measures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DB: &str = "eventfold_bench_process";
const TOPIC_BASES: &[&str] = &["benchpm"];
const PM: &str = "discovery";
const TEXT: &str = "In the beginning God created the heaven and the earth.";

struct Config {
    maintenance_url: String,
    verses: usize,
    hops: usize,
}

impl Config {
    fn from_env(env: &Env) -> Result<Self, String> {
        let number = |var: &str, default: usize| {
            eventfold_postgres::bus::positive(env, var, default).map_err(|e| e.to_string())
        };
        Ok(Self {
            maintenance_url: env
                .required("BENCH_DATABASE_URL")
                .map_err(|e| e.to_string())?,
            verses: number("BENCH_PM_VERSES", 2000)?,
            hops: number("BENCH_PM_HOPS", 200)?,
        })
    }
}

fn chain() -> [NewEvent; 2] {
    let event = |event_type: &str, payload: serde_json::Value| NewEvent {
        event_id: uuid::Uuid::nil(),
        event_type: event_type.into(),
        schema_version: 1,
        category: "processing".into(),
        payload,
    };
    [
        event(
            "VerseProcessingStarted",
            json!({"verse_id": "{id}", "book": "GEN", "chapter": 1, "verse": 1,
                   "text_content": TEXT, "phase": "intertextual", "attempt": 1}),
        ),
        event(
            "VerseProcessingCompleted",
            json!({"verse_id": "{id}", "phase": "intertextual", "duration_ms": 5,
                   "agent_results": {}, "quality_score": 0.9}),
        ),
    ]
}

/// Commands the process manager sends per verse.
fn planned(verse: &str) -> usize {
    projector::process::managers::discovery::CrossReferenceDiscovery::default()
        .request(verse, TEXT)
        .plan(&projector::process::managers::discovery::KeywordCandidates)
        .len()
}

async fn start_command_service(env: &Env, url: &str) -> anyhow::Result<(Running, String)> {
    let mut env = env.clone();
    env.set("DATABASE_URL", url);
    env.set("HTTP_ADDR", "127.0.0.1:0");
    env.set("ADMIN_ADDR", "127.0.0.1:0");
    env.set("DATABASE_MAX_CONNECTIONS", "32");
    let server = command_service::build(command_service::Settings::from_env(&env)?).await?;
    let public = format!("http://{}", server.local_addr()?);
    Ok((Running::start(server)?, public))
}

async fn start_relay(env: &Env, url: &str, prefix: &str) -> anyhow::Result<Running> {
    let mut env = env.clone();
    env.set("DATABASE_URL", url);
    env.set("HTTP_ADDR", "127.0.0.1:0");
    env.set("ADMIN_ADDR", "127.0.0.1:0");
    env.set("KAFKA_TOPIC_PREFIX", prefix);
    Running::start(outbox_relay::build(outbox_relay::Settings::from_env(&env)?).await?)
}

async fn start_process_manager(
    env: &Env,
    url: &str,
    prefix: &str,
    api: &str,
    run: &str,
) -> anyhow::Result<Running> {
    let mut env = env.clone();
    env.set("DATABASE_URL", url);
    env.set("HTTP_ADDR", "127.0.0.1:0");
    env.set("ADMIN_ADDR", "127.0.0.1:0");
    env.set("KAFKA_TOPIC_PREFIX", prefix);
    env.set("PROJECTOR_READ_MODELS", PM);
    env.set("PROJECTOR_GROUP_PREFIX", format!("benchpm-{run}-"));
    env.set("PROCESS_COMMAND_URL", api);
    env.set("PROCESS_POLL_MS", "10");
    Running::start(projector::build(projector::Settings::from_env(&env)?).await?)
}

/// Waits until `n` commands are done (or fails); returns (first, last) finish times in seconds
/// since the epoch and the first/last inbox handling times.
async fn all_done(pool: &sqlx::PgPool, n: i64) -> anyhow::Result<(f64, f64, f64, f64)> {
    let started = Instant::now();
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rm_discovery_g1.commands WHERE status = 'done'",
        )
        .fetch_one(pool)
        .await
        .unwrap_or(0);
        if done >= n {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("{done} of {n} commands applied in 900 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r: (f64, f64) = sqlx::query_as(
        "SELECT extract(epoch FROM min(finished_at))::float8, extract(epoch FROM max(finished_at))::float8 \
         FROM rm_discovery_g1.commands",
    )
    .fetch_one(pool)
    .await?;
    let h: (f64, f64) = sqlx::query_as(
        "SELECT extract(epoch FROM min(handled_at))::float8, extract(epoch FROM max(handled_at))::float8 \
         FROM rm_discovery_g1.inbox",
    )
    .fetch_one(pool)
    .await?;
    Ok((r.0, r.1, h.0, h.1))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    eventfold_runtime::telemetry::init(eventfold_runtime::telemetry::LogFormat::Text);
    let config = Config::from_env(&env).unwrap_or_else(|e| {
        eprintln!("eventfold-process-bench: {e}");
        std::process::exit(2)
    });
    let run = format!("{:08x}", fastrand::u32(..));
    let kafka = eventfold_kafka::KafkaSettings::from_env(&env)?;
    delete_bench_topics(&kafka, TOPIC_BASES).await;
    let pool = recreate(&config.maintenance_url, DB).await?;
    let url = database_url(&config.maintenance_url, DB);
    let prefix = format!("benchpm{run}.");
    register_schemas(&env, &prefix).await?;

    // 1. Throughput from a backlog.
    let ids: Vec<String> = (0..config.verses).map(|v| format!("GEN.{v}")).collect();
    prefill(&pool, VerseProcessing::TYPE, &ids, 2, &chain()).await?;
    let expected: usize = ids.iter().map(|v| planned(v)).sum();
    let relay = start_relay(&env, &url, &prefix).await?;
    let (api, api_url) = start_command_service(&env, &url).await?;
    let pm = start_process_manager(&env, &url, &prefix, &api_url, &run).await?;
    let (first, last, in_first, in_last) = all_done(&pool, expected as i64).await?;
    let commands_per_s = expected as f64 / (last - first).max(1e-3);
    let events_per_s = (2 * config.verses) as f64 / (in_last - in_first).max(1e-3);

    // 2. One hop at a time.
    let http = reqwest::Client::new();
    let issuer_settings = eventfold_auth::IssuerSettings::from_env(&env);
    let token = match eventfold_auth::LocalIssuer::load(&issuer_settings.key_file) {
        Ok(issuer) => Some(issuer.issue(&issuer_settings.request(
            "process-bench",
            "user",
            "default",
            &[eventfold_auth::scope::COMMANDS_WRITE],
            Duration::from_secs(3600),
        ))?),
        Err(_) => None,
    };
    let mut hops = Vec::with_capacity(config.hops);
    for h in 0..config.hops {
        let verse = format!("HOP.{h}");
        for (command, body) in [
            (
                "StartVerseProcessing",
                json!({"verse_id": verse, "book": "GEN", "chapter": 1, "verse": 1,
                "text_content": TEXT, "phase": "intertextual"}),
            ),
            (
                "CompleteVerseProcessing",
                json!({"phase": "intertextual", "duration_ms": 5, "quality_score": 0.9}),
            ),
        ] {
            let mut request = http
                .post(format!(
                    "{api_url}/v1/VerseProcessing/{verse}/commands/{command}"
                ))
                .json(&body);
            if let Some(t) = &token {
                request = request.bearer_auth(t);
            }
            let response = request.send().await?;
            if !response.status().is_success() {
                bail!(
                    "{command} {verse}: {} {}",
                    response.status(),
                    response.text().await?
                );
            }
        }
        let started = Instant::now();
        let hop: f64 = loop {
            let ms: Option<f64> = sqlx::query_scalar(
                "SELECT extract(epoch FROM (min(d.recorded_at) - c.recorded_at))::float8 * 1000 \
                 FROM events c JOIN events d ON d.causation_id = c.event_id \
                 WHERE c.aggregate_type = 'VerseProcessing' AND c.aggregate_id = $1 \
                   AND c.event_type = 'VerseProcessingCompleted' GROUP BY c.recorded_at",
            )
            .bind(&verse)
            .fetch_optional(&pool)
            .await?;
            if let Some(ms) = ms {
                break ms;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("no discovery for {verse} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        hops.push(hop);
    }
    hops.sort_by(f64::total_cmp);

    println!("## process manager bench ({PM}, seed 000 discovery)\n");
    println!(
        "- backlog: {} verses (started + completed: {} events), {expected} commands planned",
        config.verses,
        2 * config.verses
    );
    println!(
        "- one projector process running only the process manager, one command service (in-process, release, auth on, PostgreSQL fsync on)\n"
    );
    println!("| measure | value |\n|---|---:|");
    println!("| events in/s (inbox rows handled, first to last) | {events_per_s:.0} |");
    println!("| commands applied/s (first to last applied) | {commands_per_s:.0} |");
    println!(
        "| one saga hop p50 ms ({} hops, completion committed -> first discovery committed) | {:.1} |",
        hops.len(),
        percentile(&hops, 0.5)
    );
    println!("| one saga hop p99 ms | {:.1} |", percentile(&hops, 0.99));
    println!(
        "| one saga hop max ms | {:.1} |",
        hops.last().copied().unwrap_or_default()
    );

    pm.stop().await.context("stop the process manager")?;
    api.stop().await?;
    relay.stop().await?;
    Ok(())
}
