//! The process-manager runtime against the real stack with a probe process manager over
//! cross-references: a deadline persisted and fired after the runtime restarts, a deadline
//! cancelled by the event it waited for, a refused step (422) compensated, an event handled only
//! after its cause although it arrived first, and an event whose cause never comes parked.

use std::sync::Arc;
use std::time::Duration;

use eventfold_avro::{AvroCodec, Catalog};
use eventfold_postgres::{CommandMeta, CommandRecord, CommandWrite, EventStore, NewEvent};
use eventfold_runtime::{Env, Shutdown};
use eventfold_tests::pipeline::Pipeline;
use eventfold_tests::relay::xref_chain;
use eventfold_tests::{Stack, eventually, send_command, xref};
use projector::consumer;
use projector::engine::{Mode, Processor};
use projector::process::inbox::Inbox;
use projector::process::runtime::{self, ProcessMetrics, RuntimeSettings};
use projector::process::{Action, ProcessEvent, ProcessManager, Reaction, Step, StepFailure};
use projector::projection::{HandlerError, Projection};
use projector::state;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use uuid::Uuid;

const NAME: &str = "saga_probe";
const SCHEMA: &str = "rm_saga_probe_g1";
/// How long after a discovery the probe's review deadline fires.
const REVIEW_AFTER: Duration = Duration::from_secs(3);

/// Schedules a review of every discovered cross-reference (cancelled when it is validated
/// first); for a target starting with `FAIL` it sends a command the domain refuses and
/// compensates the refusal with a rejection. A validation with a cause waits for its cause.
struct Probe;

#[derive(Debug, Default, Serialize, Deserialize)]
struct ProbeState {
    handled: Vec<String>,
    failures: Vec<String>,
}

fn validate(
    step: &str,
    aggregate_id: &str,
    agent: &str,
    result: &str,
    reasoning: &str,
) -> Result<Step, HandlerError> {
    Step::new(
        step,
        "CrossReference",
        aggregate_id,
        "ValidateCrossReference",
        &json!({"validator_agent": agent, "validation_result": result, "reasoning": reasoning}),
    )
}

impl ProcessManager for Probe {
    type State = ProbeState;

    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["CrossReference"]
    }

    fn instance(&self, event: &ProcessEvent) -> Option<String> {
        Some(event.aggregate_id.clone())
    }

    fn needs_cause(&self, event: &ProcessEvent) -> bool {
        event.event_type == "CrossReferenceValidated"
    }

    fn react(
        &self,
        mut state: ProbeState,
        event: &ProcessEvent,
    ) -> Result<Reaction<ProbeState>, HandlerError> {
        state.handled.push(event.event_type.clone());
        let id = event.aggregate_id.clone();
        let actions = match event.event_type.as_str() {
            "CrossReferenceDiscovered"
                if event.payload["target_ref"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("FAIL")) =>
            {
                vec![Action::Send(validate(
                    "bad",
                    &id,
                    "",
                    "approved",
                    "no validator named",
                )?)]
            }
            "CrossReferenceDiscovered" => vec![Action::Schedule {
                name: "review".into(),
                after: REVIEW_AFTER,
                step: validate("review", &id, "deadline", "escalated", "review deadline")?,
            }],
            "CrossReferenceValidated" => vec![Action::Cancel {
                name: "review".into(),
            }],
            _ => Vec::new(),
        };
        Ok(Reaction::with(state, actions))
    }

    fn on_failure(
        &self,
        mut state: ProbeState,
        failure: &StepFailure,
    ) -> Result<Reaction<ProbeState>, HandlerError> {
        state
            .failures
            .push(format!("{}:{}", failure.step, failure.code));
        let step = validate(
            "compensate",
            &failure.aggregate_id,
            "compensation",
            "rejected",
            &format!("compensates {}", failure.code),
        )?;
        Ok(Reaction::with(state, vec![Action::Send(step)]))
    }
}

