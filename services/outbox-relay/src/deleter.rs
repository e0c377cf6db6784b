//! Deletes acknowledged outbox rows on a connection of its own, one statement at a time, while the
//! publisher reads and sends the next batches. Until a row's delete has committed, its id is
//! pending and every read skips it; a failed delete is retried with the next one, so an acked row
//! is neither lost nor, while the relay keeps its shard, published twice.

use sqlx::PgPool;
use tokio::task::{JoinError, JoinHandle};

use crate::metrics::RelayMetrics;
use crate::outbox::{self, Done};

/// A delete statement running in the background: how many rows it removed.
type Running = JoinHandle<Result<u64, sqlx::Error>>;

/// The delete in progress and the acked rows waiting for the next one.
pub struct Deleter {
    pool: PgPool,
    shards: u32,
    metrics: RelayMetrics,
    running: Option<(Vec<Done>, Running)>,
    waiting: Vec<Done>,
}

impl Deleter {
    /// A deleter for a relay with `shards` shards.
    pub fn new(pool: PgPool, shards: u32, metrics: RelayMetrics) -> Self {
        Self {
            pool,
            shards,
            metrics,
            running: None,
            waiting: Vec::new(),
        }
    }

    /// Queues acked rows and starts their delete unless one is running.
    pub async fn push(&mut self, acked: Vec<Done>) {
        self.waiting.extend(acked);
        self.poll().await;
    }

    /// Collects a finished delete and starts the next one if rows are waiting.
    pub async fn poll(&mut self) {
        if self.running.as_ref().is_some_and(|(_, h)| h.is_finished()) {
            // Finished: this does not wait.
            self.progress().await;
        } else {
            self.start();
        }
    }

    /// Waits for the running delete to finish, collects it and starts the next one; never
    /// resolves while no delete runs. Cancel-safe: until the delete finishes it is only borrowed.
    pub async fn progress(&mut self) {
        let Some((_, handle)) = self.running.as_mut() else {
            return std::future::pending().await;
        };
        let result = handle.await;
        if let Some((rows, _)) = self.running.take() {
            self.reap(rows, result);
        }
        self.start();
    }

    /// Starts deleting the waiting rows unless a delete runs.
    fn start(&mut self) {
        if self.running.is_none() && !self.waiting.is_empty() {
            let rows = std::mem::take(&mut self.waiting);
            let (pool, shards, batch) = (self.pool.clone(), self.shards, rows.clone());
            let handle = tokio::spawn(async move { outbox::delete(&pool, shards, &batch).await });
            self.running = Some((rows, handle));
        }
    }

    /// Ids whose delete has not committed yet: reads must skip them.
    pub fn pending_ids(&self) -> Vec<i64> {
        let running = self.running.iter().flat_map(|(rows, _)| rows);
        running.chain(&self.waiting).map(|d| d.id).collect()
    }

    /// Waits for the running delete, then deletes what is waiting; rows whose delete fails here
    /// stay in the outbox and are published again.
    pub async fn flush(&mut self) {
        if let Some((rows, handle)) = self.running.take() {
            let result = handle.await;
            self.reap(rows, result);
        }
        if self.waiting.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.waiting);
        match outbox::delete(&self.pool, self.shards, &rows).await {
            Ok(deleted) => self.count_fenced(rows.len() as u64, deleted),
            Err(e) => {
                self.metrics.errors.with_label_values(&["delete"]).inc();
                tracing::warn!(error = %e, "cannot delete published rows; they will be sent again");
            }
        }
    }

    fn reap(&mut self, rows: Vec<Done>, result: Result<Result<u64, sqlx::Error>, JoinError>) {
        match result {
            Ok(Ok(deleted)) => self.count_fenced(rows.len() as u64, deleted),
            Ok(Err(e)) => {
                self.metrics.errors.with_label_values(&["delete"]).inc();
                tracing::warn!(error = %e, rows = rows.len(), "cannot delete published rows; retrying");
                self.waiting.extend(rows);
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = rows.len(), "delete task failed; retrying");
                self.waiting.extend(rows);
            }
        }
    }

    fn count_fenced(&self, asked: u64, deleted: u64) {
        if deleted < asked {
            self.metrics.epoch_rejections.inc_by(asked - deleted);
            tracing::warn!(
                asked,
                deleted,
                "published rows not deleted: another relay owns their shard now (they will be sent again)"
            );
        }
    }
}
