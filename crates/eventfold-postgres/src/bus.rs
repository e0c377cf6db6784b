//! Group commit: concurrent commands are decided against cached aggregate state and their events,
//! outbox rows and command records are appended together in one statement.
//!
//! Aggregates are spread over `writers` tasks by a hash of their id, so one task owns each
//! aggregate within the process and commands of one aggregate are decided in arrival order. A
//! stream is the aggregate of one tenant: the cache, the batches and every load are per (tenant,
//! aggregate id), so the same id in two tenants is two unrelated aggregates. The
//! cache is only a shortcut: every append is still checked by the `(aggregate_type, aggregate_id,
//! tenant, version)` constraint, so a state made stale by another process shows up as a conflict, and the
//! aggregate is reloaded and the command decided again (bounded, with jitter). A conflict or a bad
//! command never fails the other commands of its batch.
//!
//! A writer may run several batches at once (`in_flight`), sending the next statement before the
//! previous one returns, but never two running batches on one aggregate: each batch is decided on
//! committed state, so a batch that fails cannot leave another one built on events that never were.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::Arc;

use eventfold_domain::Aggregate;
use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::repository::{self, HandleError, Handled, Prepared, RetryPolicy};
use crate::snapshot::SnapshotPolicy;
use crate::state_cache::{CacheGauges, StateCache};
use crate::store::{BatchError, CommandMeta, CommandWrite, EventStore, shard_key};

/// How the bus batches, caches, retries and snapshots.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Writer tasks (each owns a share of the aggregates and commits its own batches).
    pub writers: usize,
    /// Most commands per batch.
    pub max_batch: usize,
    /// Batches each writer runs at once (on distinct aggregates).
    pub in_flight: usize,
    /// Aggregates kept in memory, over all writers.
    pub cache_capacity: usize,
    /// Estimated bytes of aggregate state kept in memory, over all writers: per entry its fixed
    /// size, its key's strings and its state's JSON length.
    pub cache_bytes: usize,
    /// Retries of a command whose aggregate moved underneath it.
    pub retry: RetryPolicy,
    /// When to write snapshots.
    pub snapshots: SnapshotPolicy,
    /// Metrics, when the service exports them.
    pub metrics: Option<BusMetrics>,
}

impl BusConfig {
    /// Reads `COMMAND_WRITERS`, `COMMAND_MAX_BATCH`, `COMMAND_IN_FLIGHT`, `AGGREGATE_CACHE_SIZE`,
    /// `AGGREGATE_CACHE_BYTES`, `COMMAND_RETRY_ATTEMPTS`, `COMMAND_RETRY_BASE_MS`,
    /// `SNAPSHOT_EVERY` and `SNAPSHOT_KEEP`.
    pub fn from_env(
        env: &eventfold_runtime::Env,
    ) -> Result<Self, eventfold_runtime::SettingsError> {
        let d = Self::default();
        Ok(Self {
            writers: positive(env, "COMMAND_WRITERS", d.writers)?,
            max_batch: positive(env, "COMMAND_MAX_BATCH", d.max_batch)?,
            in_flight: positive(env, "COMMAND_IN_FLIGHT", d.in_flight)?,
            cache_capacity: positive(env, "AGGREGATE_CACHE_SIZE", d.cache_capacity)?,
            cache_bytes: positive(env, "AGGREGATE_CACHE_BYTES", d.cache_bytes)?,
            retry: RetryPolicy {
                max_attempts: positive(
                    env,
                    "COMMAND_RETRY_ATTEMPTS",
                    d.retry.max_attempts as usize,
                )? as u32,
                base_delay: std::time::Duration::from_millis(env.parse(
                    "COMMAND_RETRY_BASE_MS",
                    d.retry.base_delay.as_millis() as u64,
                )?),
            },
            snapshots: SnapshotPolicy {
                every: env.parse("SNAPSHOT_EVERY", d.snapshots.every)?,
                keep: positive(env, "SNAPSHOT_KEEP", d.snapshots.keep as usize)? as u32,
            },
            metrics: None,
        })
    }
}

