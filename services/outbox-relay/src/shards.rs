//! Shard ownership. A relay owns a shard while it holds the session advisory lock
//! `(LOCK_CLASS, shard)` on its own unpooled connection; taking a shard also bumps the shard's epoch
//! in `relay_shards`, and every delete of outbox rows names the epoch it published under, so a
//! relay that lost its lock without noticing (paused, cut off) is fenced.
//!
//! The lock connection runs with `idle_session_timeout = lease`: a relay that stops talking to
//! PostgreSQL for a lease loses its session and with it its locks. Every lease / 3 the relay counts
//! the live relays (their lock connections in `pg_stat_activity`), checks which locks it still
//! holds, takes free shards up to its fair share (shards / live relays, rounded up), takes any shard
//! that stayed free for two rounds, and releases shards above its fair share between batches.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use eventfold_postgres::PgSettings;
use eventfold_runtime::Shutdown;
use sqlx::{Connection, PgConnection};
use tokio::sync::{Mutex, MutexGuard, Notify};

use crate::metrics::RelayMetrics;

/// First key of every shard's advisory lock (the second is the shard number).
pub const LOCK_CLASS: i32 = 0x4546_5231;

/// Owned shards and the epoch each was taken under.
pub type Owned = BTreeMap<i32, i64>;

/// One relay's view of the shards it owns.
#[derive(Debug)]
pub struct Shards {
    shards: u32,
    lease: Duration,
    relay_id: String,
    database: PgSettings,
    metrics: RelayMetrics,
    conn: Mutex<Option<PgConnection>>,
    owned: Mutex<Owned>,
    seen_free: std::sync::Mutex<BTreeSet<i32>>,
    /// Fires when this relay takes a shard.
    pub changed: Notify,
}

/// Marks a relay's lock connection in `pg_stat_activity`; live relays are counted by it (a dead
/// relay's connection is gone at once, a paused one's after `idle_session_timeout`).
const APPLICATION_NAME: &str = "outbox-relay locks";

const TICK_SQL: &str = "\
    SELECT \
        (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
          AND application_name LIKE 'outbox-relay locks%') AS live, \
        ARRAY(SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::bigint::oid \
              AND objsubid = 2 AND pid = pg_backend_pid()) AS mine, \
        ARRAY(SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::bigint::oid \
              AND objsubid = 2 AND granted \
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) AS taken";

const HELD_SQL: &str = "\
    SELECT ARRAY(SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' \
        AND classid = $1::bigint::oid AND objsubid = 2 AND pid = pg_backend_pid())";

const TAKE_SQL: &str = "\
    WITH lock AS (SELECT pg_try_advisory_lock($3, $1) AS got) \
    INSERT INTO relay_shards (shard, epoch, owner) SELECT $1, 1, $2 FROM lock WHERE got \
    ON CONFLICT (shard) DO UPDATE \
        SET epoch = relay_shards.epoch + 1, owner = EXCLUDED.owner, acquired_at = clock_timestamp() \
    RETURNING epoch";

impl Shards {
    /// Ownership of `shards` shards for `relay_id` against `database` (connects on first tick).
    pub fn new(
        shards: u32,
        lease: Duration,
        relay_id: String,
        database: PgSettings,
        metrics: RelayMetrics,
    ) -> Self {
        Self {
            shards,
            lease,
            relay_id,
            database,
            metrics,
            conn: Mutex::new(None),
            owned: Mutex::new(Owned::new()),
            seen_free: std::sync::Mutex::new(BTreeSet::new()),
            changed: Notify::new(),
        }
    }

    /// Number of shards the outbox is split into.
    pub fn count(&self) -> u32 {
        self.shards
    }

