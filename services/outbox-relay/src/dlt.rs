//! Dead-letter copies of parked outbox rows. The statement that parks a row also queues its copy in
//! `outbox_dlt` (see [`crate::outbox::park`]); this task sends the queued copies of the owned shards
//! to the dead-letter topic `<prefix>dlt.relay` with an idempotent producer (acks from all in-sync
//! replicas) and deletes a queued copy only after Kafka acknowledged it. A failed send (topic
//! missing, broker refusing, outage) is retried with back-off until confirmed, so every parking has
//! its dead-letter record; a crash between the ack and the delete sends that copy again
//! (at-least-once: `dlt_parked_id` with `dlt_parked_at` identifies a parking).
//!
//! The record: key = aggregate id, value = the event's JSON payload as stored (it could not be
//! encoded as Avro), headers = the event's envelope plus `dlt_source`, `dlt_reason` (the kind),
//! `dlt_error`, `dlt_parked_id`, `dlt_parked_at` and `content-type: application/json`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventfold_kafka::{Envelope, KafkaSettings};
use eventfold_runtime::Shutdown;
use futures::future::join_all;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::Header;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use tokio::sync::Notify;

use crate::RelayConfig;
use crate::metrics::RelayMetrics;
use crate::publisher::backoff;
use crate::shards::Shards;

/// Queued copies sent per round.
const BATCH: i64 = 500;

/// How long a copy may wait for its ack before the round counts as failed and is retried.
const SEND_TIMEOUT_MS: &str = "30000";

/// The dead-letter topic of the relay under `prefix`.
pub fn dlt_topic(prefix: &str) -> String {
    format!("{prefix}dlt.relay")
}

const QUEUED_SQL: &str = "\
    SELECT d.id AS dlt_id, d.parked_id, d.kind, d.reason, d.parked_at, \
        e.event_id, e.event_type, e.schema_version, e.aggregate_type, e.aggregate_id, e.version, \
        e.position, e.occurred_at, e.recorded_at, e.correlation_id, e.causation_id, e.command_id, \
        e.actor_kind, e.actor_id, e.tenant, e.metadata ->> 'traceparent' AS traceparent, e.payload \
    FROM outbox_dlt d JOIN events e ON e.position = d.event_position \
    WHERE d.shard_key % $1 = ANY($2::int[]) \
    ORDER BY d.id LIMIT $3";

/// One queued dead-letter copy.
struct Queued {
    dlt_id: i64,
    parked_id: i64,
    kind: String,
    reason: String,
    parked_at: DateTime<Utc>,
    envelope: Envelope,
    payload: Vec<u8>,
}

/// Queued copies of `owned` shards, oldest first.
async fn queued(pool: &PgPool, shards: u32, owned: &[i32]) -> Result<Vec<Queued>, sqlx::Error> {
    let rows = sqlx::query(QUEUED_SQL)
        .bind(shards as i32)
        .bind(owned)
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let Json(payload): Json<serde_json::Value> = row.try_get("payload")?;
            Ok(Queued {
                dlt_id: row.try_get("dlt_id")?,
                parked_id: row.try_get("parked_id")?,
                kind: row.try_get("kind")?,
                reason: row.try_get("reason")?,
                parked_at: row.try_get("parked_at")?,
                envelope: Envelope::from_event_row(row)?,
                payload: serde_json::to_vec(&payload).unwrap_or_default(),
            })
        })
        .collect()
}

/// Parked rows and queued dead-letter copies (all shards).
pub async fn counts(pool: &PgPool) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM outbox_parked)::bigint, (SELECT count(*) FROM outbox_dlt)::bigint",
    )
    .fetch_one(pool)
    .await
}

/// The dead-letter task of one relay.
pub struct DeadLetters {
    /// Topics and polling.
    pub config: RelayConfig,
    /// The event store.
    pub pool: PgPool,
    /// Brokers.
    pub kafka: KafkaSettings,
    /// Gauges and counters.
    pub metrics: RelayMetrics,
    /// Which shards' copies this relay sends.
    pub shards: Arc<Shards>,
    /// Fires after a parking.
    pub wake: Arc<Notify>,
}

impl DeadLetters {
    fn producer(&self) -> Result<FutureProducer, RdKafkaError> {
        let mut config = self.kafka.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            // A copy that cannot be delivered fails the round after this long; the round is
            // retried, so nothing waits forever on a copy the broker refuses.
            .set("message.timeout.ms", SEND_TIMEOUT_MS);
        config.create()
    }

