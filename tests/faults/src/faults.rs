//! The faults of RELIABILITY.md's menu, each: start a rig, drive the load, inject, heal, verdict.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use eventfold_tests::Stack;
use serde_json::Value;
use uuid::Uuid;

use crate::FaultError;
use crate::load::{Ack, Answers, Load, parse_ack};
use crate::rig::{Rig, RigOptions};
use crate::stack::StackCtl;
use crate::verdict::{Verdict, verdict};

mod clock;
mod disk;
mod network;
mod poison;

/// Recovery bound for a process fault (RELIABILITY.md C5).
const PROCESS_BOUND: Duration = Duration::from_secs(30);
/// Recovery bound for a broker or database restart.
const SERVER_BOUND: Duration = Duration::from_secs(60);
/// Load: commands per second in all, workers, aggregates per worker.
const RATE: f64 = 200.0;
const WORKERS: usize = 16;
const PER_WORKER: usize = 20;
/// Load before the fault and after the heal.
const WARMUP: Duration = Duration::from_secs(4);
const AFTERMATH: Duration = Duration::from_secs(3);

/// Every fault the suite knows: name and what it does.
pub const FAULTS: &[(&str, &str)] = &[
    (
        "F1",
        "kill -9 of the command-service mid-load, restarted (3 times)",
    ),
    (
        "F2",
        "kill -9 of one of two relays mid-publish, restarted (3 times)",
    ),
    (
        "F3",
        "SIGSTOP of one of two relays past its lease, then SIGCONT: fenced by epoch",
    ),
    (
        "F4",
        "projector kill loop (extra instances killed after 1-5 s) and a SIGSTOP past max.poll.interval.ms",
    ),
    (
        "F5",
        "kill -9 of a partition leader of a 3-broker KRaft cluster, back after 20 s; then a clean stop of the next leader",
    ),
    (
        "F6",
        "PostgreSQL stopped (-m fast, then -m immediate) for 5 s each: 503 with Retry-After meanwhile",
    ),
    (
        "F7",
        "disk full: the Kafka log dir on a 64 MiB tmpfs, filled with fallocate under load; space freed, broker restarted",
    ),
    (
        "F8",
        "network partition: one of two relays in a network namespace, its veth cut (netem loss 100%) for 20 s under load: fenced after the heal",
    ),
    (
        "F9",
        "slow, lossy link: the relay and the projector in a network namespace behind netem delay 500ms loss 5% for 20 s under load",
    ),
    (
        "F10",
        "clock skew: the command-service restarted under faketime +2h, then -10m, under load: order by version, never by time",
    ),
    (
        "F11",
        "duplicate delivery: outbox rows re-inserted and the read models' offsets rewound to 0",
    ),
    (
        "F12",
        "poison of every kind (bad magic byte, unknown schema id, truncated body, incompatible schema, handler refusal) injected for aggregates of the load: parked with their later events, DLT = parked rows, replayed after the fix",
    ),
    (
        "F13",
        "schema registry SIGSTOPped for 20 s, relay and projector restarted cold meanwhile: nothing parked",
    ),
    (
        "F14",
        "Neo4j stopped for 30 s under load: the graph catches up, nothing parked",
    ),
    (
        "F15",
        "concurrent conflicting commands (same expected version): exactly one wins, the other 409",
    ),
];

/// Runs fault `name` against `stack`.
pub async fn run(name: &str, stack: &Stack, ctl: &StackCtl) -> Result<Verdict, FaultError> {
    match name {
        "F1" => f1(stack).await,
        "F2" => f2(stack).await,
        "F3" => f3(stack).await,
        "F4" => f4(stack).await,
        "F5" => f5(stack, ctl).await,
        "F6" => f6(stack, ctl).await,
        "F7" => disk::f7(stack, ctl).await,
        "F8" => network::f8(stack).await,
        "F9" => network::f9(stack).await,
        "F10" => clock::f10(stack).await,
        "F11" => f11(stack).await,
        "F12" => poison::f12(stack).await,
        "F13" => f13(stack, ctl).await,
        "F14" => f14(stack, ctl).await,
        "F15" => f15(stack).await,
        other => Err(FaultError::Setup(format!("unknown fault {other}"))),
    }
}

