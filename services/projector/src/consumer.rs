//! The Kafka side: one consumer group per read model, cooperative-sticky assignment, seeking to
//! the offsets stored with the read model, batches handed to the [`Processor`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventfold_avro::AvroCodec;
use eventfold_kafka::KafkaSettings;
use eventfold_runtime::Shutdown;
use rdkafka::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::message::OwnedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio::sync::watch;

use crate::engine::{Item, Processor, backoff, decode};
use crate::metrics::Cause;
use crate::state::ModelState;
use crate::target::Partition;

/// Consumer settings shared by every read model of a process.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Brokers and security.
    pub kafka: KafkaSettings,
    /// Topic name prefix (`KAFKA_TOPIC_PREFIX`); topic = prefix + aggregate type.
    pub topic_prefix: String,
    /// Consumer group prefix (`PROJECTOR_GROUP_PREFIX`); group = prefix + read model.
    pub group_prefix: String,
    /// The whole group name (`PROJECTOR_CONSUMER_GROUP`), instead of prefix + read model.
    pub group: Option<String>,
    /// Most records per batch (`PROJECTOR_BATCH_SIZE`).
    pub batch_size: usize,
    /// How long a batch waits for more records after the first (`PROJECTOR_BATCH_WAIT_MS`).
    pub batch_wait: Duration,
    /// `session.timeout.ms`.
    pub session_timeout_ms: u32,
    /// `max.poll.interval.ms`.
    pub max_poll_interval_ms: u32,
}

/// Offsets known to be stored with the read model, used when a partition is assigned.
type OffsetCache = Arc<Mutex<HashMap<Partition, i64>>>;

/// Starts every assigned partition at the offset stored with the read model, never at the
/// group's committed offset: that one may come from another generation or another process and
/// be ahead of the read model. A partition with nothing stored starts at its beginning. The
/// cache keeps revoked partitions: when one comes back its entry may be behind what another
/// instance stored meanwhile, and the in-transaction offset check skips what was applied.
struct Context {
    read_model: &'static str,
    offsets: OffsetCache,
    assigned: prometheus::IntGauge,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let parts: Vec<Partition> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Ok(cache) = self.offsets.lock() {
                    for (t, p) in &parts {
                        let start = match cache.get(&(t.clone(), *p)) {
                            Some(&o) if o >= 0 => Offset::Offset(o),
                            _ => Offset::Beginning,
                        };
                        let _ = tpl.set_partition_offset(t, *p, start);
                    }
                }
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!(read_model = self.read_model, error = %e, "assign failed");
                }
                self.assigned.add(parts.len() as i64);
                tracing::info!(read_model = self.read_model, partitions = ?parts, "assigned");
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::error!(read_model = self.read_model, error = %e, "unassign failed");
                }
                self.assigned.sub(parts.len() as i64);
                tracing::info!(read_model = self.read_model, partitions = ?parts, "revoked");
            }
            other => {
                tracing::error!(read_model = self.read_model, error = ?other, "rebalance error");
                let _ = consumer.unassign();
                self.assigned.set(0);
            }
        }
    }
}

/// Runs one read model's consumer until `shutdown`: (re)starts on the live generation, stops
/// consuming while a Neo4j read model is rebuilt in place, restarts when the generation changes.
pub async fn run(
    settings: ConsumerSettings,
    codec: Arc<AvroCodec>,
    make: impl Fn(ModelState) -> Processor,
    mut state: watch::Receiver<ModelState>,
    shutdown: Shutdown,
) {
    let mut attempt = 0;
    while !shutdown.is_triggered() {
        let current = *state.borrow_and_update();
        let processor = make(current);
        let name = processor.projection.name();
        if let Some(m) = &processor.metrics {
            m.rebuilding
                .with_label_values(&[name])
                .set(i64::from(current.rebuilding));
        }
        if current.rebuilding && processor.target.store() == crate::projection::Store::Neo4j {
            tracing::info!(read_model = name, "rebuild in progress; consumer stopped");
            tokio::select! {
                _ = state.changed() => {}
                _ = shutdown.wait() => return,
            }
            continue;
        }
        match consume(&settings, &codec, &processor, &mut state, &shutdown).await {
            Ok(()) => attempt = 0,
            Err(e) => {
                tracing::warn!(read_model = name, error = %e, "consumer failed; restarting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                    _ = shutdown.wait() => return,
                }
                attempt += 1;
            }
        }
    }
}

