//! A steady command load over HTTP against a command-service process, recording every command
//! answered 2xx. A command that gets no answer, a 5xx or `idempotency_key_in_flight` is sent again
//! with the same `Idempotency-Key`, so a retry can never append twice; it is given up only when the
//! load stops.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

/// One command answered 2xx.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The command id (the `Idempotency-Key` sent).
    pub command_id: Uuid,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// The aggregate's version after the command.
    pub version: i64,
    /// The events the command appended, as answered.
    pub event_ids: Vec<Uuid>,
}

/// Counters of what the command service answered besides 2xx.
#[derive(Debug, Default)]
pub struct Answers {
    /// 503 with a `Retry-After` header.
    pub unavailable_with_retry_after: AtomicU64,
    /// Other 5xx answers.
    pub other_5xx: AtomicU64,
    /// No answer (connection refused or reset, timeout).
    pub no_answer: AtomicU64,
    /// 409 answers (conflicts; expected only where a fault sends racing commands).
    pub conflicts: AtomicU64,
    /// Any other 4xx: the load itself is wrong, the fault fails.
    pub unexpected: AtomicU64,
}

/// A running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    /// What was answered besides 2xx.
    pub answers: Arc<Answers>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The kind of aggregate a load worker drives.
#[derive(Debug, Clone, Copy)]
enum Kind {
    CrossReference,
    Opportunity,
}

impl Kind {
    fn type_name(self) -> &'static str {
        match self {
            Self::CrossReference => "CrossReference",
            Self::Opportunity => "Opportunity",
        }
    }

    /// The command that takes an aggregate at `version` one step further.
    fn command(self, id: &str, version: i64) -> (&'static str, Value) {
        match (self, version) {
            (Self::CrossReference, 0) => (
                "DiscoverCrossReference",
                json!({"source_ref": format!("{id}.a"), "target_ref": format!("{id}.b"),
                       "connection_type": "thematic", "initial_confidence": 0.5,
                       "discovery_method": "embedding", "feature_vector": [0.1, 0.2],
                       "semantic_similarity": 0.8}),
            ),
            (Self::CrossReference, v) => (
                "ValidateCrossReference",
                json!({"validator_agent": format!("agent-{}", v % 7),
                       "validation_result": if v % 5 == 0 { "rejected" } else { "approved" },
                       "reasoning": format!("round {v}")}),
            ),
            (Self::Opportunity, 0) => (
                "CreateOpportunity",
                json!({"opportunity_id": id, "title": format!("fault load {id}"),
                       "ai_solution_type": "nlp", "market_size_estimate": 1000}),
            ),
            (Self::Opportunity, v) => (
                "UpdateOpportunity",
                json!({"market_size_estimate": 1000 + v}),
            ),
        }
    }
}

impl Load {
    /// Starts `workers` workers sending `rate` commands per second in all to `url`, each on
    /// `per_worker` aggregates of its own (half CrossReference, half Opportunity) named after `tag`.
    pub fn start(url: &str, tag: &str, workers: usize, rate: f64, per_worker: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Answers::default());
        let http = eventfold_tests::auth::builder_with(&eventfold_tests::auth::operator_token())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        let pause = Duration::from_secs_f64(workers as f64 / rate);
        let tasks = (0..workers)
            .map(|w| {
                let kind = if w % 2 == 0 {
                    Kind::CrossReference
                } else {
                    Kind::Opportunity
                };
                let worker = Worker {
                    http: http.clone(),
                    url: url.to_owned(),
                    kind,
                    ids: (0..per_worker).map(|i| format!("{tag}-{w}-{i}")).collect(),
                    stop: stop.clone(),
                    acks: acks.clone(),
                    answers: answers.clone(),
                };
                tokio::spawn(worker.run(pause))
            })
            .collect();
        Self {
            stop,
            acks,
            answers,
            tasks,
        }
    }

    /// Commands acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Stops the workers (a command still being retried is given up) and returns every ack.
    pub async fn stop(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        acks.clone()
    }
}

struct Worker {
    http: reqwest::Client,
    url: String,
    kind: Kind,
    ids: Vec<String>,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    answers: Arc<Answers>,
}

/// What one attempt of a command got.
enum Attempt {
    Acked(Ack),
    Retry,
    Refused,
}

impl Worker {
    async fn run(self, pause: Duration) {
        let mut versions = vec![0_i64; self.ids.len()];
        let mut next = tokio::time::Instant::now();
        let mut i = fastrand::usize(..self.ids.len());
        while !self.stop.load(Ordering::Relaxed) {
            i = (i + 1) % self.ids.len();
            let id = &self.ids[i];
            let (command, body) = self.kind.command(id, versions[i]);
            let command_id = Uuid::new_v4();
            loop {
                match self.send(id, command, &body, command_id).await {
                    Attempt::Acked(ack) => {
                        versions[i] = ack.version;
                        self.acks
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(ack);
                        break;
                    }
                    Attempt::Refused => break,
                    Attempt::Retry => {
                        if self.stop.load(Ordering::Relaxed) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            next += pause;
            tokio::time::sleep_until(next).await;
            // After an outage, do not burst to catch up on the missed ticks.
            next = next.max(tokio::time::Instant::now() - pause);
        }
    }

    async fn send(&self, id: &str, command: &str, body: &Value, command_id: Uuid) -> Attempt {
        let kind = self.kind.type_name();
        let sent = self
            .http
            .post(format!("{}/v1/{kind}/{id}/commands/{command}", self.url))
            .header("Idempotency-Key", command_id.to_string())
            .header("X-Actor", "agent:fault-load")
            .json(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(_) => {
                self.answers.no_answer.fetch_add(1, Ordering::Relaxed);
                return Attempt::Retry;
            }
        };
        let status = response.status();
        let retry_after = response.headers().contains_key("retry-after");
        let Ok(answer) = response.json::<Value>().await else {
            self.answers.no_answer.fetch_add(1, Ordering::Relaxed);
            return Attempt::Retry;
        };
        if status.is_success() {
            return match parse_ack(command_id, kind, id, &answer) {
                Some(ack) => Attempt::Acked(ack),
                None => {
                    self.answers.unexpected.fetch_add(1, Ordering::Relaxed);
                    Attempt::Refused
                }
            };
        }
        if status.as_u16() == 503 && retry_after {
            self.answers
                .unavailable_with_retry_after
                .fetch_add(1, Ordering::Relaxed);
            return Attempt::Retry;
        }
        if status.is_server_error() {
            self.answers.other_5xx.fetch_add(1, Ordering::Relaxed);
            return Attempt::Retry;
        }
        if status.as_u16() == 409 {
            self.answers.conflicts.fetch_add(1, Ordering::Relaxed);
            return Attempt::Retry;
        }
        eprintln!("load: {kind}/{id} {command}: {status} {answer}");
        self.answers.unexpected.fetch_add(1, Ordering::Relaxed);
        Attempt::Refused
    }
}

/// The ack in a 2xx answer.
pub fn parse_ack(command_id: Uuid, kind: &str, id: &str, answer: &Value) -> Option<Ack> {
    let command_id = answer
        .get("command_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(command_id);
    Some(Ack {
        command_id,
        aggregate_type: kind.into(),
        aggregate_id: id.into(),
        version: answer.get("version")?.as_i64()?,
        event_ids: answer
            .get("event_ids")?
            .as_array()?
            .iter()
            .map(|v| v.as_str().and_then(|s| s.parse().ok()))
            .collect::<Option<Vec<Uuid>>>()?,
    })
}
