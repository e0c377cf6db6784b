//! Applying a batch of events to one generation of a read model: the stored-offset check, the
//! version guard, parking, the projection's writes in waves, and the retry policy.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventfold_avro::{AvroCodec, CodecError};
use eventfold_kafka::Envelope;
use eventfold_runtime::Shutdown;
use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};

use crate::apply::ApplyError;
use crate::metrics::{Cause, ProjectorMetrics};
use crate::parking::{Origin, Parking, Reason, ToPark};
use crate::projection::{ProjectedEvent, Projection, Write, waves};
use crate::target::{AggregateKey, Partition, Target, Tx};

/// An event that could not be read, with what is known of it.
#[derive(Debug, Clone)]
pub struct Undecodable {
    /// The envelope, when the headers carried one.
    pub envelope: Option<Envelope>,
    /// What is wrong.
    pub error: String,
}

/// One consumed record (or event-store row) ready to apply.
#[derive(Debug, Clone)]
pub struct Item {
    /// Where it came from.
    pub origin: Origin,
    /// The event, or why it cannot be read.
    pub event: Result<ProjectedEvent, Undecodable>,
}

impl Item {
    fn aggregate(&self) -> Option<AggregateKey> {
        let env = match &self.event {
            Ok(e) => Some(&e.envelope),
            Err(u) => u.envelope.as_ref(),
        }?;
        Some(key_of(env))
    }
}

/// Reads a consumed record: envelope from the headers, payload decoded and upcast to the latest
/// version. `Err` only for what is not the record's fault: the registry is unreachable
/// ([`CodecError::is_retryable`], retry) or refuses the credentials
/// ([`CodecError::is_configuration`], halt and retry); never park for either.
pub async fn decode(codec: &AvroCodec, msg: &OwnedMessage) -> Result<Item, CodecError> {
    let origin = Origin {
        record: Some((msg.topic().to_owned(), msg.partition(), msg.offset())),
        key: msg.key().map(<[u8]>::to_vec),
        value: msg.payload().map(<[u8]>::to_vec),
        headers: msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| (x.key.to_owned(), x.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let fail = |envelope: Option<Envelope>, error: String| Undecodable { envelope, error };
    let event = match msg.headers().map(Envelope::from_headers) {
        None => Err(fail(None, "record has no headers".into())),
        Some(Err(e)) => Err(fail(None, e.to_string())),
        Some(Ok(envelope)) => match (
            msg.payload(),
            eventfold_reference::upcasters(&envelope.aggregate_type),
        ) {
            (None, _) => Err(fail(Some(envelope), "record has no value".into())),
            (_, None) => {
                let e = format!("unknown aggregate type `{}`", envelope.aggregate_type);
                Err(fail(Some(envelope), e))
            }
            (Some(value), Some(upcasters)) => {
                match codec.decode_latest(msg.topic(), value, upcasters).await {
                    Err(e) if e.is_retryable() || e.is_configuration() => return Err(e),
                    Err(e) => Err(fail(Some(envelope), e.to_string())),
                    Ok(d) if *d.event_type != envelope.event_type => {
                        let e = format!(
                            "value is a `{}` but the header says `{}`",
                            d.event_type, envelope.event_type
                        );
                        Err(fail(Some(envelope), e))
                    }
                    Ok(d) => Ok(ProjectedEvent {
                        envelope,
                        payload: d.payload,
                    }),
                }
            }
        },
    };
    Ok(Item { origin, event })
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Events applied.
    pub applied: usize,
    /// Events skipped: below the stored offset or at/below the aggregate's applied version.
    pub skipped: usize,
    /// Events parked.
    pub parked: usize,
    /// Events missing from the records delivered (a version gap), applied from the event store.
    pub gap_filled: usize,
    /// Next offset per partition, as stored.
    pub next_offsets: HashMap<Partition, i64>,
    /// The highest applied version per aggregate in this batch.
    pub versions: HashMap<AggregateKey, i64>,
    /// Partitions whose records start past the offset stored with the read model (the
    /// consumer was handed a position ahead of it, e.g. a group offset committed by another
    /// generation): nothing of them was applied, and the consumer must seek back to the stored
    /// offset given here.
    pub rewind: HashMap<Partition, i64>,
}

impl Outcome {
    fn merge(&mut self, o: Outcome) {
        self.applied += o.applied;
        self.skipped += o.skipped;
        self.parked += o.parked;
        self.gap_filled += o.gap_filled;
        for (k, v) in o.next_offsets {
            let e = self.next_offsets.entry(k).or_insert(v);
            *e = (*e).max(v);
        }
        for (k, v) in o.versions {
            let e = self.versions.entry(k).or_insert(v);
            *e = (*e).max(v);
        }
        for (k, v) in o.rewind {
            let e = self.rewind.entry(k).or_insert(v);
            *e = (*e).min(v);
        }
    }
}

/// Applies batches of one read model's events to one of its generations.
#[derive(Clone)]
pub struct Processor {
    /// The read model.
    pub projection: Arc<dyn Projection>,
    /// The generation written.
    pub target: Target,
    /// Where refused events go.
    pub parking: Parking,
    /// Attempts of a refused batch before its events are tried one by one and parked.
    pub max_attempts: u32,
    /// Metrics, when running in a service.
    pub metrics: Option<ProjectorMetrics>,
    /// How refusals and parked aggregates are treated.
    pub mode: Mode,
    /// Longest time one transaction may take ([`APPLY_TIMEOUT`] unless configured, e.g. by
    /// `PROJECTOR_APPLY_TIMEOUT_MS`); a batch that takes longer is split.
    pub apply_timeout: Duration,
}

/// Longest time one transaction may take before it counts as a store outage (a server that
/// accepts connections but does not answer must not stall a consumer forever).
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How a [`Processor`] treats refusals and aggregates with parked events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Consuming: refused events are parked, and so is everything behind them.
    Consume,
    /// Replaying parked events from the event store: parked aggregates are not skipped, and a
    /// refusal fails the batch (nothing is parked again, nothing changes).
    Replay,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("projection", &self.projection.name())
            .field("target", &self.target)
            .finish()
    }
}

