//! One bench run: fresh databases, setup of every target (untimed), the timed runs per worker
//! count (peer, eventfold in-process, eventfold over HTTP with authentication, then without, in
//! that order), the cost of authentication, then hydration. Results are printed as they come.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use eventfold_postgres::{EventStore, MIGRATOR};
use sqlx::PgPool;

use crate::config::{BenchConfig, TokenSource};
use crate::database::{self, EVENTFOLD_DB, PEER_DB};
use crate::http::Http;
use crate::hydration::{self, Hydration};
use crate::in_process::InProcess;
use crate::peer::{self, Peer};
use crate::report::{self, HTTP, HTTP_NOAUTH, HydrationRow, IN_PROCESS, PEER, Phase, Row};
use crate::token;
use crate::workload::{self, Measurement, Target};

/// Name of the snapshot hydration row.
const SNAPSHOT: &str = "eventfold with snapshot";
/// Prefix of the hydrated aggregate's id, apart from the workload's ids.
const HYDRATION_PREFIX: &str = "hydration-";

/// An HTTP target ready for its timed runs (its aggregates discovered), or why it cannot run.
type HttpSetup = Result<(Arc<Http>, Arc<Vec<String>>), String>;

/// Runs everything `config` selects and prints the results.
pub async fn run(config: &BenchConfig) -> anyhow::Result<()> {
    let peer_pool = if config.runs("peer") || config.runs("hydration") {
        database::recreate(&config.admin, PEER_DB).await?;
        let pool = database::pool(&config.admin, PEER_DB, config.pool_size).await?;
        sqlx::raw_sql(peer::SCHEMA)
            .execute(&pool)
            .await
            .context("failed to create the postgres-es tables")?;
        Some(pool)
    } else {
        None
    };
    let eventfold_pool = if config.runs("eventfold") || config.runs("hydration") {
        database::recreate(&config.admin, EVENTFOLD_DB).await?;
        let pool = database::pool(&config.admin, EVENTFOLD_DB, config.pool_size).await?;
        MIGRATOR
            .run(&pool)
            .await
            .context("failed to migrate the eventfold bench database")?;
        Some(pool)
    } else {
        None
    };
    let admin = small_pool(config).await?;
    let databases: Vec<&str> = [(PEER_DB, &peer_pool), (EVENTFOLD_DB, &eventfold_pool)]
        .iter()
        .filter(|(_, pool)| pool.is_some())
        .map(|(name, _)| *name)
        .collect();
    print_facts(config, &admin, &databases).await?;

    let ids = Arc::new(workload::aggregate_ids("", config.aggregates));
    let setup_concurrency = (config.pool_size as usize).min(16);
    println!("\n### Setup (untimed)\n");
    let peer = match (&peer_pool, config.runs("peer")) {
        (Some(pool), true) => {
            let target = Arc::new(Peer::new(pool.clone()));
            let took =
                workload::setup(target.clone(), "", config.aggregates, setup_concurrency).await?;
            println!("- {PEER}: {} discovered in {took:.1?}", config.aggregates);
            Some(target)
        }
        _ => None,
    };
    let eventfold = match (&eventfold_pool, config.runs("eventfold")) {
        (Some(pool), true) => {
            let target = Arc::new(InProcess::new(
                EventStore::new(pool.clone()),
                config.bus.clone(),
            ));
            let took =
                workload::setup(target.clone(), "", config.aggregates, setup_concurrency).await?;
            println!(
                "- {IN_PROCESS}: {} discovered in {took:.1?}",
                config.aggregates
            );
            Some(target)
        }
        _ => None,
    };
    let mut http: Vec<(&'static str, HttpSetup)> = Vec::new();
    if config.runs("http") {
        let token = match &config.http_url {
            Some(_) => token::bearer(&config.http_token, token::lifetime(config))
                .map(Some)
                .map_err(|e| {
                    format!(
                        "no bearer token for BENCH_HTTP_URL: {e} (set BENCH_HTTP_TOKEN, or create \
                         the local issuer's key with `eventfold token init`)"
                    )
                }),
            None => Ok(None),
        };
        let targets = [
            (
                HTTP,
                config.http_url.as_deref(),
                "BENCH_HTTP_URL is not set (e.g. BENCH_HTTP_URL=http://127.0.0.1:8080)",
                token,
                "",
            ),
            (
                HTTP_NOAUTH,
                config.http_noauth_url.as_deref(),
                "BENCH_HTTP_NOAUTH_URL is not set (a command-service with AUTH_MODE=disabled)",
                Ok(None),
                "noauth-",
            ),
        ];
        for (name, url, unset, token, tag) in targets {
            let setup = match (url, token) {
                (None, _) => Err(unset.to_owned()),
                (Some(_), Err(why)) => Err(why),
                (Some(url), Ok(token)) => {
                    setup_http(config, name, url, token.as_deref(), tag, setup_concurrency).await
                }
            };
            if let Err(why) = &setup {
                println!("- {name}: skipped: {why}");
            }
            http.push((name, setup));
        }
    }

    let mut phases = Vec::new();
    for &workers in &config.workers {
        let mut phase = Phase {
            workers,
            rows: Vec::new(),
        };
        if config.runs("peer") {
            let row = timed(&admin, peer.clone(), ids.clone(), workers, config.duration).await?;
            phase.rows.push((PEER, row));
        }
        if config.runs("eventfold") {
            let row = timed(
                &admin,
                eventfold.clone(),
                ids.clone(),
                workers,
                config.duration,
            )
            .await?;
            phase.rows.push((IN_PROCESS, row));
        }
        // The HTTP rows (auth on, auth off) run in alternating rounds, ABBA: on, off, off, on,
        // ... and each row sums its rounds, so that a shared machine's drift falls on both.
        let mut sums: Vec<Option<Measurement>> = http.iter().map(|_| None).collect();
        for round in 0..config.auth_rounds {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..http.len()).collect()
            } else {
                (0..http.len()).rev().collect()
            };
            for i in order {
                if let Ok((target, ids)) = &http[i].1 {
                    let Row::Measured(m) = timed(
                        &admin,
                        Some(target.clone()),
                        ids.clone(),
                        workers,
                        config.duration,
                    )
                    .await?
                    else {
                        continue;
                    };
                    match &mut sums[i] {
                        Some(sum) => sum.absorb(m),
                        none => *none = Some(m),
                    }
                }
            }
        }
        for ((name, setup), sum) in http.iter().zip(sums) {
            let row = match (setup, sum) {
                (Err(why), _) => Row::Skipped(why.clone()),
                (Ok(_), Some(m)) => Row::Measured(m),
                (Ok(_), None) => Row::Skipped("not measured".into()),
            };
            phase.rows.push((name, row));
        }
        print!("{}", report::phase_table(&phase));
        phases.push(phase);
    }
    print!("{}", report::auth_table(&phases));

    let hydration_rows = match (config.runs("hydration"), &peer_pool, &eventfold_pool) {
        (true, Some(peer_pool), Some(eventfold_pool)) => {
            let rows = hydration(config, peer_pool, eventfold_pool).await?;
            print!(
                "{}",
                report::hydration_table(config.hydration_events, &rows)
            );
            rows
        }
        _ => Vec::new(),
    };
    print!("{}", report::targets(&phases, &hydration_rows, SNAPSHOT));
    Ok(())
}

