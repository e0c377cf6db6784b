//! F7, disk full under the Kafka log: the broker's log dir is moved onto a small tmpfs made for the
//! fault, the tmpfs is filled with `fallocate` under load, and the broker's log dir fails (Kafka
//! marks it offline; with its only log dir gone a broker shuts itself down). The command-service
//! keeps acknowledging (PostgreSQL is fine), the relay cannot publish and keeps the outbox rows
//! until Kafka acks them; the heal frees the space and restarts the broker, as an operator would.
//! Whatever the fault mounted is unmounted again, also when it fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eventfold_tests::Stack;

use super::{Run, SERVER_BOUND};
use crate::FaultError;
use crate::rig::RigOptions;
use crate::stack::StackCtl;
use crate::verdict::Verdict;

/// Size of the filesystem under the log dir (RELIABILITY.md: `tmpfs size=64m`).
const SIZE: &str = "64m";
/// How long the disk stays full after the broker noticed.
const FULL_FOR: Duration = Duration::from_secs(10);
/// How long the broker may take to notice the full disk.
const NOTICE_WITHIN: Duration = Duration::from_secs(60);

/// The broker whose log dir gets the small filesystem: the one node, or node 1 of a cluster.
struct Broker {
    /// Pid-file name (`kafka`, `kafka-1`).
    name: &'static str,
    /// Its `log.dirs`.
    logs: PathBuf,
    /// `kafka.sh` arguments that stop and start exactly it.
    stop: &'static [&'static str],
    start: &'static [&'static str],
    /// Its server log.
    server_log: PathBuf,
}

impl Broker {
    fn from_env() -> Self {
        let cache = std::env::var("EVENTFOLD_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                    .join(".cache/eventfold")
            });
        if std::env::var("KAFKA_BROKERS").ok().as_deref() == Some("3") {
            Self {
                name: "kafka-1",
                logs: cache.join("data/kafka-cluster/node-1/logs"),
                stop: &["stop-node", "1"],
                start: &["start-node", "1"],
                server_log: cache.join("logs/kafka-1.log"),
            }
        } else {
            Self {
                name: "kafka",
                logs: cache.join("data/kafka/logs"),
                stop: &["stop"],
                start: &["start"],
                server_log: cache.join("logs/kafka.log"),
            }
        }
    }

    /// The log dir's contents as they were on the real disk while the fault runs.
    fn on_disk(&self) -> PathBuf {
        self.logs.with_file_name("logs.before-disk-full")
    }

    fn filler(&self) -> PathBuf {
        self.logs.join("disk-full.filler")
    }
}