/// A started rig under load.
struct Run {
    rig: Rig,
    load: Load,
    answers: Arc<Answers>,
}

impl Run {
    async fn start(stack: &Stack, fault: &str, options: RigOptions) -> Result<Self, FaultError> {
        let rig = Rig::start(stack, fault, options).await?;
        let tag = format!(
            "{}-{}",
            fault.to_lowercase(),
            &Uuid::new_v4().simple().to_string()[..6]
        );
        let load = Load::start(&rig.command.url, &tag, WORKERS, RATE, PER_WORKER);
        let answers = load.answers.clone();
        tokio::time::sleep(WARMUP).await;
        Ok(Self { rig, load, answers })
    }

    /// Lets the load run on after the heal, stops it, and gives the verdict.
    async fn finish(
        self,
        fault: &str,
        healed: Instant,
        bound: Duration,
        extra_acks: Vec<Ack>,
    ) -> Result<(Verdict, Rig), FaultError> {
        tokio::time::sleep(AFTERMATH).await;
        let mut acks = self.load.stop().await;
        acks.extend(extra_acks);
        let mut v = verdict(&self.rig, fault, &acks, healed, bound).await?;
        let a = &self.answers;
        v.check(
            a.unexpected.load(Ordering::Relaxed) == 0,
            format!(
                "{} unexpected answers to the load",
                a.unexpected.load(Ordering::Relaxed)
            ),
        );
        v.notes.push(format!(
            "load: 503+Retry-After {}, other 5xx {}, no answer {}, 409 {}",
            a.unavailable_with_retry_after.load(Ordering::Relaxed),
            a.other_5xx.load(Ordering::Relaxed),
            a.no_answer.load(Ordering::Relaxed),
            a.conflicts.load(Ordering::Relaxed)
        ));
        Ok((v, self.rig))
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

async fn sleep_ms(lo: u64, hi: u64) {
    tokio::time::sleep(Duration::from_millis(fastrand::u64(lo..=hi))).await;
}

async fn f1(stack: &Stack) -> Result<Verdict, FaultError> {
    let mut run = Run::start(stack, "F1", RigOptions::default()).await?;
    let mut acked_after_restart = true;
    for _ in 0..3 {
        sleep_ms(1000, 3000).await;
        run.rig.command.kill9().await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        run.rig.command.restart()?;
        run.rig
            .command
            .ready(&run.rig.http, Duration::from_secs(30))
            .await?;
        let before = run.load.acked();
        tokio::time::sleep(Duration::from_secs(1)).await;
        acked_after_restart &= run.load.acked() > before;
    }
    let healed = Instant::now();
    let (mut v, rig) = run.finish("F1", healed, PROCESS_BOUND, Vec::new()).await?;
    v.check(
        acked_after_restart,
        "no command acknowledged after a restart",
    );
    rig.finish(&mut v).await?;
    Ok(v)
}

async fn f2(stack: &Stack) -> Result<Verdict, FaultError> {
    let options = RigOptions {
        relays: 2,
        relay_env: env(&[("RELAY_LEASE_MS", "2000")]),
        ..RigOptions::default()
    };
    let mut run = Run::start(stack, "F2", options).await?;
    for round in 0..3 {
        sleep_ms(500, 2500).await;
        let relay = &mut run.rig.relays[round % 2];
        relay.kill9().await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        relay.restart()?;
        relay.ready(&run.rig.http, Duration::from_secs(30)).await?;
    }
    let healed = Instant::now();
    let (mut v, rig) = run.finish("F2", healed, PROCESS_BOUND, Vec::new()).await?;
    rig.finish(&mut v).await?;
    Ok(v)
}

async fn f3(stack: &Stack) -> Result<Verdict, FaultError> {
    let options = RigOptions {
        relays: 2,
        relay_env: env(&[("RELAY_LEASE_MS", "2000")]),
        ..RigOptions::default()
    };
    let run = Run::start(stack, "F3", options).await?;
    let zombie = &run.rig.relays[0];
    let other = &run.rig.relays[1];
    let http = run.rig.http.clone();
    let acquired_before = other
        .metric(&http, "eventfold_relay_shard_acquired_total")
        .await?;
    for _ in 0..3 {
        zombie.signal("STOP")?;
        // Past the lease: PostgreSQL ends the zombie's lock session, the other relay takes over.
        tokio::time::sleep(Duration::from_secs(6)).await;
        zombie.signal("CONT")?;
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let healed = Instant::now();
    let lost = zombie
        .metric(&http, "eventfold_relay_shard_lost_total")
        .await?;
    let rejections = zombie
        .metric(&http, "eventfold_relay_epoch_rejections_total")
        .await?;
    let acquired = other
        .metric(&http, "eventfold_relay_shard_acquired_total")
        .await?
        - acquired_before;
    let (mut v, rig) = run.finish("F3", healed, PROCESS_BOUND, Vec::new()).await?;
    v.notes.push(format!(
        "zombie lost {lost} shards, {rejections} epoch rejections; the other relay took {acquired} shards"
    ));
    v.check(lost > 0.0, "the paused relay never lost a shard");
    v.check(acquired > 0.0, "the other relay never took a shard over");
    // Whether the zombie had a batch in flight when it was paused is chance (0 to 14 rejections
    // seen): the fence itself is proven deterministically by tests/it/relay.rs; here the verdict
    // (nothing lost, nothing twice, in order) is what a rejection-free wake-up must still meet.
    rig.finish(&mut v).await?;
    Ok(v)
}

async fn f4(stack: &Stack) -> Result<Verdict, FaultError> {
    let options = RigOptions {
        projector_env: env(&[
            ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
            ("KAFKA_MAX_POLL_INTERVAL_MS", "7000"),
        ]),
        ..RigOptions::default()
    };
    let run = Run::start(stack, "F4", options).await?;
    for i in 0..5 {
        let mut extra = run.rig.start_projector(&format!("storm-{i}"), &[])?;
        sleep_ms(1000, 5000).await;
        extra.kill9().await?;
    }
    // Longer than max.poll.interval.ms (and the session timeout): the group moves on without it.
    let paused = &run.rig.projectors[0];
    let mut helper = run.rig.start_projector("helper", &[])?;
    helper.ready(&run.rig.http, Duration::from_secs(30)).await?;
    paused.signal("STOP")?;
    tokio::time::sleep(Duration::from_secs(12)).await;
    paused.signal("CONT")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    helper.kill9().await?;
    let healed = Instant::now();
    let (mut v, rig) = run.finish("F4", healed, PROCESS_BOUND, Vec::new()).await?;
    rig.finish(&mut v).await?;
    Ok(v)
}

async fn f5(stack: &Stack, ctl: &StackCtl) -> Result<Verdict, FaultError> {
    if std::env::var("KAFKA_BROKERS").ok().as_deref() != Some("3") {
        return Err(FaultError::Setup(
            "F5 needs the 3-broker cluster: KAFKA_BROKERS=3 (see README)".into(),
        ));
    }
    let run = Run::start(stack, "F5", RigOptions::default()).await?;
    let topic = format!("{}CrossReference", run.rig.pipeline.db.prefix);
    let mut healed = Instant::now();
    let mut killed = Vec::new();
    for (inject, down) in [("kill-node", 20), ("stop-node", 10)] {
        let leader = leader_of(ctl, &topic).await?;
        ctl.script("kafka", &[inject, &leader]).await?;
        killed.push(format!("{inject} {leader}"));
        tokio::time::sleep(Duration::from_secs(down)).await;
        ctl.script("kafka", &["start-node", &leader]).await?;
        healed = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let (mut v, rig) = run.finish("F5", healed, SERVER_BOUND, Vec::new()).await?;
    v.notes.push(format!(
        "partition leaders of {topic}-0: {}",
        killed.join(", ")
    ));
    rig.finish(&mut v).await?;
    Ok(v)
}

/// The node leading partition 0 of `topic`, waiting up to 60 s for the relay to create the topic
/// (a freshly started cluster loads its coordinators first).
async fn leader_of(ctl: &StackCtl, topic: &str) -> Result<String, FaultError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ctl.script_output("kafka", &["leader", topic, "0"]).await {
            Ok(out) => return Ok(out.trim().to_string()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

async fn f6(stack: &Stack, ctl: &StackCtl) -> Result<Verdict, FaultError> {
    let run = Run::start(stack, "F6", RigOptions::default()).await?;
    let mut healed = Instant::now();
    for mode in ["fast", "immediate"] {
        ctl.pg_ctl(&["stop", "-m", mode, "-w", "-t", "30"]).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        ctl.script("postgres", &["start"]).await?;
        healed = Instant::now();
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let answers = run.answers.clone();
    let (mut v, rig) = run.finish("F6", healed, SERVER_BOUND, Vec::new()).await?;
    v.check(
        answers.unavailable_with_retry_after.load(Ordering::Relaxed) > 0,
        "no 503 with Retry-After while PostgreSQL was down",
    );
    rig.finish(&mut v).await?;
    Ok(v)
}

async fn f11(stack: &Stack) -> Result<Verdict, FaultError> {
    let run = Run::start(stack, "F11", RigOptions::default()).await?;
    let admin = run.rig.pipeline.db.admin.clone();
    // Re-inserted outbox rows: the relay publishes those events a second time.
    let events: Vec<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT position, aggregate_type, aggregate_id, version FROM events \
         ORDER BY random() LIMIT 300",
    )
    .fetch_all(&admin)
    .await?;
    for (position, t, id, version) in &events {
        sqlx::query(
            "INSERT INTO outbox (shard_key, event_position, aggregate_type, aggregate_id, version) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(eventfold_postgres::shard_key(id))
        .bind(position)
        .bind(t)
        .bind(id)
        .bind(version)
        .execute(&admin)
        .await?;
    }
    // Offsets rewound: a projector restarted on them receives everything again.
    let mut rig = run.rig;
    let mut projector = rig.projectors.remove(0);
    projector.kill9().await?;
    rewind_offsets(&rig).await?;
    projector.restart()?;
    projector.ready(&rig.http, Duration::from_secs(30)).await?;
    let healed = Instant::now();
    let run = Run {
        rig,
        load: run.load,
        answers: run.answers,
    };
    let (mut v, mut rig) = run.finish("F11", healed, PROCESS_BOUND, Vec::new()).await?;
    let skipped = projector
        .metric_where(
            &rig.http,
            "eventfold_projector_events_total",
            "outcome=\"skipped\"",
        )
        .await?;
    v.notes.push(format!(
        "{skipped} redelivered events skipped by the version guard"
    ));
    v.check(
        skipped > 0.0,
        "no redelivered event reached the version guard",
    );
    v.check(
        v.topic_dups >= events.len() as i64,
        "the re-inserted rows were not re-published",
    );
    rig.projectors.push(projector);
    rig.finish(&mut v).await?;
    Ok(v)
}

/// Sets every stored offset of every read model's live generation back to 0.
async fn rewind_offsets(rig: &Rig) -> Result<(), FaultError> {
    let stores = rig.pipeline.stores();
    for p in projector::models::registry().all() {
        let state = projector::state::ensure(&stores.pool, &**p).await?;
        match projector::state::target(&**p, state.generation, &stores) {
            projector::target::Target::Postgres { pool, schema, .. } => {
                sqlx::query(&format!("UPDATE {schema}._offsets SET next_offset = 0"))
                    .execute(&pool)
                    .await?;
            }
            projector::target::Target::Neo4j { graph, g, .. } => {
                graph
                    .run(neo4rs::query(&format!(
                        "MATCH (o:ProjectorOffset{g}) SET o.next_offset = 0"
                    )))
                    .await?;
            }
        }
    }
    Ok(())
}

async fn f13(stack: &Stack, ctl: &StackCtl) -> Result<Verdict, FaultError> {
    let run = Run::start(stack, "F13", RigOptions::default()).await?;
    let registry = ctl.pid("registry")?;
    crate::procs::signal_pid(registry, "STOP")?;
    let paused = Instant::now();
    let result = async {
        let mut rig = run.rig;
        // Cold starts while the registry is paused: no schema id cached anywhere.
        tokio::time::sleep(Duration::from_secs(3)).await;
        rig.relays[0].kill9().await?;
        rig.relays[0].restart()?;
        rig.projectors[0].kill9().await?;
        rig.projectors[0].restart()?;
        tokio::time::sleep(Duration::from_secs(20).saturating_sub(paused.elapsed())).await;
        Ok::<_, FaultError>(rig)
    }
    .await;
    crate::procs::signal_pid(registry, "CONT")?;
    let rig = result?;
    let healed = Instant::now();
    let run = Run {
        rig,
        load: run.load,
        answers: run.answers,
    };
    let (mut v, rig) = run.finish("F13", healed, PROCESS_BOUND, Vec::new()).await?;
    v.check(
        v.parked == 0,
        format!("{} parked while the registry was paused", v.parked),
    );
    rig.finish(&mut v).await?;
    Ok(v)
}

async fn f14(stack: &Stack, ctl: &StackCtl) -> Result<Verdict, FaultError> {
    let run = Run::start(stack, "F14", RigOptions::default()).await?;
    ctl.script("neo4j", &["stop"]).await?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    ctl.script("neo4j", &["start"]).await?;
    let healed = Instant::now();
    let (mut v, rig) = run.finish("F14", healed, SERVER_BOUND, Vec::new()).await?;
    v.check(
        v.parked == 0,
        format!("{} parked while Neo4j was down", v.parked),
    );
    rig.finish(&mut v).await?;
    Ok(v)
}

async fn f15(stack: &Stack) -> Result<Verdict, FaultError> {
    let run = Run::start(stack, "F15", RigOptions::default()).await?;
    let http = eventfold_tests::auth::operator();
    let url = run.rig.command.url.clone();
    let mut extra = Vec::new();
    let mut wrong = 0;
    let pairs = 100;
    for i in 0..pairs {
        let id = format!("race-{i}-{}", Uuid::new_v4().simple());
        let create = post(
            &http,
            &url,
            &id,
            "CreateOpportunity",
            None,
            serde_json::json!({
            "opportunity_id": id, "title": "race", "ai_solution_type": "nlp",
            "market_size_estimate": 10}),
        )
        .await?;
        extra.extend(create.0);
        let a = post(
            &http,
            &url,
            &id,
            "UpdateOpportunity",
            Some(1),
            serde_json::json!({"market_size_estimate": 11}),
        );
        let b = post(
            &http,
            &url,
            &id,
            "UpdateOpportunity",
            Some(1),
            serde_json::json!({"market_size_estimate": 12}),
        );
        let (a, b) = tokio::join!(a, b);
        let (a, b) = (a?, b?);
        let winners = [&a, &b].iter().filter(|r| r.0.is_some()).count();
        let conflicts = [&a, &b]
            .iter()
            .filter(|r| r.1 == 409 && r.2.get("current_version").and_then(Value::as_i64) == Some(2))
            .count();
        if winners != 1 || conflicts != 1 {
            wrong += 1;
        }
        extra.extend(a.0);
        extra.extend(b.0);
    }
    let healed = Instant::now();
    let (mut v, rig) = run.finish("F15", healed, PROCESS_BOUND, extra).await?;
    v.notes.push(format!(
        "{pairs} races, {wrong} without exactly one winner and one 409"
    ));
    v.check(
        wrong == 0,
        format!("{wrong} of {pairs} races without exactly one winner"),
    );
    rig.finish(&mut v).await?;
    Ok(v)
}

/// Posts one command; the ack if 2xx, the status and the answer.
async fn post(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    command: &str,
    expected: Option<i64>,
    body: Value,
) -> Result<(Option<Ack>, u16, Value), FaultError> {
    let command_id = Uuid::new_v4();
    let mut req = http
        .post(format!("{url}/v1/Opportunity/{id}/commands/{command}"))
        .header("Idempotency-Key", command_id.to_string())
        .json(&body);
    if let Some(v) = expected {
        req = req.query(&[("expected_version", v)]);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    let answer: Value = r.json().await?;
    let ack = (200..300)
        .contains(&status)
        .then(|| parse_ack(command_id, "Opportunity", id, &answer))
        .flatten();
    Ok((ack, status, answer))
}
