//! F10 clock skew: the command-service, the one process that stamps `occurred_at` from its wall
//! clock, restarted under libfaketime (LD_PRELOAD: the service binaries are dynamically linked),
//! first 2 h ahead, then 10 min behind. Ordering must come from versions and positions, never from
//! a wall clock: the shared verdict's C3 holds while the same aggregates get timestamps that jump
//! back and forth.

use std::time::{Duration, Instant};

use eventfold_tests::Stack;

use super::{PROCESS_BOUND, Run};
use crate::FaultError;
use crate::rig::RigOptions;
use crate::verdict::Verdict;

/// How long the command-service runs under each skew.
const SKEWED: Duration = Duration::from_secs(8);

/// Runs F10.
pub async fn f10(stack: &Stack) -> Result<Verdict, FaultError> {
    let faketime = ["/usr/bin/faketime", "/usr/local/bin/faketime"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or_else(|| {
            FaultError::Setup("F10 needs faketime (scripts/faults.sh installs it)".into())
        })?;
    let mut run = Run::start(stack, "F10", RigOptions::default()).await?;
    let mut acked_skewed = Vec::new();
    for skew in ["+2h", "-10m"] {
        // Only the wall clock is skewed: libfaketime would shift CLOCK_MONOTONIC as well, which
        // no NTP error does.
        let wrapper = [
            "/usr/bin/env",
            "FAKETIME_DONT_FAKE_MONOTONIC=1",
            faketime,
            "-f",
            skew,
        ];
        let proc = &mut run.rig.command;
        proc.kill9().await?;
        proc.wrap(&wrapper);
        proc.restart()?;
        proc.ready(&run.rig.http, Duration::from_secs(30)).await?;
        let before = run.load.acked();
        tokio::time::sleep(SKEWED).await;
        acked_skewed.push((skew, run.load.acked() - before));
    }
    // Back to the real clock, as an operator fixing NTP would restart it.
    let proc = &mut run.rig.command;
    proc.kill9().await?;
    proc.wrap(&[]);
    proc.restart()?;
    proc.ready(&run.rig.http, Duration::from_secs(30)).await?;
    let admin = run.rig.pipeline.db.admin.clone();
    let (ahead, behind): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE occurred_at > now() + interval '1 hour'), \
                count(*) FILTER (WHERE occurred_at < now() - interval '5 minutes') FROM events",
    )
    .fetch_one(&admin)
    .await?;
    // Versions that go up while the wall-clock stamp goes down: the store's order must not care.
    let backwards: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT occurred_at < lag(occurred_at) OVER \
           (PARTITION BY aggregate_type, aggregate_id ORDER BY version) AS back FROM events) e \
         WHERE back",
    )
    .fetch_one(&admin)
    .await?;
    let healed = Instant::now();
    let (mut v, rig) = run.finish("F10", healed, PROCESS_BOUND, Vec::new()).await?;
    for (skew, n) in &acked_skewed {
        v.notes.push(format!(
            "command-service at {skew}: {n} commands acknowledged"
        ));
        v.check(
            *n > 0,
            format!("no command acknowledged while the command-service ran at {skew}"),
        );
    }
    v.notes.push(format!(
        "events stamped 2 h ahead: {ahead}, 10 min behind: {behind}; \
         {backwards} events whose occurred_at is earlier than their predecessor's"
    ));
    v.check(
        ahead > 0,
        "no event stamped 2 h ahead: +2h did not take effect",
    );
    v.check(
        behind > 0,
        "no event stamped 10 min behind: -10m did not take effect",
    );
    v.check(
        backwards > 0,
        "no aggregate saw its clock go backwards: the skew was not exercised on one aggregate",
    );
    rig.finish(&mut v).await?;
    Ok(v)
}
