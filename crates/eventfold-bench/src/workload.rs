//! The write benchmark's workload: discover N cross-references once (untimed), then workers validate
//! random ones for a fixed time. Every target runs the same commands through a [`Target`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use eventfold_reference::biblos::cross_reference::{
    Command, DiscoverCrossReference, DiscoveryMethod, ValidateCrossReference, ValidationResult,
};
use hdrhistogram::Histogram;

/// What one command came back with, as its caller sees it.
#[derive(Debug)]
pub enum Outcome {
    /// Applied.
    Applied,
    /// A version conflict reached the caller (not retried away).
    Conflict,
    /// Anything else: a domain refusal, a database or transport error.
    Failed(String),
}

/// A way to send commands to a cross-reference: the peer, eventfold in-process, eventfold over HTTP.
pub trait Target: Send + Sync + 'static {
    /// Sends `command` to the cross-reference `aggregate_id` and waits for the answer.
    fn send(&self, aggregate_id: &str, command: Command) -> impl Future<Output = Outcome> + Send;
}

/// The aggregate ids of the workload, `"{source_ref}:{target_ref}"` as the domain names them.
/// `prefix` keeps the ids of one run apart from earlier runs in a shared database.
pub fn aggregate_ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| aggregate_id(prefix, i)).collect()
}

/// The id of the `i`-th cross-reference.
fn aggregate_id(prefix: &str, i: usize) -> String {
    let (source, target) = refs(prefix, i);
    format!("{source}:{target}")
}

fn refs(prefix: &str, i: usize) -> (String, String) {
    let (chapter, verse) = (i / 100 + 1, i % 100 + 1);
    (
        format!("{prefix}GEN.{chapter}.{verse}"),
        format!("{prefix}JHN.{chapter}.{verse}"),
    )
}

/// The discovery of the `i`-th cross-reference (whose id is `aggregate_ids(prefix, ..)[i]`).
pub fn discover(prefix: &str, i: usize) -> Command {
    let (source_ref, target_ref) = refs(prefix, i);
    Command::DiscoverCrossReference(DiscoverCrossReference {
        source_ref,
        target_ref,
        connection_type: "thematic".into(),
        initial_confidence: 0.5,
        discovery_method: DiscoveryMethod::Embedding,
        feature_vector: vec![0.25, -0.5, 0.125, 0.75],
        semantic_similarity: 0.75,
    })
}

/// A validation with a random verdict (every verdict is valid in every discovered state).
pub fn validate(rng: &mut fastrand::Rng) -> Command {
    const RESULTS: [ValidationResult; 4] = [
        ValidationResult::Approved,
        ValidationResult::Rejected,
        ValidationResult::Modified,
        ValidationResult::Escalated,
    ];
    Command::ValidateCrossReference(ValidateCrossReference {
        validator_agent: "theological_validator".into(),
        validation_result: RESULTS[rng.usize(..RESULTS.len())],
        reasoning: "In the beginning: the same creative Word".into(),
        theological_checks: BTreeMap::from([
            ("patristic".to_owned(), rng.bool()),
            ("canonical".to_owned(), true),
        ]),
    })
}

/// Discovers every cross-reference of the workload through `target`, `concurrency` at a time.
/// Any failure stops the bench: the timed runs need every aggregate to exist.
pub async fn setup<T: Target>(
    target: Arc<T>,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (target, next, prefix) = (target.clone(), next.clone(), prefix.to_owned());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok(());
                }
                let id = aggregate_id(&prefix, i);
                match target.send(&id, discover(&prefix, i)).await {
                    Outcome::Applied => {}
                    other => bail!("discovering {id} failed: {other:?}"),
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("setup worker panicked")??;
    }
    Ok(started.elapsed())
}

/// Sends `count` commands to one aggregate, one after the other: a discovery, then validations.
/// Builds the long-lived aggregate that the hydration measurements load.
pub async fn build_history<T: Target>(
    target: &T,
    prefix: &str,
    count: usize,
) -> anyhow::Result<String> {
    let id = aggregate_id(prefix, 0);
    let mut rng = fastrand::Rng::with_seed(7);
    for n in 0..count {
        let command = if n == 0 {
            discover(prefix, 0)
        } else {
            validate(&mut rng)
        };
        match target.send(&id, command).await {
            Outcome::Applied => {}
            other => bail!("command {n} on {id} failed: {other:?}"),
        }
    }
    Ok(id)
}

