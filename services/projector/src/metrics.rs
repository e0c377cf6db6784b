//! The projector's Prometheus metrics (prefix `eventfold_projector_`).

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
    /// Batches that failed and were retried, by kind (`transient`, `refused`).
    pub retries: IntCounterVec,
    /// 1 while a rebuild of the read model runs.
    pub rebuilding: IntGaugeVec,
    /// Partitions assigned to this instance.
    pub assigned: IntGaugeVec,
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
        ] {
            registry.register(c).expect("metric registered once");
        }
        m
    }

    /// The histogram of batch durations for `read_model`.
    pub fn batch(&self, read_model: &str) -> Histogram {
        self.batch_seconds.with_label_values(&[read_model])
    }
}