/// The probe's inbox consumer and runtime, in this process.
struct Running {
    shutdown: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.trigger();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn start(stack: &Stack, p: &Pipeline, api: &str, consume: bool) -> Running {
    let process: Arc<dyn projector::process::Process> = Arc::new(Probe);
    let model: Arc<dyn Projection> = Arc::new(Inbox::new(process.clone()));
    let stores = p.stores();
    let shutdown = Shutdown::new();
    let watch = |pool: sqlx::PgPool| {
        state::watch_state(
            pool,
            NAME,
            state::ModelState {
                generation: 1,
                rebuilding: false,
            },
            Duration::from_millis(200),
        )
    };
    let mut tasks = Vec::new();
    if consume {
        let sr = stack.registry.converter_settings().unwrap();
        let codec = Arc::new(AvroCodec::new(sr, Arc::new(Catalog::embedded().unwrap())));
        let template: Processor = p.processor(&model, 1, Mode::Consume);
        let (m, st) = (model.clone(), stores.clone());
        let make = move |s: state::ModelState| Processor {
            target: state::target(&*m, s.generation, &st),
            ..template.clone()
        };
        tasks.push(tokio::spawn(consumer::run(
            p.consumer_settings(),
            codec,
            make,
            watch(stores.pool.clone()),
            shutdown.clone(),
        )));
    }
    let key = eventfold_tests::auth::settings()
        .key_file
        .display()
        .to_string();
    let env = Env::from_pairs([
        ("PROCESS_COMMAND_URL", api),
        ("PROCESS_SIGNING_KEY_FILE", key.as_str()),
        ("PROCESS_POLL_MS", "50"),
        ("PROCESS_CAUSE_WAIT_MS", "2000"),
    ]);
    let mut settings = RuntimeSettings::from_env(&env).expect("settings");
    settings.issuer = eventfold_tests::auth::settings();
    let metrics = ProcessMetrics::register(&prometheus::Registry::new()).expect("metrics");
    tasks.push(tokio::spawn(runtime::run(
        process,
        stores.pool.clone(),
        watch(stores.pool.clone()),
        settings,
        metrics,
        shutdown.clone(),
    )));
    Running { shutdown, tasks }
}

fn discover_body(target: &str) -> Value {
    let mut body = xref::discover_body();
    body["target_ref"] = json!(target);
    body
}

/// The events of `id`: (type, payload, causation id, actor id).
async fn events(p: &Pipeline, id: &str) -> Vec<(String, Value, Option<Uuid>, String)> {
    sqlx::query(
        "SELECT event_type, payload, causation_id, actor_id FROM events \
         WHERE aggregate_type = 'CrossReference' AND aggregate_id = $1 ORDER BY version",
    )
    .bind(id)
    .fetch_all(&p.db.admin)
    .await
    .expect("events")
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

async fn command_status(
    p: &Pipeline,
    id: &str,
    step: &str,
) -> Option<(String, Option<i32>, Option<Value>)> {
    // None until the row exists (or, at first, until the consumer set the schema up).
    sqlx::query(&format!(
        "SELECT status, http_status, outcome FROM {SCHEMA}.commands WHERE instance_key = $1 AND step = $2"
    ))
    .bind(id)
    .bind(step)
    .fetch_optional(&p.db.admin)
    .await
    .ok()
    .flatten()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
}

/// Appends one event of `template` to CrossReference `id` after `after`, with `event_id` and
/// `causation`.
async fn append(
    p: &Pipeline,
    id: &str,
    after: i64,
    template: &NewEvent,
    event_id: Uuid,
    causation: Option<Uuid>,
) {
    let meta = CommandMeta {
        causation_id: causation,
        command_id: Uuid::new_v4(),
        ..xref::meta()
    };
    let record = CommandRecord {
        command_name: "test".into(),
        request_hash: vec![],
        response: json!({}),
    };
    let events = [NewEvent {
        event_id,
        ..template.clone()
    }];
    let write = CommandWrite {
        aggregate_id: id,
        expected_version: after,
        events: &events,
        meta: &meta,
        record: &record,
    };
    EventStore::new(p.db.admin.clone())
        .append_batch("CrossReference", &[write])
        .await
        .expect("append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deadlines_survive_a_restart_refusals_are_compensated_and_effects_wait_for_their_causes() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    sqlx::query("SELECT eventfold_declare_read_model($1)")
        .bind(NAME)
        .execute(&p.db.admin)
        .await
        .expect("declare the probe's read model");
    let api = p.command_service().await;
    let relay = p.relay("r1");
    let http = eventfold_tests::auth::operator();
    let base = api.url.as_str();
    let running = start(&stack, &p, base, true);

    // A deadline is scheduled, the runtime stops before it is due, and fires after a restart.
    send_command(
        &http,
        base,
        "CrossReference",
        "x-deadline",
        "DiscoverCrossReference",
        discover_body("ISA.40.8"),
    )
    .await;
    let pool = p.db.admin.clone();
    eventually(
        "the review deadline scheduled",
        Duration::from_secs(60),
        || {
            let p = &p;
            async move {
                command_status(p, "x-deadline", "review")
                    .await
                    .filter(|s| s.0 == "pending")
            }
        },
    )
    .await;
    running.stop().await;
    tokio::time::sleep(REVIEW_AFTER + Duration::from_secs(1)).await;
    assert_eq!(
        events(&p, "x-deadline").await.len(),
        1,
        "nothing fires while the runtime is down"
    );
    let running = start(&stack, &p, base, true);
    eventually(
        "the deadline fired after the restart",
        Duration::from_secs(30),
        || {
            let p = &p;
            async move { (events(p, "x-deadline").await.len() == 2).then_some(()) }
        },
    )
    .await;
    let fired = events(&p, "x-deadline").await;
    let discovered_id: Uuid = sqlx::query_scalar(
        "SELECT event_id FROM events WHERE aggregate_id = 'x-deadline' AND version = 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(fired[1].0, "CrossReferenceValidated");
    assert_eq!(fired[1].1["reasoning"], "review deadline");
    assert_eq!(fired[1].2, Some(discovered_id), "caused by the discovery");
    assert_eq!(fired[1].3, NAME, "sent as system:{NAME}");

    // A deadline cancelled by the validation it waited for.
    send_command(
        &http,
        base,
        "CrossReference",
        "x-cancel",
        "DiscoverCrossReference",
        discover_body("PSA.33.6"),
    )
    .await;
    send_command(
        &http,
        base,
        "CrossReference",
        "x-cancel",
        "ValidateCrossReference",
        xref::validate_body("in time"),
    )
    .await;
    eventually(
        "the review deadline cancelled",
        Duration::from_secs(30),
        || {
            let p = &p;
            async move {
                command_status(p, "x-cancel", "review")
                    .await
                    .filter(|s| s.0 == "cancelled")
            }
        },
    )
    .await;

    // A refused step goes back to the process manager, which compensates it.
    send_command(
        &http,
        base,
        "CrossReference",
        "x-fail",
        "DiscoverCrossReference",
        discover_body("FAIL.1.1"),
    )
    .await;
    eventually("the refusal compensated", Duration::from_secs(30), || {
        let p = &p;
        async move { (events(p, "x-fail").await.len() == 2).then_some(()) }
    })
    .await;
    let (status, http_status, outcome) =
        command_status(&p, "x-fail", "bad").await.expect("bad step");
    assert_eq!((status.as_str(), http_status), ("failed", Some(422)));
    assert_eq!(outcome.unwrap()["code"], "empty_field");
    let compensated = events(&p, "x-fail").await;
    assert_eq!(compensated[1].1["validation_result"], "rejected");
    assert_eq!(compensated[1].1["reasoning"], "compensates empty_field");

    // An effect committed before its cause is handled after it; one whose cause never comes is
    // parked with reason cause_missing.
    let chain = xref_chain(2);
    let cause = Uuid::now_v7();
    append(&p, "x-effect", 0, &chain[0], Uuid::now_v7(), None).await;
    append(&p, "x-effect", 1, &chain[1], Uuid::now_v7(), Some(cause)).await;
    eventually("the effect in the inbox", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!(
                "SELECT seq FROM {SCHEMA}.inbox WHERE instance_key = 'x-effect' AND version = 2"
            ))
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
        }
    })
    .await;
    append(&p, "x-cause", 0, &chain[0], cause, None).await;
    append(&p, "x-orphan", 0, &chain[0], Uuid::now_v7(), None).await;
    append(
        &p,
        "x-orphan",
        1,
        &chain[1],
        Uuid::now_v7(),
        Some(Uuid::now_v7()),
    )
    .await;
    let order = eventually("the effect handled after its cause", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            let r = sqlx::query(&format!(
                "SELECT (SELECT handled_rank FROM {SCHEMA}.inbox WHERE event_id = $1), \
                   (SELECT handled_rank FROM {SCHEMA}.inbox WHERE instance_key = 'x-effect' AND version = 2), \
                   (SELECT seq FROM {SCHEMA}.inbox WHERE event_id = $1), \
                   (SELECT seq FROM {SCHEMA}.inbox WHERE instance_key = 'x-effect' AND version = 2)"
            ))
            .bind(cause.to_string())
            .fetch_one(&pool)
            .await
            .ok()?;
            let cause_at: Option<i64> = r.get(0);
            let effect_at: Option<i64> = r.get(1);
            let (cause_seq, effect_seq): (Option<i64>, Option<i64>) = (r.get(2), r.get(3));
            Some((cause_at?, effect_at?, cause_seq?, effect_seq?))
        }
    })
    .await;
    assert!(
        order.3 < order.2,
        "the effect reached the inbox first: {order:?}"
    );
    assert!(order.0 < order.1, "the cause was handled first: {order:?}");
    let parked = eventually("the orphan effect parked", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(&format!(
                "SELECT parked_reason FROM {SCHEMA}.inbox WHERE instance_key = 'x-orphan' AND version = 2"
            ))
            .fetch_one(&pool)
            .await
            .ok()
            .flatten()
        }
    })
    .await;
    assert_eq!(parked, "cause_missing");

    running.stop().await;
    relay.stop().await;
    api.stop().await;
    p.drop_all().await;
}