/// Back-off before retry `attempt` (0-based): 100 ms doubling up to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

impl Processor {
    /// Applies `items` in one transaction, retrying transient failures until `shutdown` or until
    /// the writer is fenced off by a rebuild (then `None`), and refused batches `max_attempts`
    /// times, after which each event is applied on its own and the ones still refused are parked.
    ///
    /// A batch whose transaction times out is never run whole again: it is split in two halves
    /// applied in order (recursively, down to one event, which is retried with back-off), since
    /// a batch that timed out once will likely time out again. A store error no event can
    /// cause ([`ApplyError::Halted`]) halts the read model (gauge, `/readyz`, log) and is
    /// retried with back-off; nothing is parked for it.
    pub async fn apply(&self, items: &[Item], shutdown: &Shutdown) -> Option<Outcome> {
        Box::pin(self.apply_split(items, shutdown)).await
    }

    async fn apply_split(&self, items: &[Item], shutdown: &Shutdown) -> Option<Outcome> {
        let name = self.projection.name();
        let mut transient = 0;
        let mut refused = 0;
        loop {
            let started = Instant::now();
            match self.apply_once(items, None).await {
                Ok(o) => {
                    if let Some(m) = &self.metrics {
                        m.batch(name).observe(started.elapsed().as_secs_f64());
                    }
                    self.resume();
                    return Some(o);
                }
                Err(ApplyError::TimedOut(t)) if items.len() > 1 => {
                    let (first, second) = items.split_at(items.len() / 2);
                    tracing::warn!(
                        read_model = name,
                        error = %t,
                        events = items.len(),
                        "batch timed out; applying it in two halves"
                    );
                    self.count_retry("timeout");
                    if let Some(m) = &self.metrics {
                        m.splits.with_label_values(&[name]).inc();
                    }
                    let mut total = Box::pin(self.apply_split(first, shutdown)).await?;
                    total.merge(Box::pin(self.apply_split(second, shutdown)).await?);
                    return Some(total);
                }
                Err(ApplyError::TimedOut(t)) => {
                    tracing::warn!(read_model = name, error = %t, attempt = transient, "one event timed out; retrying");
                    self.count_retry("timeout");
                    self.pause(backoff(transient), shutdown).await?;
                    transient += 1;
                }
                Err(ApplyError::Halted { code, reason }) => {
                    self.halt(&code, &reason, transient);
                    self.pause(backoff(transient), shutdown).await?;
                    transient += 1;
                }
                // A rebuild moved the read model on: nothing of this batch may be written; the
                // consumer restarts on the new generation.
                Err(ApplyError::Fenced(e)) => {
                    tracing::warn!(read_model = name, error = %e, "writer fenced off; stopping");
                    return None;
                }
                Err(ApplyError::Transient(e)) => {
                    tracing::warn!(read_model = name, error = %e, attempt = transient, "store unavailable; retrying");
                    self.count_retry("transient");
                    self.pause(backoff(transient), shutdown).await?;
                    transient += 1;
                }
                Err(ApplyError::Refused(e)) => {
                    refused += 1;
                    self.count_retry("refused");
                    tracing::warn!(read_model = name, error = %e, attempt = refused, "batch refused");
                    if refused >= self.max_attempts {
                        return self.isolate(items, shutdown).await;
                    }
                    self.pause(backoff(refused), shutdown).await?;
                }
            }
        }
    }

