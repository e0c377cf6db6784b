//! Reacting to inbox rows and dispatching commands, for one process manager: one loop per
//! process manager and installation (the holder of a PostgreSQL advisory lock; other replicas
//! wait for it), over the live generation of the process manager's schema.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventfold_auth::{IssuerSettings, LocalIssuer};
use eventfold_runtime::{Env, SettingsError, Shutdown};
use futures::StreamExt;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::watch;
use uuid::Uuid;

use super::{Action, Process, ProcessEvent, Reaction, StepDone, StepFailure, command_id};
use crate::engine::backoff;
use crate::state::ModelState;
use crate::target::pg_schema;

/// How the process managers of this projector reach the command service.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// `PROCESS_COMMAND_URL` (`http://127.0.0.1:8080`): the command service's public API.
    pub command_url: String,
    /// `PROCESS_POLL_MS` (200): how often the inbox and the due commands are looked at when idle.
    pub poll: Duration,
    /// `PROCESS_BATCH` (256): inbox rows per transaction, commands per dispatch round.
    pub batch: usize,
    /// `PROCESS_DISPATCH_CONCURRENCY` (16): commands in flight (one at a time per aggregate).
    pub concurrency: usize,
    /// `PROCESS_CAUSE_WAIT_MS` (30000): how long an event that needs its cause waits for it
    /// before it is parked with reason `cause_missing`.
    pub cause_wait: Duration,
    /// `PROCESS_SIGNING_KEY_FILE` (default `AUTH_ISSUER_KEY_FILE`): the key the process managers
    /// sign their own short-lived `system:<name>` tokens with (its public key must be in the
    /// command service's key set); none = no token sent (`AUTH_MODE=disabled` there).
    pub signing_key: Option<PathBuf>,
    /// Issuer and audience of those tokens (`AUTH_ISSUER`, `AUTH_AUDIENCE`).
    pub issuer: IssuerSettings,
    /// `PROCESS_CRASH_AT`: a fault-injection point at which the process aborts once (tests of
    /// crash safety): `react-before-commit`, `react-after-commit` or `dispatch-after-send`.
    pub crash_at: Option<String>,
}

/// The fault-injection points of [`RuntimeSettings::crash_at`].
pub const CRASH_POINTS: &[&str] = &[
    "react-before-commit",
    "react-after-commit",
    "dispatch-after-send",
];

impl RuntimeSettings {
    /// Reads the `PROCESS_*` variables.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let positive =
            |name: &str, default: usize| eventfold_postgres::bus::positive(env, name, default);
        let crash_at = env
            .raw("PROCESS_CRASH_AT")
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        if let Some(point) = &crash_at
            && !CRASH_POINTS.contains(&point.as_str())
        {
            return Err(SettingsError::Invalid {
                var: "PROCESS_CRASH_AT".into(),
                value: point.clone(),
                reason: format!("one of {}", CRASH_POINTS.join(", ")),
            });
        }
        let issuer = IssuerSettings::from_env(env);
        Ok(Self {
            command_url: env
                .string("PROCESS_COMMAND_URL", "http://127.0.0.1:8080")
                .trim_end_matches('/')
                .to_owned(),
            poll: Duration::from_millis(positive("PROCESS_POLL_MS", 200)? as u64),
            batch: positive("PROCESS_BATCH", 256)?,
            concurrency: positive("PROCESS_DISPATCH_CONCURRENCY", 16)?,
            cause_wait: Duration::from_millis(positive("PROCESS_CAUSE_WAIT_MS", 30_000)? as u64),
            signing_key: env
                .raw("PROCESS_SIGNING_KEY_FILE")
                .or_else(|| env.raw("AUTH_ISSUER_KEY_FILE"))
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            issuer,
            crash_at,
        })
    }
}

/// The process managers' metrics.
#[derive(Clone)]
pub struct ProcessMetrics {
    /// `eventfold_process_events_total{process, outcome}`: inbox rows handled or parked.
    pub events: IntCounterVec,
    /// `eventfold_process_commands_total{process, outcome}`: commands sent (`done`, `failed`,
    /// `retried`).
    pub commands: IntCounterVec,
    /// `eventfold_process_pending_commands{process}`: commands waiting (due or scheduled).
    pub pending: IntGaugeVec,
}

