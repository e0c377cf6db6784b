//! The servers of the stack instance the suite runs against (PostgreSQL, Kafka, registry, Neo4j):
//! reachability, their pids from `$EVENTFOLD_CACHE/run/<name>.pid`, and the stack scripts that stop
//! and start them. The suite never looks a process up by name.

use std::path::PathBuf;
use std::time::Duration;

use eventfold_tests::Stack;

use crate::FaultError;

/// Access to the stack instance's scripts and pid files.
#[derive(Debug, Clone)]
pub struct StackCtl {
    scripts: PathBuf,
    run: PathBuf,
}

impl StackCtl {
    /// The stack of `$EVENTFOLD_CACHE` (default `~/.cache/eventfold`), scripts from this checkout.
    pub fn from_env() -> Self {
        let cache = std::env::var("EVENTFOLD_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                    .join(".cache/eventfold")
            });
        Self {
            scripts: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/stack"),
            run: cache.join("run"),
        }
    }

    /// The pid in `<run>/<name>.pid`.
    pub fn pid(&self, name: &str) -> Result<u32, FaultError> {
        let file = self.run.join(format!("{name}.pid"));
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| FaultError::Setup(format!("no pid in {}", file.display())))
    }

    /// Runs `scripts/stack/<script>.sh <args>` with this process's environment.
    pub async fn script(&self, script: &str, args: &[&str]) -> Result<(), FaultError> {
        let status = tokio::process::Command::new("bash")
            .arg(self.scripts.join(format!("{script}.sh")))
            .args(args)
            .status()
            .await?;
        if status.success() {
            Ok(())
        } else {
            Err(FaultError::Setup(format!(
                "{script}.sh {args:?} failed: {status}"
            )))
        }
    }

    /// Runs `scripts/stack/<script>.sh <args>` and returns what it printed on stdout.
    pub async fn script_output(&self, script: &str, args: &[&str]) -> Result<String, FaultError> {
        let out = tokio::process::Command::new("bash")
            .arg(self.scripts.join(format!("{script}.sh")))
            .args(args)
            .stderr(std::process::Stdio::inherit())
            .output()
            .await?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(FaultError::Setup(format!(
                "{script}.sh {args:?} failed: {}",
                out.status
            )))
        }
    }

    /// Runs `pg_ctl <args> -D <data>` as the server's OS user (as `postgres.sh` does).
    pub async fn pg_ctl(&self, args: &[&str]) -> Result<(), FaultError> {
        let data = self.run.with_file_name("data").join("postgres");
        let bin = std::env::var("EVENTFOLD_PG_BIN")
            .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
        let mut cmd = if is_root() {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(format!("{bin}/pg_ctl"));
            c
        } else {
            tokio::process::Command::new(format!("{bin}/pg_ctl"))
        };
        let status = cmd
            .current_dir("/")
            .args(args)
            .arg("-D")
            .arg(&data)
            .status()
            .await?;
        if status.success() {
            Ok(())
        } else {
            Err(FaultError::Setup(format!(
                "pg_ctl {args:?} failed: {status}"
            )))
        }
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Checks that every server answers; the error names the first that does not.
pub async fn reachable(stack: &Stack) -> Result<(), String> {
    let t = Duration::from_secs(5);
    let pg = tokio::time::timeout(
        t,
        sqlx::PgPool::connect_with(stack.database.connect_options()),
    )
    .await;
    match pg {
        Ok(Ok(pool)) => pool.close().await,
        _ => {
            return Err(format!(
                "PostgreSQL at {} does not answer",
                stack.database.url
            ));
        }
    }
    if stack.kafka.probe(t).await.is_err() {
        return Err(format!(
            "Kafka at {} does not answer",
            stack.kafka.bootstrap_servers
        ));
    }
    let registry = reqwest::Client::new()
        .get(format!("{}/subjects", stack.registry.url))
        .timeout(t)
        .send()
        .await;
    if !registry.is_ok_and(|r| r.status().is_success()) {
        return Err(format!(
            "the schema registry at {} does not answer",
            stack.registry.url
        ));
    }
    let neo = async {
        let graph = stack.neo4j.graph().ok()?;
        graph.run(neo4rs::query("RETURN 1")).await.ok()
    };
    if tokio::time::timeout(t, neo).await.ok().flatten().is_none() {
        return Err(format!("Neo4j at {} does not answer", stack.neo4j.uri));
    }
    Ok(())
}
