//! The publishing loop: read a batch of owned outbox rows, encode them as Avro, produce them with an
//! idempotent producer (Kafka's murmur2 partitioner, key = aggregate id), wait for every ack, and
//! hand them to the [`Deleter`]. A failure before the acks leaves the rows in place: they are
//! published again (at-least-once).
//!
//! The relay never registers a schema (`eventfold schemas register` does, before it starts). A
//! batch whose schemas are not all registered, or whose lookup the registry refuses (401, 403),
//! halts publishing: nothing of it is sent, parked or deleted; the relay logs the reason once,
//! shows it in `/readyz` (check `publishing`) and `eventfold_relay_halted{reason,subject}`, and
//! tries the batch again with back-off, resuming by itself once the setup is fixed. Halting the
//! whole relay, not only the event type concerned, keeps every aggregate's order and cannot be
//! missed: a schema that is not registered is a broken deployment, not a bad event.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use eventfold_avro::{AvroCodec, CodecError, topic_for};
use eventfold_kafka::{KafkaError, KafkaSettings};
use eventfold_postgres::PgSettings;
use eventfold_runtime::Shutdown;
use futures::future::{JoinAll, MaybeDone, join_all, maybe_done};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;

use crate::RelayConfig;
use crate::deleter::Deleter;
use crate::metrics::RelayMetrics;
use crate::outbox::{self, Batch, Done, OutboxRow, Park};
use crate::shards::{Owned, Shards};

/// The notification channel the outbox trigger fires on every insert statement.
pub const CHANNEL: &str = "eventfold_outbox";

/// How long a stopping relay waits for the acks of the batch in hand.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Largest record value the relay sends; bigger ones are parked (Kafka's default
/// `message.max.bytes` is about 1 MiB).
const MAX_RECORD_BYTES: usize = 1_000_000;

/// Everything the relay loop needs.
pub struct Relay {
    /// Sharding, batching and topics.
    pub config: RelayConfig,
    /// Where the lock connection goes.
    pub database: PgSettings,
    /// Pool for reads, deletes and parking.
    pub pool: PgPool,
    /// Brokers.
    pub kafka: KafkaSettings,
    /// Avro encoder with the registry's ids.
    pub codec: Arc<AvroCodec>,
    /// Metrics.
    pub metrics: RelayMetrics,
    /// Wakes the dead-letter task after a parking.
    pub dlt_wake: Arc<Notify>,
}

/// Why a batch was not published; its rows stay in the outbox and are read again.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The registry could not be reached.
    #[error("registry: {0}")]
    Registry(CodecError),
    /// A configuration error no event causes (a schema not registered, registry credentials
    /// refused): publishing halts until it is fixed.
    #[error("halted: {0}")]
    Halted(CodecError),
    /// A topic could not be created.
    #[error(transparent)]
    Topic(#[from] KafkaError),
    /// Kafka refused or lost a record.
    #[error("kafka: {0}")]
    Kafka(RdKafkaError),
    /// The database failed while parking.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Shutdown came before the acks.
    #[error("stopped before every record was acknowledged")]
    Stopped,
}