impl ProcessMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let events = IntCounterVec::new(
            Opts::new(
                "process_events_total",
                "Inbox events a process manager handled or parked",
            ),
            &["process", "outcome"],
        )?;
        let commands = IntCounterVec::new(
            Opts::new(
                "process_commands_total",
                "Commands a process manager sent, by outcome",
            ),
            &["process", "outcome"],
        )?;
        let pending = IntGaugeVec::new(
            Opts::new(
                "process_pending_commands",
                "Commands a process manager has not sent yet",
            ),
            &["process"],
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(commands.clone()))?;
        registry.register(Box::new(pending.clone()))?;
        Ok(Self {
            events,
            commands,
            pending,
        })
    }
}

/// Short-lived bearer tokens of `system:<process>` for each tenant, signed with the signing key.
struct Tokens {
    issuer: Option<LocalIssuer>,
    settings: IssuerSettings,
    cache: Mutex<HashMap<String, (String, Instant)>>,
}

const TOKEN_TTL: Duration = Duration::from_secs(300);

impl Tokens {
    fn token(&self, process: &str, tenant: &str) -> Option<String> {
        let issuer = self.issuer.as_ref()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, at)) = cache.get(tenant)
            && at.elapsed() < TOKEN_TTL / 2
        {
            return Some(t.clone());
        }
        let request = self.settings.request(
            process,
            "system",
            tenant,
            &[eventfold_auth::scope::COMMANDS_WRITE],
            TOKEN_TTL,
        );
        match issuer.issue(&request) {
            Ok(t) => {
                cache.insert(tenant.to_owned(), (t.clone(), Instant::now()));
                Some(t)
            }
            Err(e) => {
                tracing::error!(process, error = %e, "cannot sign a token for the command service");
                None
            }
        }
    }
}

/// Runs `process`'s reactor and dispatcher until `shutdown`.
pub async fn run(
    process: Arc<dyn Process>,
    pool: PgPool,
    state: watch::Receiver<ModelState>,
    settings: RuntimeSettings,
    metrics: ProcessMetrics,
    shutdown: Shutdown,
) {
    let name = process.name();
    let issuer = match &settings.signing_key {
        Some(path) => match LocalIssuer::load(path) {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::error!(process = name, error = %e, "cannot load the signing key; commands are sent without a token");
                None
            }
        },
        None => None,
    };
    let runtime = Runtime {
        process,
        pool,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client"),
        tokens: Tokens {
            issuer,
            settings: settings.issuer.clone(),
            cache: Mutex::new(HashMap::new()),
        },
        settings,
        metrics,
    };
    let mut attempt = 0;
    loop {
        let schema = pg_schema(name, state.borrow().generation);
        let wait = match runtime.round(&schema).await {
            Ok(0) => {
                attempt = 0;
                runtime.settings.poll
            }
            Ok(_) => {
                attempt = 0;
                Duration::ZERO
            }
            Err(e) => {
                attempt += 1;
                tracing::warn!(process = name, error = %e, "process manager round failed; retrying");
                backoff(attempt)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => return,
        }
    }
}

struct Runtime {
    process: Arc<dyn Process>,
    pool: PgPool,
    http: reqwest::Client,
    tokens: Tokens,
    settings: RuntimeSettings,
    metrics: ProcessMetrics,
}

/// One inbox row.
struct InboxRow {
    seq: i64,
    instance: String,
    overdue: bool,
    event: ProcessEvent,
}

/// One pending command.
#[derive(Debug, Clone)]
struct Pending {
    command_id: Uuid,
    tenant: String,
    instance: String,
    step: String,
    aggregate_type: String,
    aggregate_id: String,
    command: String,
    body: Value,
    correlation_id: String,
    causation_id: Option<String>,
    attempts: i32,
}

/// How the command service answered.
enum Answer {
    Done(u16, Value),
    Refused(StepFailure),
    Transient(Option<u16>, String),
}

