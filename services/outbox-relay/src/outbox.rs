//! The relay's SQL: read the next rows of the owned shards, delete published rows, park rows that
//! cannot be published, and measure the backlog.
//!
//! Rows are consumed by deleting them, never by a cursor: a row that commits late with a smaller id
//! is simply found by the next read. Within an aggregate, version v+1 is appended only after v has
//! committed (or in the same statement, with a larger id), so reading committed rows by id gives
//! each aggregate's events in version order.
//!
//! Every delete names the epoch its shard had when the rows were read; after another relay took the
//! shard (and bumped the epoch) the delete removes nothing and the rows are published again by the
//! new owner (a duplicate, never a loss).

use chrono::{DateTime, Utc};
use eventfold_kafka::Envelope;
use futures::TryStreamExt;
use sqlx::types::Json;
use sqlx::{PgPool, Row};

/// An outbox row joined with its event.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Outbox row id.
    pub id: i64,
    /// `shard_key % shards`.
    pub shard: i32,
    /// The event's envelope.
    pub envelope: Envelope,
    /// When the event was stored.
    pub recorded_at: DateTime<Utc>,
    /// The JSON payload as stored.
    pub payload: serde_json::Value,
    /// The first parked row of the same aggregate, if any: this row must wait behind it.
    pub blocked_by: Option<i64>,
}

/// What one read returned.
#[derive(Debug, Default)]
pub struct Batch {
    /// The owned shards whose epoch is still this relay's.
    pub valid_shards: Vec<i32>,
    /// The next rows, in id order.
    pub rows: Vec<OutboxRow>,
}

/// A published (acked) row to delete: its id and the epoch of its shard when it was read.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    /// Outbox row id.
    pub id: i64,
    /// Epoch of the row's shard at read time.
    pub epoch: i64,
}

const NEXT_SQL: &str = "\
    WITH own AS ( \
        SELECT u.shard FROM UNNEST($2::int[], $3::bigint[]) AS u(shard, epoch) \
        JOIN relay_shards r ON r.shard = u.shard AND r.epoch = u.epoch \
    ) \
    SELECT ARRAY(SELECT shard FROM own) AS valid, n.* \
    FROM (SELECT 1) AS one LEFT JOIN LATERAL ( \
        SELECT o.id, (o.shard_key % $1)::int AS shard, e.event_id, e.event_type, e.schema_version, \
            e.aggregate_type, e.aggregate_id, e.version, e.position, e.occurred_at, e.recorded_at, \
            e.correlation_id, e.causation_id, e.command_id, e.actor_kind, e.actor_id, e.tenant, \
            e.metadata ->> 'traceparent' AS traceparent, e.payload, \
            CASE WHEN (SELECT EXISTS (SELECT 1 FROM outbox_parked)) THEN \
              (SELECT min(p.id) FROM outbox_parked p \
                WHERE p.aggregate_type = o.aggregate_type AND p.aggregate_id = o.aggregate_id) END AS blocked_by \
        FROM outbox o JOIN events e ON e.position = o.event_position \
        WHERE o.shard_key % $1 = ANY($2::int[]) \
          AND o.id NOT IN (SELECT UNNEST($5::bigint[])) \
        ORDER BY o.id LIMIT $4 \
    ) AS n ON true";

/// Reads up to `limit` rows of `owned` shards in id order, skipping the rows in `exclude` (sent
/// and not yet acknowledged, or acknowledged and not yet deleted). The shard filter is a plain
/// `= ANY(array)` so that the planner walks the primary key in order: joined against the fenced
/// shards instead, it misjudged the filter as very selective and sorted the whole outbox (7 s per
/// batch with a million rows waiting). Rows of shards missing from [`Batch::valid_shards`] must be
/// dropped by the caller.
pub async fn next_batch(
    pool: &PgPool,
    shards: u32,
    owned: &[(i32, i64)],
    exclude: &[i64],
    limit: usize,
) -> Result<Batch, sqlx::Error> {
    let (owned_shards, owned_epochs): (Vec<i32>, Vec<i64>) = owned.iter().copied().unzip();
    // Rows are decoded as they arrive, while the server is still producing the later ones.
    let mut rows = sqlx::query(NEXT_SQL)
        .bind(shards as i32)
        .bind(&owned_shards)
        .bind(&owned_epochs)
        .bind(limit as i64)
        .bind(exclude)
        .fetch(pool);
    let mut batch = Batch {
        valid_shards: Vec::new(),
        rows: Vec::with_capacity(limit),
    };
    let mut first = true;
    while let Some(row) = rows.try_next().await? {
        if first {
            batch.valid_shards = row.try_get("valid")?;
            first = false;
        }
        let Some(id) = row.try_get::<Option<i64>, _>("id")? else {
            continue;
        };
        let envelope = Envelope::from_event_row(&row)?;
        let recorded_at: DateTime<Utc> = row.try_get("recorded_at")?;
        let Json(payload): Json<serde_json::Value> = row.try_get("payload")?;
        batch.rows.push(OutboxRow {
            id,
            shard: row.try_get("shard")?,
            envelope,
            recorded_at,
            payload,
            blocked_by: row.try_get("blocked_by")?,
        });
    }
    Ok(batch)
}

