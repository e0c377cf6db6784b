//! The bench's own databases on the shared server: dropped and created anew at every run, with
//! `synchronous_commit = on` set on the database and checked on every pool.

use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

/// Database of the eventfold in-process target.
pub const EVENTFOLD_DB: &str = "eventfold_bench";
/// Database of the peer.
pub const PEER_DB: &str = "eventfold_bench_peer";

/// Drops `name` (closing its connections) and creates it empty with `synchronous_commit = on`.
pub async fn recreate(admin: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(admin)
        .await
        .context("failed to connect to the maintenance database (is the stack up? `make up`)")?;
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
        format!("ALTER DATABASE {name} SET synchronous_commit = on"),
    ] {
        sqlx::raw_sql(&statement)
            .execute(&mut conn)
            .await
            .with_context(|| format!("failed to run `{statement}`"))?;
    }
    conn.close().await.ok();
    Ok(())
}

/// A pool of `size` connections to database `name`, each with `synchronous_commit = on`.
pub async fn pool(admin: &PgConnectOptions, name: &str, size: u32) -> anyhow::Result<PgPool> {
    let options = admin
        .clone()
        .database(name)
        .options([("synchronous_commit", "on")]);
    let pool = PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .with_context(|| format!("failed to connect to database {name}"))?;
    let setting = show(&pool, "synchronous_commit").await?;
    if setting != "on" {
        bail!("database {name} runs with synchronous_commit = {setting}, the bench needs on");
    }
    Ok(pool)
}

/// The value of a server setting as seen by a connection of `pool`.
pub async fn show(pool: &PgPool, setting: &str) -> anyhow::Result<String> {
    sqlx::query_scalar(&format!("SHOW {setting}"))
        .fetch_one(pool)
        .await
        .with_context(|| format!("failed to read setting {setting}"))
}

/// Facts about the machine and the server that the numbers depend on.
pub async fn facts(pool: &PgPool) -> anyhow::Result<Vec<(String, String)>> {
    let mut facts = vec![
        (
            "cores".to_owned(),
            std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "unknown".into()),
        ),
        (
            "cpu".to_owned(),
            cpu_model().unwrap_or_else(|| "unknown".into()),
        ),
        (
            "load average (1/5/15 min) at start".to_owned(),
            std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
        ),
    ];
    // Read on the maintenance database: the server's defaults, not the bench databases' settings.
    for setting in [
        "server_version",
        "synchronous_commit",
        "fsync",
        "wal_sync_method",
        "commit_delay",
        "shared_buffers",
        "max_connections",
    ] {
        facts.push((setting.to_owned(), show(pool, setting).await?));
    }
    Ok(facts)
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}