type Instance = (String, String);

/// A command the command service applied: its id, HTTP status and answer.
type Applied = (Uuid, u16, Value);

impl Runtime {
    /// One round as the leader: react to the inbox, then send the due commands. The number of
    /// rows and commands handled (0 = idle, or not the leader).
    async fn round(&self, schema: &str) -> Result<usize, sqlx::Error> {
        let mut leader = self.pool.acquire().await?;
        let lock = format!("eventfold-process:{}", self.process.name());
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(&lock)
            .fetch_one(&mut *leader)
            .await?;
        if !held {
            return Ok(0);
        }
        let result = async {
            let reacted = self.react(schema).await?;
            let sent = self.dispatch(schema).await?;
            Ok::<_, sqlx::Error>(reacted + sent)
        }
        .await;
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
            .bind(&lock)
            .execute(&mut *leader)
            .await;
        result
    }

    fn crash_at(&self, point: &str) {
        if self.settings.crash_at.as_deref() == Some(point) {
            tracing::error!(
                process = self.process.name(),
                point,
                "PROCESS_CRASH_AT: aborting"
            );
            std::process::abort();
        }
    }

    /// Hands pending inbox rows to the process manager in order, one transaction.
    async fn react(&self, schema: &str) -> Result<usize, sqlx::Error> {
        let name = self.process.name();
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT seq, tenant, instance_key, event_id, event_type, aggregate_type, aggregate_id, \
               version, correlation_id, causation_id, occurred_at, payload, \
               received_at < clock_timestamp() - make_interval(secs => $2) AS overdue \
             FROM {schema}.inbox WHERE handled_at IS NULL AND parked_reason IS NULL \
             ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED"
        ))
        .bind(self.settings.batch as i64)
        .bind(self.settings.cause_wait.as_secs_f64())
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let rows: Vec<InboxRow> = rows
            .into_iter()
            .map(|r| InboxRow {
                seq: r.get("seq"),
                instance: r.get("instance_key"),
                overdue: r.get("overdue"),
                event: ProcessEvent {
                    event_id: r.get("event_id"),
                    event_type: r.get("event_type"),
                    aggregate_type: r.get("aggregate_type"),
                    aggregate_id: r.get("aggregate_id"),
                    version: r.get("version"),
                    tenant: r.get("tenant"),
                    correlation_id: r.get("correlation_id"),
                    causation_id: r.get("causation_id"),
                    occurred_at: r.get("occurred_at"),
                    payload: r.get("payload"),
                },
            })
            .collect();
        let keys: Vec<Instance> = {
            let mut seen = HashSet::new();
            rows.iter()
                .map(|r| (r.event.tenant.clone(), r.instance.clone()))
                .filter(|k| seen.insert(k.clone()))
                .collect()
        };
        let mut states = load_states(&mut tx, schema, &keys).await?;
        let mut handled: HashSet<String> = HashSet::new();
        let mut done: Vec<i64> = Vec::new();
        let mut parked: Vec<(i64, String)> = Vec::new();
        let mut finished: HashSet<Instance> = HashSet::new();
        let mut waiting: Vec<&InboxRow> = rows.iter().collect();
        let mut batch = CommandBatch::default();
        // Passes until nothing more can be handled: an event waiting for its cause is skipped
        // in one pass and handled in a later one once its cause was handled.
        loop {
            let mut progress = false;
            let mut still = Vec::new();
            for row in waiting {
                let key = (row.event.tenant.clone(), row.instance.clone());
                if let Some(cause) = row.event.causation_id.as_deref()
                    && self.process.needs_cause(&row.event)
                    && !handled.contains(cause)
                    && !cause_handled(&mut tx, schema, cause).await?
                {
                    if row.overdue {
                        parked.push((row.seq, "cause_missing".into()));
                        progress = true;
                    } else {
                        still.push(row);
                    }
                    continue;
                }
                let state = states.remove(&key);
                match self.process.react_json(state.clone(), &row.event) {
                    Ok(reaction) => {
                        let trigger = Trigger {
                            id: row.event.event_id.clone(),
                            correlation_id: row.event.correlation_id.clone(),
                            causation_id: Some(row.event.event_id.clone()),
                        };
                        if reaction.finished {
                            finished.insert(key.clone());
                        }
                        apply_actions(
                            &mut tx,
                            schema,
                            name,
                            &key,
                            &trigger,
                            &reaction.actions,
                            &mut batch,
                        )
                        .await?;
                        states.insert(key, reaction.state);
                        handled.insert(row.event.event_id.clone());
                        done.push(row.seq);
                    }
                    Err(e) => {
                        if let Some(s) = state {
                            states.insert(key, s);
                        }
                        tracing::warn!(process = name, event_id = %row.event.event_id, error = %e, "event refused by the process manager; parked");
                        parked.push((row.seq, format!("refused: {e}")));
                    }
                }
                progress = true;
            }
            waiting = still;
            if !progress || waiting.is_empty() {
                break;
            }
        }
        batch.flush(&mut tx, schema).await?;
        save_states(&mut tx, schema, &states, &finished, &done, &rows).await?;
        // `handled_rank` numbers the rows in the order they were handled (an event waiting for
        // its cause is handled after rows that arrived later).
        sqlx::query(&format!(
            "UPDATE {schema}.inbox i SET handled_at = clock_timestamp(), \
               handled_rank = (SELECT coalesce(max(handled_rank), 0) FROM {schema}.inbox) + u.n \
             FROM unnest($1::bigint[]) WITH ORDINALITY AS u(seq, n) WHERE i.seq = u.seq"
        ))
        .bind(&done)
        .execute(&mut *tx)
        .await?;
        for (seq, reason) in &parked {
            sqlx::query(&format!(
                "UPDATE {schema}.inbox SET parked_reason = $2 WHERE seq = $1"
            ))
            .bind(seq)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        }
        self.crash_at("react-before-commit");
        tx.commit().await?;
        self.crash_at("react-after-commit");
        self.metrics
            .events
            .with_label_values(&[name, "handled"])
            .inc_by(done.len() as u64);
        self.metrics
            .events
            .with_label_values(&[name, "parked"])
            .inc_by(parked.len() as u64);
        Ok(done.len() + parked.len())
    }

    /// Sends the due commands: one at a time per target aggregate, several aggregates at once.
    async fn dispatch(&self, schema: &str) -> Result<usize, sqlx::Error> {
        let name = self.process.name();
        let rows = sqlx::query(&format!(
            "SELECT command_id, tenant, instance_key, step, aggregate_type, aggregate_id, command, \
               body, correlation_id, causation_id, attempts \
             FROM {schema}.commands WHERE status = 'pending' AND due_at <= clock_timestamp() \
             ORDER BY due_at, seq LIMIT $1"
        ))
        .bind(self.settings.batch as i64)
        .fetch_all(&self.pool)
        .await?;
        let pending: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {schema}.commands WHERE status = 'pending'"
        ))
        .fetch_one(&self.pool)
        .await?;
        self.metrics.pending.with_label_values(&[name]).set(pending);
        if rows.is_empty() {
            return Ok(0);
        }
        let mut groups: Vec<Vec<Pending>> = Vec::new();
        let mut index: HashMap<(String, String, String), usize> = HashMap::new();
        for r in rows {
            let p = Pending {
                command_id: r.get("command_id"),
                tenant: r.get("tenant"),
                instance: r.get("instance_key"),
                step: r.get("step"),
                aggregate_type: r.get("aggregate_type"),
                aggregate_id: r.get("aggregate_id"),
                command: r.get("command"),
                body: r.get("body"),
                correlation_id: r.get("correlation_id"),
                causation_id: r.get("causation_id"),
                attempts: r.get("attempts"),
            };
            let key = (
                p.tenant.clone(),
                p.aggregate_type.clone(),
                p.aggregate_id.clone(),
            );
            let i = *index.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[i].push(p);
        }
        // Applied commands of a process manager that does not follow its steps are marked done
        // together after the round (one statement); every other answer is recorded at once.
        let batch_done = !self.process.tracks_steps();
        let sent = groups.iter().map(Vec::len).sum::<usize>();
        let results: Vec<Result<Vec<Applied>, sqlx::Error>> = futures::stream::iter(groups)
            .map(|group| async move {
                let mut done = Vec::new();
                for p in group {
                    match self.send(&p).await {
                        Answer::Done(status, body) if batch_done => {
                            self.crash_at("dispatch-after-send");
                            done.push((p.command_id, status, body));
                        }
                        answer => self.record(schema, &p, answer).await?,
                    }
                }
                Ok(done)
            })
            .buffer_unordered(self.settings.concurrency)
            .collect()
            .await;
        let mut done = Vec::new();
        let mut failed = None;
        for r in results {
            match r {
                Ok(d) => done.extend(d),
                Err(e) => failed = Some(e),
            }
        }
        self.mark_done(schema, &done).await?;
        match failed {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    }

    /// Marks applied commands done in one statement.
    async fn mark_done(&self, schema: &str, done: &[Applied]) -> Result<(), sqlx::Error> {
        if done.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = done.iter().map(|d| d.0).collect();
        let statuses: Vec<i32> = done.iter().map(|d| i32::from(d.1)).collect();
        let outcomes: Vec<Value> = done.iter().map(|d| d.2.clone()).collect();
        sqlx::query(&format!(
            "UPDATE {schema}.commands c SET status = 'done', attempts = attempts + 1, \
             http_status = u.status, outcome = u.outcome, finished_at = clock_timestamp() \
             FROM unnest($1::uuid[], $2::int[], $3::jsonb[]) AS u(id, status, outcome) \
             WHERE c.command_id = u.id AND c.status = 'pending'"
        ))
        .bind(&ids)
        .bind(&statuses)
        .bind(&outcomes)
        .execute(&self.pool)
        .await?;
        self.metrics
            .commands
            .with_label_values(&[self.process.name(), "done"])
            .inc_by(done.len() as u64);
        Ok(())
    }

    /// Posts `p` to the command service with its id as `Idempotency-Key`.
    async fn send(&self, p: &Pending) -> Answer {
        let url = format!(
            "{}/v1/{}/{}/commands/{}",
            self.settings.command_url,
            enc(&p.aggregate_type),
            enc(&p.aggregate_id),
            enc(&p.command)
        );
        let mut request = self
            .http
            .post(url)
            .header("idempotency-key", p.command_id.to_string())
            .header("x-correlation-id", &p.correlation_id)
            .json(&p.body);
        if let Some(c) = &p.causation_id {
            request = request.header("x-causation-id", c);
        }
        if let Some(t) = self.tokens.token(self.process.name(), &p.tenant) {
            request = request.bearer_auth(t);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Answer::Transient(None, e.to_string()),
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            200..=299 => Answer::Done(status, body),
            401 | 403 | 409 | 429 | 500..=599 => Answer::Transient(Some(status), body.to_string()),
            _ => Answer::Refused(StepFailure {
                step: p.step.clone(),
                command_id: p.command_id,
                aggregate_type: p.aggregate_type.clone(),
                aggregate_id: p.aggregate_id.clone(),
                command: p.command.clone(),
                status,
                code: body["code"]
                    .as_str()
                    .map_or_else(|| format!("http_{status}"), str::to_owned),
                detail: body["detail"].as_str().unwrap_or_default().to_owned(),
            }),
        }
    }

    /// Stores the answer to `p`; a refusal goes to the process manager in the same transaction.
    async fn record(&self, schema: &str, p: &Pending, answer: Answer) -> Result<(), sqlx::Error> {
        let name = self.process.name();
        match answer {
            Answer::Done(status, body) => {
                self.crash_at("dispatch-after-send");
                let done = StepDone {
                    step: p.step.clone(),
                    command_id: p.command_id,
                    aggregate_type: p.aggregate_type.clone(),
                    aggregate_id: p.aggregate_id.clone(),
                    command: p.command.clone(),
                    version: body["version"].as_i64().unwrap_or_default(),
                };
                let hook = |s| self.process.on_done_json(s, &done);
                let follow = self
                    .process
                    .tracks_steps()
                    .then(|| (format!("{}/done", p.command_id), &hook as &Hook<'_>));
                self.finish(schema, p, "done", status, body, follow).await?;
                self.metrics
                    .commands
                    .with_label_values(&[name, "done"])
                    .inc();
            }
            Answer::Transient(status, why) => {
                let attempts = p.attempts + 1;
                let wait = backoff(attempts.min(10) as u32).max(Duration::from_millis(200));
                if matches!(status, Some(401 | 403)) {
                    tracing::error!(process = name, command_id = %p.command_id, status, "the command service refuses the process manager's credentials; retrying");
                } else {
                    tracing::warn!(process = name, command_id = %p.command_id, ?status, why, "command not applied yet; retrying");
                }
                sqlx::query(&format!(
                    "UPDATE {schema}.commands SET attempts = $2, http_status = $3, \
                     outcome = $4, due_at = clock_timestamp() + make_interval(secs => $5) \
                     WHERE command_id = $1 AND status = 'pending'"
                ))
                .bind(p.command_id)
                .bind(attempts)
                .bind(status.map(i32::from))
                .bind(json!({ "error": why }))
                .bind(wait.as_secs_f64())
                .execute(&self.pool)
                .await?;
                self.metrics
                    .commands
                    .with_label_values(&[name, "retried"])
                    .inc();
            }
            Answer::Refused(failure) => {
                let outcome = json!({"code": failure.code, "detail": failure.detail});
                let hook = |s| self.process.on_failure_json(s, &failure);
                let follow = Some((p.command_id.to_string(), &hook as &Hook<'_>));
                self.finish(schema, p, "failed", failure.status, outcome, follow)
                    .await?;
                tracing::info!(process = name, command_id = %p.command_id, code = failure.code, "step refused by the command service; handed to the process manager");
                self.metrics
                    .commands
                    .with_label_values(&[name, "failed"])
                    .inc();
            }
        }
        Ok(())
    }

    /// Marks `p` finished with `status` and, with `follow`, hands the outcome to the process
    /// manager in the same transaction: its reaction's commands descend from the trigger id
    /// given, keep `p`'s correlation and cause. A command already finished (a duplicate answer)
    /// changes nothing.
    async fn finish(
        &self,
        schema: &str,
        p: &Pending,
        status: &str,
        http_status: u16,
        outcome: Value,
        follow: Option<(String, &Hook<'_>)>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(&format!(
            "UPDATE {schema}.commands SET status = $2, attempts = attempts + 1, \
             http_status = $3, outcome = $4, finished_at = clock_timestamp() \
             WHERE command_id = $1 AND status = 'pending'"
        ))
        .bind(p.command_id)
        .bind(status)
        .bind(i32::from(http_status))
        .bind(outcome)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if let (1, Some((trigger_id, hook))) = (updated, follow) {
            let key = (p.tenant.clone(), p.instance.clone());
            let mut states = load_states(&mut tx, schema, std::slice::from_ref(&key)).await?;
            match hook(states.remove(&key)) {
                Ok(reaction) => {
                    let trigger = Trigger {
                        id: trigger_id,
                        correlation_id: p.correlation_id.clone(),
                        causation_id: p.causation_id.clone(),
                    };
                    let name = self.process.name();
                    let mut batch = CommandBatch::default();
                    apply_actions(
                        &mut tx,
                        schema,
                        name,
                        &key,
                        &trigger,
                        &reaction.actions,
                        &mut batch,
                    )
                    .await?;
                    batch.flush(&mut tx, schema).await?;
                    save_state(&mut tx, schema, &key, &reaction).await?;
                }
                Err(e) => {
                    tracing::error!(process = self.process.name(), command_id = %p.command_id, status, error = %e, "the process manager refused a step's outcome");
                }
            }
        }
        tx.commit().await
    }
}

/// A process manager's hook for a step's outcome: its reaction from the instance's state.
type Hook<'a> = dyn Fn(Option<Value>) -> Result<Reaction<Value>, crate::projection::HandlerError>
    + Send
    + Sync
    + 'a;

/// What a reaction's commands descend from.
struct Trigger {
    /// Event id, or the command id of a failed step.
    id: String,
    correlation_id: String,
    causation_id: Option<String>,
}

fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn cause_handled(
    tx: &mut PgConnection,
    schema: &str,
    cause: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM {schema}.inbox WHERE event_id = $1 AND handled_at IS NOT NULL)"
    ))
    .bind(cause)
    .fetch_one(&mut *tx)
    .await
}

