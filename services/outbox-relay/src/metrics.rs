//! The relay's Prometheus metrics (prefix `eventfold_relay_`).

use std::sync::{Arc, Mutex};

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Counters, gauges and histograms of one relay instance.
#[derive(Debug, Clone)]
pub struct RelayMetrics {
    /// Records acknowledged by Kafka.
    pub published: IntCounter,
    /// Commit (event recorded) to Kafka acknowledgement, seconds.
    pub lag: Histogram,
    /// Rows per published batch.
    pub batch_size: Histogram,
    /// Unpublished outbox rows per owned shard.
    pub backlog: IntGaugeVec,
    /// Age of the oldest unpublished row per owned shard, seconds.
    pub oldest_age: IntGaugeVec,
    /// 1 for each shard this instance owns.
    pub shard_owned: IntGaugeVec,
    /// Shards owned.
    pub shards_owned: IntGauge,
    /// Shard takeovers by this instance.
    pub shard_acquired: IntCounter,
    /// Shards lost (lock gone or epoch moved on).
    pub shard_lost: IntCounter,
    /// Deletes refused because the shard's epoch had moved on (this instance was fenced).
    pub epoch_rejections: IntCounter,
    /// Rows parked, by reason (`encode`, `behind_parked`, `too_large`).
    pub parked: IntCounterVec,
    /// Batches that failed and will be retried, by stage.
    pub errors: IntCounterVec,
    /// Rows in `outbox_parked` (every shard): events no read model gets until released.
    pub outbox_parked: IntGauge,
    /// Dead-letter copies of parked rows not yet acknowledged by Kafka (every shard).
    pub dlt_pending: IntGauge,
    /// Dead-letter copies acknowledged by Kafka.
    pub dlt_sent: IntCounter,
    /// 1 while publishing is halted by a configuration error, labelled by its kind
    /// (`schema_not_registered`, `registry_unauthorized`) and the subject concerned.
    pub halted: IntGaugeVec,
    /// Why publishing is halted now (for `/readyz` and the logs).
    pub halt: Halt,
}

/// Why publishing is halted now, shared with the `/readyz` check `publishing`.
#[derive(Debug, Clone, Default)]
pub struct Halt(Arc<Mutex<Option<String>>>);

impl Halt {
    /// Records `reason`; true when publishing was not halted before.
    pub fn set(&self, reason: &str) -> bool {
        let mut h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        h.replace(reason.to_owned()).is_none()
    }

    /// Clears the halt; true when publishing was halted.
    pub fn clear(&self) -> bool {
        let mut h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        h.take().is_some()
    }

    /// `Err("halted: <reason>")` while halted, `Ok` otherwise.
    pub fn check(&self) -> Result<(), String> {
        let h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &*h {
            Some(reason) => Err(format!("halted: {reason}")),
            None => Ok(()),
        }
    }
}