/// What a timed run measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Commands applied.
    pub applied: u64,
    /// Conflicts that reached the caller.
    pub conflicts: u64,
    /// Other failures.
    pub failed: u64,
    /// The first failure's message, to tell what went wrong.
    pub first_failure: Option<String>,
    /// Wall time from the first command to the last answer.
    pub elapsed: Duration,
    /// Latency of applied commands, in microseconds.
    pub latency: Histogram<u64>,
}

impl Measurement {
    /// Nothing measured yet.
    pub fn empty() -> Self {
        Self {
            applied: 0,
            conflicts: 0,
            failed: 0,
            first_failure: None,
            elapsed: Duration::ZERO,
            latency: histogram(),
        }
    }

    /// Adds `other` (a further run of the same target) to this one.
    pub fn absorb(&mut self, other: Measurement) {
        self.applied += other.applied;
        self.conflicts += other.conflicts;
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.elapsed += other.elapsed;
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds");
    }

    /// Applied commands per second.
    pub fn per_second(&self) -> f64 {
        self.applied as f64 / self.elapsed.as_secs_f64()
    }

    /// Latency at `quantile` in milliseconds (0 when nothing was applied).
    pub fn millis(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// A latency histogram from 1 µs to 10 min with three significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Records `elapsed` in microseconds (saturating at the histogram's top).
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    histogram.saturating_record((elapsed.as_micros() as u64).max(1));
}

/// Runs `workers` concurrent workers for `duration`, each validating random aggregates of `ids`
/// one command at a time. A command started before the deadline is waited for.
pub async fn run<T: Target>(
    target: Arc<T>,
    ids: Arc<Vec<String>>,
    workers: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let (target, ids) = (target.clone(), ids.clone());
        tasks.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(worker as u64 + 1);
            let mut m = Measurement::empty();
            while Instant::now() < deadline {
                let id = &ids[rng.usize(..ids.len())];
                let command = validate(&mut rng);
                let sent = Instant::now();
                match target.send(id, command).await {
                    Outcome::Applied => {
                        m.applied += 1;
                        record(&mut m.latency, sent.elapsed());
                    }
                    Outcome::Conflict => m.conflicts += 1,
                    Outcome::Failed(e) => {
                        m.failed += 1;
                        m.first_failure.get_or_insert(e);
                    }
                }
            }
            m
        });
    }
    let mut total = Measurement::empty();
    while let Some(done) = tasks.join_next().await {
        let m = done.context("bench worker panicked")?;
        total.applied += m.applied;
        total.conflicts += m.conflicts;
        total.failed += m.failed;
        if total.first_failure.is_none() {
            total.first_failure = m.first_failure;
        }
        total
            .latency
            .add(&m.latency)
            .context("failed to merge latency histograms")?;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use eventfold_domain::Aggregate;
    use eventfold_reference::CrossReference;

    use super::*;

    #[test]
    fn ids_follow_the_domains_source_colon_target_convention() {
        let ids = aggregate_ids("", 3);
        let state = CrossReference::default()
            .decide(&discover("", 2))
            .unwrap()
            .iter()
            .fold(CrossReference::default(), |s, e| s.apply(e));
        assert_eq!(state.cross_ref_id(), ids[2]);
        assert_eq!(aggregate_ids("r1-", 1)[0], "r1-GEN.1.1:r1-JHN.1.1");
    }

    #[test]
    fn every_generated_validation_is_accepted_after_discovery_and_after_each_other() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut state = CrossReference::default();
        for command in std::iter::once(discover("", 0)).chain((0..200).map(|_| validate(&mut rng)))
        {
            for e in state.decide(&command).unwrap() {
                state = state.apply(&e);
            }
        }
        assert_eq!(state.validation_history.len(), 200);
    }
}