async fn load_states(
    tx: &mut PgConnection,
    schema: &str,
    keys: &[Instance],
) -> Result<HashMap<Instance, Value>, sqlx::Error> {
    let tenants: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let rows = sqlx::query(&format!(
        "SELECT i.tenant, i.instance_key, i.state FROM {schema}.instances i \
         JOIN unnest($1::text[], $2::text[]) AS k(t, id) ON i.tenant = k.t AND i.instance_key = k.id \
         ORDER BY i.tenant, i.instance_key FOR UPDATE OF i"
    ))
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect())
}

async fn save_state(
    tx: &mut PgConnection,
    schema: &str,
    key: &Instance,
    reaction: &Reaction<Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {schema}.instances (tenant, instance_key, state, finished, reactions) \
         VALUES ($1, $2, $3, $4, 1) ON CONFLICT (tenant, instance_key) DO UPDATE SET \
         state = EXCLUDED.state, finished = {schema}.instances.finished OR EXCLUDED.finished, \
         reactions = {schema}.instances.reactions + 1, updated_at = clock_timestamp()"
    ))
    .bind(&key.0)
    .bind(&key.1)
    .bind(&reaction.state)
    .bind(reaction.finished)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn save_states(
    tx: &mut PgConnection,
    schema: &str,
    states: &HashMap<Instance, Value>,
    finished: &HashSet<Instance>,
    done: &[i64],
    rows: &[InboxRow],
) -> Result<(), sqlx::Error> {
    let mut reactions: HashMap<&Instance, i64> = HashMap::new();
    let done: HashSet<i64> = done.iter().copied().collect();
    let keyed: Vec<(Instance, i64)> = rows
        .iter()
        .filter(|r| done.contains(&r.seq))
        .map(|r| ((r.event.tenant.clone(), r.instance.clone()), r.seq))
        .collect();
    for (k, _) in &keyed {
        *reactions.entry(k).or_default() += 1;
    }
    let (mut tenants, mut ids, mut values, mut fin, mut counts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (key, n) in reactions {
        let Some(state) = states.get(key) else {
            continue;
        };
        tenants.push(key.0.clone());
        ids.push(key.1.clone());
        values.push(state.clone());
        fin.push(finished.contains(key));
        counts.push(n);
    }
    if tenants.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "INSERT INTO {schema}.instances (tenant, instance_key, state, finished, reactions) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::bool[], $5::bigint[]) \
         ON CONFLICT (tenant, instance_key) DO UPDATE SET state = EXCLUDED.state, \
         finished = {schema}.instances.finished OR EXCLUDED.finished, \
         reactions = {schema}.instances.reactions + EXCLUDED.reactions, updated_at = clock_timestamp()"
    ))
    .bind(&tenants)
    .bind(&ids)
    .bind(&values)
    .bind(&fin)
    .bind(&counts)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The commands a transaction records, written in one statement: before a cancellation (which
/// must see them) and before the transaction commits.
#[derive(Default)]
struct CommandBatch {
    ids: Vec<Uuid>,
    tenants: Vec<String>,
    instances: Vec<String>,
    steps: Vec<String>,
    triggers: Vec<String>,
    aggregate_types: Vec<String>,
    aggregate_ids: Vec<String>,
    commands: Vec<String>,
    bodies: Vec<Value>,
    correlations: Vec<String>,
    causations: Vec<Option<String>>,
    deadlines: Vec<Option<String>>,
    delays: Vec<f64>,
}

impl CommandBatch {
    fn push(
        &mut self,
        process: &str,
        key: &Instance,
        trigger: &Trigger,
        step: &super::Step,
        deadline: Option<&str>,
        after: Duration,
    ) {
        self.ids.push(command_id(process, &trigger.id, &step.key));
        self.tenants.push(key.0.clone());
        self.instances.push(key.1.clone());
        self.steps.push(step.key.clone());
        self.triggers.push(trigger.id.clone());
        self.aggregate_types.push(step.aggregate_type.clone());
        self.aggregate_ids.push(step.aggregate_id.clone());
        self.commands.push(step.command.clone());
        self.bodies.push(step.body.clone());
        self.correlations.push(trigger.correlation_id.clone());
        self.causations.push(trigger.causation_id.clone());
        self.deadlines.push(deadline.map(str::to_owned));
        self.delays.push(after.as_secs_f64());
    }

    /// Inserts the pushed commands in order (one already recorded — same trigger, same step,
    /// same id — is left as it is) and empties the batch.
    async fn flush(&mut self, tx: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO {schema}.commands (command_id, tenant, instance_key, step, trigger, \
               aggregate_type, aggregate_id, command, body, correlation_id, causation_id, \
               deadline, due_at) \
             SELECT id, t, i, s, tr, at, ai, c, b, co, ca, d, \
               clock_timestamp() + make_interval(secs => delay) \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
               $7::text[], $8::text[], $9::jsonb[], $10::text[], $11::text[], $12::text[], \
               $13::float8[]) WITH ORDINALITY AS u(id, t, i, s, tr, at, ai, c, b, co, ca, d, delay, n) \
             ORDER BY n ON CONFLICT (command_id) DO NOTHING"
        ))
        .bind(&self.ids)
        .bind(&self.tenants)
        .bind(&self.instances)
        .bind(&self.steps)
        .bind(&self.triggers)
        .bind(&self.aggregate_types)
        .bind(&self.aggregate_ids)
        .bind(&self.commands)
        .bind(&self.bodies)
        .bind(&self.correlations)
        .bind(&self.causations)
        .bind(&self.deadlines)
        .bind(&self.delays)
        .execute(&mut *tx)
        .await?;
        *self = Self::default();
        Ok(())
    }
}