/// A setting that must be at least 1.
pub fn positive(
    env: &eventfold_runtime::Env,
    var: &str,
    default: usize,
) -> Result<usize, eventfold_runtime::SettingsError> {
    let v: usize = env.parse(var, default)?;
    if v == 0 {
        return Err(eventfold_runtime::SettingsError::Invalid {
            var: var.into(),
            value: "0".into(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(v)
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            writers: 2,
            max_batch: 64,
            // Two measured no faster on the 2-core bench machine and cost more CPU per command
            // (smaller batches); more may pay where commits wait on slower storage.
            in_flight: 1,
            cache_capacity: 100_000,
            // Per aggregate type: the six reference types hold at most 192 MiB together, well
            // within the chart's 512 MiB limit of a command-service pod.
            cache_bytes: 32 << 20,
            retry: RetryPolicy::default(),
            snapshots: SnapshotPolicy::default(),
            metrics: None,
        }
    }
}

/// Prometheus metrics of the command buses, labelled by aggregate type.
#[derive(Debug, Clone)]
pub struct BusMetrics {
    batch_size: prometheus::HistogramVec,
    commands: prometheus::IntCounterVec,
    cache: prometheus::IntCounterVec,
    cache_bytes: prometheus::IntGaugeVec,
    cache_entries: prometheus::IntGaugeVec,
    snapshots: prometheus::IntCounterVec,
    hydrations: prometheus::IntCounterVec,
}

impl BusMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let batch_size = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "command_batch_size",
                "Commands appended per group commit",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            &["aggregate_type"],
        )?;
        let commands = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "commands_total",
                "Commands handled, by outcome (appended, replayed, rejected, conflict, retried, error)",
            ),
            &["aggregate_type", "outcome"],
        )?;
        let cache = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "aggregate_cache_total",
                "Aggregate state lookups by result (hit, miss, stale), and states too large to \
                 cache (too_large)",
            ),
            &["aggregate_type", "result"],
        )?;
        let cache_bytes = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "aggregate_cache_bytes",
                "Estimated bytes of the cached aggregate states: per entry its fixed size, its key's \
                 strings and its state's serialized JSON length",
            ),
            &["aggregate_type"],
        )?;
        let cache_entries = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("aggregate_cache_entries", "Cached aggregate states"),
            &["aggregate_type"],
        )?;
        let snapshots = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "snapshots_total",
                "Snapshots by outcome (written, failed, dropped)",
            ),
            &["aggregate_type", "outcome"],
        )?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(commands.clone()))?;
        registry.register(Box::new(cache.clone()))?;
        registry.register(Box::new(cache_bytes.clone()))?;
        registry.register(Box::new(cache_entries.clone()))?;
        let hydrations = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "aggregate_hydrations_total",
                "States hydrated from the store (cache misses), by source: from a snapshot and \
                 the events after it, or from the first event",
            ),
            &["aggregate_type", "source"],
        )?;
        registry.register(Box::new(snapshots.clone()))?;
        registry.register(Box::new(hydrations.clone()))?;
        Ok(Self {
            hydrations,
            batch_size,
            commands,
            cache,
            cache_bytes,
            cache_entries,
            snapshots,
        })
    }
}

impl BusMetrics {
    /// The state-cache and snapshot counts of `aggregate_type` since the process started.
    pub fn cache_counts(&self, aggregate_type: &str) -> CacheCounts {
        let cache = |r: &str| self.cache.with_label_values(&[aggregate_type, r]).get();
        let snapshots = |o: &str| self.snapshots.with_label_values(&[aggregate_type, o]).get();
        CacheCounts {
            hits: cache("hit"),
            misses: cache("miss"),
            stale: cache("stale"),
            snapshots_written: snapshots("written"),
            snapshots_failed: snapshots("failed"),
            hydrated_from_snapshot: self
                .hydrations
                .with_label_values(&[aggregate_type, "snapshot"])
                .get(),
            hydrated_from_events: self
                .hydrations
                .with_label_values(&[aggregate_type, "events"])
                .get(),
        }
    }
}

/// State lookups of one aggregate type's bus: served from its cache (hits) or hydrated from the
/// newest snapshot and the events after it (misses, stale), and the snapshots it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CacheCounts {
    /// Lookups answered by the cache.
    pub hits: u64,
    /// Lookups of states not cached (hydrated from a snapshot and events).
    pub misses: u64,
    /// Cached states found behind the store (hydrated again).
    pub stale: u64,
    /// Snapshots written.
    pub snapshots_written: u64,
    /// Snapshots that failed to be written.
    pub snapshots_failed: u64,
    /// Hydrations that started from a snapshot.
    pub hydrated_from_snapshot: u64,
    /// Hydrations folded from the first event (no usable snapshot).
    pub hydrated_from_events: u64,
}

impl CacheCounts {
    /// Hits over all lookups, `None` before the first lookup.
    pub fn hit_rate(&self) -> Option<f64> {
        let all = self.hits + self.misses + self.stale;
        (all > 0).then(|| self.hits as f64 / all as f64)
    }

    /// Hydrations that started from a snapshot over all hydrations, `None` before the first.
    pub fn snapshot_hit_rate(&self) -> Option<f64> {
        let all = self.hydrated_from_snapshot + self.hydrated_from_events;
        (all > 0).then(|| self.hydrated_from_snapshot as f64 / all as f64)
    }
}

/// Counts into [`BusMetrics`] for one aggregate type, or nowhere.
#[derive(Clone)]
struct Counters {
    metrics: Option<BusMetrics>,
    aggregate_type: &'static str,
}

