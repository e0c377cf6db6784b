//! The event store: appends events with their outbox rows in one transaction, guarded by the unique
//! `(aggregate_type, aggregate_id, tenant, version)` constraint (optimistic concurrency) and by the
//! command id (idempotency), and reads aggregates, correlations and the global feed.
//!
//! A stream is `(tenant, aggregate_type, aggregate_id)`: the same aggregate id in two tenants is two
//! independent streams, so every aggregate-scoped read takes the tenant, and an append writes to
//! the stream of its command's tenant ([`CommandMeta::tenant`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
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

impl Actor {
    /// Reads `<user|agent|system>:<id>` with an id of 1 to 128 characters (surrounding spaces
    /// trimmed) and no control character; `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        let (kind, id) = raw.split_once(':')?;
        let kind: ActorKind = kind.trim().parse().ok()?;
        let id = id.trim();
        let fits = (1..=128).contains(&id.chars().count()) && !id.chars().any(char::is_control);
        fits.then(|| Self {
            kind,
            id: id.to_owned(),
        })
    }
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
    /// Tenant of the stream the events are appended to (part of the stream's identity).
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

/// One command's share of a group commit.
#[derive(Debug, Clone, Copy)]
pub struct CommandWrite<'a> {
    /// The aggregate.
    pub aggregate_id: &'a str,
    /// Version the events follow (the first gets `expected_version + 1`).
    pub expected_version: i64,
    /// Events to append (may be empty: the command is still recorded).
    pub events: &'a [NewEvent],
    /// Envelope of the command.
    pub meta: &'a CommandMeta,
    /// What a repeat of the command id is answered with.
    pub record: &'a CommandRecord,
}

/// Why a group commit wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// A version or command id in the batch was already taken (constraint named).
    #[error("already taken: {0}")]
    UniqueViolation(String),
    /// The database failed otherwise.
    #[error("event store: {0}")]
    Database(#[from] sqlx::Error),
}

impl BatchError {
    fn from_sqlx(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Self::UniqueViolation(db.constraint().unwrap_or("unknown").to_owned())
            }
            _ => Self::Database(e),
        }
    }
}

/// A batch as column arrays, for `UNNEST`.
#[derive(Default)]
struct BatchRows<'a> {
    event_id: Vec<Uuid>,
    event_type: Vec<&'a str>,
    schema_version: Vec<i32>,
    category: Vec<&'a str>,
    aggregate_id: Vec<&'a str>,
    version: Vec<i64>,
    occurred_at: Vec<DateTime<Utc>>,
    correlation_id: Vec<Uuid>,
    causation_id: Vec<Option<Uuid>>,
    actor_kind: Vec<&'static str>,
    actor_id: Vec<&'a str>,
    tenant: Vec<&'a str>,
    command_id: Vec<Uuid>,
    metadata: Vec<&'a serde_json::Value>,
    payload: Vec<&'a serde_json::Value>,
    shard_key: Vec<i32>,
    cmd_id: Vec<Uuid>,
    cmd_aggregate_id: Vec<&'a str>,
    cmd_name: Vec<&'a str>,
    cmd_hash: Vec<&'a [u8]>,
    cmd_response: Vec<String>,
}

impl<'a> BatchRows<'a> {
    fn new(writes: &'a [CommandWrite<'a>]) -> Self {
        let mut rows = Self::default();
        for w in writes {
            let shard = shard_key(w.aggregate_id);
            for (i, e) in w.events.iter().enumerate() {
                rows.event_id.push(e.event_id);
                rows.event_type.push(&e.event_type);
                rows.schema_version.push(e.schema_version);
                rows.category.push(&e.category);
                rows.aggregate_id.push(w.aggregate_id);
                rows.version.push(w.expected_version + 1 + i as i64);
                rows.occurred_at.push(w.meta.occurred_at);
                rows.correlation_id.push(w.meta.correlation_id);
                rows.causation_id.push(w.meta.causation_id);
                rows.actor_kind.push(w.meta.actor.kind.as_str());
                rows.actor_id.push(&w.meta.actor.id);
                rows.tenant.push(&w.meta.tenant);
                rows.command_id.push(w.meta.command_id);
                rows.metadata.push(&w.meta.metadata);
                rows.payload.push(&e.payload);
                rows.shard_key.push(shard);
            }
            rows.cmd_id.push(w.meta.command_id);
            rows.cmd_aggregate_id.push(w.aggregate_id);
            rows.cmd_name.push(&w.record.command_name);
            rows.cmd_hash.push(&w.record.request_hash);
            rows.cmd_response.push(w.record.response.to_string());
        }
        rows
    }
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

