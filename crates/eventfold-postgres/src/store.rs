//! The event store: appends events with their outbox rows in one transaction, guarded by the unique
//! `(aggregate_type, aggregate_id, version)` constraint (optimistic concurrency) and by the command id
//! (idempotency), and reads aggregates, correlations and the global feed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

/// Who caused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A person.
    User,
    /// The platform itself.
    System,
    /// An automated agent (e.g. an AI analyzer).
    Agent,
}

impl ActorKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::System => "system",
            Self::Agent => "agent",
        }
    }
}

impl std::str::FromStr for ActorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Self::User),
            "system" => Ok(Self::System),
            "agent" => Ok(Self::Agent),
            other => Err(format!(
                "unknown actor kind `{other}` (user, system or agent)"
            )),
        }
    }
}

/// The actor of a command: kind and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Kind of actor.
    pub kind: ActorKind,
    /// Its id.
    pub id: String,
}

/// Envelope fields that come with a command and are copied onto every event it produces.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    /// Idempotency key: a repeated id appends nothing and returns the first result.
    pub command_id: Uuid,
    /// Links every event of one causal chain.
    pub correlation_id: Uuid,
    /// The event (or command) that caused this one.
    pub causation_id: Option<Uuid>,
    /// Who asked.
    pub actor: Actor,
    /// Tenant the aggregate belongs to.
    pub tenant: String,
    /// Free-form context (trace ids, versions).
    pub metadata: serde_json::Value,
    /// Business time of the change.
    pub occurred_at: DateTime<Utc>,
}

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Unique id of the event.
    pub event_id: Uuid,
    /// Past-tense type name.
    pub event_type: String,
    /// Payload schema version.
    pub schema_version: i32,
    /// Category name.
    pub category: String,
    /// The payload as JSON.
    pub payload: serde_json::Value,
}

/// The idempotency record of a command, stored in the same transaction as its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// Command name.
    pub command_name: String,
    /// Hash of the canonical request, to tell a replay from a different request with the same id.
    pub request_hash: Vec<u8>,
    /// The response returned to the first caller, returned again to every repeat.
    pub response: serde_json::Value,
}

/// A stored event with its full envelope.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RecordedEvent {
    /// Global position (allocation order, not commit order).
    pub position: i64,
    /// Commit-safe ordering key: the writing transaction's id.
    #[serde(skip)]
    pub tx_id: i64,
    /// Event id.
    pub event_id: Uuid,
    /// Type name.
    pub event_type: String,
    /// Payload schema version as stored.
    pub schema_version: i32,
    /// Category.
    pub category: String,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Version of the aggregate after this event.
    pub version: i64,
    /// Business time.
    pub occurred_at: DateTime<Utc>,
    /// Time of the insert.
    pub recorded_at: DateTime<Utc>,
    /// Correlation id.
    pub correlation_id: Uuid,
    /// Causation id.
    pub causation_id: Option<Uuid>,
    /// Actor kind.
    pub actor_kind: String,
    /// Actor id.
    pub actor_id: String,
    /// Tenant.
    pub tenant: String,
    /// Command that produced the event.
    pub command_id: Option<Uuid>,
    /// Metadata.
    pub metadata: serde_json::Value,
    /// Payload.
    pub payload: serde_json::Value,
}

/// What an append did.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendOutcome {
    /// The events were committed; the aggregate is now at `version`.
    Appended {
        /// New aggregate version.
        version: i64,
        /// Global positions of the new events.
        positions: Vec<i64>,
    },
    /// The command id was seen before; nothing was appended.
    Duplicate(CommandRecord),
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended first; the aggregate is at `current_version`.
    #[error("version conflict: aggregate is at version {current_version}")]
    Conflict {
        /// The version found.
        current_version: i64,
    },
    /// The database failed.
    #[error("event store: {0}")]
    Database(#[from] sqlx::Error),
}

/// Commit-safe position in the global feed: (writing transaction, position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FeedCursor {
    /// Transaction id of the last event read.
    pub tx_id: i64,
    /// Position of the last event read.
    pub position: i64,
}