    /// Sends queued copies until `stop`: at once after a parking, otherwise every poll interval
    /// (which also refreshes the gauges), with back-off after a failure.
    pub async fn run(self, stop: Shutdown) {
        let topic = dlt_topic(&self.config.topic_prefix);
        let mut producer: Option<FutureProducer> = None;
        let mut topic_ready = false;
        let mut failures: u32 = 0;
        let mut more = false;
        loop {
            if failures > 0 {
                backoff(failures, &stop).await;
            } else if !more {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                    _ = stop.wait() => {}
                }
            }
            if stop.is_triggered() {
                return;
            }
            more = false;
            match counts(&self.pool).await {
                Ok((parked, pending)) => {
                    self.metrics.outbox_parked.set(parked);
                    self.metrics.dlt_pending.set(pending);
                }
                Err(e) => tracing::debug!(error = %e, "cannot count parked rows"),
            }
            let owned: Vec<i32> = tokio::select! {
                o = self.shards.lock() => o.keys().copied().collect(),
                _ = stop.wait() => return,
            };
            if owned.is_empty() {
                continue;
            }
            let rows = match queued(&self.pool, self.shards.count(), &owned).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the dead-letter queue");
                    self.metrics.errors.with_label_values(&["dlt"]).inc();
                    failures += 1;
                    continue;
                }
            };
            if rows.is_empty() {
                failures = 0;
                continue;
            }
            if producer.is_none() {
                match self.producer() {
                    Ok(p) => producer = Some(p),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot create the dead-letter producer");
                        self.metrics.errors.with_label_values(&["dlt"]).inc();
                        failures += 1;
                        continue;
                    }
                }
            }
            let Some(p) = producer.clone() else { continue };
            if !topic_ready {
                if let Err(e) = self
                    .kafka
                    .ensure_topic(&topic, self.config.partitions, self.config.replication)
                    .await
                {
                    tracing::warn!(error = %e, %topic, "cannot create the dead-letter topic");
                    self.metrics.errors.with_label_values(&["dlt"]).inc();
                    failures += 1;
                    continue;
                }
                topic_ready = true;
            }
            let full = rows.len() as i64 == BATCH;
            // Copies not acknowledged before a stop stay queued for the shard's next owner.
            let (sent, failed) = tokio::select! {
                r = send(&p, &topic, &rows) => r,
                _ = stop.wait() => return,
            };
            if !sent.is_empty() {
                match sqlx::query("DELETE FROM outbox_dlt WHERE id = ANY($1::bigint[])")
                    .bind(&sent)
                    .execute(&self.pool)
                    .await
                {
                    Ok(_) => self.metrics.dlt_sent.inc_by(sent.len() as u64),
                    // Acked but still queued: sent again next round (a duplicate, not a loss).
                    Err(e) => tracing::warn!(error = %e, "cannot delete sent dead-letter copies"),
                }
            }
            if let Some(e) = failed {
                tracing::warn!(error = %e, %topic, "dead-letter copies not acknowledged; retrying");
                self.metrics.errors.with_label_values(&["dlt"]).inc();
                if p.client().fatal_error().is_some() {
                    producer = None;
                }
                failures += 1;
                continue;
            }
            failures = 0;
            more = full;
        }
    }
}

/// Produces `rows` to `topic` and waits for every ack: the queue ids acknowledged, and the first
/// failure, if any.
async fn send(
    producer: &FutureProducer,
    topic: &str,
    rows: &[Queued],
) -> (Vec<i64>, Option<RdKafkaError>) {
    let mut acks = Vec::with_capacity(rows.len());
    for q in rows {
        let parked_id = q.parked_id.to_string();
        let parked_at = q.parked_at.to_rfc3339();
        let mut headers = q.envelope.to_headers();
        for (key, value) in [
            ("dlt_source", "outbox-relay"),
            ("dlt_reason", q.kind.as_str()),
            ("dlt_error", q.reason.as_str()),
            ("dlt_parked_id", parked_id.as_str()),
            ("dlt_parked_at", parked_at.as_str()),
            ("content-type", "application/json"),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let record = FutureRecord::to(topic)
            .key(q.envelope.aggregate_id.as_bytes())
            .payload(&q.payload)
            .headers(headers);
        acks.push((q.dlt_id, producer.send_result(record)));
    }
    let mut sent = Vec::with_capacity(rows.len());
    let mut failed: Option<RdKafkaError> = None;
    let mut futures = Vec::with_capacity(acks.len());
    let mut ids = Vec::with_capacity(acks.len());
    for (id, queued) in acks {
        match queued {
            Ok(f) => {
                ids.push(id);
                futures.push(f);
            }
            Err((e, _)) => {
                failed.get_or_insert(e);
            }
        }
    }
    for (id, ack) in ids.into_iter().zip(join_all(futures).await) {
        match ack {
            Ok(Ok(_)) => sent.push(id),
            Ok(Err((e, _))) => {
                failed.get_or_insert(e);
            }
            Err(_) => {
                failed.get_or_insert(RdKafkaError::Canceled);
            }
        }
    }
    (sent, failed)
}
