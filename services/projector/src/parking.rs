//! Parked events: the `parked_events` table (the list operators see and replay from) and the
//! dead-letter topic (a copy of the original record with the error in its headers).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgPool, Row};

use crate::apply::ApplyError;
use crate::target::AggregateKey;

/// Why an event was parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The record could not be read (no envelope, bad Avro, unknown schema, upcast failed).
    Undecodable,
    /// The handler or the store refused it after the retries.
    Refused,
    /// Its aggregate's previous version was never applied.
    VersionGap,
    /// An earlier event of its aggregate is parked.
    BehindParked,
}

impl Reason {
    /// The value stored in `parked_events.reason` and used as metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::Refused => "refused",
            Self::VersionGap => "version_gap",
            Self::BehindParked => "behind_parked",
        }
    }
}

/// Where a parked event came from: a Kafka record, or the event store (rebuild).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Topic, partition, offset of the record.
    pub record: Option<(String, i32, i64)>,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub value: Option<Vec<u8>>,
    /// Record headers (name, value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// One event to park.
#[derive(Debug, Clone)]
pub struct ToPark {
    /// Where it came from.
    pub origin: Origin,
    /// Envelope fields, when known: event id, event type, aggregate, version.
    pub event_id: Option<String>,
    /// Event type.
    pub event_type: Option<String>,
    /// The stream: tenant, aggregate type and id.
    pub aggregate: Option<AggregateKey>,
    /// Aggregate version.
    pub version: Option<i64>,
    /// Why.
    pub reason: Reason,
    /// The error text.
    pub error: String,
    /// Attempts made before parking.
    pub attempts: i32,
}

/// A queued dead-letter copy.
struct DeadLetter {
    id: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    names: Vec<String>,
    values: Vec<Option<Vec<u8>>>,
}

/// A row of `parked_events`, as listed by the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct Parked {
    /// Row id.
    pub id: i64,
    /// Read model.
    pub read_model: String,
    /// Source topic (absent for events read from the event store).
    pub topic: Option<String>,
    /// Source partition.
    pub partition: Option<i32>,
    /// Source offset.
    pub offset: Option<i64>,
    /// Event id.
    pub event_id: Option<String>,
    /// Event type.
    pub event_type: Option<String>,
    /// Tenant of the stream (`default` for a record without an envelope).
    pub tenant: String,
    /// Aggregate type.
    pub aggregate_type: Option<String>,
    /// Aggregate id.
    pub aggregate_id: Option<String>,
    /// Aggregate version.
    pub version: Option<i64>,
    /// Reason (`undecodable`, `refused`, `version_gap`, `behind_parked`).
    pub reason: String,
    /// Error text.
    pub error: String,
    /// Attempts before parking.
    pub attempts: i32,
    /// The parked event this one waits behind.
    pub blocked_by: Option<i64>,
    /// When, RFC 3339.
    pub parked_at: String,
}

/// Access to `parked_events` and the dead-letter topic for one read model.
#[derive(Clone)]
pub struct Parking {
    pool: PgPool,
    read_model: &'static str,
    dlt: Option<(FutureProducer, String)>,
    /// Auditing: parks nothing, hands out ids from here.
    dry_run: Option<std::sync::Arc<std::sync::atomic::AtomicI64>>,
}

impl std::fmt::Debug for Parking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parking")
            .field("read_model", &self.read_model)
            .field("dlt", &self.dlt.as_ref().map(|(_, t)| t))
            .finish()
    }
}

/// The dead-letter topic of `read_model`.
pub fn dlt_topic(prefix: &str, read_model: &str) -> String {
    format!("{prefix}dlt.{read_model}")
}

impl Parking {
    /// Parking for `read_model` in `pool`, copying records to `dlt` (producer, topic) if given.
    pub fn new(
        pool: PgPool,
        read_model: &'static str,
        dlt: Option<(FutureProducer, String)>,
    ) -> Self {
        Self {
            pool,
            read_model,
            dlt,
            dry_run: None,
        }
    }