impl Relay {
    /// The producer: idempotent, acks from all in-sync replicas, murmur2 partitioner (as Java's
    /// client), unbounded delivery timeout (a broker outage is waited out, never a loss).
    pub fn producer(&self) -> Result<FutureProducer, RdKafkaError> {
        let mut config = self.kafka.client_config();
        config
            .set("enable.idempotence", "true")
            .set("enable.gapless.guarantee", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", self.config.linger_ms.to_string())
            .set("compression.type", &self.config.compression)
            .set("message.timeout.ms", "0")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("batch.num.messages", "10000")
            // Nagle's algorithm held small produce requests back (tens of ms at low rates).
            .set("socket.nagle.disable", "true");
        config.create()
    }

    /// Runs until `shutdown`: ownership rounds, wake-ups and the publishing loop; then releases
    /// the shards.
    pub async fn run(self, shutdown: Shutdown) {
        let shards = Arc::new(Shards::new(
            self.config.shards,
            self.config.lease,
            self.config.relay_id.clone(),
            self.database.clone(),
            self.metrics.clone(),
        ));
        let stop_background = Shutdown::new();
        let wake = Arc::new(Notify::new());
        let ticker = {
            let shards = shards.clone();
            let stop = stop_background.clone();
            tokio::spawn(async move { shards.run(stop).await })
        };
        let listener = tokio::spawn(listen(
            self.pool.clone(),
            wake.clone(),
            stop_background.clone(),
        ));
        let backlog = tokio::spawn(watch_backlog(
            self.pool.clone(),
            shards.clone(),
            self.metrics.clone(),
            stop_background.clone(),
        ));
        let dead_letters = tokio::spawn(
            crate::dlt::DeadLetters {
                config: self.config.clone(),
                pool: self.pool.clone(),
                kafka: self.kafka.clone(),
                metrics: self.metrics.clone(),
                shards: shards.clone(),
                wake: self.dlt_wake.clone(),
            }
            .run(stop_background.clone()),
        );
        tracing::info!(relay = %self.config.relay_id, shards = self.config.shards, "relay started");
        self.publish_loop(&shards, &wake, &shutdown).await;
        stop_background.trigger();
        let _ = tokio::join!(ticker, listener, backlog, dead_letters);
        shards.release_all().await;
    }

    /// Reads, sends and confirms batches, three at a time: while batch n's acks are awaited and
    /// batch n+1 is sent, batch n+2 is already being read. Each read skips the rows of the batches
    /// before it, which are still in the outbox, and the rows acked but not yet deleted (a
    /// [`Deleter`] removes them on its own connection). Everything goes to Kafka through one
    /// idempotent producer in read order, so each aggregate's records keep their order. A read
    /// made before a failure or a parking is thrown away and made again: it could hold rows that
    /// must now wait.
    async fn publish_loop(&self, shards: &Shards, wake: &Notify, shutdown: &Shutdown) {
        let mut producer: Option<FutureProducer> = None;
        let mut deleter = Deleter::new(self.pool.clone(), self.config.shards, self.metrics.clone());
        let mut in_flight: Option<Sent> = None;
        let mut ahead: Option<Read> = None;
        let mut topics: HashSet<String> = HashSet::new();
        let mut failures: u32 = 0;
        while !shutdown.is_triggered() {
            let mut owned = shards.lock().await;
            if !owned.is_empty() {
                shards.verify(&mut owned).await;
            }
            if owned.is_empty() {
                drop(owned);
                // Nothing of ours waits to be published: nothing is halted either.
                self.resume();
                discard(&mut ahead).await;
                self.settle(&mut in_flight, &mut deleter, shutdown).await;
                deleter.flush().await;
                self.caught_up(shards, wake, shutdown, &mut in_flight, &mut deleter)
                    .await;
                continue;
            }
            if producer.is_none() {
                match self.producer() {
                    Ok(p) => producer = Some(p),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot create the Kafka producer");
                        drop(owned);
                        failures += 1;
                        backoff(failures, shutdown).await;
                        continue;
                    }
                }
            }
            let Some(p) = producer.clone() else { continue };
            let started = std::time::Instant::now();
            let read = match ahead.take() {
                Some(read) => read,
                None => {
                    let exclude = unfinished(&mut deleter, &in_flight).await;
                    self.read(shards.count(), &owned, exclude)
                }
            };
            let (asked, mut batch) = match read.finish().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the outbox");
                    self.metrics.errors.with_label_values(&["read"]).inc();
                    drop(owned);
                    failures += 1;
                    backoff(failures, shutdown).await;
                    continue;
                }
            };
            let waited = started.elapsed();
            let valid: HashSet<i32> = batch.valid_shards.iter().copied().collect();
            // A shard is lost when the read found its epoch moved on, unless it was taken again
            // (at a new epoch) since the read.
            let lost: HashSet<i32> = asked
                .iter()
                .filter(|(s, e)| !valid.contains(s) && owned.get(s) == Some(e))
                .map(|(s, _)| *s)
                .collect();
            shards.forget(&mut owned, |s| lost.contains(&s));
            // Rows of a shard whose epoch moved on belong to its new owner.
            batch
                .rows
                .retain(|r| valid.contains(&r.shard) && owned.get(&r.shard) == asked.get(&r.shard));
            let nothing_new = batch.rows.is_empty();
            if !nothing_new {
                let mut exclude = unfinished(&mut deleter, &in_flight).await;
                exclude.extend(batch.rows.iter().map(|r| r.id));
                ahead = Some(self.read(shards.count(), &owned, exclude));
            }
            let sent = if nothing_new {
                None
            } else {
                match self.send(&p, &owned, batch.rows, &mut topics).await {
                    Ok(sent) => {
                        self.resume();
                        Some(sent)
                    }
                    Err(e) => {
                        self.failed(&e, &p, &mut producer);
                        drop(owned);
                        discard(&mut ahead).await;
                        self.settle(&mut in_flight, &mut deleter, shutdown).await;
                        failures += 1;
                        backoff(failures, shutdown).await;
                        continue;
                    }
                }
            };
            drop(owned);
            if sent.as_ref().is_some_and(|s| s.parked) {
                // The read ahead may hold later rows of an aggregate that was just parked.
                discard(&mut ahead).await;
            }
            let previous = in_flight.take();
            in_flight = sent;
            if let Some(previous) = previous {
                match self.confirm(previous, shutdown).await {
                    Ok(acked) => deleter.push(acked).await,
                    Err(e) => {
                        // The batches sent and read after it are dropped too: their rows stay in
                        // the outbox and are read and sent again (duplicates, in order).
                        self.failed(&e, &p, &mut producer);
                        in_flight = None;
                        discard(&mut ahead).await;
                        failures += 1;
                        backoff(failures, shutdown).await;
                        continue;
                    }
                }
            }
            tracing::debug!(
                read_wait_ms = waited.as_secs_f64() * 1e3,
                total_ms = started.elapsed().as_secs_f64() * 1e3,
                in_flight = in_flight.as_ref().map_or(0, |s| s.rows.len()),
                "batch round"
            );
            failures = 0;
            if nothing_new {
                // A batch that was merely not full stays in flight while the next read runs, so
                // a steady trickle pays one read or one ack per round, not both.
                self.caught_up(shards, wake, shutdown, &mut in_flight, &mut deleter)
                    .await;
            }
        }
        discard(&mut ahead).await;
        self.settle(&mut in_flight, &mut deleter, shutdown).await;
        deleter.flush().await;
    }

    /// Starts reading the next batch of the `owned` shards, skipping `exclude`.
    fn read(&self, shards: u32, owned: &Owned, exclude: Vec<i64>) -> Read {
        let pairs: Vec<(i32, i64)> = owned.iter().map(|(s, e)| (*s, *e)).collect();
        let (pool, limit) = (self.pool.clone(), self.config.batch_size);
        let handle = tokio::spawn(async move {
            outbox::next_batch(&pool, shards, &pairs, &exclude, limit).await
        });
        Read {
            asked: owned.clone(),
            handle,
        }
    }

    /// Caught up (or owning nothing): waits for new rows (a notification, a new shard, the poll
    /// interval or shutdown) while the batch in flight, if any, is acknowledged and its rows deleted. New rows do not wait for
    /// those acks: the next round reads and sends them first, as when the outbox is full.
    async fn caught_up(
        &self,
        shards: &Shards,
        wake: &Notify,
        shutdown: &Shutdown,
        in_flight: &mut Option<Sent>,
        deleter: &mut Deleter,
    ) {
        let poll = tokio::time::sleep(self.config.poll_interval);
        tokio::pin!(poll);
        loop {
            tokio::select! {
                _ = acked(in_flight) => self.settle(in_flight, deleter, shutdown).await,
                _ = deleter.progress() => {}
                _ = wake.notified() => return,
                _ = shards.changed.notified() => return,
                _ = &mut poll => return,
                _ = shutdown.wait() => return,
            }
        }
    }

    /// Awaits the batch in flight, if any; its acked rows go to the deleter.
    async fn settle(
        &self,
        in_flight: &mut Option<Sent>,
        deleter: &mut Deleter,
        shutdown: &Shutdown,
    ) {
        if let Some(sent) = in_flight.take() {
            match self.confirm(sent, shutdown).await {
                Ok(acked) => deleter.push(acked).await,
                Err(e) => {
                    tracing::warn!(error = %e, "batch not acknowledged; it will be sent again");
                    self.metrics.errors.with_label_values(&[stage(&e)]).inc();
                }
            }
        }
    }

    /// Counts a failed batch and drops a producer that hit a fatal error.
    fn failed(&self, e: &PublishError, p: &FutureProducer, producer: &mut Option<FutureProducer>) {
        match e {
            PublishError::Halted(cause) => self.halt(cause),
            _ => tracing::warn!(error = %e, "batch not published; retrying"),
        }
        self.metrics.errors.with_label_values(&[stage(e)]).inc();
        if p.client().fatal_error().is_some() {
            tracing::warn!("producer hit a fatal error: creating a new one");
            *producer = None;
        }
    }

    /// Marks publishing halted by `cause` (gauge, `/readyz`, an error log line when it starts).
    fn halt(&self, cause: &CodecError) {
        let (kind, subject) = match cause {
            CodecError::NotRegistered { subject, .. } => {
                ("schema_not_registered", subject.as_str())
            }
            CodecError::RegistryUnauthorized { context, .. } => {
                ("registry_unauthorized", context.as_str())
            }
            _ => ("configuration", ""),
        };
        if self.metrics.halt(kind, subject, &cause.to_string()) {
            tracing::error!(
                error = %cause, reason = kind, subject,
                "publishing halted: the outbox rows stay and are published, in order, once this is fixed"
            );
        } else {
            tracing::warn!(error = %cause, reason = kind, subject, "publishing still halted");
        }
    }

    /// Clears a halt after a batch went out (or when nothing of ours waits).
    fn resume(&self) {
        if self.metrics.resume() {
            tracing::info!("publishing resumed");
        }
    }

    /// Looks up the schema id of every event type and version of `rows` before any is sent: a
    /// schema that is not registered or credentials the registry refuses halt the whole batch
    /// (nothing sent, so no duplicates later; nothing parked). A row's own problem (no local
    /// schema) is left for [`Relay::send`] to park.
    async fn resolve(&self, rows: &[OutboxRow]) -> Result<(), PublishError> {
        let mut seen: HashSet<(&str, &str, i32)> = HashSet::new();
        for row in rows.iter().filter(|r| r.blocked_by.is_none()) {
            let env = &row.envelope;
            let key = (
                env.aggregate_type.as_str(),
                env.event_type.as_str(),
                env.schema_version,
            );
            if !seen.insert(key) {
                continue;
            }
            let topic = topic_for(&self.config.topic_prefix, &env.aggregate_type);
            match self
                .codec
                .lookup(&topic, &env.event_type, env.schema_version as u32)
                .await
            {
                Err(e) if e.is_configuration() => return Err(PublishError::Halted(e)),
                Err(e) if e.is_retryable() => return Err(PublishError::Registry(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Parks what cannot be published and hands the rest to the producer (without waiting).
    async fn send(
        &self,
        producer: &FutureProducer,
        owned: &Owned,
        rows: Vec<OutboxRow>,
        topics: &mut HashSet<String>,
    ) -> Result<Sent, PublishError> {
        self.resolve(&rows).await?;
        let epoch = |shard: i32| owned.get(&shard).copied().unwrap_or_default();
        // Aggregates with a parked row: their later rows wait behind it, in order.
        let mut blocked: HashMap<(&str, &str), i64> = HashMap::new();
        let mut parks: Vec<Park> = Vec::new();
        let mut sends = Vec::with_capacity(rows.len());
        for row in &rows {
            let env = &row.envelope;
            let key = (env.aggregate_type.as_str(), env.aggregate_id.as_str());
            if let Some(first) = row.blocked_by.or_else(|| blocked.get(&key).copied()) {
                blocked.insert(key, first);
                parks.push(Park {
                    id: row.id,
                    epoch: epoch(row.shard),
                    kind: "behind_parked",
                    reason: format!("behind parked outbox row {first}"),
                    blocked_by: Some(first),
                });
                self.metrics
                    .parked
                    .with_label_values(&["behind_parked"])
                    .inc();
                continue;
            }
            let topic = topic_for(&self.config.topic_prefix, &env.aggregate_type);
            if !topics.contains(&topic) {
                self.kafka
                    .ensure_topic(&topic, self.config.partitions, self.config.replication)
                    .await?;
                topics.insert(topic.clone());
            }
            let encoded = self
                .codec
                .encode(
                    &topic,
                    &env.event_type,
                    env.schema_version as u32,
                    &row.payload,
                )
                .await;
            let problem = match &encoded {
                Err(e) if e.is_retryable() => return Err(PublishError::Registry(e.clone())),
                Err(e) if e.is_configuration() => return Err(PublishError::Halted(e.clone())),
                Err(e) => Some(("encode", e.to_string())),
                Ok(bytes) if bytes.len() > MAX_RECORD_BYTES => Some((
                    "too_large",
                    format!("record of {} bytes is over {MAX_RECORD_BYTES}", bytes.len()),
                )),
                Ok(_) => None,
            };
            if let Some((kind, reason)) = problem {
                tracing::warn!(outbox_id = row.id, event_id = %env.event_id, %reason, "parking outbox row");
                blocked.insert(key, row.id);
                parks.push(Park {
                    id: row.id,
                    epoch: epoch(row.shard),
                    kind,
                    reason,
                    blocked_by: None,
                });
                self.metrics.parked.with_label_values(&[kind]).inc();
                continue;
            }
            let Ok(bytes) = encoded else { continue };
            let headers = env.to_headers();
            let mut record = FutureRecord::to(&topic)
                .key(env.aggregate_id.as_bytes())
                .payload(&bytes)
                .headers(headers);
            let future = loop {
                match producer.send_result(record) {
                    Ok(f) => break f,
                    Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(PublishError::Kafka(e)),
                }
            };
            sends.push((
                Done {
                    id: row.id,
                    epoch: epoch(row.shard),
                },
                row.recorded_at,
                future,
            ));
        }
        let parked = !parks.is_empty();
        if parked {
            outbox::park(&self.pool, self.config.shards, &parks).await?;
            // Their dead-letter copies were queued by the same statement: send them now.
            self.dlt_wake.notify_one();
        }
        let (rows, acks): (_, Vec<DeliveryFuture>) = sends
            .into_iter()
            .map(|(done, recorded_at, ack)| ((done, recorded_at), ack))
            .unzip();
        Ok(Sent {
            rows,
            acks: Box::pin(maybe_done(join_all(acks))),
            parked,
        })
    }

    /// Waits for every ack of `sent`; the acked rows, or the first failure.
    async fn confirm(
        &self,
        mut sent: Sent,
        shutdown: &Shutdown,
    ) -> Result<Vec<Done>, PublishError> {
        tokio::select! {
            _ = &mut sent.acks => {}
            _ = stop_after_grace(shutdown) => return Err(PublishError::Stopped),
        }
        let Some(acks) = sent.acks.as_mut().take_output() else {
            return Err(PublishError::Kafka(RdKafkaError::Canceled));
        };
        let now = chrono::Utc::now();
        let mut acked = Vec::with_capacity(sent.rows.len());
        for ((done, recorded_at), ack) in sent.rows.into_iter().zip(acks) {
            match ack {
                Ok(Ok(_)) => {
                    let lag = (now - recorded_at).num_microseconds().unwrap_or(0);
                    self.metrics.lag.observe(lag.max(0) as f64 / 1e6);
                    acked.push(done);
                }
                Ok(Err((e, _))) => return Err(PublishError::Kafka(e)),
                Err(_) => return Err(PublishError::Kafka(RdKafkaError::Canceled)),
            }
        }
        self.metrics.published.inc_by(acked.len() as u64);
        self.metrics.batch_size.observe(acked.len() as f64);
        Ok(acked)
    }
}

/// A batch handed to the producer: each row with its read-time epoch and store time, the acks to
/// wait for, and whether some of its rows were parked instead.
struct Sent {
    rows: Vec<(Done, chrono::DateTime<chrono::Utc>)>,
    acks: Acks,
    parked: bool,
}

/// Every ack of a batch, awaited in place (so that waiting may be given up and resumed).
type Acks = Pin<Box<MaybeDone<JoinAll<DeliveryFuture>>>>;

/// Resolves when every ack of the batch in flight has arrived; never while none is in flight.
async fn acked(in_flight: &mut Option<Sent>) {
    match in_flight {
        Some(sent) => (&mut sent.acks).await,
        None => std::future::pending().await,
    }
}

/// A read of the outbox in progress, with the shards and epochs it asked for.
struct Read {
    asked: Owned,
    handle: tokio::task::JoinHandle<Result<Batch, sqlx::Error>>,
}

impl Read {
    /// Waits for the read; the shards it asked for and what it found.
    async fn finish(self) -> Result<(Owned, Batch), sqlx::Error> {
        match self.handle.await {
            Ok(batch) => Ok((self.asked, batch?)),
            Err(e) => Err(sqlx::Error::Protocol(format!(
                "outbox read task failed: {e}"
            ))),
        }
    }
}

/// Waits for the read ahead, if any, and throws its rows away (they are read again).
async fn discard(ahead: &mut Option<Read>) {
    if let Some(read) = ahead.take() {
        let _ = read.finish().await;
    }
}

/// Ids a read must skip: rows acked but not yet deleted (starting their delete if it waits) and
/// rows sent but not yet acked.
async fn unfinished(deleter: &mut Deleter, in_flight: &Option<Sent>) -> Vec<i64> {
    deleter.poll().await;
    let mut ids = deleter.pending_ids();
    ids.extend(in_flight.iter().flat_map(Sent::ids));
    ids
}

impl Sent {
    fn ids(&self) -> Vec<i64> {
        self.rows.iter().map(|(d, _)| d.id).collect()
    }
}

fn stage(e: &PublishError) -> &'static str {
    match e {
        PublishError::Registry(_) => "registry",
        PublishError::Halted(_) => "halted",
        PublishError::Topic(_) => "topic",
        PublishError::Kafka(_) => "kafka",
        PublishError::Database(_) => "park",
        PublishError::Stopped => "stopped",
    }
}

/// Resolves `STOP_GRACE` after shutdown was requested (never before).
async fn stop_after_grace(shutdown: &Shutdown) {
    shutdown.wait().await;
    tokio::time::sleep(STOP_GRACE).await;
}

/// Full-jitter exponential back-off after `failures` failures in a row (50 ms .. 5 s).
pub(crate) async fn backoff(failures: u32, shutdown: &Shutdown) {
    let cap = 50u64.saturating_mul(1 << failures.min(7)).min(5000);
    let wait = Duration::from_millis(fastrand::u64(cap / 2..=cap));
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = shutdown.wait() => {}
    }
}

/// LISTENs on the outbox channel and wakes the publisher on every notification; reconnects on
/// failure (the poll interval covers the gap).
async fn listen(pool: PgPool, wake: Arc<Notify>, stop: Shutdown) {
    while !stop.is_triggered() {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for outbox notifications");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.wait() => return,
                }
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed");
            continue;
        }
        loop {
            tokio::select! {
                n = listener.try_recv() => match n {
                    Ok(Some(_)) => wake.notify_one(),
                    // The connection dropped (and notifications may be lost): wake up and reconnect.
                    Ok(None) => { wake.notify_one(); break; }
                    Err(e) => { tracing::warn!(error = %e, "outbox notifications failed"); break; }
                },
                _ = stop.wait() => return,
            }
        }
    }
}

/// Refreshes the backlog gauges of the owned shards every 5 s.
async fn watch_backlog(pool: PgPool, shards: Arc<Shards>, metrics: RelayMetrics, stop: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.wait() => return,
        }
        let owned: Vec<i32> = tokio::select! {
            o = shards.lock() => o.keys().copied().collect(),
            _ = stop.wait() => return,
        };
        match outbox::backlog(&pool, shards.count()).await {
            Ok(rows) => {
                metrics.backlog.reset();
                metrics.oldest_age.reset();
                for s in &owned {
                    let label = s.to_string();
                    let (count, age) = rows
                        .iter()
                        .find(|(shard, _, _)| shard == s)
                        .map_or((0, 0), |(_, c, a)| (*c, *a));
                    metrics.backlog.with_label_values(&[&label]).set(count);
                    metrics.oldest_age.with_label_values(&[&label]).set(age);
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot measure the backlog"),
        }
    }
}