impl std::fmt::Display for FeedCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.tx_id, self.position)
    }
}

impl std::str::FromStr for FeedCursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (tx, pos) = s
            .split_once('-')
            .ok_or_else(|| format!("cursor `{s}` is not <tx>-<position>"))?;
        Ok(Self {
            tx_id: tx.parse().map_err(|_| format!("cursor `{s}`: bad tx id"))?,
            position: pos
                .parse()
                .map_err(|_| format!("cursor `{s}`: bad position"))?,
        })
    }
}

/// Stable non-negative hash of an aggregate id (FNV-1a, 31 bits), stored with each outbox row.
pub fn shard_key(aggregate_id: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in aggregate_id.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash & 0x7fff_ffff) as i32
}

const EVENT_COLUMNS: &str = "position, tx_id::text::bigint AS tx_id, event_id, event_type, \
    schema_version, category, aggregate_type, aggregate_id, version, occurred_at, recorded_at, \
    correlation_id, causation_id, actor_kind, actor_id, tenant, command_id, metadata, payload";

/// The event store on one pool.
#[derive(Debug, Clone)]
pub struct EventStore {
    pool: PgPool,
}

impl EventStore {
    /// A store on `pool` (migrations must have run).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends `events` after `expected_version` with their outbox rows and the command record, in
    /// one transaction. A repeated command id returns [`AppendOutcome::Duplicate`] and appends nothing,
    /// also when both requests race (the second waits for the first to commit).
    pub async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        expected_version: i64,
        events: &[NewEvent],
        meta: &CommandMeta,
        record: &CommandRecord,
    ) -> Result<AppendOutcome, AppendError> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO commands (command_id, aggregate_type, aggregate_id, command_name, request_hash, response) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (command_id) DO NOTHING",
        )
        .bind(meta.command_id)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(&record.command_name)
        .bind(&record.request_hash)
        .bind(&record.response)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            drop(tx);
            let stored = self.command(meta.command_id).await?.ok_or_else(|| {
                AppendError::Database(sqlx::Error::Protocol(
                    "command id conflicted but no row found".into(),
                ))
            })?;
            return Ok(AppendOutcome::Duplicate(stored));
        }
        let positions = match insert_events(
            &mut tx,
            aggregate_type,
            aggregate_id,
            expected_version,
            events,
            meta,
        )
        .await
        {
            Ok(p) => p,
            Err(sqlx::Error::Database(db))
                if db.constraint() == Some("events_aggregate_version") =>
            {
                drop(tx);
                let current_version = self.current_version(aggregate_type, aggregate_id).await?;
                return Err(AppendError::Conflict { current_version });
            }
            Err(e) => return Err(e.into()),
        };
        tx.commit().await?;
        Ok(AppendOutcome::Appended {
            version: expected_version + events.len() as i64,
            positions,
        })
    }

    /// The stored record of `command_id`, if any.
    pub async fn command(&self, command_id: Uuid) -> Result<Option<CommandRecord>, sqlx::Error> {
        let row: Option<(String, Vec<u8>, serde_json::Value)> = sqlx::query_as(
            "SELECT command_name, request_hash, response FROM commands WHERE command_id = $1",
        )
        .bind(command_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(
            row.map(|(command_name, request_hash, response)| CommandRecord {
                command_name,
                request_hash,
                response,
            }),
        )
    }

    /// The aggregate's current version (0 when it has no events).
    pub async fn current_version(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0)::bigint FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_one(&self.pool)
        .await
    }

    /// Events of one aggregate with `after_version < version <= up_to_version`, recorded at or
    /// before `as_of`, in version order, at most `limit`.
    pub async fn load(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_version: i64,
        up_to_version: Option<i64>,
        as_of: Option<DateTime<Utc>>,
        limit: Option<i64>,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND version > $3 \
               AND ($4::bigint IS NULL OR version <= $4) \
               AND ($5::timestamptz IS NULL OR recorded_at <= $5) \
             ORDER BY version LIMIT $6"
        ))
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_version)
        .bind(up_to_version)
        .bind(as_of)
        .bind(limit.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
    }

    /// Every event of one correlation id, in commit-safe order.
    pub async fn by_correlation(
        &self,
        correlation_id: Uuid,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE correlation_id = $1 ORDER BY position"
        ))
        .bind(correlation_id)
        .fetch_all(&self.pool)
        .await
    }

    /// The global feed after `cursor`, at most `limit` events, optionally only of `types`.
    ///
    /// Only events of transactions older than every transaction still running are returned, ordered
    /// by (transaction id, position): an event that commits late with a smaller position is therefore
    /// never skipped by a reader that already moved past that position.
    pub async fn feed(
        &self,
        cursor: FeedCursor,
        limit: i64,
        types: Option<&[String]>,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE (tx_id, position) > ($1::text::xid8, $2) \
               AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
               AND ($3::text[] IS NULL OR event_type = ANY($3)) \
             ORDER BY tx_id, position LIMIT $4"
        ))
        .bind(cursor.tx_id.to_string())
        .bind(cursor.position)
        .bind(types)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }
}

