//! F12: every poison kind end to end. Raw records are produced straight into the read models'
//! topics, keyed by aggregates of the running load, so that the later events of those aggregates
//! must park behind them: a bad magic byte, an unknown schema id, a truncated body, a writer
//! schema the projector cannot read, and an event the handler refuses. Before the fix: each is
//! parked with its aggregate's later events, the dead-letter topics hold exactly the parked rows
//! (by `dlt_parked_id`) and every other aggregate is caught up. The fix is a replay of the parked
//! aggregates from the event store; then the shared verdict holds for all.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventfold_avro::{AvroCodec, Catalog, RegistryClient, subject_for};
use eventfold_kafka::{Envelope, KafkaSettings};
use eventfold_runtime::Shutdown;
use rdkafka::Message;
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::Row;
use uuid::Uuid;

use super::{AFTERMATH, PROCESS_BOUND, Run};
use crate::FaultError;
use crate::rig::{Rig, RigOptions};
use crate::verdict::{Verdict, lag, verdict};
use projector::target::AggregateKey;

/// The poison kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    BadMagic,
    UnknownSchemaId,
    Truncated,
    Incompatible,
    Refusal,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::BadMagic => "bad magic byte",
            Self::UnknownSchemaId => "unknown schema id",
            Self::Truncated => "truncated body",
            Self::Incompatible => "incompatible writer schema",
            Self::Refusal => "handler refusal",
        }
    }

    /// The `parked_events.reason` the projector must give it.
    fn reason(self) -> &'static str {
        match self {
            Self::Refusal => "refused",
            _ => "undecodable",
        }
    }
}

/// One injected record.
#[derive(Debug, Clone)]
struct Injected {
    kind: Kind,
    aggregate_type: String,
    aggregate_id: String,
    event_id: String,
    /// Where it landed: the partition of its aggregate, and its offset there.
    partition: i32,
    offset: i64,
}

/// An aggregate to poison: id, the envelope and value of its last record, and its partition.
type Cand = (String, Envelope, Vec<u8>, i32);

/// The last record of a key: envelope, value, partition.
type Last = (Envelope, Vec<u8>, i32);

/// The aggregate types the load drives, each with a topic.
const TYPES: [&str; 2] = ["CrossReference", "Opportunity"];
/// A schema id no registry hands out in a test (ids count up from 1).
const UNKNOWN_ID: u32 = 2_000_000_000;

