//! Event store statistics (`event_stats`, `event_stats_minutes`), maintained beside the events so
//! that reading them costs a few rows per tenant, never a scan of `events`.
//!
//! Appends do not touch these tables: a counter updated by every append would make every writer
//! wait on one row lock. Instead [`catch_up_batch`] folds the events after a watermark into the
//! counts, at most a batch at a time, under an advisory lock so that two maintainers never count an
//! event twice. It reads events in the order of the commit-safe global feed
//! ([`crate::EventStore::feed`]): `(tx_id, position)` after the watermark, and only transactions
//! older than every transaction still running. A position allocated early but committed late thus
//! lands before the watermark passes it, instead of being skipped.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// Advisory lock key held (per transaction) while folding events into the statistics.
pub const LOCK_KEY: i64 = 0x0065_7673_7461_7473;

/// Minutes of per-minute counts kept; older buckets are pruned.
pub const MINUTES_KEPT: i64 = 120;

/// Buckets of [`EventStats::events_per_minute`]: the last hour, the current minute last.
pub const MINUTE_BUCKETS: usize = 60;

/// What one [`catch_up_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// This many events were folded in.
    Folded(u64),
    /// No commit-safe event after the watermark.
    Empty,
    /// Another maintainer holds the lock (only when not waiting for it).
    Busy,
}

/// Folds at most `batch` events after the watermark into the statistics, in one transaction.
/// With `wait`, waits for a maintainer holding the lock; otherwise answers [`CatchUp::Busy`].
pub async fn catch_up_batch(pool: &PgPool, batch: i64, wait: bool) -> Result<CatchUp, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked: bool = if wait {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        true
    } else {
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut *tx)
            .await?
    };
    if !locked {
        return Ok(CatchUp::Busy);
    }
    let (tx_id, position): (String, i64) =
        sqlx::query_as("SELECT tx_id::text, position FROM event_stats_watermark")
            .fetch_one(&mut *tx)
            .await?;
    let folded: i64 = sqlx::query_scalar(
        "WITH batch AS MATERIALIZED ( \
             SELECT tx_id, position, tenant, aggregate_type, event_type, category, recorded_at \
             FROM events \
             WHERE (tx_id, position) > ($1::text::xid8, $2) \
               AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY tx_id, position LIMIT $3 \
         ), counted AS ( \
             INSERT INTO event_stats AS s \
                 (tenant, aggregate_type, event_type, category, count, first_at, last_at) \
             SELECT tenant, aggregate_type, event_type, category, count(*), min(recorded_at), \
                    max(recorded_at) \
             FROM batch GROUP BY tenant, aggregate_type, event_type, category \
             ON CONFLICT (tenant, aggregate_type, event_type, category) DO UPDATE \
             SET count = s.count + EXCLUDED.count, \
                 first_at = LEAST(s.first_at, EXCLUDED.first_at), \
                 last_at = GREATEST(s.last_at, EXCLUDED.last_at) \
         ), minutes AS ( \
             INSERT INTO event_stats_minutes AS m (tenant, minute, count) \
             SELECT tenant, date_trunc('minute', recorded_at), count(*) FROM batch \
             WHERE recorded_at >= now() - make_interval(mins => $4) \
             GROUP BY tenant, date_trunc('minute', recorded_at) \
             ON CONFLICT (tenant, minute) DO UPDATE SET count = m.count + EXCLUDED.count \
         ), last AS ( \
             SELECT tx_id, position FROM batch ORDER BY tx_id DESC, position DESC LIMIT 1 \
         ), moved AS ( \
             UPDATE event_stats_watermark w \
             SET tx_id = last.tx_id, position = last.position, updated_at = clock_timestamp() \
             FROM last \
         ) \
         SELECT count(*) FROM batch",
    )
    .bind(tx_id)
    .bind(position)
    .bind(batch)
    .bind(MINUTES_KEPT as i32)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(if folded == 0 {
        CatchUp::Empty
    } else {
        CatchUp::Folded(folded as u64)
    })
}

/// Runs [`catch_up_batch`] (waiting for the lock) until nothing is left or `max_batches` ran;
/// true when caught up.
pub async fn catch_up(pool: &PgPool, batch: i64, max_batches: u32) -> Result<bool, sqlx::Error> {
    for _ in 0..max_batches {
        match catch_up_batch(pool, batch, true).await? {
            CatchUp::Folded(n) if (n as i64) < batch => return Ok(true),
            CatchUp::Folded(_) => {}
            CatchUp::Empty | CatchUp::Busy => return Ok(true),
        }
    }
    Ok(false)
}

/// Deletes per-minute buckets older than [`MINUTES_KEPT`] minutes; returns how many.
pub async fn prune_minutes(pool: &PgPool) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM event_stats_minutes WHERE minute < now() - make_interval(mins => $1)")
        .bind(MINUTES_KEPT as i32)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
}

