//! The one verdict every fault ends with (RELIABILITY.md C1-C5), over everything acknowledged:
//! C5 first (time from heal until nothing is left to publish or apply), then C4 (every 2xx command's
//! events are in `events`, none twice), C3 (versions 1..n per aggregate in the store; per key in
//! Kafka no version before its predecessor), C1 (every stored event is in Kafka and reflected in
//! every read model of its aggregate type) and C2 (each read model equals a from-scratch replay:
//! `eventfold audit`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use eventfold_kafka::{Envelope, KafkaSettings};
use eventfold_runtime::Shutdown;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::Row;
use uuid::Uuid;

use crate::FaultError;
use crate::load::Ack;
use crate::rig::Rig;
use projector::target::AggregateKey;

/// One row of the table.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Fault name, e.g. `F1`.
    pub fault: String,
    /// Commands answered 2xx.
    pub acked: usize,
    /// Events in the store, each checked in Kafka and the read models.
    pub events: i64,
    /// Acknowledged commands missing from the store, stored events missing from Kafka, or not
    /// reflected in a read model.
    pub lost: i64,
    /// Commands appended twice, and read-model rows that differ from a from-scratch replay.
    pub duplicated: i64,
    /// Version gaps in the store, versions out of order in Kafka, applied versions that differ.
    pub order: i64,
    /// Records of an event in Kafka beyond the first (at-least-once re-sends; allowed).
    pub topic_dups: i64,
    /// Parked events and parked outbox rows.
    pub parked: i64,
    /// Seconds from heal to lag 0; `None` when lag 0 was not reached.
    pub recovery: Option<f64>,
    /// The bound on `recovery`, seconds.
    pub bound: f64,
    /// Fault-specific checks that failed (empty = passed).
    pub failures: Vec<String>,
    /// Fault-specific measurements worth printing.
    pub notes: Vec<String>,
}

impl Verdict {
    /// A row for a fault that could not run to its verdict.
    pub fn broken(fault: &str, why: String) -> Self {
        Self {
            fault: fault.into(),
            failures: vec![why],
            ..Self::default()
        }
    }

    /// True when nothing was lost, duplicated or reordered, recovery was within its bound and
    /// every fault-specific check held.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.order == 0
            && self.recovery.is_some_and(|r| r <= self.bound)
            && self.failures.is_empty()
    }

    /// Records a fault-specific check.
    pub fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }
}

