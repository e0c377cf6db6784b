//! The projector's Prometheus metrics (prefix `eventfold_projector_`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Counters, gauges and histograms of one projector instance, labelled by read model.
#[derive(Debug, Clone)]
pub struct ProjectorMetrics {
    /// Events by outcome (`applied`, `skipped` (version guard or stored offset), `parked`).
    pub events: IntCounterVec,
    /// Consumer lag per partition: high watermark minus next offset to apply.
    pub lag: IntGaugeVec,
    /// Time to apply one batch (decode excluded), seconds.
    pub batch_seconds: HistogramVec,
    /// Event recorded in the store to applied in the read model, seconds.
    pub visible_seconds: HistogramVec,
    /// Parked events not yet replayed or discarded.
    pub parked: IntGaugeVec,
    /// Batches that failed and were retried, by kind (`transient`, `refused`, `timeout`,
    /// `halted`), and records whose decoding was retried (`registry`).
    pub retries: IntCounterVec,
    /// 1 while a rebuild of the read model runs.
    pub rebuilding: IntGaugeVec,
    /// Partitions assigned to this instance.
    pub assigned: IntGaugeVec,
    /// 1 while a read model catches up from the event store because its stored offset fell
    /// below a partition's log start (records deleted by retention).
    pub behind_log_start: IntGaugeVec,
    /// Dead-letter copies of parked events not yet acknowledged by Kafka.
    pub dlt_pending: IntGaugeVec,
    /// 1 while the read model is halted by an error no event can cause: in the store
    /// (permission, read-only, missing table) or at the registry (credentials refused); see
    /// [`Halts`] for the reason.
    pub halted: IntGaugeVec,
    /// Batches split in two after their transaction timed out.
    pub splits: IntCounterVec,
    /// Why each halted read model is halted (for `/readyz` and the logs).
    pub halts: Halts,
}

/// What halted a read model: an error no event causes, in its store or at the schema registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// The store refuses every write (permission, read-only transaction, missing table).
    Store,
    /// The schema registry refuses the credentials (401, 403): no record can be read.
    Registry,
}

/// The reasons of the read models that are halted now, shared with the `/readyz` check.
#[derive(Debug, Clone, Default)]
pub struct Halts(Arc<Mutex<BTreeMap<(String, Cause), String>>>);

impl Halts {
    /// Records that `read_model` is halted by `cause` for `reason`; true when it was not halted
    /// by that cause before.
    pub fn set(&self, read_model: &str, cause: Cause, reason: &str) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.insert((read_model.to_owned(), cause), reason.to_owned())
            .is_none()
    }

    /// Clears the halt of `read_model` by `cause`; true when it was halted by it.
    pub fn clear(&self, read_model: &str, cause: Cause) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&(read_model.to_owned(), cause)).is_some()
    }

    /// True while `read_model` is halted by any cause.
    pub fn is_halted(&self, read_model: &str) -> bool {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.keys().any(|(k, _)| k == read_model)
    }

    /// `Err` with one `halted <read model>: <reason>` per halt, `Ok` when none is.
    pub fn check(&self) -> Result<(), String> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.is_empty() {
            return Ok(());
        }
        Err(m
            .iter()
            .map(|((k, _), v)| format!("halted {k}: {v}"))
            .collect::<Vec<_>>()
            .join("; "))
    }
}