/// Events recorded in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MinuteCount {
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Events recorded in it.
    pub count: i64,
}

/// One tenant's statistics as of the watermark.
#[derive(Debug, Clone, Serialize)]
pub struct EventStats {
    /// The tenant.
    pub tenant: String,
    /// Every event of the tenant.
    pub total_events: i64,
    /// Counts by event type.
    pub by_event_type: BTreeMap<String, i64>,
    /// Counts by category.
    pub by_category: BTreeMap<String, i64>,
    /// Counts by aggregate type.
    pub by_aggregate_type: BTreeMap<String, i64>,
    /// When the tenant's first event was recorded.
    pub first_event_at: Option<DateTime<Utc>>,
    /// When its last event was recorded.
    pub last_event_at: Option<DateTime<Utc>>,
    /// Events recorded per minute over the last hour, oldest first, the current minute last.
    pub events_per_minute: Vec<MinuteCount>,
    /// Global position of the last event folded in (every tenant's).
    pub watermark_position: i64,
    /// When the watermark last moved.
    pub watermark_updated_at: DateTime<Utc>,
}

impl EventStats {
    /// Events in the current minute (the last bucket).
    pub fn current_minute(&self) -> i64 {
        self.events_per_minute.last().map_or(0, |m| m.count)
    }

    /// Events over the last hour (every bucket).
    pub fn last_hour(&self) -> i64 {
        self.events_per_minute.iter().map(|m| m.count).sum()
    }
}

/// `tenant`'s statistics as maintained (call [`catch_up`] first for the newest).
pub async fn read(pool: &PgPool, tenant: &str) -> Result<EventStats, sqlx::Error> {
    type Row = (String, String, String, i64, DateTime<Utc>, DateTime<Utc>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT aggregate_type, event_type, category, count, first_at, last_at \
         FROM event_stats WHERE tenant = $1",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    let (now_minute, position, updated_at): (DateTime<Utc>, i64, DateTime<Utc>) = sqlx::query_as(
        "SELECT date_trunc('minute', now()), position, updated_at FROM event_stats_watermark",
    )
    .fetch_one(pool)
    .await?;
    let oldest = now_minute - Duration::minutes(MINUTE_BUCKETS as i64 - 1);
    let minutes: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT minute, count FROM event_stats_minutes \
         WHERE tenant = $1 AND minute >= $2 AND minute <= $3",
    )
    .bind(tenant)
    .bind(oldest)
    .bind(now_minute)
    .fetch_all(pool)
    .await?;
    let mut stats = EventStats {
        tenant: tenant.to_owned(),
        total_events: 0,
        by_event_type: BTreeMap::new(),
        by_category: BTreeMap::new(),
        by_aggregate_type: BTreeMap::new(),
        first_event_at: None,
        last_event_at: None,
        events_per_minute: buckets(oldest, &minutes),
        watermark_position: position,
        watermark_updated_at: updated_at,
    };
    for (aggregate_type, event_type, category, count, first, last) in rows {
        stats.total_events += count;
        *stats.by_event_type.entry(event_type).or_default() += count;
        *stats.by_category.entry(category).or_default() += count;
        *stats.by_aggregate_type.entry(aggregate_type).or_default() += count;
        stats.first_event_at = Some(stats.first_event_at.map_or(first, |f| f.min(first)));
        stats.last_event_at = Some(stats.last_event_at.map_or(last, |l| l.max(last)));
    }
    Ok(stats)
}

/// [`MINUTE_BUCKETS`] consecutive minutes from `oldest`, zero where `counts` has none.
fn buckets(oldest: DateTime<Utc>, counts: &[(DateTime<Utc>, i64)]) -> Vec<MinuteCount> {
    (0..MINUTE_BUCKETS as i64)
        .map(|i| {
            let minute = oldest + Duration::minutes(i);
            let count = counts
                .iter()
                .filter(|(m, _)| *m == minute)
                .map(|(_, c)| c)
                .sum();
            MinuteCount { minute, count }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_an_hour_of_buckets_with_zeros_where_nothing_was_recorded() {
        let oldest: DateTime<Utc> = "2026-12-09T10:00:00Z".parse().unwrap();
        let b = buckets(
            oldest,
            &[
                (oldest, 3),
                (oldest + Duration::minutes(59), 7),
                (oldest + Duration::minutes(60), 100),
            ],
        );
        assert_eq!(b.len(), 60);
        assert_eq!(b[0].count, 3);
        assert_eq!(b[1].count, 0);
        assert_eq!(b[59].minute, oldest + Duration::minutes(59));
        assert_eq!(b[59].count, 7);
        assert_eq!(b.iter().map(|m| m.count).sum::<i64>(), 10);
    }
}