    /// The database of the parked table (also the event store).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Parking that reads the parked table but writes nothing (the auditor's scratch replay
    /// must park what the live one parked without touching the list).
    pub fn dry_run(pool: PgPool, read_model: &'static str) -> Self {
        Self {
            pool,
            read_model,
            dlt: None,
            dry_run: Some(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(-1))),
        }
    }

    /// The read model.
    pub fn read_model(&self) -> &'static str {
        self.read_model
    }

    /// For each of `keys` that has a parked event, the id of its first parked event.
    pub async fn blocked(
        &self,
        keys: &[AggregateKey],
    ) -> Result<HashMap<AggregateKey, i64>, ApplyError> {
        let mut out = HashMap::new();
        if keys.is_empty() {
            return Ok(out);
        }
        let tenants: Vec<&str> = keys.iter().map(|k| k.tenant.as_str()).collect();
        let types: Vec<&str> = keys.iter().map(|k| k.aggregate_type.as_str()).collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.aggregate_id.as_str()).collect();
        let rows = sqlx::query(
            "SELECT p.tenant, p.aggregate_type, p.aggregate_id, min(p.id) FROM parked_events p \
             JOIN unnest($2::text[], $3::text[], $4::text[]) AS u(n, t, i) \
               ON p.aggregate_type = u.t AND p.aggregate_id = u.i AND p.tenant = u.n \
             WHERE p.read_model = $1 GROUP BY 1, 2, 3",
        )
        .bind(self.read_model)
        .bind(&tenants)
        .bind(&types)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            let key = AggregateKey::new(
                r.get::<String, _>(0),
                r.get::<String, _>(1),
                r.get::<String, _>(2),
            );
            out.insert(key, r.get(3));
        }
        Ok(out)
    }

    /// Parks `event` (idempotent per record or per aggregate version); returns its row id. A
    /// newly parked event also queues its dead-letter copy in the same statement, so the parked
    /// table and the dead-letter topic cannot drift apart: the copy is sent right away if it can
    /// be, and otherwise by [`Parking::send_dead_letters`] until Kafka acknowledges it.
    pub async fn park(&self, event: &ToPark, blocked_by: Option<i64>) -> Result<i64, ApplyError> {
        if let Some(next) = &self.dry_run {
            return Ok(next.fetch_sub(1, std::sync::atomic::Ordering::Relaxed));
        }
        let (topic, partition, offset) = match &event.origin.record {
            Some((t, p, o)) => (Some(t.as_str()), Some(*p), Some(*o)),
            None => (None, None, None),
        };
        let headers: Value = event
            .origin
            .headers
            .iter()
            .map(|(k, v)| {
                json!({"name": k, "value": v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())})
            })
            .collect();
        let (tenant, agg_type, agg_id) = match &event.aggregate {
            Some(k) => (
                k.tenant.as_str(),
                Some(k.aggregate_type.as_str()),
                Some(k.aggregate_id.as_str()),
            ),
            None => ("default", None, None),
        };
        let (names, values) = self.dead_letter_headers(event);
        let dlt_key = event.origin.key.clone().or_else(|| {
            event
                .aggregate
                .as_ref()
                .map(|k| k.aggregate_id.clone().into_bytes())
        });
        let inserted: Option<i64> = sqlx::query_scalar(
            "WITH p AS (\
               INSERT INTO parked_events (read_model, topic, \"partition\", \"offset\", event_id, \
                 event_type, aggregate_type, aggregate_id, version, reason, error, attempts, \
                 blocked_by, record_key, record_value, record_headers, tenant) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $21) \
               ON CONFLICT DO NOTHING RETURNING id), \
             q AS (\
               INSERT INTO parked_dead_letters (parked_id, read_model, record_key, record_value, \
                 header_names, header_values) \
               SELECT id, $1, $17, $15, $18::text[] || 'dlt_parked_id'::text, \
                 $19::bytea[] || convert_to(id::text, 'UTF8') FROM p WHERE $20) \
             SELECT id FROM p",
        )
        .bind(self.read_model)
        .bind(topic)
        .bind(partition)
        .bind(offset)
        .bind(&event.event_id)
        .bind(&event.event_type)
        .bind(agg_type)
        .bind(agg_id)
        .bind(event.version)
        .bind(event.reason.as_str())
        .bind(&event.error)
        .bind(event.attempts)
        .bind(blocked_by)
        .bind(&event.origin.key)
        .bind(&event.origin.value)
        .bind(headers)
        .bind(&dlt_key)
        .bind(&names)
        .bind(&values)
        .bind(self.dlt.is_some())
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?;
        match inserted {
            Some(id) => {
                // The fast path; a copy that cannot be sent now stays queued for the sender task.
                if let Err(e) = self.send_dead_letters().await {
                    tracing::warn!(read_model = self.read_model, error = %e, "dead-letter copy queued for a retry");
                }
                Ok(id)
            }
            None => {
                let id: i64 = sqlx::query_scalar(
                    "SELECT id FROM parked_events WHERE read_model = $1 AND \
                     ((topic = $2 AND \"partition\" = $3 AND \"offset\" = $4) OR \
                      (topic IS NULL AND $2::text IS NULL AND aggregate_type = $5 \
                       AND aggregate_id = $6 AND tenant = $8 AND version = $7))",
                )
                .bind(self.read_model)
                .bind(topic)
                .bind(partition)
                .bind(offset)
                .bind(agg_type)
                .bind(agg_id)
                .bind(event.version)
                .bind(tenant)
                .fetch_one(&self.pool)
                .await?;
                Ok(id)
            }
        }
    }

    /// The dead-letter record's headers: the original record's, then the parking's own (the
    /// parked row id is added by the parking statement).
    fn dead_letter_headers(&self, event: &ToPark) -> (Vec<String>, Vec<Option<Vec<u8>>>) {
        let source = event
            .origin
            .record
            .as_ref()
            .map(|(t, p, o)| format!("{t}/{p}/{o}"))
            .unwrap_or_else(|| "event-store".into());
        let mut names = Vec::with_capacity(event.origin.headers.len() + 4);
        let mut values = Vec::with_capacity(event.origin.headers.len() + 4);
        for (k, v) in &event.origin.headers {
            names.push(k.clone());
            values.push(v.clone());
        }
        for (k, v) in [
            ("dlt_read_model", self.read_model),
            ("dlt_reason", event.reason.as_str()),
            ("dlt_error", event.error.as_str()),
            ("dlt_source", source.as_str()),
        ] {
            names.push(k.to_owned());
            values.push(Some(v.as_bytes().to_vec()));
        }
        (names, values)
    }

    /// Sends the queued dead-letter copies of the read model (oldest first, up to 500) and
    /// removes each one only after Kafka acknowledged it; returns how many were sent. Rows are
    /// claimed with `SKIP LOCKED`, so instances do not send the same copy at the same time.
    pub async fn send_dead_letters(&self) -> Result<usize, ApplyError> {
        let Some((producer, topic)) = &self.dlt else {
            return Ok(0);
        };
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, record_key, record_value, header_names, header_values \
             FROM parked_dead_letters WHERE read_model = $1 ORDER BY id LIMIT 500 \
             FOR UPDATE SKIP LOCKED",
        )
        .bind(self.read_model)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let copies: Vec<DeadLetter> = rows
            .iter()
            .map(|r| DeadLetter {
                id: r.get(0),
                key: r.get(1),
                value: r.get(2),
                names: r.get(3),
                values: r.get(4),
            })
            .collect();
        let sends = copies.iter().map(|c| {
            let mut headers = OwnedHeaders::new();
            for (k, v) in c.names.iter().zip(&c.values) {
                headers = headers.insert(Header {
                    key: k,
                    value: v.as_deref(),
                });
            }
            let mut record: FutureRecord<'_, Vec<u8>, Vec<u8>> =
                FutureRecord::to(topic).headers(headers);
            if let Some(k) = c.key.as_ref() {
                record = record.key(k);
            }
            if let Some(v) = c.value.as_ref() {
                record = record.payload(v);
            }
            producer.send(record, Duration::from_secs(30))
        });
        let results = futures::future::join_all(sends).await;
        let mut acked = Vec::with_capacity(copies.len());
        let mut failed = None;
        for (c, r) in copies.iter().zip(results) {
            match r {
                Ok(_) => acked.push(c.id),
                Err((e, _)) => failed = Some(e),
            }
        }
        sqlx::query("DELETE FROM parked_dead_letters WHERE id = ANY($1)")
            .bind(&acked)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        match failed {
            Some(e) => Err(ApplyError::Transient(format!("dead-letter topic: {e}"))),
            None => Ok(acked.len()),
        }
    }

    /// Dead-letter copies of the read model not yet acknowledged by Kafka.
    pub async fn dead_letters_pending(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM parked_dead_letters WHERE read_model = $1")
            .bind(self.read_model)
            .fetch_one(&self.pool)
            .await
    }

    /// Parked events of the read model, oldest first, at most `limit` after row `after`.
    pub async fn list(&self, after: i64, limit: i64) -> Result<Vec<Parked>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, read_model, topic, \"partition\", \"offset\", event_id, event_type, \
               aggregate_type, aggregate_id, version, reason, error, attempts, blocked_by, \
               to_char(parked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), tenant \
             FROM parked_events WHERE read_model = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(self.read_model)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Parked {
                id: r.get(0),
                read_model: r.get(1),
                topic: r.get(2),
                partition: r.get(3),
                offset: r.get(4),
                event_id: r.get(5),
                event_type: r.get(6),
                tenant: r.get(15),
                aggregate_type: r.get(7),
                aggregate_id: r.get(8),
                version: r.get(9),
                reason: r.get(10),
                error: r.get(11),
                attempts: r.get(12),
                blocked_by: r.get(13),
                parked_at: r.get(14),
            })
            .collect())
    }

    /// Number of parked events of the read model.
    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM parked_events WHERE read_model = $1")
            .bind(self.read_model)
            .fetch_one(&self.pool)
            .await
    }

    /// The aggregates that have parked events.
    pub async fn blocked_aggregates(&self) -> Result<Vec<AggregateKey>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT DISTINCT tenant, aggregate_type, aggregate_id FROM parked_events \
             WHERE read_model = $1 AND aggregate_id IS NOT NULL ORDER BY 1, 2, 3",
        )
        .bind(self.read_model)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                AggregateKey::new(
                    r.get::<String, _>(0),
                    r.get::<String, _>(1),
                    r.get::<String, _>(2),
                )
            })
            .collect())
    }

    /// Deletes the parked events of `key` at or below `version`; returns how many.
    pub async fn release(&self, key: &AggregateKey, version: i64) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "DELETE FROM parked_events WHERE read_model = $1 AND aggregate_type = $2 \
             AND aggregate_id = $3 AND tenant = $5 AND version <= $4",
        )
        .bind(self.read_model)
        .bind(&key.aggregate_type)
        .bind(&key.aggregate_id)
        .bind(version)
        .bind(&key.tenant)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Deletes one parked event by id (an operator discards a record that cannot be replayed).
    pub async fn discard(&self, id: i64) -> Result<bool, sqlx::Error> {
        Ok(
            sqlx::query("DELETE FROM parked_events WHERE read_model = $1 AND id = $2")
                .bind(self.read_model)
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }
}
