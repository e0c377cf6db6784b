//! `eventfold replay` against the real PostgreSQL: each filter alone (tenant, aggregate, event
//! type, time, version) rebuilds exactly the streams and versions it selects into the live
//! generation; a checkpointed replay stopped after its first batch resumes after it and ends as
//! a full replay would (audit clean), and replaying applied events is a no-op; the admin API
//! runs the same and names a bad field; the CLI as the projector's role.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventfold_cli::cli::{Cli, Command, ReplayArgs};
use eventfold_runtime::{Env, Shutdown};
use eventfold_tests::Stack;
use eventfold_tests::pipeline::{Pipeline, opportunity_chain};
use eventfold_tests::relay::append_events_as;
use projector::projection::Projection;
use projector::replay::{ReplayRequest, ReplaySummary, replay};
use serde_json::{Value, json};
use sqlx::Row;

const B: &str = "tenant-b";

/// Ten `default` Opportunities with versions 1-2 recorded before the returned time and 3-4
/// after it, and five of tenant B (same ids) with versions 1-2 before it.
async fn seed(p: &Pipeline) -> DateTime<Utc> {
    let ids: Vec<String> = (0..10).map(|i| format!("d-{i}")).collect();
    let chain = opportunity_chain(4, "replayed");
    append_events_as(
        &p.db.admin,
        "default",
        "Opportunity",
        &ids,
        &chain[..2],
        0,
        100,
    )
    .await;
    append_events_as(
        &p.db.admin,
        B,
        "Opportunity",
        &ids[..5],
        &chain[..2],
        0,
        100,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let t: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&p.db.admin)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    append_events_as(
        &p.db.admin,
        "default",
        "Opportunity",
        &ids,
        &chain[2..],
        2,
        100,
    )
    .await;
    t
}

async fn run(p: &Pipeline, req: &ReplayRequest) -> ReplaySummary {
    let model = Pipeline::model("opportunities");
    replay(&model, &p.stores(), req, &mut |_| {}, &Shutdown::new())
        .await
        .unwrap_or_else(|e| panic!("replay {req:?}: {e}"))
}

/// The live generation's schema.
async fn live_schema(p: &Pipeline) -> String {
    let model: Arc<dyn Projection> = Pipeline::model("opportunities");
    let s = projector::state::ensure(&p.db.admin, &*model)
        .await
        .unwrap();
    projector::target::pg_schema("opportunities", s.generation)
}

/// Applied version per (tenant, aggregate id), checked against the rows themselves.
async fn applied(p: &Pipeline) -> BTreeMap<(String, String), i64> {
    let schema = live_schema(p).await;
    let versions: BTreeMap<(String, String), i64> = sqlx::query(&format!(
        "SELECT tenant, aggregate_id, last_version FROM {schema}._versions WHERE last_version > 0"
    ))
    .fetch_all(&p.db.admin)
    .await
    .unwrap()
    .into_iter()
    .map(|r| ((r.get(0), r.get(1)), r.get(2)))
    .collect();
    let rows: BTreeMap<(String, String), i64> = sqlx::query(&format!(
        "SELECT tenant, aggregate_id, last_version FROM {schema}.opportunities"
    ))
    .fetch_all(&p.db.admin)
    .await
    .unwrap()
    .into_iter()
    .map(|r| ((r.get(0), r.get(1)), r.get(2)))
    .collect();
    assert_eq!(versions, rows, "version guard and rows disagree");
    versions
}

/// Empties the live generation (rows and version guard).
async fn wipe(p: &Pipeline) {
    let schema = live_schema(p).await;
    sqlx::query(&format!(
        "TRUNCATE {schema}.opportunities, {schema}.users, {schema}._versions"
    ))
    .execute(&p.db.admin)
    .await
    .unwrap();
}

/// `{(tenant, id): version}` for ids `d-<i>` of `range`.
fn streams(
    tenant: &str,
    range: impl IntoIterator<Item = usize>,
    v: i64,
) -> BTreeMap<(String, String), i64> {
    range
        .into_iter()
        .map(|i| ((tenant.to_owned(), format!("d-{i}")), v))
        .collect()
}

fn with(
    a: BTreeMap<(String, String), i64>,
    b: BTreeMap<(String, String), i64>,
) -> BTreeMap<(String, String), i64> {
    a.into_iter().chain(b).collect()
}