/// Waits for lag 0 (measuring C5 from `healed`), then runs C4, C3, C1 and C2 over `acks`.
pub async fn verdict(
    rig: &Rig,
    fault: &str,
    acks: &[Ack],
    healed: Instant,
    bound: Duration,
) -> Result<Verdict, FaultError> {
    let mut v = Verdict {
        fault: fault.into(),
        acked: acks.len(),
        bound: bound.as_secs_f64(),
        ..Verdict::default()
    };
    let give_up = healed + bound + Duration::from_secs(60);
    loop {
        let lag = lag(rig).await?;
        if lag == 0 {
            v.recovery = Some(healed.elapsed().as_secs_f64());
            break;
        }
        if Instant::now() >= give_up {
            v.failures
                .push(format!("lag still {lag} {:?} after heal", healed.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let admin = &rig.pipeline.db.admin;

    // C4: acknowledged = durable, and appended once.
    let ids: Vec<Uuid> = acks.iter().map(|a| a.command_id).collect();
    let mut stored: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for r in sqlx::query("SELECT command_id, event_id FROM events WHERE command_id = ANY($1)")
        .bind(&ids)
        .fetch_all(admin)
        .await?
    {
        stored.entry(r.get(0)).or_default().push(r.get(1));
    }
    for a in acks {
        let got: HashSet<&Uuid> = stored.get(&a.command_id).into_iter().flatten().collect();
        let want: HashSet<&Uuid> = a.event_ids.iter().collect();
        let n = stored.get(&a.command_id).map_or(0, Vec::len);
        v.lost += want.difference(&got).count() as i64;
        v.duplicated += n.saturating_sub(want.len()) as i64;
    }

    // C3 in the store: versions 1..n per aggregate.
    v.events = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(admin)
        .await?;
    let gaps: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT count(*) AS n, min(version) AS lo, max(version) AS hi \
         FROM events GROUP BY aggregate_type, aggregate_id) a WHERE n <> hi OR lo <> 1",
    )
    .fetch_one(admin)
    .await?;
    v.order += gaps;

    // C1 and C3 in Kafka.
    let store_events: Vec<(Uuid, String)> =
        sqlx::query("SELECT event_id, aggregate_type FROM events")
            .fetch_all(admin)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    let types: HashSet<String> = store_events.iter().map(|(_, t)| t.clone()).collect();
    let topics: Vec<String> = types
        .iter()
        .map(|t| format!("{}{t}", rig.pipeline.db.prefix))
        .collect();
    let kafka = rig.pipeline.stack.kafka.clone();
    let records = tokio::task::spawn_blocking(move || scan(&kafka, &topics))
        .await
        .map_err(|e| FaultError::Setup(format!("kafka scan task: {e}")))??;
    let (topic_dups, kafka_order) = kafka_checks(&records);
    v.topic_dups = topic_dups;
    v.order += kafka_order;
    let in_kafka: HashSet<&str> = records.iter().map(|r| r.event_id.as_str()).collect();
    v.lost += store_events
        .iter()
        .filter(|(e, _)| !in_kafka.contains(e.to_string().as_str()))
        .count() as i64;

    // C1 in the read models, and C2.
    let maxima = store_maxima(rig).await?;
    let stores = rig.pipeline.stores();
    for p in projector::models::registry().all() {
        let state = projector::state::ensure(&stores.pool, &**p).await?;
        let live = projector::state::target(&**p, state.generation, &stores);
        let applied = live.versions().await?;
        for (key, max) in &maxima {
            if !p.aggregate_types().contains(&key.aggregate_type.as_str()) {
                continue;
            }
            let got = applied.get(key).copied().unwrap_or(0);
            if got < *max {
                v.lost += max - got;
            } else if got > *max {
                v.order += 1;
            }
        }
        let report =
            projector::rebuild::audit(p, &stores, None, Duration::from_secs(10), &Shutdown::new())
                .await?;
        v.duplicated += (report.missing_count + report.unexpected_count) as i64;
        v.order += report.version_mismatch_count as i64;
        if !report.is_clean() {
            v.notes.push(format!(
                "audit {}: missing {:?} unexpected {:?} versions {:?}",
                report.read_model,
                report.missing.iter().take(3).collect::<Vec<_>>(),
                report.unexpected.iter().take(3).collect::<Vec<_>>(),
                report.version_mismatches.iter().take(3).collect::<Vec<_>>()
            ));
        }
    }
    v.parked = parked(rig).await?;
    Ok(v)
}

/// Everything not yet published or applied: outbox rows plus, per read model, the events of each
/// aggregate not yet applied (aggregates held back by a parked event excluded: they wait for a
/// replay, not for time).
pub async fn lag(rig: &Rig) -> Result<i64, FaultError> {
    let admin = &rig.pipeline.db.admin;
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(admin)
        .await?;
    let maxima = store_maxima(rig).await?;
    let stores = rig.pipeline.stores();
    let mut behind = 0;
    for p in projector::models::registry().all() {
        let parked: HashSet<AggregateKey> = sqlx::query(
            "SELECT DISTINCT tenant, aggregate_type, aggregate_id FROM parked_events \
             WHERE read_model = $1 AND aggregate_id IS NOT NULL",
        )
        .bind(p.name())
        .fetch_all(admin)
        .await?
        .into_iter()
        .map(|r| {
            AggregateKey::new(
                r.get::<String, _>(0),
                r.get::<String, _>(1),
                r.get::<String, _>(2),
            )
        })
        .collect();
        let state = projector::state::ensure(&stores.pool, &**p).await?;
        let live = projector::state::target(&**p, state.generation, &stores);
        let applied = live.versions().await?;
        for (key, max) in &maxima {
            if p.aggregate_types().contains(&key.aggregate_type.as_str()) && !parked.contains(key) {
                behind += (max - applied.get(key).copied().unwrap_or(0)).max(0);
            }
        }
    }
    Ok(outbox + behind)
}

async fn store_maxima(rig: &Rig) -> Result<HashMap<AggregateKey, i64>, FaultError> {
    Ok(sqlx::query(
        "SELECT tenant, aggregate_type, aggregate_id, max(version) FROM events GROUP BY 1, 2, 3",
    )
    .fetch_all(&rig.pipeline.db.admin)
    .await?
    .into_iter()
    .map(|r| {
        let key = AggregateKey::new(
            r.get::<String, _>(0),
            r.get::<String, _>(1),
            r.get::<String, _>(2),
        );
        (key, r.get(3))
    })
    .collect())
}

/// Parked events of every read model plus parked outbox rows.
pub async fn parked(rig: &Rig) -> Result<i64, FaultError> {
    let admin = &rig.pipeline.db.admin;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM parked_events")
        .fetch_one(admin)
        .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_parked")
        .fetch_one(admin)
        .await?;
    Ok(events + rows)
}

/// One record of an event topic.
#[derive(Debug, Clone)]
pub struct Record {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key (the aggregate id).
    pub key: String,
    /// `event_id` header.
    pub event_id: String,
    /// `aggregate_version` header.
    pub version: i64,
}

/// Every record of `topics` from the beginning up to the high watermark each partition had when
/// the read started; fails after `within`.
pub fn read_to_end(
    kafka: &KafkaSettings,
    topics: &[String],
    within: Duration,
) -> Result<Vec<OwnedMessage>, FaultError> {
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", format!("fault-read-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
                if high > low {
                    assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
                    ends.insert((topic.clone(), p.id()), high);
                }
            }
        }
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&assignment)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + within;
    while !ends.is_empty() {
        if Instant::now() >= deadline {
            return Err(FaultError::Setup(format!(
                "partitions not read to their end in {within:?}: {ends:?}"
            )));
        }
        let Some(next) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = next?;
        let part = (m.topic().to_owned(), m.partition());
        if ends.get(&part).is_some_and(|end| m.offset() + 1 >= *end) {
            ends.remove(&part);
        }
        out.push(m.detach());
    }
    Ok(out)
}