    /// Marks the read model halted (gauge, `/readyz` reason, an error log line when it starts).
    fn halt(&self, code: &str, reason: &str, attempt: u32) {
        let name = self.projection.name();
        self.count_retry("halted");
        let first = match &self.metrics {
            Some(m) => m.halt(name, Cause::Store, &format!("{code} {reason}")),
            None => attempt == 0,
        };
        if first {
            tracing::error!(
                read_model = name,
                code,
                reason,
                "read model halted: the store refuses every write; retrying until it is fixed"
            );
        } else {
            tracing::warn!(
                read_model = name,
                code,
                reason,
                attempt,
                "read model still halted"
            );
        }
    }

    /// Clears a halt after a successful transaction.
    fn resume(&self) {
        if let Some(m) = &self.metrics
            && m.resume(self.projection.name(), Cause::Store)
        {
            tracing::info!(read_model = self.projection.name(), "read model resumed");
        }
    }

    fn count_retry(&self, kind: &str) {
        if let Some(m) = &self.metrics {
            m.retries
                .with_label_values(&[self.projection.name(), kind])
                .inc();
        }
    }

    async fn pause(&self, d: Duration, shutdown: &Shutdown) -> Option<()> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Some(()),
            _ = shutdown.wait() => None,
        }
    }

    /// Each event on its own; a refused one is parked (with every later event of its aggregate).
    async fn isolate(&self, items: &[Item], shutdown: &Shutdown) -> Option<Outcome> {
        let mut total = Outcome::default();
        for item in items {
            let one = std::slice::from_ref(item);
            let mut attempt = 0;
            let mut refusal: Option<String> = None;
            loop {
                match self.apply_once(one, refusal.as_deref()).await {
                    Ok(o) => {
                        self.resume();
                        total.merge(o);
                        break;
                    }
                    Err(ApplyError::Halted { code, reason }) => {
                        self.halt(&code, &reason, attempt);
                        self.pause(backoff(attempt), shutdown).await?;
                        attempt += 1;
                    }
                    Err(ApplyError::Refused(e)) if refusal.is_none() => refusal = Some(e),
                    Err(ApplyError::Fenced(e)) => {
                        tracing::warn!(read_model = self.projection.name(), error = %e, "writer fenced off; stopping");
                        return None;
                    }
                    Err(e) => {
                        tracing::warn!(read_model = self.projection.name(), error = %e, "retrying one event");
                        self.pause(backoff(attempt), shutdown).await?;
                        attempt += 1;
                    }
                }
            }
        }
        Some(total)
    }

    /// One transaction over `items`; with `refuse`, every event that would be applied is parked
    /// with that error instead.
    pub async fn apply_once(
        &self,
        items: &[Item],
        refuse: Option<&str>,
    ) -> Result<Outcome, ApplyError> {
        match tokio::time::timeout(self.apply_timeout, self.apply_once_untimed(items, refuse)).await
        {
            Ok(r) => r,
            Err(_) => Err(ApplyError::TimedOut(format!(
                "no answer within {:?}",
                self.apply_timeout
            ))),
        }
    }

    async fn apply_once_untimed(
        &self,
        items: &[Item],
        refuse: Option<&str>,
    ) -> Result<Outcome, ApplyError> {
        let mut tx = self.target.begin().await?;
        tx.bound(self.apply_timeout).await?;
        match self.apply_in(&mut tx, items, refuse).await {
            Ok(o) => {
                tx.commit().await?;
                self.record(&o, items);
                Ok(o)
            }
            Err(e) => {
                tx.rollback().await;
                Err(e)
            }
        }
    }

    fn record(&self, o: &Outcome, items: &[Item]) {
        let Some(m) = &self.metrics else { return };
        let name = self.projection.name();
        m.events
            .with_label_values(&[name, "applied"])
            .inc_by(o.applied as u64);
        m.events
            .with_label_values(&[name, "skipped"])
            .inc_by(o.skipped as u64);
        m.events
            .with_label_values(&[name, "parked"])
            .inc_by(o.parked as u64);
        m.events
            .with_label_values(&[name, "gap_filled"])
            .inc_by(o.gap_filled as u64);
        if o.parked > 0 {
            m.parked.with_label_values(&[name]).add(o.parked as i64);
        }
        let now = chrono::Utc::now();
        let visible = m.visible_seconds.with_label_values(&[name]);
        for e in items.iter().filter_map(|i| i.event.as_ref().ok()) {
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&e.envelope.recorded_at) {
                let d = now.signed_duration_since(t).num_microseconds().unwrap_or(0);
                visible.observe(d.max(0) as f64 / 1e6);
            }
        }
    }

    async fn apply_in(
        &self,
        tx: &mut Tx,
        items: &[Item],
        refuse: Option<&str>,
    ) -> Result<Outcome, ApplyError> {
        let mut out = Outcome::default();
        let parts: Vec<Partition> = items
            .iter()
            .filter_map(|i| i.origin.record.as_ref().map(|(t, p, _)| (t.clone(), *p)))
            .collect();
        let stored = if parts.is_empty() {
            HashMap::new()
        } else {
            tx.lock_offsets(&parts).await?
        };
        let mut fresh = Vec::with_capacity(items.len());
        // The offset each partition's next record must have: records are contiguous, so a
        // record past it means the consumer skipped some (never trust a position ahead of the
        // read model's own).
        let mut expected: HashMap<Partition, i64> = stored.clone();
        for item in items {
            if let Some((t, p, o)) = &item.origin.record {
                let key = (t.clone(), *p);
                if out.rewind.contains_key(&key) {
                    continue;
                }
                // Nothing stored yet: the partition must be read from its first offset (a record
                // past it was skipped, or deleted by retention: the consumer finds out which).
                let want = expected.get(&key).copied().unwrap_or(0).max(0);
                if *o > want {
                    let from = stored.get(&key).copied().unwrap_or(0).max(0);
                    out.rewind.insert(key.clone(), from);
                    out.next_offsets.remove(&key);
                    fresh.retain(|i: &&Item| {
                        i.origin.record.as_ref().map(|(t, p, _)| (t.as_str(), *p))
                            != Some((key.0.as_str(), key.1))
                    });
                    continue;
                }
                expected.insert(key.clone(), want.max(o + 1));
                let next = out.next_offsets.entry(key.clone()).or_insert(o + 1);
                *next = (*next).max(o + 1);
                if *o < stored.get(&key).copied().unwrap_or(-1) {
                    out.skipped += 1;
                    continue;
                }
            }
            fresh.push(item);
        }
        let mut keys: Vec<AggregateKey> = fresh.iter().filter_map(|i| i.aggregate()).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut last = tx.lock_versions(&keys).await?;
        let mut blocked = self.parking.blocked(&keys).await?;
        let mut applied: Vec<(Cow<'_, ProjectedEvent>, Vec<Write>)> = Vec::new();
        for item in fresh {
            let key = item.aggregate();
            let park = |reason: Reason, error: String| ToPark {
                origin: item.origin.clone(),
                event_id: None,
                event_type: None,
                aggregate: key.clone(),
                version: None,
                reason,
                error,
                attempts: if reason == Reason::Refused {
                    self.max_attempts as i32
                } else {
                    1
                },
            };
            let e = match &item.event {
                Err(u) => {
                    let mut p = park(Reason::Undecodable, u.error.clone());
                    if let Some(env) = &u.envelope {
                        with_envelope(&mut p, env);
                    }
                    let first = key.as_ref().and_then(|k| blocked.get(k).copied());
                    let id = self.parking.park(&p, first).await?;
                    out.parked += 1;
                    if let Some(k) = &key {
                        blocked.entry(k.clone()).or_insert(id);
                    }
                    continue;
                }
                Ok(e) => e,
            };
            let key = key.clone().expect("a decoded event has an aggregate");
            let v = e.envelope.aggregate_version;
            if let Some(&first) = blocked.get(&key).filter(|_| self.mode == Mode::Consume) {
                let mut p = park(Reason::BehindParked, format!("behind parked event {first}"));
                with_envelope(&mut p, &e.envelope);
                self.parking.park(&p, Some(first)).await?;
                out.parked += 1;
                continue;
            }
            let mut prev = last.get(&key).copied().unwrap_or(0);
            let mut gap: Option<String> = None;
            if v <= prev {
                out.skipped += 1;
                continue;
            }
            if v != prev + 1 && refuse.is_none() {
                // Versions missing from what Kafka delivered (a record lost upstream): the event
                // store has every committed version, so they are applied from there, in order.
                match self.fill_gap(&key, prev, v).await? {
                    Ok(filled) => {
                        tracing::warn!(
                            read_model = self.projection.name(),
                            tenant = %key.tenant, aggregate_type = %key.aggregate_type,
                            aggregate_id = %key.aggregate_id, version = v,
                            applied = prev, filled = filled.len(),
                            "version gap in the records delivered; filled from the event store"
                        );
                        out.gap_filled += filled.len();
                        for (missing, writes) in filled {
                            prev = missing.envelope.aggregate_version;
                            applied.push((Cow::Owned(missing), writes));
                        }
                        last.insert(key.clone(), prev);
                        out.versions.insert(key.clone(), prev);
                    }
                    Err(why) => gap = Some(why),
                }
            }
            let writes = if v != prev + 1 {
                Err((
                    Reason::VersionGap,
                    match gap.take() {
                        Some(why) => format!("version {v} follows applied version {prev} ({why})"),
                        None => format!("version {v} follows applied version {prev}"),
                    },
                ))
            } else if let Some(r) = refuse {
                Err((Reason::Refused, r.to_owned()))
            } else {
                self.projection
                    .writes(e)
                    .map_err(|h| (Reason::Refused, h.0))
            };
            match writes {
                Ok(w) => {
                    applied.push((Cow::Borrowed(e), w));
                    last.insert(key.clone(), v);
                    out.versions.insert(key, v);
                }
                Err((_, error)) if self.mode == Mode::Replay => {
                    return Err(ApplyError::Refused(format!("{key} v{v}: {error}")));
                }
                Err((reason, error)) => {
                    let mut p = park(reason, error);
                    with_envelope(&mut p, &e.envelope);
                    let id = self.parking.park(&p, None).await?;
                    out.parked += 1;
                    blocked.insert(key, id);
                }
            }
        }
        out.applied = applied.len();
        let p = &*self.projection;
        for wave in waves(applied, |(e, _)| {
            (
                e.envelope.tenant.as_str(),
                e.envelope.aggregate_type.as_str(),
                e.envelope.aggregate_id.as_str(),
            )
        }) {
            let writes: Vec<Write> = wave.into_iter().flat_map(|(_, w)| w).collect();
            if !writes.is_empty() {
                tx.apply(p, writes).await?;
            }
        }
        tx.save_versions(&out.versions).await?;
        tx.save_offsets(&out.next_offsets).await?;
        Ok(out)
    }
}