async fn insert_events(
    tx: &mut Transaction<'_, Postgres>,
    aggregate_type: &str,
    aggregate_id: &str,
    expected_version: i64,
    events: &[NewEvent],
    meta: &CommandMeta,
) -> Result<Vec<i64>, sqlx::Error> {
    let n = events.len();
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let versions: Vec<i32> = events.iter().map(|e| e.schema_version).collect();
    let categories: Vec<&str> = events.iter().map(|e| e.category.as_str()).collect();
    let aggregate_versions: Vec<i64> = (1..=n as i64).map(|i| expected_version + i).collect();
    let payloads: Vec<serde_json::Value> = events.iter().map(|e| e.payload.clone()).collect();
    let mut inserted: Vec<(i64, i64)> = sqlx::query_as(
        "INSERT INTO events (event_id, event_type, schema_version, category, aggregate_type, aggregate_id, \
            version, occurred_at, correlation_id, causation_id, actor_kind, actor_id, tenant, command_id, \
            metadata, payload) \
         SELECT e.id, e.ty, e.sv, e.cat, $5, $6, e.v, $7, $8, $9, $10, $11, $12, $13, $14, e.payload \
         FROM UNNEST($1::uuid[], $2::text[], $3::int[], $4::text[], $15::bigint[], $16::jsonb[]) \
              AS e(id, ty, sv, cat, v, payload) \
         ORDER BY e.v \
         RETURNING version, position",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&versions)
    .bind(&categories)
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(meta.occurred_at)
    .bind(meta.correlation_id)
    .bind(meta.causation_id)
    .bind(meta.actor.kind.as_str())
    .bind(&meta.actor.id)
    .bind(&meta.tenant)
    .bind(meta.command_id)
    .bind(&meta.metadata)
    .bind(&aggregate_versions)
    .bind(&payloads)
    .fetch_all(&mut **tx)
    .await?;
    inserted.sort_unstable();
    let positions: Vec<i64> = inserted.into_iter().map(|(_, p)| p).collect();
    sqlx::query(
        "INSERT INTO outbox (shard_key, event_position, aggregate_type, aggregate_id, version) \
         SELECT $1, p, $2, $3, v FROM UNNEST($4::bigint[], $5::bigint[]) AS o(p, v)",
    )
    .bind(shard_key(aggregate_id))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(&positions)
    .bind(&aggregate_versions)
    .execute(&mut **tx)
    .await?;
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_keys_are_stable_and_non_negative() {
        assert_eq!(shard_key("aggregate-1"), shard_key("aggregate-1"));
        assert_ne!(shard_key("aggregate-1"), shard_key("aggregate-2"));
        for i in 0..1000 {
            assert!(shard_key(&format!("a{i}")) >= 0);
        }
    }

    #[test]
    fn a_feed_cursor_round_trips_through_text() {
        let c = FeedCursor {
            tx_id: 812,
            position: 99,
        };
        assert_eq!(c.to_string().parse::<FeedCursor>().unwrap(), c);
        assert!("812".parse::<FeedCursor>().is_err());
    }
}
