//! The relay and the projector only look schema ids up; `eventfold schemas register` registers
//! them. Against the real registry: with nothing registered for its topic prefix the relay
//! publishes nothing, parks nothing, deletes nothing and says which subject is missing (`/readyz`,
//! `/metrics`), then publishes everything in order once the schemas are registered; a registry
//! that refuses the credentials (401, 403: a real HTTP gate in front of the real registry, which
//! runs without authentication here) halts the relay and the projector with that reason until
//! the credentials are accepted, and nothing is parked.

use std::time::Duration;

use eventfold_avro::{Catalog, subject_for};
use eventfold_runtime::Env;
use eventfold_tests::pipeline::{Pipeline, opportunity_chain};
use eventfold_tests::registry_gate::RegistryGate;
use eventfold_tests::relay::{RelayDb, append_events, consume_complete, xref_chain};
use eventfold_tests::{Spawned, Stack, eventually, spawn};
use serde_json::Value;

/// Status and body of `/readyz`.
async fn readyz(service: &Spawned) -> (u16, Value) {
    let resp = reqwest::get(format!("{}/readyz", service.admin_url))
        .await
        .expect("readyz");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("readyz json"))
}

async fn metrics(service: &Spawned) -> String {
    reqwest::get(format!("{}/metrics", service.admin_url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the one series of `metrics` that starts with `series` (name and labels).
fn value_of(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

async fn parked_rows(db: &RelayDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox_parked")
        .fetch_one(&db.admin)
        .await
        .expect("count outbox_parked")
}

/// Subjects the registry holds for topics of `prefix`.
async fn subjects_of(stack: &Stack, prefix: &str) -> Vec<String> {
    let all: Vec<String> = reqwest::get(format!("{}/subjects", stack.registry.url))
        .await
        .expect("GET /subjects")
        .json()
        .await
        .expect("subjects");
    all.into_iter().filter(|s| s.starts_with(prefix)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_nothing_until_the_schemas_are_registered_then_everything_in_order() {
    const AGGREGATES: usize = 40;
    const VERSIONS: usize = 4;
    let stack = Stack::from_env().await;
    let db = RelayDb::create_unregistered(&stack).await;
    let chain = xref_chain(VERSIONS);
    let ids: Vec<String> = (0..AGGREGATES).map(|i| format!("x-{i}")).collect();
    append_events(&db.admin, &ids, &chain, 0, 40).await;
    let rows = (AGGREGATES * VERSIONS) as i64;
    // The first row's schema is the one the relay finds missing.
    let catalog = Catalog::embedded().unwrap();
    let first = catalog
        .get(&chain[0].event_type, chain[0].schema_version as u32)
        .unwrap();
    let subject = subject_for(&db.topic(), &first.fullname);
    // Every registry call of the relay goes through an open gate that records it.
    let gate = RegistryGate::start(&stack.registry.url, "relay", "s3cret").await;
    let relay = db
        .spawn_relay(&[
            ("SCHEMA_REGISTRY_URL", gate.url.as_str()),
            ("SCHEMA_REGISTRY_USERNAME", "relay"),
            ("SCHEMA_REGISTRY_PASSWORD", "s3cret"),
        ])
        .await;

    let (status, body) = eventually(
        "the relay reports the missing schema",
        Duration::from_secs(30),
        || async {
            let (status, body) = readyz(&relay).await;
            (body["checks"]["publishing"] != "ok").then_some((status, body))
        },
    )
    .await;
    assert_eq!(status, 503, "{body}");
    let reason = body["checks"]["publishing"].as_str().unwrap();
    assert!(
        reason.contains(&subject) && reason.contains("eventfold schemas register"),
        "readiness names the subject and the command: {reason}"
    );
    let series =
        format!("eventfold_relay_halted{{reason=\"schema_not_registered\",subject=\"{subject}\"}}");
    assert_eq!(
        value_of(&metrics(&relay).await, &series),
        Some(1.0),
        "{series}"
    );

    // Halted for several back-off rounds: every row is still in the outbox, none parked, none
    // published, and the relay never tried to register a schema.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(db.outbox_len().await, rows, "rows left the outbox");
    assert_eq!(parked_rows(&db).await, 0, "a missing schema parked rows");
    let text = metrics(&relay).await;
    assert_eq!(
        value_of(&text, "eventfold_relay_published_total"),
        Some(0.0)
    );
    assert!(
        value_of(&text, "eventfold_relay_errors_total{stage=\"halted\"}").unwrap_or(0.0) >= 2.0,
        "the halted batch is retried"
    );
    assert_eq!(subjects_of(&stack, &db.prefix).await, Vec::<String>::new());
    let lookups = gate.seen();
    assert!(
        lookups
            .iter()
            .any(|s| s.method == "POST" && s.path.ends_with(&subject) && s.status == 404),
        "the relay looked the subject up: {lookups:?}"
    );
    assert!(
        !lookups.iter().any(|s| s.path.ends_with("/versions")),
        "the relay tried to register: {lookups:?}"
    );

    // `eventfold schemas register` for this prefix: the relay resumes by itself.
    stack.register_schemas(&db.prefix).await;
    let (records, duplicates) = consume_complete(&stack, &db.topic(), AGGREGATES, VERSIONS).await;
    assert_eq!(duplicates, 0, "nothing was sent before the halt");
    assert_eq!(records.len(), AGGREGATES * VERSIONS);
    eventually("outbox drained", Duration::from_secs(30), || async {
        (db.outbox_len().await == 0).then_some(())
    })
    .await;
    assert_eq!(parked_rows(&db).await, 0);
    let (status, body) = eventually("ready again", Duration::from_secs(30), || async {
        let (status, body) = readyz(&relay).await;
        (status == 200).then_some((status, body))
    })
    .await;
    assert_eq!(body["checks"]["publishing"], "ok", "{status}: {body}");
    assert_eq!(
        value_of(&metrics(&relay).await, &series),
        None,
        "the halt gauge cleared"
    );
    assert!(!gate.seen().iter().any(|s| s.path.ends_with("/versions")));
    relay.stop().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_registry_credentials_halt_the_relay_with_the_reason_until_accepted() {
    const AGGREGATES: usize = 20;
    const VERSIONS: usize = 3;
    let stack = Stack::from_env().await;
    let db = RelayDb::create(&stack).await;
    let ids: Vec<String> = (0..AGGREGATES).map(|i| format!("x-{i}")).collect();
    append_events(&db.admin, &ids, &xref_chain(VERSIONS), 0, 20).await;
    let rows = (AGGREGATES * VERSIONS) as i64;
    // The registry expects another password than the relay's.
    let gate = RegistryGate::start(&stack.registry.url, "relay", "rotated").await;
    let relay = db
        .spawn_relay(&[
            ("SCHEMA_REGISTRY_URL", gate.url.as_str()),
            ("SCHEMA_REGISTRY_USERNAME", "relay"),
            ("SCHEMA_REGISTRY_PASSWORD", "s3cret"),
        ])
        .await;

    for (status, code) in [(401u16, "401"), (403, "403")] {
        if status == 403 {
            // Right password now, but the account may not read the subject.
            gate.require("relay", "s3cret");
            gate.deny(true);
        }
        let reason = eventually("the relay halts", Duration::from_secs(30), || async {
            let (_, body) = readyz(&relay).await;
            let reason = body["checks"]["publishing"].as_str()?.to_owned();
            reason.contains(&format!("with {code}")).then_some(reason)
        })
        .await;
        assert!(
            reason.contains("refused the credentials")
                && reason.contains("SCHEMA_REGISTRY_USERNAME"),
            "{reason}"
        );
        assert_eq!(readyz(&relay).await.0, 503);
        let text = metrics(&relay).await;
        assert!(
            text.lines().any(|l| l
                .starts_with("eventfold_relay_halted{reason=\"registry_unauthorized\"")
                && l.ends_with(" 1")),
            "{text}"
        );
        assert_eq!(
            db.outbox_len().await,
            rows,
            "rows left the outbox ({status})"
        );
        assert_eq!(
            parked_rows(&db).await,
            0,
            "refused credentials parked rows ({status})"
        );
    }
    assert!(
        gate.seen().iter().any(|s| s.status == 401) && gate.seen().iter().any(|s| s.status == 403)
    );

    // Access granted: everything is published, in order, and the halt clears.
    gate.deny(false);
    let (records, _) = consume_complete(&stack, &db.topic(), AGGREGATES, VERSIONS).await;
    assert!(records.len() >= AGGREGATES * VERSIONS);
    eventually("ready again", Duration::from_secs(30), || async {
        (readyz(&relay).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(parked_rows(&db).await, 0);
    assert!(
        !metrics(&relay)
            .await
            .lines()
            .any(|l| l.starts_with("eventfold_relay_halted{")),
        "the halt gauge cleared"
    );
    relay.stop().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_registry_credentials_halt_the_projector_with_the_reason_until_accepted() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let ids: Vec<String> = (0..30).map(|i| format!("o-{i}")).collect();
    p.append("Opportunity", &ids, &opportunity_chain(3, "gated"))
        .await;
    let relay = p.db.spawn_relay(&[]).await;
    // The projector reads schemas through a registry that expects another password.
    let gate = RegistryGate::start(&stack.registry.url, "projector", "rotated").await;
    let env = Env::from_pairs(p.projector_env(&[
        ("PROJECTOR_READ_MODELS", "opportunities"),
        ("SCHEMA_REGISTRY_URL", gate.url.as_str()),
        ("SCHEMA_REGISTRY_USERNAME", "projector"),
        ("SCHEMA_REGISTRY_PASSWORD", "s3cret"),
    ]));
    let settings = projector::Settings::from_env(&env).expect("projector settings");
    let projector = spawn(
        projector::SERVICE,
        projector::build(settings).await.expect("start projector"),
    );

    let reason = eventually("the projector halts", Duration::from_secs(60), || async {
        let (_, body) = readyz(&projector).await;
        let reason = body["checks"]["halted"].as_str()?.to_owned();
        reason.contains("with 401").then_some(reason)
    })
    .await;
    assert!(
        reason.contains("halted opportunities: schema registry refused the credentials"),
        "{reason}"
    );
    assert_eq!(readyz(&projector).await.0, 503);
    let halted = "eventfold_projector_halted{read_model=\"opportunities\"}";
    assert_eq!(value_of(&metrics(&projector).await, halted), Some(1.0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        p.parked("opportunities").await,
        Default::default(),
        "nothing is parked"
    );

    // The operator fixes the credentials (here: the registry accepts the projector's again).
    gate.require("projector", "s3cret");
    p.caught_up("opportunities", Duration::from_secs(60)).await;
    assert_eq!(p.parked("opportunities").await, Default::default());
    eventually("the halt clears", Duration::from_secs(30), || async {
        let text = metrics(&projector).await;
        (value_of(&text, halted) == Some(0.0)).then_some(())
    })
    .await;
    let audit = p.audit("opportunities").await;
    assert!(
        audit.missing.is_empty() && audit.unexpected.is_empty(),
        "{audit:?}"
    );
    projector.stop().await;
    relay.stop().await;
    p.drop_all().await;
}