#[track_caller]
fn assert_clean(report: &projector::rebuild::AuditReport) {
    assert!(report.is_clean(), "audit: {report:#?}");
    assert!(report.expected_rows > 0, "audit compared nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_filter_alone_rebuilds_exactly_the_events_it_selects() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let t = seed(&p).await;
    let created = opportunity_chain(1, "x")[0].event_type.clone();

    let all = run(&p, &ReplayRequest::default()).await;
    assert_eq!(
        (all.matched, all.applied, all.skipped),
        (50, 50, 0),
        "{all:?}"
    );
    let full = with(streams("default", 0..10, 4), streams(B, 0..5, 2));
    assert_eq!(applied(&p).await, full);

    // Rows and guard of two aggregates deleted: an unfiltered replay rebuilds those, skips the
    // rest (the version guard), and leaves the read model equal to a from-scratch replay.
    let schema = live_schema(&p).await;
    for table in ["opportunities", "_versions"] {
        sqlx::query(&format!(
            "DELETE FROM {schema}.{table} WHERE tenant = 'default' AND aggregate_id IN ('d-2', 'd-5')"
        ))
        .execute(&p.db.admin)
        .await
        .unwrap();
    }
    let again = run(&p, &ReplayRequest::default()).await;
    assert_eq!(
        (again.matched, again.applied, again.skipped),
        (50, 8, 42),
        "{again:?}"
    );
    assert_eq!(applied(&p).await, full);
    assert_clean(&p.audit("opportunities").await);

    // Each filter alone, into an empty live generation; (request, events matched, gap-filled
    // versions, the streams and versions expected afterwards).
    let cases = [
        (
            ReplayRequest {
                tenant: Some(B.into()),
                ..Default::default()
            },
            10,
            0,
            streams(B, 0..5, 2),
        ),
        (
            ReplayRequest {
                aggregates: vec!["d-1".into(), "d-7".into()],
                ..Default::default()
            },
            4 + 2 + 4,
            0,
            with(streams("default", [1, 7], 4), streams(B, [1], 2)),
        ),
        (
            ReplayRequest {
                types: vec![created],
                ..Default::default()
            },
            15,
            0,
            with(streams("default", 0..10, 1), streams(B, 0..5, 1)),
        ),
        (
            ReplayRequest {
                to_version: Some(3),
                ..Default::default()
            },
            30 + 10,
            0,
            with(streams("default", 0..10, 3), streams(B, 0..5, 2)),
        ),
        (
            ReplayRequest {
                to: Some(t),
                ..Default::default()
            },
            20 + 10,
            0,
            with(streams("default", 0..10, 2), streams(B, 0..5, 2)),
        ),
        // Versions 3-4 only: an event is applied only after its predecessor, so versions 1-2
        // come first from the event store (gap-filled), as for a record missing from Kafka.
        (
            ReplayRequest {
                from: Some(t),
                ..Default::default()
            },
            20,
            20,
            streams("default", 0..10, 4),
        ),
    ];
    for (req, matched, gap_filled, expected) in cases {
        wipe(&p).await;
        let s = run(&p, &req).await;
        assert_eq!(
            (s.matched, s.gap_filled, s.skipped, s.parked),
            (matched, gap_filled, 0, 0),
            "{req:?}: {s:?}"
        );
        assert_eq!(s.applied, matched + gap_filled, "{req:?}: {s:?}");
        assert_eq!(applied(&p).await, expected, "{req:?}");
    }
    p.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpointed_replay_stopped_after_one_batch_resumes_and_ends_as_a_full_replay() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let ids: Vec<String> = (0..30).map(|i| format!("c-{i}")).collect();
    p.append("Opportunity", &ids, &opportunity_chain(4, "checkpointed"))
        .await;
    let first = ReplayRequest {
        batch: 10,
        checkpoint: Some("nightly".into()),
        max_batches: Some(1),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let model = Pipeline::model("opportunities");
    let s1 = replay(
        &model,
        &p.stores(),
        &first,
        &mut |s| seen.push(s.batches),
        &Shutdown::new(),
    )
    .await
    .unwrap();
    assert_eq!(seen, [1]);
    assert_eq!(
        (s1.matched, s1.applied, s1.complete),
        (10, 10, false),
        "{s1:?}"
    );
    assert_eq!(s1.resumed_after, None);
    let tenth: i64 =
        sqlx::query_scalar("SELECT position FROM events ORDER BY position OFFSET 9 LIMIT 1")
            .fetch_one(&p.db.admin)
            .await
            .unwrap();
    assert_eq!(s1.last_position, Some(tenth));
    let stored: i64 = sqlx::query_scalar(
        "SELECT \"offset\" FROM projection_checkpoints \
         WHERE projection = 'replay:opportunities:nightly' AND partition = -1",
    )
    .fetch_one(&p.db.admin)
    .await
    .unwrap();
    assert_eq!(stored, tenth);

    // The rerun with the same name starts after the checkpoint: nothing read twice.
    let rest = ReplayRequest {
        max_batches: None,
        ..first.clone()
    };
    let s2 = run(&p, &rest).await;
    assert_eq!(s2.resumed_after, Some(tenth));
    assert_eq!(
        (s2.matched, s2.applied, s2.skipped, s2.batches, s2.complete),
        (110, 110, 0, 11, true),
        "{s2:?}"
    );
    assert_eq!(applied(&p).await.len(), 30);
    assert!(applied(&p).await.values().all(|v| *v == 4));
    assert_clean(&p.audit("opportunities").await);
    // Done: the same name again reads nothing new.
    let s3 = run(&p, &rest).await;
    assert_eq!((s3.matched, s3.applied), (0, 0), "{s3:?}");

    // A crash after a batch but before its checkpoint: the batch is read again and the version
    // guard skips it; and a full replay of applied events is a no-op.
    sqlx::query(
        "UPDATE projection_checkpoints SET \"offset\" = $1 \
         WHERE projection = 'replay:opportunities:nightly'",
    )
    .bind(tenth)
    .execute(&p.db.admin)
    .await
    .unwrap();
    let s4 = run(&p, &rest).await;
    assert_eq!(
        (s4.matched, s4.applied, s4.skipped),
        (110, 0, 110),
        "{s4:?}"
    );
    let full = run(&p, &ReplayRequest::default()).await;
    assert_eq!((full.matched, full.applied, full.skipped), (120, 0, 120));
    assert_clean(&p.audit("opportunities").await);

    // Every run is recorded for the health document: the stopped one as incomplete.
    let runs: Vec<(String, i64, bool)> = sqlx::query_as(
        "SELECT kind, events, complete FROM replay_runs WHERE read_model = 'opportunities' ORDER BY id",
    )
    .fetch_all(&p.db.admin)
    .await
    .unwrap();
    let events: Vec<i64> = [&s1, &s2, &s3, &s4, &full]
        .iter()
        .map(|s| s.matched as i64)
        .collect();
    assert_eq!(
        runs.iter().map(|r| r.1).collect::<Vec<_>>(),
        events,
        "{runs:?}"
    );
    assert!(runs.iter().all(|r| r.0 == "replay"));
    assert_eq!(
        runs.iter().map(|r| r.2).collect::<Vec<_>>(),
        [false, true, true, true, true]
    );
    p.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_admin_api_replay_and_refuse_bad_requests() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let t = seed(&p).await;

    // The CLI as the projector's login role (it writes projection_checkpoints and the read model).
    let args = ReplayArgs {
        read_model: "opportunities".into(),
        types: vec![],
        aggregates: vec!["d-3".into()],
        tenant: Some("default".into()),
        from: None,
        to: None,
        to_version: None,
        batch: 1,
        checkpoint: Some("cli".into()),
        max_batches: None,
    };
    let env = Env::from_pairs(p.projector_env(&[]));
    let out = eventfold_cli::cli::run(
        Cli {
            command: Command::Replay(args),
        },
        &env,
    )
    .await
    .expect("runs");
    assert!(out.ok, "{out:?}");
    let summary: Value = serde_json::from_str(&out.out[0]).unwrap();
    assert_eq!(summary["matched"], 4, "{summary}");
    assert_eq!(summary["applied"], 4, "{summary}");
    assert_eq!(summary["batches"], 4, "{summary}");
    assert_eq!(summary["complete"], true, "{summary}");

    // The admin API on an in-process admin router.
    let registry = Arc::new(projector::models::registry());
    let app = projector::admin::router(registry, p.stores());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| http.post(format!("{url}{path}")).json(&body).send();
    let r = post(
        "/v1/read-models/opportunities/replay",
        json!({"tenant": B, "to": t, "batch": 3}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    assert_eq!(
        (s["matched"].as_i64(), s["applied"].as_i64()),
        (Some(10), Some(10)),
        "{s}"
    );
    let expected = with(streams("default", [3], 4), streams(B, 0..5, 2));
    assert_eq!(applied(&p).await, expected);

    for (body, pointer) in [
        (json!({"to_version": 0}), Some("/to_version")),
        (json!({"types": ["Nope"]}), Some("/types")),
        (json!({"tenant": "a b"}), Some("/tenant")),
        (json!({"from": t, "to": t}), Some("/to")),
        (json!({"batch": 0}), Some("/batch")),
        (json!({"typo": 1}), None),
        (json!({"from": "yesterday"}), None),
    ] {
        let r = post("/v1/read-models/opportunities/replay", body.clone())
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["pointer"].as_str(), pointer, "{problem}");
    }
    let r = post("/v1/read-models/nope/replay", json!({}))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(applied(&p).await, expected, "a refused request wrote");

    // A projector publishes the latest replay's duration as a metric.
    let projector = p.projector("metrics", &[("PROJECTOR_READ_MODELS", "opportunities")]);
    let series =
        "eventfold_projector_last_replay_seconds{kind=\"replay\",read_model=\"opportunities\"}";
    let seconds = eventfold_tests::eventually(
        "the replay duration metric",
        std::time::Duration::from_secs(60),
        || {
            let (http, url) = (http.clone(), projector.admin_url.clone());
            async move {
                let text = http
                    .get(format!("{url}/metrics"))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                eventfold_tests::relay::metric_value(&text, series)
            }
        },
    )
    .await;
    let recorded: f64 = sqlx::query_scalar(
        "SELECT seconds FROM replay_runs WHERE read_model = 'opportunities' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&p.db.admin)
    .await
    .unwrap();
    assert!((seconds - recorded).abs() < 1e-9, "{seconds} vs {recorded}");
    projector.stop().await;
    p.drop_all().await;
}