impl RelayMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let m = Self {
            published: IntCounter::new("relay_published_total", "Records acknowledged by Kafka")
                .expect("static metric"),
            lag: Histogram::with_opts(
                HistogramOpts::new(
                    "relay_publish_lag_seconds",
                    "Event recorded in PostgreSQL to record acknowledged by Kafka",
                )
                .buckets(vec![
                    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ]),
            )
            .expect("static metric"),
            batch_size: Histogram::with_opts(
                HistogramOpts::new("relay_batch_size", "Outbox rows per published batch")
                    .buckets(vec![1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0]),
            )
            .expect("static metric"),
            backlog: IntGaugeVec::new(
                Opts::new(
                    "relay_outbox_backlog",
                    "Unpublished outbox rows per owned shard",
                ),
                &["shard"],
            )
            .expect("static metric"),
            oldest_age: IntGaugeVec::new(
                Opts::new(
                    "relay_oldest_unpublished_age_seconds",
                    "Age of the oldest unpublished outbox row per owned shard",
                ),
                &["shard"],
            )
            .expect("static metric"),
            shard_owned: IntGaugeVec::new(
                Opts::new("relay_shard_owned", "1 for each shard this instance owns"),
                &["shard"],
            )
            .expect("static metric"),
            shards_owned: IntGauge::new("relay_shards_owned", "Shards this instance owns")
                .expect("static metric"),
            shard_acquired: IntCounter::new(
                "relay_shard_acquired_total",
                "Shards taken over by this instance",
            )
            .expect("static metric"),
            shard_lost: IntCounter::new(
                "relay_shard_lost_total",
                "Shards lost because the lock or the epoch was gone",
            )
            .expect("static metric"),
            epoch_rejections: IntCounter::new(
                "relay_epoch_rejections_total",
                "Outbox deletes refused because another relay owns the shard now",
            )
            .expect("static metric"),
            parked: IntCounterVec::new(
                Opts::new("relay_parked_total", "Outbox rows parked, by reason"),
                &["reason"],
            )
            .expect("static metric"),
            errors: IntCounterVec::new(
                Opts::new("relay_errors_total", "Failed batches (retried), by stage"),
                &["stage"],
            )
            .expect("static metric"),
            outbox_parked: IntGauge::new(
                "relay_outbox_parked",
                "Parked outbox rows waiting for a release or discard",
            )
            .expect("static metric"),
            dlt_pending: IntGauge::new(
                "relay_dlt_pending",
                "Dead-letter copies of parked rows not yet acknowledged by Kafka",
            )
            .expect("static metric"),
            dlt_sent: IntCounter::new(
                "relay_dlt_sent_total",
                "Dead-letter copies of parked rows acknowledged by Kafka",
            )
            .expect("static metric"),
            halted: IntGaugeVec::new(
                Opts::new(
                    "relay_halted",
                    "1 while publishing is halted by a configuration error (schema not registered, registry credentials refused)",
                ),
                &["reason", "subject"],
            )
            .expect("static metric"),
            halt: Halt::default(),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.published.clone()),
            Box::new(m.lag.clone()),
            Box::new(m.batch_size.clone()),
            Box::new(m.backlog.clone()),
            Box::new(m.oldest_age.clone()),
            Box::new(m.shard_owned.clone()),
            Box::new(m.shards_owned.clone()),
            Box::new(m.shard_acquired.clone()),
            Box::new(m.shard_lost.clone()),
            Box::new(m.epoch_rejections.clone()),
            Box::new(m.parked.clone()),
            Box::new(m.errors.clone()),
            Box::new(m.outbox_parked.clone()),
            Box::new(m.dlt_pending.clone()),
            Box::new(m.dlt_sent.clone()),
            Box::new(m.halted.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("relay metrics registered once");
        }
        m
    }

    /// Marks publishing halted for `reason` (`kind` and `subject` label the gauge); true when it
    /// was not halted before.
    pub fn halt(&self, kind: &str, subject: &str, reason: &str) -> bool {
        self.halted.reset();
        self.halted.with_label_values(&[kind, subject]).set(1);
        self.halt.set(reason)
    }

    /// Clears a halt; true when publishing was halted.
    pub fn resume(&self) -> bool {
        let was = self.halt.clear();
        if was {
            self.halted.reset();
        }
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_halt_names_its_reason_and_subject_until_cleared() {
        let registry = Registry::new();
        let m = RelayMetrics::register(&registry);
        assert_eq!(m.halt.check(), Ok(()));
        assert!(m.halt(
            "schema_not_registered",
            "t.X-a.B",
            "schema a.B v1 is not registered"
        ));
        assert!(!m.halt(
            "schema_not_registered",
            "t.X-a.B",
            "schema a.B v1 is not registered"
        ));
        assert_eq!(
            m.halt.check(),
            Err("halted: schema a.B v1 is not registered".into())
        );
        let g = m
            .halted
            .with_label_values(&["schema_not_registered", "t.X-a.B"]);
        assert_eq!(g.get(), 1);
        assert!(m.resume());
        assert!(!m.resume());
        assert_eq!(m.halt.check(), Ok(()));
        let halted = registry.gather();
        let halted = halted.iter().find(|f| f.name() == "relay_halted");
        assert!(
            halted.is_none_or(|f| f.get_metric().is_empty()),
            "{halted:?}"
        );
    }
}