pub(super) async fn f12(stack: &eventfold_tests::Stack) -> Result<Verdict, FaultError> {
    let run = Run::start(stack, "F12", RigOptions::default()).await?;
    let rig = &run.rig;
    let prefix = rig.pipeline.db.prefix.clone();
    let producer: FutureProducer = stack.kafka.client_config().create()?;
    let http = eventfold_tests::auth::operator();
    let incompatible = HashMap::from([
        (
            "CrossReference",
            register_incompatible(
                &http,
                &stack.registry.url,
                &format!("{prefix}faults-incompatible-xref"),
                "eventfold.biblos",
                "CrossReferenceValidated",
                "validation_result",
            )
            .await?,
        ),
        (
            "Opportunity",
            register_incompatible(
                &http,
                &stack.registry.url,
                &format!("{prefix}faults-incompatible-opportunity"),
                "eventfold.opportunity",
                "OpportunityUpdated",
                "market_size_estimate",
            )
            .await?,
        ),
    ]);
    let settings = stack
        .registry
        .converter_settings()
        .map_err(|e| FaultError::Setup(e.to_string()))?;
    let catalog = Catalog::embedded().map_err(|e| FaultError::Setup(e.to_string()))?;
    let codec = AvroCodec::new(settings, Arc::new(catalog));

    let mut injected: Vec<Injected> = Vec::new();
    let mut used: HashSet<String> = HashSet::new();
    let mut notes = Vec::new();
    // The four undecodable kinds on both topics: each claims the version its aggregate has
    // applied, so it parks no matter how far the aggregate's own events have got.
    for t in TYPES {
        let topic = format!("{prefix}{t}");
        // Enough aggregates past version 1 in Kafka (the load may still be warming up).
        let mut pool = waiting(rig, t, &used, 4, false).await?;
        for kind in [
            Kind::BadMagic,
            Kind::UnknownSchemaId,
            Kind::Truncated,
            Kind::Incompatible,
        ] {
            let (id, mut env, value, partition) = pool.pop().ok_or_else(|| {
                FaultError::Setup(format!("no settled {t} aggregate left to poison"))
            })?;
            used.insert(id.clone());
            let value = match kind {
                Kind::BadMagic => {
                    let mut v = value;
                    v[0] = 0x2a;
                    v
                }
                Kind::UnknownSchemaId => with_schema_id(&value, UNKNOWN_ID),
                Kind::Truncated => value[..5 + (value.len() - 5) / 2].to_vec(),
                Kind::Incompatible => with_schema_id(&value, incompatible[t]),
                Kind::Refusal => unreachable!("injected below"),
            };
            env.event_id = Uuid::new_v4().to_string();
            let offset = send(&producer, &topic, partition, &id, &env, &value).await?;
            injected.push(Injected {
                kind,
                aggregate_type: t.into(),
                aggregate_id: id,
                event_id: env.event_id.clone(),
                partition,
                offset,
            });
        }
    }
    // The refusal: a well-formed record of an event type the CrossReference handler does not
    // know (an Opportunity event on its topic). It must claim the next version to reach the
    // handler; if the aggregate's own next event got there first it is skipped, so try another.
    let topic = format!("{prefix}CrossReference");
    // Its subject (an Opportunity record on the CrossReference topic) is none that `eventfold
    // schemas register` makes, and the codec only looks ids up: register it for the poison.
    let archived = codec
        .catalog()
        .get("OpportunityArchived", 1)
        .ok_or_else(|| FaultError::Setup("no OpportunityArchived v1 schema".into()))?;
    RegistryClient::new(stack.registry.clone())
        .register(&subject_for(&topic, &archived.fullname), &archived.text)
        .await
        .map_err(|e| FaultError::Setup(format!("registering the refused record's schema: {e}")))?;
    let value = codec
        .encode(
            &topic,
            "OpportunityArchived",
            1,
            &serde_json::json!({"reason": "poison: not a CrossReference event"}),
        )
        .await
        .map_err(|e| FaultError::Setup(format!("encoding the refused record: {e}")))?;
    let mut refused = false;
    for attempt in 1..=5 {
        let mut pool = settled(rig, "CrossReference", &used, 1).await?;
        let (id, mut env, _, partition) = pool
            .pop()
            .ok_or_else(|| FaultError::Setup("no settled CrossReference aggregate left".into()))?;
        used.insert(id.clone());
        let base = env.aggregate_version;
        env.event_id = Uuid::new_v4().to_string();
        env.event_type = "OpportunityArchived".into();
        env.schema_version = 1;
        env.aggregate_version = base + 1;
        let offset = send(&producer, &topic, partition, &id, &env, &value).await?;
        match refusal_outcome(rig, &id, &env.event_id, base).await? {
            true => {
                notes.push(format!("refusal parked on attempt {attempt}"));
                injected.push(Injected {
                    kind: Kind::Refusal,
                    aggregate_type: "CrossReference".into(),
                    aggregate_id: id,
                    event_id: env.event_id.clone(),
                    partition,
                    offset,
                });
                refused = true;
                break;
            }
            false => notes.push(format!(
                "refusal attempt {attempt} on {id} lost the race to its own next event"
            )),
        }
    }

    // The load goes on: the poisoned aggregates' next events must park behind the poison.
    tokio::time::sleep(Duration::from_secs(6)).await;
    tokio::time::sleep(AFTERMATH).await;
    let acks = run.load.stop().await;
    let answers = run.answers.clone();
    let rig = run.rig;

    // Everything else flows: lag 0 with the poisoned aggregates held back.
    let stopped = Instant::now();
    let mut failures = Vec::new();
    loop {
        if lag(&rig).await? == 0 {
            notes.push(format!(
                "other aggregates caught up {:.1} s after the load stopped",
                stopped.elapsed().as_secs_f64()
            ));
            break;
        }
        if stopped.elapsed() > Duration::from_secs(60) {
            failures.push("the unpoisoned aggregates did not catch up within 60 s".to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (parked_ok, behind, parked_total) = check_parked(&rig, &injected, &mut failures).await?;
    notes.push(format!(
        "{} poison records parked as expected ({} kinds), {behind} later events parked behind them, {parked_total} parked rows in all",
        parked_ok,
        injected
            .iter()
            .map(|i| i.kind.name())
            .collect::<BTreeSet<_>>()
            .len()
    ));
    if behind == 0 {
        failures.push("no later event was parked behind a poison record".into());
    }
    if !refused {
        failures.push("the refusal never reached the handler in 5 attempts".into());
    }
    let dlt = check_dead_letters(&rig, &mut failures).await?;
    notes.push(dlt);

    // The fix: replay the parked aggregates from the event store.
    let fixed = Instant::now();
    let stores = rig.pipeline.stores();
    let mut replayed = 0;
    for p in projector::models::registry().all() {
        let reports = projector::rebuild::replay_parked(p, &stores, None, &Shutdown::new()).await?;
        for r in reports {
            replayed += r.applied;
            if let Some(e) = r.error {
                failures.push(format!(
                    "replay of {} {} {}: {e}",
                    p.name(),
                    r.aggregate_type,
                    r.aggregate_id
                ));
            }
        }
    }
    let mut v = verdict(&rig, "F12", &acks, fixed, PROCESS_BOUND).await?;
    v.notes.append(&mut notes);
    v.notes
        .push(format!("replay applied {replayed} events from the store"));
    v.failures.append(&mut failures);
    v.check(
        v.parked == 0,
        format!("{} rows still parked after the replay", v.parked),
    );
    let unexpected = answers
        .unexpected
        .load(std::sync::atomic::Ordering::Relaxed);
    v.check(
        unexpected == 0,
        format!("{unexpected} unexpected answers to the load"),
    );
    rig.finish(&mut v).await?;
    Ok(v)
}

/// [`candidates`], waiting up to 30 s for at least `n` of them (a read model just started may
/// still be catching up).
async fn settled(
    rig: &Rig,
    aggregate_type: &str,
    used: &HashSet<String>,
    n: usize,
) -> Result<Vec<Cand>, FaultError> {
    waiting(rig, aggregate_type, used, n, true).await
}

/// [`candidates`] (settled or not), waiting up to 30 s for at least `n` of them.
async fn waiting(
    rig: &Rig,
    aggregate_type: &str,
    used: &HashSet<String>,
    n: usize,
    settled: bool,
) -> Result<Vec<Cand>, FaultError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = candidates(rig, aggregate_type, used, settled).await?;
        if found.len() >= n || Instant::now() >= deadline {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Aggregates of `aggregate_type` at version 2 or more (created, then changed) with their last
/// record in Kafka; when `settled`, only those whose last record is their last stored event and
/// is applied by every read model of the type. The caller pops from the end.
async fn candidates(
    rig: &Rig,
    aggregate_type: &str,
    used: &HashSet<String>,
    settled: bool,
) -> Result<Vec<Cand>, FaultError> {
    let topic = format!("{}{aggregate_type}", rig.pipeline.db.prefix);
    let kafka = rig.pipeline.stack.kafka.clone();
    let records = tokio::task::spawn_blocking(move || last_records(&kafka, &topic))
        .await
        .map_err(|e| FaultError::Setup(format!("kafka scan task: {e}")))??;
    let maxima: HashMap<String, i64> = sqlx::query(
        "SELECT aggregate_id, max(version) FROM events WHERE aggregate_type = $1 GROUP BY 1",
    )
    .bind(aggregate_type)
    .fetch_all(&rig.pipeline.db.admin)
    .await?
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let applied = applied_versions(rig, aggregate_type).await?;
    let mut out: Vec<Cand> = records
        .into_iter()
        .filter(|(id, (env, _, _))| {
            let v = env.aggregate_version;
            !used.contains(id)
                && v >= 2
                && (!settled
                    || maxima.get(id) == Some(&v)
                        && applied.iter().all(|m| {
                            m.get(&AggregateKey::new(&env.tenant, aggregate_type, id)) == Some(&v)
                        }))
        })
        .map(|(id, (env, value, partition))| (id, env, value, partition))
        .collect();
    fastrand::shuffle(&mut out);
    Ok(out)
}

/// The applied versions of every read model that reads `aggregate_type`.
async fn applied_versions(
    rig: &Rig,
    aggregate_type: &str,
) -> Result<Vec<HashMap<AggregateKey, i64>>, FaultError> {
    let stores = rig.pipeline.stores();
    let mut out = Vec::new();
    for p in projector::models::registry().all() {
        if !p.aggregate_types().contains(&aggregate_type) {
            continue;
        }
        let state = projector::state::ensure(&stores.pool, &**p).await?;
        let live = projector::state::target(&**p, state.generation, &stores);
        out.push(live.versions().await?);
    }
    Ok(out)
}

/// The last record of each key in `topic` (read from the start to the current end), with its
/// envelope and value.
fn last_records(kafka: &KafkaSettings, topic: &str) -> Result<HashMap<String, Last>, FaultError> {
    let mut out = HashMap::new();
    for m in read_topic(kafka, topic)? {
        let (Some(h), Some(key), Some(value)) = (m.headers(), m.key(), m.payload()) else {
            continue;
        };
        let Ok(env) = Envelope::from_headers(h) else {
            continue;
        };
        if value.len() > 5 && value[0] == 0 {
            out.insert(
                String::from_utf8_lossy(key).into_owned(),
                (env, value.to_vec(), m.partition()),
            );
        }
    }
    Ok(out)
}

/// Every record of `topic` from its start up to the end each partition had when the read began.
fn read_topic(
    kafka: &KafkaSettings,
    topic: &str,
) -> Result<Vec<rdkafka::message::OwnedMessage>, FaultError> {
    crate::verdict::read_to_end(kafka, &[topic.to_owned()], Duration::from_secs(60))
}

/// `value` with its 4-byte schema id replaced.
fn with_schema_id(value: &[u8], id: u32) -> Vec<u8> {
    let mut v = value.to_vec();
    v[1..5].copy_from_slice(&id.to_be_bytes());
    v
}

async fn send(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    key: &str,
    env: &Envelope,
    value: &[u8],
) -> Result<i64, FaultError> {
    let delivery = producer
        .send(
            // The partition of the aggregate's own records: the relay's partitioner, not ours.
            FutureRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(value)
                .headers(env.to_headers()),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(delivery.offset)
}

/// Registers, under a subject of its own, a writer schema with the full name of a real event
/// and one field of the wrong type: the registry serves it, the projector cannot read it.
async fn register_incompatible(
    http: &reqwest::Client,
    registry: &str,
    subject: &str,
    namespace: &str,
    name: &str,
    field: &str,
) -> Result<u32, FaultError> {
    let schema = serde_json::json!({
        "type": "record", "name": name, "namespace": namespace,
        "fields": [{"name": field, "type": "boolean"}]
    });
    let r = http
        .post(format!("{registry}/subjects/{subject}/versions"))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({"schema": schema.to_string()}))
        .send()
        .await?;
    let status = r.status();
    let body: serde_json::Value = r.json().await?;
    body.get("id")
        .and_then(serde_json::Value::as_u64)
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| {
            FaultError::Setup(format!(
                "registering the incompatible schema: {status} {body}"
            ))
        })
}

/// Waits until the refusal record `event_id` is parked (true) or the aggregate moved past
/// `base` without it (false: its own next event was applied first and the record skipped).
async fn refusal_outcome(
    rig: &Rig,
    id: &str,
    event_id: &str,
    base: i64,
) -> Result<bool, FaultError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let key = AggregateKey::new("default", "CrossReference", id);
    loop {
        let parked: Option<String> =
            sqlx::query_scalar("SELECT reason FROM parked_events WHERE event_id = $1 LIMIT 1")
                .bind(event_id)
                .fetch_optional(&rig.pipeline.db.admin)
                .await?;
        if parked.is_some() {
            return Ok(true);
        }
        let applied = applied_versions(rig, "CrossReference").await?;
        if applied
            .iter()
            .any(|m| m.get(&key).is_some_and(|v| *v > base))
        {
            return Ok(false);
        }
        if Instant::now() >= deadline {
            return Err(FaultError::Setup(format!(
                "the refused record on {id} was neither parked nor passed in 60 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Per poison record and read model of its type: parked with the right reason, nothing of its
/// aggregate applied past it, every later stored event of the aggregate parked. Returns the
/// poison rows found, the rows parked behind them, and all parked rows.
async fn check_parked(
    rig: &Rig,
    injected: &[Injected],
    failures: &mut Vec<String>,
) -> Result<(usize, usize, usize), FaultError> {
    let admin = &rig.pipeline.db.admin;
    let rows = sqlx::query(
        "SELECT read_model, aggregate_type, aggregate_id, version, reason, event_id, error \
         FROM parked_events",
    )
    .fetch_all(admin)
    .await?;
    type Row5 = (
        String,
        Option<String>,
        Option<String>,
        Option<i64>,
        String,
        Option<String>,
        String,
    );
    let rows: Vec<Row5> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect();
    // Per poison, the aggregate's last version in Kafka before it: what may be applied.
    let mut topics: HashMap<String, Vec<rdkafka::message::OwnedMessage>> = HashMap::new();
    let (mut found, mut behind) = (0, 0);
    for i in injected {
        if !topics.contains_key(&i.aggregate_type) {
            let kafka = rig.pipeline.stack.kafka.clone();
            let topic = format!("{}{}", rig.pipeline.db.prefix, i.aggregate_type);
            let records = tokio::task::spawn_blocking(move || read_topic(&kafka, &topic))
                .await
                .map_err(|e| FaultError::Setup(format!("kafka scan task: {e}")))??;
            topics.insert(i.aggregate_type.clone(), records);
        }
        let base = topics[&i.aggregate_type]
            .iter()
            .filter(|m| {
                m.partition() == i.partition
                    && m.offset() < i.offset
                    && m.key() == Some(i.aggregate_id.as_bytes())
            })
            .filter_map(|m| Envelope::from_headers(m.headers()?).ok())
            .map(|e| e.aggregate_version)
            .max()
            .unwrap_or(0);
        let max: i64 = sqlx::query_scalar(
            "SELECT max(version) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(&i.aggregate_type)
        .bind(&i.aggregate_id)
        .fetch_one(admin)
        .await?;
        let key = AggregateKey::new("default", &i.aggregate_type, &i.aggregate_id);
        let stores = rig.pipeline.stores();
        for p in projector::models::registry().all() {
            if !p.aggregate_types().contains(&i.aggregate_type.as_str()) {
                continue;
            }
            let rm = p.name();
            let own = rows.iter().find(|r| {
                r.0 == rm && r.5.as_deref() == Some(i.event_id.as_str()) && r.4 == i.kind.reason()
            });
            match own {
                Some(r) => {
                    found += 1;
                    tracing_note(i, rm, &r.6);
                }
                None => failures.push(format!(
                    "{} on {} {}: not parked as {} in {rm}",
                    i.kind.name(),
                    i.aggregate_type,
                    i.aggregate_id,
                    i.kind.reason()
                )),
            }
            let state = projector::state::ensure(&stores.pool, &**p).await?;
            let live = projector::state::target(&**p, state.generation, &stores);
            let applied = live.versions().await?.get(&key).copied().unwrap_or(0);
            if applied > base {
                failures.push(format!(
                    "{rm} applied {} {} up to v{applied}, past the poison after v{base}",
                    i.aggregate_type, i.aggregate_id
                ));
            }
            let parked: HashSet<i64> = rows
                .iter()
                .filter(|r| {
                    r.0 == rm
                        && r.1.as_deref() == Some(&*i.aggregate_type)
                        && r.2.as_deref() == Some(&*i.aggregate_id)
                })
                .filter_map(|r| r.3)
                .collect();
            behind += rows
                .iter()
                .filter(|r| {
                    r.0 == rm && r.2.as_deref() == Some(&*i.aggregate_id) && r.4 == "behind_parked"
                })
                .count();
            let missing: Vec<i64> = (applied + 1..=max)
                .filter(|v| !parked.contains(v))
                .collect();
            if !missing.is_empty() {
                failures.push(format!(
                    "{rm}: versions {missing:?} of {} {} neither applied nor parked",
                    i.aggregate_type, i.aggregate_id
                ));
            }
        }
    }
    Ok((found, behind, rows.len()))
}

/// The error a poison was parked with, on stderr while the fault runs (the table stays short).
fn tracing_note(i: &Injected, rm: &str, error: &str) {
    eprintln!(
        "    F12 {} on {} {}: parked in {rm}: {}",
        i.kind.name(),
        i.aggregate_type,
        i.aggregate_id,
        error.chars().take(160).collect::<String>()
    );
}

/// Every read model's dead-letter topic holds one record per parked row, matched by the
/// `dlt_parked_id` header (copies are sent until acknowledged: waits up to 30 s for them).
async fn check_dead_letters(rig: &Rig, failures: &mut Vec<String>) -> Result<String, FaultError> {
    let admin = &rig.pipeline.db.admin;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut summary = Vec::new();
    for p in projector::models::registry().all() {
        let rm = p.name();
        let parked: BTreeSet<i64> =
            sqlx::query_scalar("SELECT id FROM parked_events WHERE read_model = $1")
                .bind(rm)
                .fetch_all(admin)
                .await?
                .into_iter()
                .collect();
        if parked.is_empty() {
            continue;
        }
        let topic = projector::parking::dlt_topic(&rig.pipeline.db.prefix, rm);
        loop {
            let kafka = rig.pipeline.stack.kafka.clone();
            let t = topic.clone();
            let records = tokio::task::spawn_blocking(move || read_topic(&kafka, &t))
                .await
                .map_err(|e| FaultError::Setup(format!("kafka scan task: {e}")))??;
            let ids: Vec<i64> = records
                .iter()
                .filter_map(|m| {
                    let h = m.headers()?;
                    h.iter()
                        .find(|x| x.key == "dlt_parked_id")
                        .and_then(|x| std::str::from_utf8(x.value?).ok()?.parse().ok())
                })
                .collect();
            let distinct: BTreeSet<i64> = ids.iter().copied().collect();
            if distinct == parked {
                summary.push(format!(
                    "{rm}: {} dead letters = {} parked rows ({} re-sent)",
                    distinct.len(),
                    parked.len(),
                    ids.len() - distinct.len()
                ));
                break;
            }
            if Instant::now() >= deadline {
                let missing: Vec<_> = parked.difference(&distinct).take(5).collect();
                let extra: Vec<_> = distinct.difference(&parked).take(5).collect();
                failures.push(format!(
                    "{rm}: {} dead letters vs {} parked rows (missing {missing:?}, extra {extra:?})",
                    distinct.len(),
                    parked.len()
                ));
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(format!("DLT: {}", summary.join("; ")))
}