/// Adds a reaction's actions to `batch` (commands to send now or later) and cancels deadlines
/// (after writing what the batch holds, so that a deadline scheduled earlier in it is cancelled
/// too).
async fn apply_actions(
    tx: &mut PgConnection,
    schema: &str,
    process: &str,
    key: &Instance,
    trigger: &Trigger,
    actions: &[Action],
    batch: &mut CommandBatch,
) -> Result<(), sqlx::Error> {
    for action in actions {
        match action {
            Action::Send(step) => batch.push(process, key, trigger, step, None, Duration::ZERO),
            Action::Schedule { name, after, step } => {
                batch.flush(tx, schema).await?;
                cancel(tx, schema, key, name).await?;
                batch.push(process, key, trigger, step, Some(name), *after);
            }
            Action::Cancel { name } => {
                batch.flush(tx, schema).await?;
                cancel(tx, schema, key, name).await?;
            }
        }
    }
    Ok(())
}

async fn cancel(
    tx: &mut PgConnection,
    schema: &str,
    key: &Instance,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE {schema}.commands SET status = 'cancelled', finished_at = clock_timestamp() \
         WHERE tenant = $1 AND instance_key = $2 AND deadline = $3 AND status = 'pending'"
    ))
    .bind(&key.0)
    .bind(&key.1)
    .bind(name)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(enc("Gen.1.1:John.1.1"), "Gen.1.1:John.1.1");
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn crash_points_are_checked() {
        let env = Env::from_pairs([("PROCESS_CRASH_AT", "nowhere")]);
        assert!(RuntimeSettings::from_env(&env).is_err());
        let env = Env::from_pairs([("PROCESS_CRASH_AT", "dispatch-after-send")]);
        assert_eq!(
            RuntimeSettings::from_env(&env).unwrap().crash_at.as_deref(),
            Some("dispatch-after-send")
        );
    }
}