impl Counters {
    fn command(&self, outcome: &str, n: u64) {
        if let Some(m) = &self.metrics {
            m.commands
                .with_label_values(&[self.aggregate_type, outcome])
                .inc_by(n);
        }
    }
    fn cache(&self, result: &str, n: u64) {
        if let Some(m) = &self.metrics {
            m.cache
                .with_label_values(&[self.aggregate_type, result])
                .inc_by(n);
        }
    }
    fn cache_gauges(&self) -> Option<CacheGauges> {
        self.metrics.as_ref().map(|m| CacheGauges {
            bytes: m.cache_bytes.with_label_values(&[self.aggregate_type]),
            entries: m.cache_entries.with_label_values(&[self.aggregate_type]),
        })
    }
    fn hydration(&self, source: &str, n: u64) {
        if let Some(m) = &self.metrics {
            m.hydrations
                .with_label_values(&[self.aggregate_type, source])
                .inc_by(n);
        }
    }
    fn snapshot(&self, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.snapshots
                .with_label_values(&[self.aggregate_type, outcome])
                .inc();
        }
    }
    fn batch(&self, size: usize) {
        if let Some(m) = &self.metrics {
            m.batch_size
                .with_label_values(&[self.aggregate_type])
                .observe(size as f64);
        }
    }
}

/// A stream of the bus's aggregate type: the tenant and the aggregate id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Stream {
    tenant: String,
    id: String,
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.tenant, self.id)
    }
}

/// One command on its way to a writer.
struct Job<A: Aggregate> {
    /// The command's tenant and aggregate id.
    stream: Stream,
    command: A::Command,
    meta: CommandMeta,
    request_hash: Vec<u8>,
    expected_version: Option<i64>,
    attempt: u32,
    /// Written in a batch of its own (after its batch failed on something one command carried).
    alone: bool,
    reply: oneshot::Sender<Result<Handled, HandleError>>,
}

impl<A: Aggregate> Job<A> {
    fn answer(self, result: Result<Handled, HandleError>) {
        // The caller may have gone away (e.g. a closed HTTP connection); the outcome stands.
        let _ = self.reply.send(result);
    }
}

/// Hands commands of aggregate type `A` to the writer tasks; cheap to clone.
pub struct CommandBus<A: Aggregate> {
    writers: Arc<Vec<mpsc::Sender<Job<A>>>>,
}

impl<A: Aggregate> Clone for CommandBus<A> {
    fn clone(&self) -> Self {
        Self {
            writers: self.writers.clone(),
        }
    }
}

impl<A: Aggregate> std::fmt::Debug for CommandBus<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandBus")
            .field("aggregate_type", &A::TYPE)
            .field("writers", &self.writers.len())
            .finish()
    }
}

impl<A: Aggregate> CommandBus<A> {
    /// Starts the writer and snapshot tasks on the current runtime. They stop when the last clone
    /// of the bus is dropped, after finishing the commands already handed over.
    pub fn start(store: EventStore, config: BusConfig) -> Self {
        let writers = config.writers.max(1);
        let per_writer = (config.cache_capacity / writers).max(1);
        let bytes_per_writer = (config.cache_bytes / writers).max(1);
        let counters = Counters {
            metrics: config.metrics.clone(),
            aggregate_type: A::TYPE,
        };
        let snapshots = spawn_snapshotter::<A>(store.clone(), config.snapshots, counters.clone());
        let senders = (0..writers)
            .map(|_| {
                let (tx, rx) = mpsc::channel(config.max_batch.max(1) * 4);
                let writer = Writer::<A> {
                    store: store.clone(),
                    cache: StateCache::new(
                        NonZeroUsize::new(per_writer).expect("at least 1"),
                        bytes_per_writer,
                        counters.cache_gauges(),
                    ),
                    max_batch: config.max_batch.max(1),
                    in_flight: config.in_flight.max(1),
                    retry: config.retry,
                    snapshot_policy: config.snapshots,
                    snapshots: snapshots.clone(),
                    counters: counters.clone(),
                    requeue: tx.downgrade(),
                    busy: HashMap::new(),
                    busy_ids: HashSet::new(),
                    connections: Vec::new(),
                };
                tokio::spawn(writer.run(rx));
                tx
            })
            .collect();
        Self {
            writers: Arc::new(senders),
        }
    }