/// Deletes published rows (fenced by epoch); returns how many were deleted.
pub async fn delete(pool: &PgPool, shards: u32, done: &[Done]) -> Result<u64, sqlx::Error> {
    let (ids, epochs): (Vec<i64>, Vec<i64>) = done.iter().map(|d| (d.id, d.epoch)).unzip();
    let result = sqlx::query(
        "DELETE FROM outbox o USING UNNEST($2::bigint[], $3::bigint[]) AS p(id, epoch), relay_shards r \
         WHERE o.id = p.id AND r.shard = o.shard_key % $1 AND r.epoch = p.epoch",
    )
    .bind(shards as i32)
    .bind(&ids)
    .bind(&epochs)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// A row to move aside, and why.
#[derive(Debug, Clone)]
pub struct Park {
    /// Outbox row id.
    pub id: i64,
    /// Epoch of its shard at read time.
    pub epoch: i64,
    /// The kind of failure (`encode`, `too_large`, `behind_parked`), as in the metric.
    pub kind: &'static str,
    /// Why it cannot be published.
    pub reason: String,
    /// The parked row it waits behind, if it is not the failing row itself.
    pub blocked_by: Option<i64>,
}

/// First key of the per-aggregate advisory lock that parking and releasing take (the second is
/// `hashtext(aggregate_type || '/' || aggregate_id)`), so that a release never interleaves with a
/// parking of the same aggregate.
pub const AGGREGATE_LOCK_CLASS: i32 = 0x4546_5232;

const PARK_LOCK_SQL: &str = "\
    SELECT count(pg_advisory_xact_lock($1, k))::bigint FROM ( \
        SELECT DISTINCT hashtext(aggregate_type || '/' || aggregate_id) AS k \
        FROM outbox WHERE id = ANY($2::bigint[]) ORDER BY k \
    ) AS s";

/// Moves a row to `outbox_parked` and queues its dead-letter copy in `outbox_dlt`, in one
/// statement. A row waiting behind a parked row is moved only while that row is still parked (or
/// is parked by the same statement): when the blocker was released since the read, the row stays
/// in the outbox and is read again, behind the released rows.
const PARK_SQL: &str = "\
    WITH p AS ( \
        SELECT * FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bigint[]) \
            AS p(id, epoch, kind, reason, blocked_by) \
    ), ok AS ( \
        SELECT p.* FROM p WHERE p.blocked_by IS NULL \
            OR p.blocked_by IN (SELECT id FROM p WHERE blocked_by IS NULL) \
            OR EXISTS (SELECT 1 FROM outbox_parked q WHERE q.id = p.blocked_by) \
    ), moved AS ( \
        DELETE FROM outbox o USING ok, relay_shards r \
        WHERE o.id = ok.id AND r.shard = o.shard_key % $1 AND r.epoch = ok.epoch \
        RETURNING o.id, o.tx_id, o.shard_key, o.event_position, o.aggregate_type, o.aggregate_id, \
                  o.version, o.created_at, ok.kind, ok.reason, ok.blocked_by \
    ), parked AS ( \
        INSERT INTO outbox_parked (id, tx_id, shard_key, event_position, aggregate_type, \
                                   aggregate_id, version, created_at, kind, reason, blocked_by) \
        SELECT * FROM moved \
        RETURNING id, shard_key, event_position, aggregate_type, aggregate_id, version, kind, \
                  reason, parked_at \
    ) \
    INSERT INTO outbox_dlt (parked_id, shard_key, event_position, aggregate_type, aggregate_id, \
                            version, kind, reason, parked_at) \
    SELECT * FROM parked";

/// Moves `rows` from the outbox to `outbox_parked` (fenced by epoch) and queues their dead-letter
/// copies, in one transaction holding the aggregates' locks; returns how many moved.
pub async fn park(pool: &PgPool, shards: u32, rows: &[Park]) -> Result<u64, sqlx::Error> {
    let ids: Vec<i64> = rows.iter().map(|p| p.id).collect();
    let epochs: Vec<i64> = rows.iter().map(|p| p.epoch).collect();
    let kinds: Vec<&str> = rows.iter().map(|p| p.kind).collect();
    let reasons: Vec<&str> = rows.iter().map(|p| p.reason.as_str()).collect();
    let blocked_by: Vec<Option<i64>> = rows.iter().map(|p| p.blocked_by).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(PARK_LOCK_SQL)
        .bind(AGGREGATE_LOCK_CLASS)
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    // A statement of its own, after the locks: under READ COMMITTED it sees a release that
    // committed while this transaction waited for them.
    let result = sqlx::query(PARK_SQL)
        .bind(shards as i32)
        .bind(&ids)
        .bind(&epochs)
        .bind(&kinds)
        .bind(&reasons)
        .bind(&blocked_by)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(result.rows_affected())
}

/// Unpublished rows and the age of the oldest one (seconds), per shard.
pub async fn backlog(pool: &PgPool, shards: u32) -> Result<Vec<(i32, i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT (shard_key % $1)::int, count(*)::bigint, \
                COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)), 0)::bigint \
         FROM outbox GROUP BY 1",
    )
    .bind(shards as i32)
    .fetch_all(pool)
    .await
}