/// Times one target at one worker count, after a checkpoint so that no run pays for the dirty
/// pages of the run before it.
async fn timed<T: Target>(
    admin: &PgPool,
    target: Option<Arc<T>>,
    ids: Arc<Vec<String>>,
    workers: usize,
    duration: Duration,
) -> anyhow::Result<Row> {
    let Some(target) = target else {
        return Ok(Row::Skipped("not set up".into()));
    };
    sqlx::raw_sql("CHECKPOINT")
        .execute(admin)
        .await
        .context("failed to checkpoint before a timed run")?;
    Ok(Row::Measured(
        workload::run(target, ids, workers, duration).await?,
    ))
}

/// The HTTP target `name` at `url` (sending `token`, if any) with its aggregates discovered
/// through the service, or why it cannot run. `tag` keeps the ids of two targets apart should
/// they share a database.
async fn setup_http(
    config: &BenchConfig,
    name: &str,
    url: &str,
    token: Option<&str>,
    tag: &str,
    concurrency: usize,
) -> HttpSetup {
    let connections = config.workers.iter().copied().max().unwrap_or(1);
    let target = Arc::new(Http::new(url, connections, token).map_err(|e| format!("{e:#}"))?);
    if let Some(why) = target.unreachable().await {
        return Err(format!("command-service not reachable: {why}"));
    }
    // The service's database is shared and kept: a run prefix keeps these ids new.
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let prefix = format!("bench{stamp}-{tag}");
    let took = workload::setup(target.clone(), &prefix, config.aggregates, concurrency)
        .await
        .map_err(|e| format!("setup through the command-service at {url} failed: {e:#}"))?;
    println!("- {name}: {} discovered in {took:.1?}", config.aggregates);
    Ok((
        target,
        Arc::new(workload::aggregate_ids(&prefix, config.aggregates)),
    ))
}