/// Extra conditions of an audit read (an aggregate's history or the feed): every condition given
/// must hold. Each is a predicate on the rows the read already walks in order (the stream's
/// versions, the feed's positions), so a filter never changes a read's order or paging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Recorded at or after this time (`recorded_at`, the store's clock at the insert).
    pub from: Option<DateTime<Utc>>,
    /// Recorded before this time (exclusive, so consecutive windows never share an event).
    pub to: Option<DateTime<Utc>>,
    /// Caused by this actor (kind and id).
    pub actor: Option<Actor>,
    /// Of one of these categories.
    pub categories: Option<Vec<String>>,
    /// Of one of these event types.
    pub types: Option<Vec<String>>,
}

impl EventFilter {
    /// Only events of `types` (or every type when `None`).
    pub fn types(types: Option<&[String]>) -> Self {
        Self {
            types: types.map(<[String]>::to_vec),
            ..Self::default()
        }
    }
}

/// The conditions of an [`EventFilter`] as SQL on `events`, taking parameters `$1` to `$6`
/// ([`bind_filter`]); a query that uses it numbers its own parameters from `$7`.
const FILTER_SQL: &str = "($1::timestamptz IS NULL OR recorded_at >= $1) \
    AND ($2::timestamptz IS NULL OR recorded_at < $2) \
    AND ($3::text IS NULL OR (actor_kind = $3 AND actor_id = $4)) \
    AND ($5::text[] IS NULL OR category = ANY($5)) \
    AND ($6::text[] IS NULL OR event_type = ANY($6))";

type EventQuery<'q> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, RecordedEvent, sqlx::postgres::PgArguments>;

/// Binds `$1` to `$6` of [`FILTER_SQL`].
fn bind_filter<'q>(query: EventQuery<'q>, filter: &'q EventFilter) -> EventQuery<'q> {
    query
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.actor.as_ref().map(|a| a.kind.as_str()))
        .bind(filter.actor.as_ref().map(|a| a.id.as_str()))
        .bind(filter.categories.as_deref())
        .bind(filter.types.as_deref())
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