    /// Locks the owned set for one batch; ownership changes wait until the guard is dropped.
    pub async fn lock(&self) -> MutexGuard<'_, Owned> {
        self.owned.lock().await
    }

    /// One ownership round: a third of the lease (at least 100 ms).
    fn round(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(100))
    }

    /// Heartbeats and re-checks ownership every lease / 3 until `stop` fires.
    pub async fn run(&self, stop: Shutdown) {
        let period = self.round();
        loop {
            self.tick().await;
            tokio::select! {
                _ = stop.wait() => return,
                _ = tokio::time::sleep(period) => {}
            }
        }
    }

    /// Keeps of `owned` only the shards whose locks this relay's connection still holds; a shard
    /// whose lock is gone must not be published any more.
    pub async fn verify(&self, owned: &mut Owned) {
        let held = {
            let mut conn = self.conn.lock().await;
            match conn.as_mut() {
                None => None,
                Some(c) => match held_locks(c).await {
                    Ok(held) => Some(held),
                    Err(e) => {
                        tracing::warn!(error = %e, "lock connection failed: every shard is lost");
                        *conn = None;
                        None
                    }
                },
            }
        };
        let held: BTreeSet<i64> = held.unwrap_or_default().into_iter().collect();
        self.forget(owned, |s| !held.contains(&i64::from(s)));
    }

    /// Drops the shards for which `lost` is true from `owned`.
    pub fn forget(&self, owned: &mut Owned, lost: impl Fn(i32) -> bool) {
        let gone: Vec<i32> = owned.keys().copied().filter(|s| lost(*s)).collect();
        for s in gone {
            owned.remove(&s);
            self.metrics.shard_lost.inc();
            let _ = self
                .metrics
                .shard_owned
                .remove_label_values(&[&s.to_string()]);
            tracing::warn!(shard = s, relay = %self.relay_id, "lost shard");
        }
        self.metrics.shards_owned.set(owned.len() as i64);
    }

    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        let mut conn = PgConnection::connect_with(&self.database.connect_options()).await?;
        let timeout_ms = self.lease.as_millis();
        sqlx::query(
            "SELECT set_config('idle_session_timeout', $1, false), \
                    set_config('application_name', $2, false)",
        )
        .bind(timeout_ms.to_string())
        .bind(format!("{APPLICATION_NAME} {}", self.relay_id))
        .execute(&mut conn)
        .await?;
        Ok(conn)
    }

    /// One round: heartbeat, drop lost shards, take free ones, release extras.
    pub async fn tick(&self) {
        let Some((live, mine, taken)) = self.heartbeat().await else {
            return;
        };
        // Ownership changes happen between batches: wait for the publisher to finish the batch in
        // hand (the lock is fair, so its next batch queues behind us), but not past a round.
        let Ok(mut owned) = tokio::time::timeout(self.round(), self.owned.lock()).await else {
            return;
        };
        let mut conn_guard = self.conn.lock().await;
        let Some(conn) = conn_guard.as_mut() else {
            return;
        };
        let mine: BTreeSet<i64> = mine.into_iter().collect();
        self.forget(&mut owned, |s| !mine.contains(&i64::from(s)));

        let live = live.max(1) as u32;
        let fair = self.shards.div_ceil(live) as usize;
        let taken: BTreeSet<i64> = taken.into_iter().collect();
        let free: BTreeSet<i32> = (0..self.shards as i32)
            .filter(|s| !taken.contains(&i64::from(*s)))
            .collect();
        let seen_free = std::mem::replace(
            &mut *self.seen_free.lock().unwrap_or_else(|p| p.into_inner()),
            free.clone(),
        );
        // Start at a place of our own so that relays starting together try different shards.
        let start = (eventfold_postgres::shard_key(&self.relay_id) as u32 % self.shards) as i32;
        let ordered = free
            .range(start..)
            .chain(free.range(..start))
            .copied()
            .collect::<Vec<_>>();
        let mut took = false;
        for s in ordered {
            if owned.len() >= fair && !seen_free.contains(&s) {
                continue;
            }
            match take(conn, s, &self.relay_id).await {
                Ok(Some(epoch)) => {
                    owned.insert(s, epoch);
                    took = true;
                    self.metrics.shard_acquired.inc();
                    self.metrics
                        .shard_owned
                        .with_label_values(&[&s.to_string()])
                        .set(1);
                    tracing::info!(shard = s, epoch, relay = %self.relay_id, "took shard");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, shard = s, "cannot take shard");
                    break;
                }
            }
        }
        while owned.len() > fair {
            let Some((&s, _)) = owned.iter().next_back() else {
                break;
            };
            if let Err(e) = release(conn, s).await {
                tracing::warn!(error = %e, shard = s, "cannot release shard");
                break;
            }
            owned.remove(&s);
            let _ = self
                .metrics
                .shard_owned
                .remove_label_values(&[&s.to_string()]);
            tracing::info!(shard = s, relay = %self.relay_id, fair, "released shard to a peer");
        }
        self.metrics.shards_owned.set(owned.len() as i64);
        if took {
            self.changed.notify_one();
        }
    }

    /// Connects if needed and asks for the live relay count, the shards this connection
    /// holds and the shards anyone holds. `None` (and every shard lost) when the connection failed.
    async fn heartbeat(&self) -> Option<(i64, Vec<i64>, Vec<i64>)> {
        let mut conn_guard = self.conn.lock().await;
        if conn_guard.is_none() {
            match self.connect().await {
                Ok(c) => *conn_guard = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the lock connection");
                    return None;
                }
            }
        }
        let conn = conn_guard.as_mut()?;
        match heartbeat(conn).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "lock connection failed: every shard is lost");
                *conn_guard = None;
                None
            }
        }
    }

    /// Releases every lock (graceful shutdown).
    pub async fn release_all(&self) {
        let mut owned = self.owned.lock().await;
        owned.clear();
        self.metrics.shards_owned.set(0);
        let mut conn = self.conn.lock().await;
        if let Some(mut c) = conn.take() {
            let _ = leave(&mut c).await;
            let _ = c.close().await;
        }
        tracing::info!(relay = %self.relay_id, "released every shard");
    }
}

/// The shards whose locks `conn`'s session holds.
async fn held_locks(conn: &mut PgConnection) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(HELD_SQL)
        .bind(i64::from(LOCK_CLASS))
        .fetch_one(conn)
        .await
}

/// Returns the live relay count, the shards locked by `conn` and by anyone.
async fn heartbeat(conn: &mut PgConnection) -> Result<(i64, Vec<i64>, Vec<i64>), sqlx::Error> {
    sqlx::query_as(TICK_SQL)
        .bind(i64::from(LOCK_CLASS))
        .fetch_one(conn)
        .await
}

/// Tries to lock `shard`; on success bumps and returns its epoch.
async fn take(
    conn: &mut PgConnection,
    shard: i32,
    relay_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(TAKE_SQL)
        .bind(shard)
        .bind(relay_id)
        .bind(LOCK_CLASS)
        .fetch_optional(conn)
        .await
}

/// Unlocks `shard`.
async fn release(conn: &mut PgConnection, shard: i32) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(shard)
        .execute(conn)
        .await
        .map(drop)
}

/// Unlocks every shard.
async fn leave(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(conn)
        .await
        .map(drop)
}