impl ProjectorMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let m = Self {
            events: IntCounterVec::new(
                Opts::new(
                    "projector_events_total",
                    "Events consumed, by read model and outcome",
                ),
                &["read_model", "outcome"],
            )
            .expect("static metric"),
            lag: IntGaugeVec::new(
                Opts::new(
                    "projector_consumer_lag",
                    "High watermark minus the next offset to apply, per partition",
                ),
                &["read_model", "topic", "partition"],
            )
            .expect("static metric"),
            batch_seconds: HistogramVec::new(
                HistogramOpts::new("projector_batch_seconds", "Time to apply one batch").buckets(
                    vec![
                        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    ],
                ),
                &["read_model"],
            )
            .expect("static metric"),
            visible_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "projector_visible_seconds",
                    "Event recorded in the event store to applied in the read model",
                )
                .buckets(vec![
                    0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
                    1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                &["read_model"],
            )
            .expect("static metric"),
            parked: IntGaugeVec::new(
                Opts::new("projector_parked", "Parked events not yet replayed"),
                &["read_model"],
            )
            .expect("static metric"),
            retries: IntCounterVec::new(
                Opts::new("projector_retries_total", "Failed batches retried, by kind"),
                &["read_model", "kind"],
            )
            .expect("static metric"),
            rebuilding: IntGaugeVec::new(
                Opts::new("projector_rebuilding", "1 while the read model is rebuilt"),
                &["read_model"],
            )
            .expect("static metric"),
            assigned: IntGaugeVec::new(
                Opts::new("projector_partitions_assigned", "Partitions assigned"),
                &["read_model"],
            )
            .expect("static metric"),
            dlt_pending: IntGaugeVec::new(
                Opts::new(
                    "projector_dlt_pending",
                    "Dead-letter copies of parked events not yet acknowledged by Kafka",
                ),
                &["read_model"],
            )
            .expect("static metric"),
            behind_log_start: IntGaugeVec::new(
                Opts::new(
                    "projector_behind_log_start",
                    "1 while the read model catches up from the event store because retention deleted records it never applied",
                ),
                &["read_model"],
            )
            .expect("static metric"),
            halted: IntGaugeVec::new(
                Opts::new(
                    "projector_halted",
                    "1 while the read model is halted by a store error (permission, read-only, missing table) or refused registry credentials",
                ),
                &["read_model"],
            )
            .expect("static metric"),
            splits: IntCounterVec::new(
                Opts::new(
                    "projector_batch_splits_total",
                    "Batches split in two after their transaction timed out",
                ),
                &["read_model"],
            )
            .expect("static metric"),
            halts: Halts::default(),
        };
        for c in [
            Box::new(m.events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.lag.clone()),
            Box::new(m.batch_seconds.clone()),
            Box::new(m.visible_seconds.clone()),
            Box::new(m.parked.clone()),
            Box::new(m.retries.clone()),
            Box::new(m.rebuilding.clone()),
            Box::new(m.assigned.clone()),
            Box::new(m.behind_log_start.clone()),
            Box::new(m.dlt_pending.clone()),
            Box::new(m.halted.clone()),
            Box::new(m.splits.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        m
    }

    /// Marks `read_model` halted by `cause` for `reason` (gauge and [`Halts`]); true when it was
    /// not halted by that cause before.
    pub fn halt(&self, read_model: &str, cause: Cause, reason: &str) -> bool {
        self.halted.with_label_values(&[read_model]).set(1);
        self.halts.set(read_model, cause, reason)
    }

    /// Clears the halt of `read_model` by `cause` (the gauge drops once no cause is left); true
    /// when it was halted by it.
    pub fn resume(&self, read_model: &str, cause: Cause) -> bool {
        let was = self.halts.clear(read_model, cause);
        if was && !self.halts.is_halted(read_model) {
            self.halted.with_label_values(&[read_model]).set(0);
        }
        was
    }

    /// The histogram of batch durations for `read_model`.
    pub fn batch(&self, read_model: &str) -> Histogram {
        self.batch_seconds.with_label_values(&[read_model])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halts_name_each_halted_read_model_until_cleared() {
        let h = Halts::default();
        assert_eq!(h.check(), Ok(()));
        assert!(h.set("graph", Cause::Store, "42501 permission denied"));
        assert!(!h.set("graph", Cause::Store, "42501 permission denied"));
        assert_eq!(
            h.check(),
            Err("halted graph: 42501 permission denied".into())
        );
        assert!(h.clear("graph", Cause::Store));
        assert!(!h.clear("graph", Cause::Store));
        assert_eq!(h.check(), Ok(()));
    }

    #[test]
    fn a_read_model_stays_halted_until_every_cause_is_cleared() {
        let m = ProjectorMetrics::register(&Registry::new());
        let gauge = m.halted.with_label_values(&["graph"]);
        assert!(m.halt("graph", Cause::Registry, "schema registry refused 401"));
        assert!(m.halt("graph", Cause::Store, "42501 permission denied"));
        // A write that succeeds clears the store's halt, not the registry's.
        assert!(m.resume("graph", Cause::Store));
        assert_eq!(gauge.get(), 1);
        assert_eq!(
            m.halts.check(),
            Err("halted graph: schema registry refused 401".into())
        );
        assert!(m.resume("graph", Cause::Registry));
        assert_eq!(gauge.get(), 0);
        assert_eq!(m.halts.check(), Ok(()));
    }

    #[test]
    fn every_metric_the_alert_rules_name_is_exported() {
        let ops = eventfold_runtime::Ops::new("projector");
        let m = ProjectorMetrics::register(ops.registry());
        for g in [&m.parked, &m.halted, &m.behind_log_start, &m.dlt_pending] {
            g.with_label_values(&["graph"]).set(0);
        }
        let exported: Vec<String> = ops
            .registry()
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        let rules = include_str!("../../../helm/alerts/projector.rules.yaml");
        let named: Vec<&str> = rules
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("eventfold_projector_"))
            .collect();
        assert!(named.len() >= 4, "{named:?}");
        for n in named {
            assert!(exported.iter().any(|e| e == n), "{n} not in {exported:?}");
        }
    }
}