impl Processor {
    /// The events of `key` after applied version `prev` and before `v`, from the event store,
    /// with their writes; `Ok(Err(why))` when they cannot all be read or applied (the gap is
    /// then parked).
    #[allow(clippy::type_complexity)]
    async fn fill_gap(
        &self,
        key: &AggregateKey,
        prev: i64,
        v: i64,
    ) -> Result<Result<Vec<(ProjectedEvent, Vec<Write>)>, String>, ApplyError> {
        let items =
            crate::rebuild::aggregate_events(self.parking.pool(), key, prev + 1, v - 1).await?;
        let wanted = (v - 1 - prev) as usize;
        if items.len() != wanted {
            return Ok(Err(format!(
                "the event store holds {} of the {wanted} missing versions",
                items.len()
            )));
        }
        let mut filled = Vec::with_capacity(items.len());
        for item in items {
            let e = match item.event {
                Ok(e) => e,
                Err(u) => {
                    return Ok(Err(format!(
                        "a missing version is undecodable: {}",
                        u.error
                    )));
                }
            };
            match self.projection.writes(&e) {
                Ok(w) => filled.push((e, w)),
                Err(h) => {
                    return Ok(Err(format!(
                        "missing version {} refused: {}",
                        e.envelope.aggregate_version, h.0
                    )));
                }
            }
        }
        Ok(Ok(filled))
    }
}

fn with_envelope(p: &mut ToPark, env: &Envelope) {
    p.event_id = Some(env.event_id.clone());
    p.event_type = Some(env.event_type.clone());
    p.aggregate = Some(key_of(env));
    p.version = Some(env.aggregate_version);
}

/// The stream an envelope belongs to: its tenant, aggregate type and id.
pub fn key_of(env: &Envelope) -> AggregateKey {
    AggregateKey::new(&env.tenant, &env.aggregate_type, &env.aggregate_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps_at_five_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(10), Duration::from_secs(5));
    }
}