/// Consumes into `processor`'s generation until shutdown or a state change (`Ok`).
async fn consume(
    settings: &ConsumerSettings,
    codec: &AvroCodec,
    processor: &Processor,
    state: &mut watch::Receiver<ModelState>,
    shutdown: &Shutdown,
) -> Result<(), String> {
    let p = &*processor.projection;
    let name = p.name();
    processor.target.setup(p).await.map_err(|e| e.to_string())?;
    let stored = processor
        .target
        .offsets()
        .await
        .map_err(|e| e.to_string())?;
    let offsets: OffsetCache = Arc::new(Mutex::new(stored));
    let assigned = processor
        .metrics
        .as_ref()
        .map(|m| m.assigned.with_label_values(&[name]))
        .unwrap_or_else(|| prometheus::IntGauge::new("unused", "unused").expect("static"));
    assigned.set(0);
    let topics: Vec<String> = p
        .aggregate_types()
        .iter()
        .map(|t| format!("{}{t}", settings.topic_prefix))
        .collect();
    let mut config = settings.kafka.client_config();
    config
        .set(
            "group.id",
            settings
                .group
                .clone()
                .unwrap_or_else(|| format!("{}{name}", settings.group_prefix)),
        )
        .set("client.id", format!("eventfold-projector-{name}"))
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            settings.session_timeout_ms.to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (settings.session_timeout_ms / 4).to_string(),
        )
        .set(
            "max.poll.interval.ms",
            settings.max_poll_interval_ms.to_string(),
        )
        .set("fetch.wait.max.ms", "20")
        .set("socket.nagle.disable", "true")
        .set("topic.metadata.refresh.interval.ms", "5000");
    let consumer: Arc<StreamConsumer<Context>> = Arc::new(
        config
            .create_with_context(Context {
                read_model: name,
                offsets: offsets.clone(),
                assigned,
            })
            .map_err(|e| e.to_string())?,
    );
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs).map_err(|e| e.to_string())?;
    tracing::info!(read_model = name, topics = ?topics, "consuming");
    let start = *state.borrow();
    let mut last_lag = tokio::time::Instant::now();
    // Records received while the previous batch was being applied, decoded: the next batch.
    let mut pending: Vec<Item> = Vec::new();
    // Since when every receive has failed (none succeeded in between).
    let mut failing_since: Option<tokio::time::Instant> = None;
    loop {
        if last_lag.elapsed() >= LAG_EVERY {
            last_lag = tokio::time::Instant::now();
            if let Some(m) = processor.metrics.clone() {
                let (c, o) = (consumer.clone(), offsets.clone());
                tokio::task::spawn_blocking(move || report_lag(&c, &m, name, &o));
            }
        }
        if shutdown.is_triggered() {
            return Ok(());
        }
        // Dropping `pending` on the way out is safe: a new consumer starts from the offsets
        // stored with the read model.
        if state.has_changed().unwrap_or(true) && leaves(processor, start, state) {
            return Ok(());
        }
        let items = if pending.is_empty() {
            let batch = tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                changed = state.changed() => {
                    if changed.is_err() || leaves(processor, start, state) {
                        return Ok(());
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(last_lag + LAG_EVERY) => continue,
                // `recv` is cancel-safe: a record is taken from the queue only when it returns.
                first = consumer.recv() => match first {
                    Ok(m) => {
                        failing_since = None;
                        // From here on nothing may cancel the collection: records received and
                        // then dropped would be skipped for good.
                        rest_of_batch(&consumer, m.detach(), settings.batch_size, settings.batch_wait)
                            .await
                    }
                    // E.g. a subscribed topic that does not exist yet: librdkafka keeps looking.
                    // A consumer that joined while every broker was down was seen to keep
                    // failing (`AllBrokersDown`) for minutes after the broker was back: past
                    // RECREATE_AFTER of nothing but errors it is dropped and made anew.
                    Err(e) => {
                        let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                        if since.elapsed() >= RECREATE_AFTER {
                            return Err(format!(
                                "consumer failing for {:?} ({e}); recreating it",
                                since.elapsed()
                            ));
                        }
                        tracing::warn!(read_model = name, error = %e, "consumer error");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                },
            };
            let Some(items) = decode_all(codec, &batch, processor, shutdown).await else {
                return Ok(());
            };
            items
        } else {
            std::mem::take(&mut pending)
        };
        // While the batch is applied (mostly waiting for the store), the next one is received
        // and decoded; it is applied after this one, in order.
        let applied = tokio::sync::Notify::new();
        let (outcome, next) = tokio::join!(
            async {
                let o = processor.apply(&items, shutdown).await;
                applied.notify_one();
                o
            },
            async {
                let batch = prefetch(&consumer, settings.batch_size, &applied).await;
                decode_all(codec, &batch, processor, shutdown).await
            }
        );
        let Some(outcome) = outcome else {
            if !shutdown.is_triggered() {
                // Fenced off by a rebuild: wait for the generation it makes live.
                tracing::warn!(
                    read_model = name,
                    "fenced off; waiting for the new generation"
                );
                tokio::select! {
                    _ = state.changed() => {}
                    _ = shutdown.wait() => {}
                }
            }
            return Ok(());
        };
        if !outcome.rewind.is_empty() {
            rewind(&consumer, processor, &offsets, &outcome.rewind, shutdown).await?;
        }
        let mut cache = offsets.lock().map_err(|e| e.to_string())?;
        for ((t, part), next) in &outcome.next_offsets {
            // A partition revoked meanwhile refuses the store; its new owner has the offset.
            // `store_offset` takes the last processed offset (librdkafka commits it + 1).
            if consumer.store_offset(t, *part, *next - 1).is_ok() {
                cache.insert((t.clone(), *part), *next);
            }
        }
        drop(cache);
        let Some(next) = next else {
            return Ok(());
        };
        pending = next;
    }
}

/// Moves each partition of `to` back to the offset stored with the read model. When that offset
/// is below the partition's log start (retention deleted records the read model never saw), the
/// read model does not skip ahead: it says so (log, `projector_behind_log_start`, `/readyz`),
/// catches up from the event store (the authority) under the version guard, stores the log
/// start as its offset and goes on from there.
async fn rewind(
    consumer: &Arc<StreamConsumer<Context>>,
    processor: &Processor,
    offsets: &OffsetCache,
    to: &HashMap<Partition, i64>,
    shutdown: &Shutdown,
) -> Result<(), String> {
    let name = processor.projection.name();
    let mut start: HashMap<Partition, i64> = HashMap::new();
    let mut behind: HashMap<Partition, i64> = HashMap::new();
    for ((t, p), stored) in to {
        let (c, topic, part) = (consumer.clone(), t.clone(), *p);
        let (low, _) = tokio::task::spawn_blocking(move || {
            c.fetch_watermarks(&topic, part, Duration::from_secs(10))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("watermarks of {t}/{p}: {e}"))?;
        if *stored < low {
            tracing::error!(
                read_model = name, topic = %t, partition = p, stored, log_start = low,
                "read model is behind the log start (records deleted by retention); \
                 catching up from the event store"
            );
            behind.insert((t.clone(), *p), low);
        } else {
            tracing::warn!(
                read_model = name, topic = %t, partition = p, stored,
                "records ahead of the stored offset; seeking back to it"
            );
            start.insert((t.clone(), *p), *stored);
        }
    }
    if !behind.is_empty() {
        let gauge = processor
            .metrics
            .as_ref()
            .map(|m| m.behind_log_start.with_label_values(&[name]));
        if let Some(g) = &gauge {
            g.set(1);
        }
        // Every event below the log start was committed to the event store before it was
        // published, so one pass over the store (version guard on) covers what was deleted.
        crate::rebuild::replay_all(processor, processor.parking.pool(), 2000, shutdown)
            .await
            .map_err(|e| format!("catch-up from the event store: {e}"))?;
        let mut tx = processor.target.begin().await.map_err(|e| e.to_string())?;
        tx.save_offsets(&behind).await.map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        if let Some(g) = &gauge {
            g.set(0);
        }
        tracing::info!(read_model = name, partitions = ?behind, "caught up from the event store");
        start.extend(behind);
    }
    for ((t, p), o) in start {
        if let Ok(mut cache) = offsets.lock() {
            cache.insert((t.clone(), p), o);
        }
        if let Err(e) = consumer.seek(&t, p, Offset::Offset(o), Duration::from_secs(10)) {
            // Not ours any more: its new owner starts at the stored offset.
            tracing::warn!(read_model = name, topic = %t, partition = p, error = %e, "seek failed");
        }
    }
    Ok(())
}

/// Takes the read model's new state: true when this consumer must stop (another generation, or
/// a Neo4j rebuild in place); otherwise updates the rebuilding gauge.
fn leaves(
    processor: &Processor,
    start: ModelState,
    state: &mut watch::Receiver<ModelState>,
) -> bool {
    let now = *state.borrow_and_update();
    if now.generation != start.generation
        || (now.rebuilding && processor.target.store() == crate::projection::Store::Neo4j)
    {
        return true;
    }
    if let Some(m) = &processor.metrics {
        m.rebuilding
            .with_label_values(&[processor.projection.name()])
            .set(i64::from(now.rebuilding));
    }
    false
}

/// How long a consumer may receive nothing but errors before it is recreated.
const RECREATE_AFTER: Duration = Duration::from_secs(15);

/// How often the lag per partition is reported.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// Decodes `batch` in order, waiting out an unreachable registry; `None` on shutdown. A registry
/// that refuses the credentials (401, 403) halts the read model (error log, `/readyz`,
/// `eventfold_projector_halted`) until a retry succeeds: nothing is parked for it, since no
/// record is at fault.
async fn decode_all(
    codec: &AvroCodec,
    batch: &[OwnedMessage],
    processor: &Processor,
    shutdown: &Shutdown,
) -> Option<Vec<Item>> {
    let name = processor.projection.name();
    let metrics = processor.metrics.as_ref();
    let mut items: Vec<Item> = Vec::with_capacity(batch.len());
    for msg in batch {
        let mut attempt = 0;
        loop {
            match decode(codec, msg).await {
                Ok(item) => {
                    items.push(item);
                    break;
                }
                Err(e) if e.is_configuration() => {
                    let first = match metrics {
                        Some(m) => m.halt(name, Cause::Registry, &e.to_string()),
                        None => attempt == 0,
                    };
                    if first {
                        tracing::error!(
                            read_model = name, error = %e,
                            "read model halted: the schema registry refuses the credentials; retrying until it is fixed"
                        );
                    } else {
                        tracing::warn!(read_model = name, error = %e, attempt, "read model still halted");
                    }
                }
                Err(e) => {
                    tracing::warn!(read_model = name, error = %e, "registry unavailable; retrying");
                }
            }
            if let Some(m) = metrics {
                m.retries.with_label_values(&[name, "registry"]).inc();
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff(attempt)) => {}
                _ = shutdown.wait() => return None,
            }
            attempt += 1;
        }
    }
    // Once per batch: every record of it was read, so the registry accepts the credentials.
    if !batch.is_empty() && metrics.is_some_and(|m| m.resume(name, Cause::Registry)) {
        tracing::info!(
            read_model = name,
            "the schema registry accepts the credentials again; read model resumed"
        );
    }
    Some(items)
}

/// Records that arrive until `applied` is notified (the batch in hand is done), up to `max`.
async fn prefetch(
    consumer: &StreamConsumer<Context>,
    max: usize,
    applied: &tokio::sync::Notify,
) -> Vec<OwnedMessage> {
    let mut out = Vec::new();
    while out.len() < max {
        tokio::select! {
            biased;
            _ = applied.notified() => break,
            // Cancel-safe (see above); what was received stays in `out`.
            m = consumer.recv() => match m {
                Ok(m) => out.push(m.detach()),
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    applied.notified().await;
                    break;
                }
            },
        }
    }
    out
}

/// `first` and whatever else arrives within `wait`, up to `max` records.
async fn rest_of_batch(
    consumer: &StreamConsumer<Context>,
    first: OwnedMessage,
    max: usize,
    wait: Duration,
) -> Vec<OwnedMessage> {
    let mut out = vec![first];
    let deadline = tokio::time::Instant::now() + wait;
    while out.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => out.push(m.detach()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                break;
            }
            Err(_) => break,
        }
    }
    out
}

fn report_lag(
    consumer: &StreamConsumer<Context>,
    m: &crate::metrics::ProjectorMetrics,
    name: &str,
    offsets: &OffsetCache,
) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let known = offsets.lock().map(|c| c.clone()).unwrap_or_default();
    m.lag.reset();
    for e in assignment.elements() {
        let (t, p) = (e.topic(), e.partition());
        if let Ok((_, high)) = consumer.fetch_watermarks(t, p, Duration::from_secs(1)) {
            let next = known.get(&(t.to_owned(), p)).copied().unwrap_or(0).max(0);
            m.lag
                .with_label_values(&[name, t, &p.to_string()])
                .set((high - next).max(0));
        }
    }
}