/// Runs `program args`; an error names the command and what it printed.
async fn cmd(program: &str, args: &[&str]) -> Result<String, FaultError> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(FaultError::Setup(format!(
            "{program} {args:?}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Unmounts `dir`, waiting up to 10 s for the stopped broker's last file handles to close
/// (seen: `target is busy` right after the broker stopped).
async fn umount(dir: &Path) -> Result<(), FaultError> {
    let mut last = None;
    for _ in 0..20 {
        match cmd("umount", &[path(dir)]).await {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last.unwrap_or_else(|| FaultError::Setup(format!("umount {}", dir.display()))))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// A live process (not a zombie) with this pid.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

/// Bytes still free on the filesystem at `dir`.
async fn avail(dir: &Path) -> Result<u64, FaultError> {
    let out = cmd("df", &["-B1", "--output=avail", path(dir)]).await?;
    out.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| FaultError::Setup(format!("df {}: {out}", dir.display())))
}

/// Stops the broker, moves its log dir onto a fresh tmpfs of [`SIZE`] and starts it again.
async fn mount(ctl: &StackCtl, b: &Broker) -> Result<(), FaultError> {
    if b.on_disk().exists() {
        return Err(FaultError::Setup(format!(
            "{} exists: a previous F7 did not clean up; move it back to {} by hand",
            b.on_disk().display(),
            b.logs.display()
        )));
    }
    ctl.script("kafka", b.stop).await?;
    std::fs::rename(&b.logs, b.on_disk())?;
    std::fs::create_dir(&b.logs)?;
    cmd(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={SIZE}"),
            "tmpfs",
            path(&b.logs),
        ],
    )
    .await?;
    cmd(
        "cp",
        &["-a", &format!("{}/.", b.on_disk().display()), path(&b.logs)],
    )
    .await?;
    ctl.script("kafka", b.start).await
}

/// Stops the broker, copies what it wrote back onto the real disk, unmounts the tmpfs and
/// starts the broker again. Runs after every F7, failed or not; the first error is returned
/// after every step was tried.
async fn unmount(ctl: &StackCtl, b: &Broker) -> Result<(), FaultError> {
    let mut first: Option<FaultError> = None;
    let mut keep = |r: Result<(), FaultError>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    keep(ctl.script("kafka", b.stop).await);
    let _ = std::fs::remove_file(b.filler());
    let copy = b.logs.with_file_name("logs.after-disk-full");
    let _ = std::fs::remove_dir_all(&copy);
    let copied = async {
        std::fs::create_dir(&copy)?;
        cmd(
            "cp",
            &["-a", &format!("{}/.", b.logs.display()), path(&copy)],
        )
        .await?;
        Ok::<_, FaultError>(())
    }
    .await;
    keep(umount(&b.logs).await);
    keep(std::fs::remove_dir(&b.logs).map_err(Into::into));
    match copied {
        // The broker's state now includes the fault's topics: keep that, drop the old copy.
        Ok(()) => {
            keep(std::fs::rename(&copy, &b.logs).map_err(Into::into));
            keep(std::fs::remove_dir_all(b.on_disk()).map_err(Into::into));
        }
        Err(e) => {
            keep(Err(e));
            let _ = std::fs::remove_dir_all(&copy);
            keep(std::fs::rename(b.on_disk(), &b.logs).map_err(Into::into));
        }
    }
    keep(ctl.script("kafka", b.start).await);
    first.map_or(Ok(()), Err)
}

/// Fills the filesystem at `dir` with one `fallocate`d file, as close to full as it goes.
async fn fill(b: &Broker) -> Result<u64, FaultError> {
    let mut len = avail(&b.logs).await?;
    loop {
        let r = cmd("fallocate", &["-l", &len.to_string(), path(&b.filler())]).await;
        match r {
            Ok(_) => return Ok(len),
            Err(_) if len > 1 << 20 => {
                let _ = std::fs::remove_file(b.filler());
                len -= 64 << 10;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Lines of the server log from byte `from` on that say a log dir failed.
fn log_dir_failures(b: &Broker, from: u64) -> Vec<String> {
    let text = std::fs::read(&b.server_log).unwrap_or_default();
    let tail = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default()).into_owned();
    tail.lines()
        .filter(|l| {
            l.contains("No space left on device")
                || l.contains("offline")
                || l.contains("all log dirs")
                || l.contains("Error while writing to checkpoint")
        })
        .map(|l| l.chars().take(200).collect())
        .collect()
}

async fn published(run: &Run) -> Result<f64, FaultError> {
    run.rig.relays[0]
        .metric(&run.rig.http, "eventfold_relay_published_total")
        .await
}

async fn outbox(run: &Run) -> Result<i64, FaultError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&run.rig.pipeline.db.admin)
        .await?)
}

/// F7: the Kafka log dir on a small filesystem, filled under load, freed, broker restarted.
pub async fn f7(stack: &Stack, ctl: &StackCtl) -> Result<Verdict, FaultError> {
    let b = Broker::from_env();
    mount(ctl, &b)
        .await
        .map_err(|e| FaultError::Setup(format!("F7 could not put the log dir on a tmpfs: {e}")))?;
    let result = under_full_disk(stack, ctl, &b).await;
    let cleaned = unmount(ctl, &b).await;
    match (result, cleaned) {
        (Ok(v), Ok(())) => Ok(v),
        (Ok(mut v), Err(e)) => {
            v.check(false, format!("cleaning up the tmpfs failed: {e}"));
            Ok(v)
        }
        (Err(e), _) => Err(e),
    }
}

async fn under_full_disk(stack: &Stack, ctl: &StackCtl, b: &Broker) -> Result<Verdict, FaultError> {
    let run = Run::start(stack, "F7", RigOptions::default()).await?;
    let pid = ctl.pid(b.name)?;
    let log_from = std::fs::metadata(&b.server_log).map_or(0, |m| m.len());
    let filled = fill(b).await?;
    let full_at = Instant::now();
    // The broker notices when it next writes: its process ends, or it logs the failed log dir.
    let noticed = loop {
        let failures = log_dir_failures(b, log_from);
        if !alive(pid) || !failures.is_empty() {
            break Some(full_at.elapsed());
        }
        if full_at.elapsed() >= NOTICE_WITHIN {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let acked_full = run.load.acked();
    let published_full = published(&run).await?;
    let backlog_start = outbox(&run).await?;
    tokio::time::sleep(FULL_FOR).await;
    let backlog_end = outbox(&run).await?;
    let acked_during = run.load.acked() - acked_full;
    let published_during = published(&run).await? - published_full;
    let broker_died = !alive(pid);
    let failures = log_dir_failures(b, log_from);
    // Heal: space back, broker restarted (a failed log dir stays offline until then).
    std::fs::remove_file(b.filler())?;
    ctl.script("kafka", b.stop).await?;
    ctl.script("kafka", b.start).await?;
    let healed = Instant::now();
    let (mut v, rig) = run.finish("F7", healed, SERVER_BOUND, Vec::new()).await?;
    v.notes.push(format!(
        "{} filled with {} MiB; broker noticed after {}, {}; {} log lines about the failed dir{}",
        b.logs.display(),
        filled >> 20,
        noticed.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        if broker_died {
            "its process ended"
        } else {
            "its process stayed up"
        },
        failures.len(),
        failures
            .first()
            .map_or(String::new(), |l| format!(" (first: {l})")),
    ));
    v.notes.push(format!(
        "disk full for {:.0} s: {acked_during} commands acknowledged, {published_during} published by the relay, outbox {backlog_start} -> {backlog_end} rows",
        FULL_FOR.as_secs_f64()
    ));
    v.check(noticed.is_some(), "the broker never noticed the full disk");
    v.check(
        acked_during > 0,
        "no command acknowledged while Kafka's disk was full (PostgreSQL was fine)",
    );
    if b.name == "kafka" {
        // One broker: nothing can take the writes, the relay must hold the rows.
        v.check(
            backlog_end > backlog_start,
            format!(
                "the outbox did not grow while the disk was full ({backlog_start} -> {backlog_end})"
            ),
        );
        v.check(
            published_during == 0.0,
            format!("{published_during} published while the only broker's disk was full"),
        );
    }
    v.check(
        v.parked == 0,
        format!("{} parked while the disk was full", v.parked),
    );
    rig.finish(&mut v).await?;
    Ok(v)
}