/// Builds the long aggregate in both stores (untimed), then times its loads.
async fn hydration(
    config: &BenchConfig,
    peer_pool: &PgPool,
    eventfold_pool: &PgPool,
) -> anyhow::Result<Vec<HydrationRow>> {
    let (events, samples) = (config.hydration_events, config.hydration_samples);
    let store = EventStore::new(eventfold_pool.clone());
    let peer_id =
        workload::build_history(&Peer::new(peer_pool.clone()), HYDRATION_PREFIX, events).await?;
    let eventfold_id = workload::build_history(
        &InProcess::new(store.clone(), config.bus.clone()),
        HYDRATION_PREFIX,
        events,
    )
    .await?;
    let peer = peer::hydration(peer_pool.clone(), &peer_id, events, samples).await?;
    let plain = hydration::eventfold(&store, &eventfold_id, events, samples, false).await?;
    let snapshot = hydration::eventfold(&store, &eventfold_id, events, samples, true).await?;
    Ok(vec![
        HydrationRow {
            name: PEER,
            result: Ok(Hydration::Measured(peer)),
        },
        HydrationRow {
            name: "eventfold without snapshot",
            result: Ok(plain),
        },
        HydrationRow {
            name: SNAPSHOT,
            result: Ok(snapshot),
        },
    ])
}

async fn small_pool(config: &BenchConfig) -> anyhow::Result<PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(config.admin.clone())
        .await
        .context("failed to connect to the maintenance database")
}

async fn print_facts(
    config: &BenchConfig,
    admin: &PgPool,
    databases: &[&str],
) -> anyhow::Result<()> {
    println!("## eventfold bench\n");
    for (name, value) in database::facts(admin).await? {
        println!("- {name}: {value}");
    }
    if !databases.is_empty() {
        println!(
            "- synchronous_commit = on set on {} and checked on every pooled connection",
            databases.join(" and ")
        );
    }
    println!(
        "- workload: {} cross-references discovered once, then random validations; {:?} per target \
         and worker count; workers {:?}; pool {} connections per in-process target",
        config.aggregates, config.duration, config.workers, config.pool_size
    );
    println!(
        "- eventfold bus: {} writers, {} batches in flight per writer, batches of up to {} commands, \
         cache {} aggregates, snapshot every {} events",
        config.bus.writers,
        config.bus.in_flight,
        config.bus.max_batch,
        config.bus.cache_capacity,
        config.bus.snapshots.every
    );
    if config.runs("http")
        && let Some(url) = &config.http_url
    {
        let token = match &config.http_token {
            TokenSource::Given(_) => "BENCH_HTTP_TOKEN".to_owned(),
            TokenSource::Issuer(s) => format!(
                "minted by the local issuer `{}` (tenant {}, scopes {}, subject {})",
                s.issuer,
                token::TENANT,
                token::SCOPES.join(" "),
                token::SUBJECT
            ),
        };
        println!(
            "- HTTP target: {url}; its build profile, pool, batching and database are the service's own; \
             one bearer token for the run, verified by the service on every request: {token}"
        );
    }
    if config.runs("http")
        && let Some(url) = &config.http_noauth_url
    {
        println!(
            "- HTTP target with auth off: {url} (AUTH_MODE=disabled, no token sent), compared with \
             the HTTP target at every worker count; the two rows alternate in {} rounds each \
             (on, off, off, on, ...) and each row sums its rounds",
            config.auth_rounds
        );
    }
    println!(
        "- latency: applied commands only (conflicts and failures are counted, not timed); \
         cmd/s = applied commands / wall time"
    );
    Ok(())
}
