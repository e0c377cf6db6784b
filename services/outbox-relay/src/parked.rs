//! Parked outbox rows for operators: list them, release an aggregate's chain back into the outbox,
//! or discard it. Used by the relay's admin routes and by `eventfold outbox parked`.
//!
//! A release moves every parked row of one aggregate back into `outbox` in one transaction, under
//! their original ids (and transaction ids), holding the aggregate's lock that parking also takes.
//! The relay reads the outbox in id order and the aggregate's later rows have larger ids, so the
//! released rows are published first and in version order; a later row read before the release
//! and about to be parked behind the released head is left in the outbox instead (see
//! [`crate::outbox::park`]). A row that fails again is parked again.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::outbox::AGGREGATE_LOCK_CLASS;

/// One parked outbox row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ParkedRow {
    /// Outbox row id (kept from the outbox).
    pub id: i64,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Aggregate version of the event.
    pub version: i64,
    /// Event store position.
    pub event_position: i64,
    /// Kind of failure: `encode`, `too_large`, `behind_parked` (absent for rows parked before
    /// kinds were recorded).
    pub reason: Option<String>,
    /// The error text.
    pub error: String,
    /// The parked row this one waits behind.
    pub blocked_by: Option<i64>,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
}

/// An aggregate, as `TYPE/ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AggregateRef {
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
}

impl std::str::FromStr for AggregateRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((t, i)) if !t.is_empty() && !i.is_empty() => Ok(Self {
                aggregate_type: t.to_owned(),
                aggregate_id: i.to_owned(),
            }),
            _ => Err(format!("aggregate `{s}`: expected TYPE/ID")),
        }
    }
}

impl std::fmt::Display for AggregateRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.aggregate_type, self.aggregate_id)
    }
}

/// Parked rows in id order after `after`, at most `limit`, optionally of one aggregate.
pub async fn list(
    pool: &PgPool,
    aggregate: Option<&AggregateRef>,
    after: i64,
    limit: i64,
) -> Result<Vec<ParkedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, aggregate_type, aggregate_id, version, event_position, kind AS reason, \
                reason AS error, blocked_by, parked_at \
         FROM outbox_parked \
         WHERE id > $1 AND ($2::text IS NULL OR (aggregate_type = $2 AND aggregate_id = $3)) \
         ORDER BY id LIMIT $4",
    )
    .bind(after)
    .bind(aggregate.map(|a| a.aggregate_type.as_str()))
    .bind(aggregate.map(|a| a.aggregate_id.as_str()))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The aggregates that have parked rows, in the order of their first parked row.
pub async fn aggregates(pool: &PgPool) -> Result<Vec<AggregateRef>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id FROM outbox_parked \
         GROUP BY 1, 2 ORDER BY min(id)",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(aggregate_type, aggregate_id)| AggregateRef {
            aggregate_type,
            aggregate_id,
        })
        .collect())
}

/// What a release or discard did to one aggregate.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    /// The aggregate.
    pub aggregate: String,
    /// The rows' ids, in id order.
    pub ids: Vec<i64>,
    /// Their versions, in the same order.
    pub versions: Vec<i64>,
}

async fn lock(tx: &mut sqlx::PgConnection, aggregate: &AggregateRef) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2 || '/' || $3))")
        .bind(AGGREGATE_LOCK_CLASS)
        .bind(&aggregate.aggregate_type)
        .bind(&aggregate.aggregate_id)
        .execute(tx)
        .await
        .map(drop)
}

/// Puts every parked row of `aggregate` back into the outbox (one transaction); `None` when it has
/// none.
pub async fn release(
    pool: &PgPool,
    aggregate: &AggregateRef,
) -> Result<Option<Moved>, sqlx::Error> {
    under_lock(
        pool,
        aggregate,
        "WITH gone AS ( \
            DELETE FROM outbox_parked WHERE aggregate_type = $1 AND aggregate_id = $2 \
            RETURNING id, tx_id, shard_key, event_position, aggregate_type, aggregate_id, version, \
                      created_at \
         ) \
         INSERT INTO outbox (id, tx_id, shard_key, event_position, aggregate_type, aggregate_id, \
                             version, created_at) \
         OVERRIDING SYSTEM VALUE SELECT * FROM gone ORDER BY id \
         RETURNING id, version",
    )
    .await
}

/// Deletes every parked row of `aggregate` (one transaction); `None` when it has none. The events
/// stay in the event store; read models get them only through a rebuild.
pub async fn discard(
    pool: &PgPool,
    aggregate: &AggregateRef,
) -> Result<Option<Moved>, sqlx::Error> {
    under_lock(
        pool,
        aggregate,
        "DELETE FROM outbox_parked WHERE aggregate_type = $1 AND aggregate_id = $2 \
         RETURNING id, version",
    )
    .await
}

/// Runs `statement` (`$1`, `$2` = the aggregate; returning `id, version` of each row it moved) in
/// one transaction holding the aggregate's lock, so it cannot interleave with a parking.
async fn under_lock(
    pool: &PgPool,
    aggregate: &AggregateRef,
    statement: &str,
) -> Result<Option<Moved>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    lock(&mut tx, aggregate).await?;
    let rows: Vec<(i64, i64)> = sqlx::query_as(statement)
        .bind(&aggregate.aggregate_type)
        .bind(&aggregate.aggregate_id)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(moved(aggregate, rows))
}

fn moved(aggregate: &AggregateRef, mut rows: Vec<(i64, i64)>) -> Option<Moved> {
    if rows.is_empty() {
        return None;
    }
    rows.sort_unstable();
    let (ids, versions) = rows.into_iter().unzip();
    Some(Moved {
        aggregate: aggregate.to_string(),
        ids,
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aggregate_is_type_slash_id() {
        let a: AggregateRef = "CrossReference/GEN.1.1:JHN.1.1".parse().unwrap();
        assert_eq!(a.aggregate_type, "CrossReference");
        assert_eq!(a.aggregate_id, "GEN.1.1:JHN.1.1");
        assert_eq!(a.to_string(), "CrossReference/GEN.1.1:JHN.1.1");
        // Only the first slash splits: ids may contain slashes.
        let b: AggregateRef = "Doc/a/b".parse().unwrap();
        assert_eq!(b.aggregate_id, "a/b");
        for bad in ["", "x", "/id", "Type/"] {
            assert!(bad.parse::<AggregateRef>().is_err(), "{bad}");
        }
    }
}