/// The group commit statement of [`EventStore::append_batch`], on a pool or a connection.
async fn append_batch_with<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    aggregate_type: &str,
    writes: &[CommandWrite<'_>],
) -> Result<Vec<Vec<i64>>, BatchError> {
    let rows = BatchRows::new(writes);
    let inserted: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "WITH input AS ( \
            SELECT * FROM UNNEST($2::uuid[], $3::text[], $4::int[], $5::text[], $6::text[], \
                $7::bigint[], $8::timestamptz[], $9::uuid[], $10::uuid[], $11::text[], $12::text[], \
                $13::text[], $14::uuid[], $15::jsonb[], $16::jsonb[], $17::int[]) WITH ORDINALITY \
                AS i(event_id, event_type, schema_version, category, aggregate_id, version, \
                     occurred_at, correlation_id, causation_id, actor_kind, actor_id, tenant, \
                     command_id, metadata, payload, shard_key, ord) \
         ), claimed AS ( \
            INSERT INTO commands (command_id, aggregate_type, aggregate_id, command_name, request_hash, response) \
            SELECT c.id, $1, c.aggregate_id, c.name, c.hash, c.response \
            FROM UNNEST($18::uuid[], $19::text[], $20::text[], $21::bytea[], $22::text[]) \
                AS c(id, aggregate_id, name, hash, response) \
         ), appended AS ( \
            INSERT INTO events (event_id, event_type, schema_version, category, aggregate_type, \
                aggregate_id, version, occurred_at, correlation_id, causation_id, actor_kind, actor_id, \
                tenant, command_id, metadata, payload) \
            SELECT event_id, event_type, schema_version, category, $1, aggregate_id, version, \
                occurred_at, correlation_id, causation_id, actor_kind, actor_id, tenant, command_id, \
                metadata, payload \
            FROM input ORDER BY ord \
            RETURNING event_id, position, aggregate_id, version \
         ), outboxed AS ( \
            INSERT INTO outbox (shard_key, event_position, aggregate_type, aggregate_id, version) \
            SELECT i.shard_key, a.position, $1, a.aggregate_id, a.version \
            FROM appended a JOIN input i ON i.event_id = a.event_id ORDER BY a.position \
         ) \
         SELECT event_id, position FROM appended",
    )
    .bind(aggregate_type)
    .bind(&rows.event_id)
    .bind(&rows.event_type)
    .bind(&rows.schema_version)
    .bind(&rows.category)
    .bind(&rows.aggregate_id)
    .bind(&rows.version)
    .bind(&rows.occurred_at)
    .bind(&rows.correlation_id)
    .bind(&rows.causation_id)
    .bind(&rows.actor_kind)
    .bind(&rows.actor_id)
    .bind(&rows.tenant)
    .bind(&rows.command_id)
    .bind(&rows.metadata)
    .bind(&rows.payload)
    .bind(&rows.shard_key)
    .bind(&rows.cmd_id)
    .bind(&rows.cmd_aggregate_id)
    .bind(&rows.cmd_name)
    .bind(&rows.cmd_hash)
    .bind(&rows.cmd_response)
    .fetch_all(executor)
    .await
    .map_err(BatchError::from_sqlx)?;
    let by_id: std::collections::HashMap<Uuid, i64> = inserted.into_iter().collect();
    Ok(writes
        .iter()
        .map(|w| {
            w.events
                .iter()
                .map(|e| by_id.get(&e.event_id).copied().unwrap_or_default())
                .collect()
        })
        .collect())
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

    /// Appends `events` to the stream `(meta.tenant, aggregate_type, aggregate_id)` after
    /// `expected_version` with their outbox rows and the command record, in one statement. A repeated command id returns [`AppendOutcome::Duplicate`] and appends nothing,
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
        let write = CommandWrite {
            aggregate_id,
            expected_version,
            events,
            meta,
            record,
        };
        match self.append_batch(aggregate_type, &[write]).await {
            Ok(mut positions) => Ok(AppendOutcome::Appended {
                version: expected_version + events.len() as i64,
                positions: positions.pop().unwrap_or_default(),
            }),
            Err(BatchError::UniqueViolation(_)) => {
                if let Some(stored) = self.command(meta.command_id).await? {
                    return Ok(AppendOutcome::Duplicate(stored));
                }
                let current_version = self
                    .current_version(&meta.tenant, aggregate_type, aggregate_id)
                    .await?;
                Err(AppendError::Conflict { current_version })
            }
            Err(BatchError::Database(e)) => Err(AppendError::Database(e)),
        }
    }

    /// Appends the events, outbox rows and command records of several commands in one statement
    /// (group commit): all of them or none. Returns each command's event positions, in order.
    ///
    /// A taken version or command id fails the whole batch with [`BatchError::UniqueViolation`];
    /// the caller finds out which command it was ([`EventStore::versions`],
    /// [`EventStore::commands`]) and writes the others again.
    pub async fn append_batch(
        &self,
        aggregate_type: &str,
        writes: &[CommandWrite<'_>],
    ) -> Result<Vec<Vec<i64>>, BatchError> {
        append_batch_with(&self.pool, aggregate_type, writes).await
    }

    /// [`EventStore::append_batch`] on a connection the caller holds (a writer that sends one
    /// batch after another keeps its connection instead of taking one from the pool each time).
    pub async fn append_batch_on(
        &self,
        conn: &mut sqlx::PgConnection,
        aggregate_type: &str,
        writes: &[CommandWrite<'_>],
    ) -> Result<Vec<Vec<i64>>, BatchError> {
        append_batch_with(conn, aggregate_type, writes).await
    }

    /// The stored records of those of `command_ids` that were seen before.
    pub async fn commands(
        &self,
        command_ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, CommandRecord>, sqlx::Error> {
        let rows: Vec<(Uuid, String, Vec<u8>, serde_json::Value)> = sqlx::query_as(
            "SELECT command_id, command_name, request_hash, response::jsonb FROM commands \
             WHERE command_id = ANY($1)",
        )
        .bind(command_ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, command_name, request_hash, response)| {
                (
                    id,
                    CommandRecord {
                        command_name,
                        request_hash,
                        response,
                    },
                )
            })
            .collect())
    }

    /// Current versions of `tenant`'s streams of `aggregate_ids` (absent ids have no events).
    pub async fn versions(
        &self,
        tenant: &str,
        aggregate_type: &str,
        aggregate_ids: &[String],
    ) -> Result<std::collections::HashMap<String, i64>, sqlx::Error> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT aggregate_id, MAX(version)::bigint FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = ANY($2) AND tenant = $3 \
             GROUP BY aggregate_id",
        )
        .bind(aggregate_type)
        .bind(aggregate_ids)
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Events of several of `tenant`'s aggregates, each after its own version, ordered by
    /// aggregate and version.
    pub async fn load_after(
        &self,
        tenant: &str,
        aggregate_type: &str,
        after: &[(String, i64)],
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let ids: Vec<&str> = after.iter().map(|(id, _)| id.as_str()).collect();
        let versions: Vec<i64> = after.iter().map(|(_, v)| *v).collect();
        sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             JOIN UNNEST($2::text[], $3::bigint[]) AS s(wanted_id, after_version) \
               ON aggregate_id = s.wanted_id AND version > s.after_version \
             WHERE aggregate_type = $1 AND tenant = $4 ORDER BY aggregate_id, version"
        ))
        .bind(aggregate_type)
        .bind(&ids)
        .bind(&versions)
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
    }

    /// The stored record of `command_id`, if any.
    pub async fn command(&self, command_id: Uuid) -> Result<Option<CommandRecord>, sqlx::Error> {
        let row: Option<(String, Vec<u8>, serde_json::Value)> = sqlx::query_as(
            "SELECT command_name, request_hash, response::jsonb FROM commands WHERE command_id = $1",
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

    /// The current version of `tenant`'s stream of the aggregate (0 when it has no events).
    pub async fn current_version(
        &self,
        tenant: &str,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0)::bigint FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $3",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(tenant)
        .fetch_one(&self.pool)
        .await
    }

    /// The version of `tenant`'s stream of the aggregate as of `as_of`: its last event recorded at
    /// or before then (0: none).
    pub async fn version_as_of(
        &self,
        tenant: &str,
        aggregate_type: &str,
        aggregate_id: &str,
        as_of: DateTime<Utc>,
    ) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0)::bigint FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $4 AND recorded_at <= $3",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(as_of)
        .bind(tenant)
        .fetch_one(&self.pool)
        .await
    }

    /// Events of `tenant`'s stream of one aggregate with `after_version < version <=
    /// up_to_version`, recorded at or before `as_of`, in version order, at most `limit`.
    #[allow(clippy::too_many_arguments)]
    pub async fn load(
        &self,
        tenant: &str,
        aggregate_type: &str,
        aggregate_id: &str,
        after_version: i64,
        up_to_version: Option<i64>,
        as_of: Option<DateTime<Utc>>,
        limit: Option<i64>,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $7 AND version > $3 \
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
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
    }

    /// The events of one correlation id after position `after`, in position order, at most
    /// `limit`; only `tenant`'s when given.
    pub async fn by_correlation(
        &self,
        correlation_id: Uuid,
        tenant: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE correlation_id = $1 AND position > $3 \
               AND ($2::text IS NULL OR tenant = $2) ORDER BY position LIMIT $4"
        ))
        .bind(correlation_id)
        .bind(tenant)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// The global feed after `cursor`, at most `limit` events, optionally only of `types` and of
    /// `tenant`.
    ///
    /// Only events of transactions older than every transaction still running are returned, ordered
    /// by (transaction id, position): an event that commits late with a smaller position is therefore
    /// never skipped by a reader that already moved past that position.
    pub async fn feed(
        &self,
        cursor: FeedCursor,
        limit: i64,
        types: Option<&[String]>,
        tenant: Option<&str>,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        self.feed_filtered(cursor, limit, &EventFilter::types(types), tenant)
            .await
    }

    /// [`EventStore::feed`] with the conditions of `filter`: the same walk along
    /// `(tx_id, position)`, the filter checked on each row on the way.
    pub async fn feed_filtered(
        &self,
        cursor: FeedCursor,
        limit: i64,
        filter: &EventFilter,
        tenant: Option<&str>,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE (tx_id, position) > ($7::text::xid8, $8) \
               AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
               AND ($9::text IS NULL OR tenant = $9) AND {FILTER_SQL} \
             ORDER BY tx_id, position LIMIT $10"
        );
        bind_filter(sqlx::query_as(&sql), filter)
            .bind(cursor.tx_id.to_string())
            .bind(cursor.position)
            .bind(tenant)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
    }

    /// Events of `tenant`'s stream of one aggregate after `after_version` that meet `filter`, in
    /// version order, at most `limit` (the stream's own index, the filter checked on its rows).
    pub async fn history(
        &self,
        tenant: &str,
        aggregate_type: &str,
        aggregate_id: &str,
        after_version: i64,
        limit: i64,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE aggregate_type = $7 AND aggregate_id = $8 AND tenant = $9 AND version > $10 \
               AND {FILTER_SQL} \
             ORDER BY version LIMIT $11"
        );
        bind_filter(sqlx::query_as(&sql), filter)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(tenant)
            .bind(after_version)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
    }
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