/// The event records of `topics` (see [`read_to_end`]), each with its envelope's id and version.
pub fn scan(kafka: &KafkaSettings, topics: &[String]) -> Result<Vec<Record>, FaultError> {
    read_to_end(kafka, topics, Duration::from_secs(180))?
        .into_iter()
        .map(|m| {
            let envelope = m
                .headers()
                .ok_or_else(|| FaultError::Setup("a record without headers".into()))
                .and_then(|h| {
                    Envelope::from_headers(h).map_err(|e| FaultError::Setup(e.to_string()))
                })?;
            Ok(Record {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                offset: m.offset(),
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                event_id: envelope.event_id,
                version: envelope.aggregate_version,
            })
        })
        .collect()
}

/// Re-sent records (allowed) and order violations: per key, in log order, a version that arrives
/// before its predecessor ever did.
pub fn kafka_checks(records: &[Record]) -> (i64, i64) {
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted
        .sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    let mut max: HashMap<(&str, &str), i64> = HashMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let (mut dups, mut order) = (0, 0);
    for r in sorted {
        if !seen.insert(r.event_id.as_str()) {
            dups += 1;
        }
        let m = max.entry((r.topic.as_str(), r.key.as_str())).or_insert(0);
        if r.version > *m + 1 {
            order += 1;
        }
        *m = (*m).max(r.version);
    }
    (dups, order)
}

#[cfg(test)]
mod tests {
    use super::{Record, kafka_checks};

    fn rec(offset: i64, key: &str, version: i64) -> Record {
        Record {
            topic: "t".into(),
            partition: 0,
            offset,
            key: key.into(),
            event_id: format!("{key}-{version}"),
            version,
        }
    }

    #[test]
    fn a_re_sent_tail_is_a_duplicate_and_a_skipped_version_is_an_order_violation() {
        let resent = [
            rec(0, "a", 1),
            rec(1, "a", 2),
            rec(2, "a", 1),
            rec(3, "a", 2),
            rec(4, "a", 3),
        ];
        assert_eq!(kafka_checks(&resent), (2, 0));
        let skipped = [rec(0, "b", 1), rec(1, "b", 3), rec(2, "b", 2)];
        assert_eq!(kafka_checks(&skipped), (0, 1));
    }
}