    /// Handles `command` for `meta.tenant`'s stream of `aggregate_id`: decides it against the
    /// current state and appends its events, batched with other commands. Same contract as [`repository::handle`].
    pub async fn handle(
        &self,
        aggregate_id: String,
        command: A::Command,
        meta: CommandMeta,
        request_hash: Vec<u8>,
        expected_version: Option<i64>,
    ) -> Result<Handled, HandleError> {
        let (reply, answer) = oneshot::channel();
        let writer = shard_key(&aggregate_id) as usize % self.writers.len();
        let job = Job {
            stream: Stream {
                tenant: meta.tenant.clone(),
                id: aggregate_id,
            },
            command,
            meta,
            request_hash,
            expected_version,
            attempt: 1,
            alone: false,
            reply,
        };
        self.writers[writer]
            .send(job)
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> HandleError {
    HandleError::Database(sqlx::Error::PoolClosed)
}

/// A cached stream: its state and version.
#[derive(Clone)]
struct Cached<A> {
    state: A,
    version: i64,
}

/// An estimate of the memory one cached stream takes: the entry's fixed size (key, state, the
/// LRU's links and map slot), the key's strings and the length of the state as JSON. JSON is the
/// one measure of a state's heap (its strings and collections) that every aggregate offers (it
/// is `Serialize` for snapshots), and counting it writes no text anywhere. It over-counts numbers
/// and field names and misses spare capacity: an estimate within a small factor, not an exact
/// size. A state that cannot be serialized counts as too large to cache.
fn entry_bytes<A: Aggregate>(stream: &Stream, state: &A) -> usize {
    let mut json = ByteCount(0);
    if serde_json::to_writer(&mut json, state).is_err() {
        return usize::MAX;
    }
    std::mem::size_of::<(Stream, Cached<A>, usize)>()
        + 4 * std::mem::size_of::<usize>()
        + stream.tenant.len()
        + stream.id.len()
        + json.0
}

/// A writer that only counts the bytes written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// States of a batch's streams, and which of them were just loaded from the store.
type Loaded<A> = (HashMap<Stream, Cached<A>>, HashSet<Stream>);

/// A job refused before its append, its refusal, and whether its state was loaded just now.
type Refused<A> = (Job<A>, HandleError, bool);

/// A decided job waiting for its batch to commit.
struct Decided<A: Aggregate> {
    job: Job<A>,
    /// Version the command's events follow.
    base_version: i64,
    prepared: Prepared,
}

/// How long an idle writer keeps its connections before giving them back to the pool.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_millis(50);

/// One batch whose statement is running: the decided jobs with the states they lead to, and the
/// refusals decided on those states, answered once the batch is settled.
struct Flight<A: Aggregate> {
    decided: Vec<Decided<A>>,
    pending: HashMap<Stream, Cached<A>>,
    refused: Vec<Refused<A>>,
}

/// A flight back from its statement, with its connection when it is still good.
type Landed<A> = (
    Flight<A>,
    Result<Vec<Vec<i64>>, BatchError>,
    Option<PoolConnection<Postgres>>,
);

/// One writer task: owns a share of the aggregates, their cache and their batches.
///
/// Up to `in_flight` batches run at once, on aggregates no other running batch touches: each is
/// decided on committed state only, so a failed batch never invalidates another one, and the
/// commands of one aggregate still commit in arrival order (a command whose aggregate is in a
/// running batch waits for it).
struct Writer<A: Aggregate> {
    store: EventStore,
    cache: StateCache<Stream, Cached<A>>,
    max_batch: usize,
    in_flight: usize,
    retry: RetryPolicy,
    snapshot_policy: SnapshotPolicy,
    snapshots: Option<mpsc::Sender<(Stream, i64, String)>>,
    counters: Counters,
    requeue: mpsc::WeakSender<Job<A>>,
    /// Aggregates of the running batches, by task.
    busy: HashMap<tokio::task::Id, Vec<Stream>>,
    /// Aggregates of the running batches.
    busy_ids: HashSet<Stream>,
    /// Connections kept between batches while there is work: a batch then costs one round trip,
    /// not a pool checkout (and its ping) too. Given back before any other query of the writer and
    /// when it has been idle for [`IDLE_RELEASE`].
    connections: Vec<PoolConnection<Postgres>>,
}

impl<A: Aggregate> Writer<A> {
    async fn run(mut self, mut rx: mpsc::Receiver<Job<A>>) {
        let mut waiting: VecDeque<Job<A>> = VecDeque::new();
        let mut flights: JoinSet<Landed<A>> = JoinSet::new();
        // Jobs taken off the channel but not yet decided; beyond this the callers wait.
        let backlog = self.max_batch * self.in_flight;
        let mut open = true;
        loop {
            while open && waiting.len() < backlog {
                match rx.try_recv() {
                    Ok(job) => waiting.push_back(job),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            while flights.len() < self.in_flight {
                let batch = self.next_batch(&mut waiting);
                if batch.is_empty() {
                    break;
                }
                let again = self.start(batch, &mut flights).await;
                requeue_front(&mut waiting, again);
            }
            let idle = flights.is_empty() && waiting.is_empty();
            if idle && !open {
                return;
            }
            tokio::select! {
                // Connections go back to the pool once the writer has been idle for a moment.
                () = tokio::time::sleep(IDLE_RELEASE), if idle && !self.connections.is_empty() => {
                    self.connections.clear();
                }
                job = rx.recv(), if open && waiting.len() < backlog => match job {
                    Some(job) => waiting.push_back(job),
                    None => open = false,
                },
                Some(landed) = flights.join_next_with_id() => {
                    let again = self.land(landed).await;
                    requeue_front(&mut waiting, again);
                }
            }
        }
    }

    /// Takes the next batch off `waiting`, in arrival order: jobs whose aggregate is in a running
    /// batch stay, and so does a second job with a command id already in the batch (it finds the
    /// first one's record in a later batch); later jobs of an aggregate that stays, stay too. A job
    /// marked `alone` is a batch of its own.
    fn next_batch(&self, waiting: &mut VecDeque<Job<A>>) -> Vec<Job<A>> {
        let mut batch = Vec::new();
        let mut rest = VecDeque::with_capacity(waiting.len());
        let mut held: HashSet<Stream> = HashSet::new();
        let mut command_ids = HashSet::new();
        let mut closed = false;
        for job in waiting.drain(..) {
            let eligible = !closed
                && (batch.is_empty() || !job.alone)
                && batch.len() < self.max_batch
                && !self.busy_ids.contains(&job.stream)
                && !held.contains(&job.stream)
                && !command_ids.contains(&job.meta.command_id);
            if eligible {
                command_ids.insert(job.meta.command_id);
                closed = job.alone;
                batch.push(job);
            } else {
                held.insert(job.stream.clone());
                rest.push_back(job);
            }
        }
        *waiting = rest;
        batch
    }

    /// Decides `jobs` and starts their append on `flights`; refusals of a batch with nothing to
    /// append are checked at once. Returns jobs to decide again.
    async fn start(
        &mut self,
        mut jobs: Vec<Job<A>>,
        flights: &mut JoinSet<Landed<A>>,
    ) -> Vec<Job<A>> {
        // A caller's expected version that disagrees with the cache may mean the cache is stale.
        for job in &jobs {
            if let Some(expected) = job.expected_version
                && self.cache.peek(&job.stream).map(|c| c.version) != Some(expected)
            {
                self.cache.pop(&job.stream);
            }
        }
        let loaded = match self.load_missing(&mut jobs).await {
            Ok(loaded) => loaded,
            Err(e) => {
                self.fail_all(jobs, &e);
                return Vec::new();
            }
        };

        // Decide in arrival order, each against the state its predecessors in the batch left.
        let mut pending: HashMap<Stream, Cached<A>> = HashMap::new();
        let mut decided: Vec<Decided<A>> = Vec::with_capacity(jobs.len());
        let mut refused: Vec<Refused<A>> = Vec::new();
        let (mut base, fresh) = loaded;
        for job in jobs {
            if !pending.contains_key(&job.stream) {
                let Some(state) = base.remove(&job.stream) else {
                    let e = sqlx::Error::Protocol("aggregate state missing after load".into());
                    self.fail_all(vec![job], &e);
                    continue;
                };
                pending.insert(job.stream.clone(), state);
            }
            let entry = pending.get_mut(&job.stream).expect("inserted just above");
            if let Some(expected) = job.expected_version
                && expected != entry.version
            {
                let current_version = entry.version;
                let fresh = fresh.contains(&job.stream);
                refused.push((job, HandleError::Conflict { current_version }, fresh));
                continue;
            }
            let outcome = entry.state.decide(&job.command).map_err(HandleError::from);
            let outcome = outcome.and_then(|events| {
                let prepared = repository::prepare::<A>(
                    &job.command,
                    &events,
                    entry.version,
                    job.meta.command_id,
                    &job.request_hash,
                )?;
                Ok((events, prepared))
            });
            match outcome {
                Ok((events, prepared)) => {
                    let base_version = entry.version;
                    entry.state = events
                        .iter()
                        .fold(std::mem::take(&mut entry.state), |s, e| s.apply(e));
                    entry.version += events.len() as i64;
                    decided.push(Decided {
                        job,
                        base_version,
                        prepared,
                    });
                }
                Err(e) => {
                    let fresh = fresh.contains(&job.stream);
                    refused.push((job, e, fresh));
                }
            }
        }
        if decided.is_empty() {
            return self.recheck(refused).await;
        }
        let aggregates: Vec<Stream> = pending.keys().cloned().collect();
        let flight = Flight {
            decided,
            pending,
            refused,
        };
        let store = self.store.clone();
        let held = self.connections.pop();
        let task = flights.spawn(async move {
            let mut conn = match held {
                Some(conn) => conn,
                None => match store.pool().acquire().await {
                    Ok(conn) => conn,
                    Err(e) => return (flight, Err(BatchError::Database(e)), None),
                },
            };
            let writes: Vec<CommandWrite<'_>> = flight
                .decided
                .iter()
                .map(|d| CommandWrite {
                    aggregate_id: &d.job.stream.id,
                    expected_version: d.base_version,
                    events: &d.prepared.events,
                    meta: &d.job.meta,
                    record: &d.prepared.record,
                })
                .collect();
            let result = store.append_batch_on(&mut conn, A::TYPE, &writes).await;
            drop(writes);
            let conn = match &result {
                Err(BatchError::Database(e)) if !is_statement_error(e) => None,
                _ => Some(conn),
            };
            (flight, result, conn)
        });
        self.busy_ids.extend(aggregates.iter().cloned());
        self.busy.insert(task.id(), aggregates);
        Vec::new()
    }

    /// Settles a flight back from its statement: answers its jobs, caches the states they
    /// committed, checks its refusals. Returns jobs to decide again.
    async fn land(
        &mut self,
        landed: Result<(tokio::task::Id, Landed<A>), tokio::task::JoinError>,
    ) -> Vec<Job<A>> {
        let id = match &landed {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        for aggregate in self.busy.remove(&id).unwrap_or_default() {
            self.busy_ids.remove(&aggregate);
        }
        let (flight, result) = match landed {
            Ok((_, (flight, result, conn))) => {
                self.connections.extend(conn);
                (flight, result)
            }
            Err(e) => {
                // The append task panicked: its callers see the bus as stopped (their answer
                // channels are dropped), and states of its aggregates may be stale.
                tracing::error!(aggregate_type = A::TYPE, error = %e, "command batch task failed");
                self.cache.clear();
                return Vec::new();
            }
        };
        let Flight {
            decided,
            pending,
            refused,
        } = flight;
        let mut again = self.settle(decided, pending, result).await;
        if !refused.is_empty() {
            again.extend(self.recheck(refused).await);
        }
        again
    }

    /// Answers the jobs of an append that committed, or sorts out why it did not. Returns jobs
    /// to decide again.
    async fn settle(
        &mut self,
        decided: Vec<Decided<A>>,
        pending: HashMap<Stream, Cached<A>>,
        result: Result<Vec<Vec<i64>>, BatchError>,
    ) -> Vec<Job<A>> {
        match result {
            Ok(_) => {
                self.counters.batch(decided.len());
                self.counters.command("appended", decided.len() as u64);
                for d in decided {
                    let handled = d.prepared.handled;
                    if self.snapshot_policy.due(d.base_version, handled.version)
                        && let Some(state) = pending.get(&d.job.stream)
                    {
                        self.snapshot(&d.job.stream, state);
                    }
                    d.job.answer(Ok(handled));
                }
                for (id, state) in pending {
                    self.cache_put(id, state);
                }
                Vec::new()
            }
            Err(BatchError::UniqueViolation(_)) => self.untangle(decided).await,
            Err(BatchError::Database(e)) if decided.len() > 1 && is_statement_error(&e) => {
                // Something in one command broke the statement: write each alone to find it.
                decided
                    .into_iter()
                    .map(|d| Job {
                        alone: true,
                        ..d.job
                    })
                    .collect()
            }
            Err(BatchError::Database(e)) => {
                self.fail_all(decided.into_iter().map(|d| d.job).collect(), &e);
                Vec::new()
            }
        }
    }

    /// The state of every aggregate of `jobs`: cached ones copied, the others loaded (and
    /// cached); also the ids loaded now (fresh). Jobs whose aggregate cannot be decoded are
    /// answered and removed.
    async fn load_missing(&mut self, jobs: &mut Vec<Job<A>>) -> Result<Loaded<A>, sqlx::Error> {
        let mut base: HashMap<Stream, Cached<A>> = HashMap::new();
        let mut missing: Vec<Stream> = Vec::new();
        let mut hits = 0;
        for job in jobs.iter() {
            if base.contains_key(&job.stream) || missing.contains(&job.stream) {
                continue;
            }
            match self.cache.get(&job.stream) {
                Some(cached) => {
                    hits += 1;
                    base.insert(job.stream.clone(), cached.clone());
                }
                None => missing.push(job.stream.clone()),
            }
        }
        self.counters.cache("hit", hits);
        self.counters.cache("miss", missing.len() as u64);
        if missing.is_empty() {
            return Ok((base, HashSet::new()));
        }
        self.connections.clear();
        let mut loaded: HashMap<Stream, Result<(A, i64), HandleError>> = HashMap::new();
        for (tenant, ids) in by_tenant(&missing) {
            let hydrated = repository::hydrate_many::<A>(&self.store, tenant, &ids).await?;
            self.counters
                .hydration("snapshot", hydrated.from_snapshot as u64);
            self.counters
                .hydration("events", (ids.len() - hydrated.from_snapshot) as u64);
            loaded.extend(hydrated.states.into_iter().map(|(id, state)| {
                let stream = Stream {
                    tenant: tenant.to_owned(),
                    id,
                };
                (stream, state)
            }));
        }
        let mut broken: HashMap<Stream, HandleError> = HashMap::new();
        for stream in &missing {
            match loaded.remove(stream) {
                Some(Ok((state, version))) => {
                    let cached = Cached { state, version };
                    self.cache_put(stream.clone(), cached.clone());
                    base.insert(stream.clone(), cached);
                }
                Some(Err(e)) => {
                    broken.insert(stream.clone(), e);
                }
                None => {}
            }
        }
        if !broken.is_empty() {
            let (bad, good): (Vec<_>, Vec<_>) = std::mem::take(jobs)
                .into_iter()
                .partition(|j| broken.contains_key(&j.stream));
            *jobs = good;
            for job in bad {
                let e = &broken[&job.stream];
                job.answer(Err(corrupt_again(e)));
            }
        }
        Ok((base, missing.into_iter().collect()))
    }

    /// Refused jobs: a repeat of an earlier command gets its first answer; a refusal decided on a
    /// cached state that another process has since moved is decided again on a fresh load; the
    /// others get their refusal.
    async fn recheck(&mut self, refused: Vec<Refused<A>>) -> Vec<Job<A>> {
        self.connections.clear();
        let command_ids: Vec<Uuid> = refused.iter().map(|(j, _, _)| j.meta.command_id).collect();
        let unsure: Vec<Stream> = refused
            .iter()
            .filter(|(_, e, fresh)| matches!(e, HandleError::Domain(_)) && !fresh)
            .map(|(j, _, _)| j.stream.clone())
            .collect();
        let found = tokio::try_join!(self.store.commands(&command_ids), self.versions(&unsure));
        let (known, versions) = match found {
            Ok(found) => found,
            Err(e) => {
                self.fail_all(refused.into_iter().map(|(j, _, _)| j).collect(), &e);
                return Vec::new();
            }
        };
        let mut again = Vec::new();
        for (job, error, fresh) in refused {
            if let Some(record) = known.get(&job.meta.command_id) {
                self.counters.command("replayed", 1);
                let result = repository::replay(job.meta.command_id, record, &job.request_hash);
                job.answer(result);
                continue;
            }
            let stale = matches!(error, HandleError::Domain(_)) && !fresh && {
                let stored = versions.get(&job.stream).copied().unwrap_or(0);
                self.cache.peek(&job.stream).map(|c| c.version) != Some(stored)
            };
            if stale {
                self.counters.cache("stale", 1);
                self.cache.pop(&job.stream);
                again.push(job);
            } else {
                let outcome = if matches!(error, HandleError::Conflict { .. }) {
                    "conflict"
                } else {
                    "rejected"
                };
                self.counters.command(outcome, 1);
                job.answer(Err(error));
            }
        }
        again
    }

    /// After a batch hit a taken version or command id: answers the repeats, sends the commands of
    /// aggregates that moved back for a retry, and returns the rest to be decided again.
    async fn untangle(&mut self, decided: Vec<Decided<A>>) -> Vec<Job<A>> {
        self.connections.clear();
        let mut ids: Vec<Stream> = decided.iter().map(|d| d.job.stream.clone()).collect();
        ids.sort();
        ids.dedup();
        let command_ids: Vec<Uuid> = decided.iter().map(|d| d.job.meta.command_id).collect();
        let (versions, known) =
            match tokio::try_join!(self.versions(&ids), self.store.commands(&command_ids)) {
                Ok(found) => found,
                Err(e) => {
                    self.fail_all(decided.into_iter().map(|d| d.job).collect(), &e);
                    return Vec::new();
                }
            };
        let moved: HashSet<&Stream> = ids
            .iter()
            .filter(|id| {
                let stored = versions.get(*id).copied().unwrap_or(0);
                self.cache.peek(*id).map(|c| c.version) != Some(stored)
            })
            .collect();
        if moved.is_empty() && known.is_empty() {
            // A unique violation nobody can explain (e.g. an event id collision): do not loop.
            let e = sqlx::Error::Protocol("group commit refused for an unknown reason".into());
            self.fail_all(decided.into_iter().map(|d| d.job).collect(), &e);
            return Vec::new();
        }
        let moved: HashSet<Stream> = moved.into_iter().cloned().collect();
        for id in &moved {
            self.cache.pop(id);
        }
        let mut again = Vec::new();
        for d in decided {
            let job = d.job;
            if let Some(record) = known.get(&job.meta.command_id) {
                self.counters.command("replayed", 1);
                let result = repository::replay(job.meta.command_id, record, &job.request_hash);
                job.answer(result);
            } else if moved.contains(&job.stream) {
                let current_version = versions.get(&job.stream).copied();
                self.retry_later(job, current_version);
            } else {
                again.push(job);
            }
        }
        again
    }

    /// Sends a job whose aggregate moved back to this writer after a jittered back-off, or answers
    /// it with the conflict when the caller fixed the version or the attempts are used up.
    fn retry_later(&self, mut job: Job<A>, current_version: Option<i64>) {
        let current_version = current_version.unwrap_or(0);
        if job.expected_version.is_some() || job.attempt >= self.retry.max_attempts {
            self.counters.command("conflict", 1);
            job.answer(Err(HandleError::Conflict { current_version }));
            return;
        }
        self.counters.command("retried", 1);
        let delay = repository::backoff(self.retry, job.attempt);
        job.attempt += 1;
        let Some(requeue) = self.requeue.upgrade() else {
            job.answer(Err(stopped()));
            return;
        };
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Err(mpsc::error::SendError(job)) = requeue.send(job).await {
                job.answer(Err(stopped()));
            }
        });
    }

    /// The current versions of `streams` (absent streams have no events), one query per tenant.
    async fn versions(&self, streams: &[Stream]) -> Result<HashMap<Stream, i64>, sqlx::Error> {
        let mut out = HashMap::new();
        for (tenant, ids) in by_tenant(streams) {
            let versions = self.store.versions(tenant, A::TYPE, &ids).await?;
            out.extend(versions.into_iter().map(|(id, v)| {
                let stream = Stream {
                    tenant: tenant.to_owned(),
                    id,
                };
                (stream, v)
            }));
        }
        Ok(out)
    }

    /// Caches `state` within the cache's bounds; a state too large for them is left out (the next
    /// command of its aggregate loads it again).
    fn cache_put(&mut self, stream: Stream, state: Cached<A>) {
        let bytes = entry_bytes(&stream, &state.state);
        if !self.cache.put(stream, state, bytes) {
            self.counters.cache("too_large", 1);
        }
    }

    fn snapshot(&self, stream: &Stream, cached: &Cached<A>) {
        let Some(tx) = &self.snapshots else { return };
        let Ok(state) = serde_json::to_string(&cached.state) else {
            self.counters.snapshot("failed");
            return;
        };
        if tx
            .try_send((stream.clone(), cached.version, state))
            .is_err()
        {
            self.counters.snapshot("dropped");
        }
    }

    fn fail_all(&self, jobs: Vec<Job<A>>, e: &sqlx::Error) {
        tracing::warn!(aggregate_type = A::TYPE, error = %e, commands = jobs.len(), "command batch failed");
        self.counters.command("error", jobs.len() as u64);
        for job in jobs {
            job.answer(Err(HandleError::Database(copy_error(e))));
        }
    }
}

/// The aggregate ids of `streams`, by tenant.
fn by_tenant(streams: &[Stream]) -> HashMap<&str, Vec<String>> {
    let mut out: HashMap<&str, Vec<String>> = HashMap::new();
    for s in streams {
        out.entry(s.tenant.as_str()).or_default().push(s.id.clone());
    }
    out
}

/// Puts `jobs` back at the head of the queue, in their order (they arrived before the rest).
fn requeue_front<A: Aggregate>(waiting: &mut VecDeque<Job<A>>, jobs: Vec<Job<A>>) {
    for job in jobs.into_iter().rev() {
        waiting.push_front(job);
    }
}

/// True for an error raised by the statement itself (not the connection), which one bad command
/// can cause.
fn is_statement_error(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(_))
}

/// `sqlx::Error` is not `Clone`: a batch failure is reported to each caller by its message.
fn copy_error(e: &sqlx::Error) -> sqlx::Error {
    match e {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

fn corrupt_again(e: &HandleError) -> HandleError {
    match e {
        HandleError::CorruptEvent {
            event_id,
            event_type,
            source,
        } => HandleError::CorruptEvent {
            event_id: *event_id,
            event_type: event_type.clone(),
            source: serde_json::Error::io(std::io::Error::other(source.to_string())),
        },
        other => HandleError::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

/// Starts the task that writes snapshots off the command path; `None` when snapshots are off.
fn spawn_snapshotter<A: Aggregate>(
    store: EventStore,
    policy: SnapshotPolicy,
    counters: Counters,
) -> Option<mpsc::Sender<(Stream, i64, String)>> {
    if policy.every == 0 {
        return None;
    }
    let (tx, mut rx) = mpsc::channel::<(Stream, i64, String)>(1024);
    tokio::spawn(async move {
        while let Some((stream, version, state)) = rx.recv().await {
            let saved = store
                .save_snapshot(
                    &stream.tenant,
                    A::TYPE,
                    &stream.id,
                    version,
                    A::STATE_VERSION,
                    &state,
                    policy.keep,
                )
                .await;
            match saved {
                Ok(()) => counters.snapshot("written"),
                Err(e) => {
                    tracing::warn!(aggregate_type = A::TYPE, stream = %stream, error = %e, "snapshot not written");
                    counters.snapshot("failed");
                }
            }
        }
    });
    Some(tx)
}
