//! Event store statistics, the health document and an aggregate's state machine with its current
//! state, through the command-service HTTP API against the real PostgreSQL: the statistics agree
//! with counts taken by SQL over `events`, stay within the caller's tenant and follow new appends.

use std::collections::BTreeMap;
use std::time::Duration;

use eventfold_auth::scope;
use eventfold_tests::xref::{discover_body, validate_body};
use eventfold_tests::{Spawned, Stack, auth, eventually, unique};
use reqwest::Client;
use serde_json::{Value, json};
use sqlx::PgPool;

/// A tenant's client on a running command service.
struct Caller {
    http: Client,
    url: String,
}

impl Caller {
    fn of(tenant: &str, service: &Spawned) -> Self {
        Self {
            http: auth::client(tenant, &[scope::COMMANDS_WRITE, scope::EVENTS_READ]),
            url: service.url.clone(),
        }
    }

    async fn command(&self, aggregate_type: &str, id: &str, command: &str, body: Value) {
        let r = self
            .http
            .post(format!(
                "{}/v1/{aggregate_type}/{id}/commands/{command}",
                self.url
            ))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{command}: {}", r.text().await.unwrap());
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `n` times an opportunity, a user and a twice validated cross-reference (ids numbered from
    /// `from`): five events of four types, three aggregate types.
    async fn append_a_mix(&self, from: usize, n: usize) {
        for i in from..from + n {
            let opp = format!("opp-{i}");
            self.command(
                "Opportunity",
                &opp,
                "CreateOpportunity",
                json!({"opportunity_id": opp, "title": "t", "ai_solution_type": "nlp",
                       "market_size_estimate": 1000}),
            )
            .await;
            let user = format!("user-{i}");
            self.command(
                "User",
                &user,
                "RegisterUser",
                json!({"user_id": user, "email": format!("{i}@example.org")}),
            )
            .await;
            let xref = format!("xref-{i}");
            self.command(
                "CrossReference",
                &xref,
                "DiscoverCrossReference",
                discover_body(),
            )
            .await;
            for r in ["one", "two"] {
                self.command(
                    "CrossReference",
                    &xref,
                    "ValidateCrossReference",
                    validate_body(r),
                )
                .await;
            }
        }
    }
}

/// The statistics of `tenant` counted by SQL over `events`, in the shape of `/v1/stats`.
async fn counted(db: &PgPool, tenant: &str) -> Value {
    let by = |column: &str| {
        let sql =
            format!("SELECT {column}, count(*) FROM events WHERE tenant = $1 GROUP BY {column}");
        let db = db.clone();
        async move {
            let rows: Vec<(String, i64)> = sqlx::query_as(&sql)
                .bind(tenant)
                .fetch_all(&db)
                .await
                .unwrap();
            rows.into_iter().collect::<BTreeMap<_, _>>()
        }
    };
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE tenant = $1")
        .bind(tenant)
        .fetch_one(db)
        .await
        .unwrap();
    json!({
        "total_events": total,
        "by_event_type": by("event_type").await,
        "by_category": by("category").await,
        "by_aggregate_type": by("aggregate_type").await,
    })
}

/// `/v1/stats` of `caller` once its total reaches `total` (an event of a transaction that began
/// before a still running one is folded in once that one ends).
async fn stats_at(caller: &Caller, total: i64) -> Value {
    eventually(
        "the statistics reach the appended total",
        Duration::from_secs(60),
        || async {
            let (status, body) = caller.get("/v1/stats").await;
            assert_eq!(status, 200, "{body}");
            (body["total_events"] == total).then_some(body)
        },
    )
    .await
}

#[track_caller]
fn assert_counts_agree(stats: &Value, sql: &Value) {
    for key in [
        "total_events",
        "by_event_type",
        "by_category",
        "by_aggregate_type",
    ] {
        assert_eq!(stats[key], sql[key], "{key}: {stats}");
    }
}

#[tokio::test]
async fn statistics_agree_with_sql_over_events_per_tenant_and_follow_new_appends() {
    let stack = Stack::from_env().await;
    let db = stack.admin_pool().await;
    // A long interval: what the test sees is folded in by the stats calls themselves.
    let service = stack
        .spawn_command_service(&[
            ("EVENT_STATS_INTERVAL_MS", "600000"),
            ("EVENT_STATS_BATCH", "7"),
        ])
        .await;
    let (ta, tb) = (unique("stats-a"), unique("stats-b"));
    let (a, b) = (Caller::of(&ta, &service), Caller::of(&tb, &service));
    a.append_a_mix(0, 3).await;
    b.append_a_mix(0, 1).await;

    let sql = counted(&db, &ta).await;
    assert_eq!(sql["total_events"], 15);
    let stats = stats_at(&a, 15).await;
    assert_counts_agree(&stats, &sql);
    assert_eq!(stats["tenant"], ta.as_str());
    assert_eq!(stats["by_aggregate_type"].as_object().unwrap().len(), 3);
    let minutes = stats["events_per_minute"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let in_hour: i64 = minutes.iter().map(|m| m["count"].as_i64().unwrap()).sum();
    assert_eq!(in_hour, 15, "{stats}");
    let (first, last): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT min(recorded_at), max(recorded_at) FROM events WHERE tenant = $1")
            .bind(&ta)
            .fetch_one(&db)
            .await
            .unwrap();
    let at = |k: &str| {
        stats[k]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    assert_eq!((at("first_event_at"), at("last_event_at")), (first, last));

    // The second tenant sees its own counts only.
    let stats_b = stats_at(&b, 5).await;
    assert_counts_agree(&stats_b, &counted(&db, &tb).await);

    // More appends show on the next call.
    a.append_a_mix(3, 1).await;
    let stats = stats_at(&a, 20).await;
    assert_counts_agree(&stats, &counted(&db, &ta).await);
    assert_eq!(
        stats["by_event_type"]["CrossReferenceValidated"], 8,
        "{stats}"
    );

    // A tenant without events gets zeros, not another tenant's numbers.
    let (status, empty) = Caller::of(&unique("stats-none"), &service)
        .get("/v1/stats")
        .await;
    assert_eq!(status, 200);
    assert_eq!(empty["total_events"], 0);
    assert_eq!(empty["first_event_at"], Value::Null);

    // Only events:read may ask.
    let writer = auth::client(&ta, &[scope::COMMANDS_WRITE]);
    let r = writer
        .get(format!("{}/v1/stats", service.url))
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(status, 403, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn the_health_document_shows_recent_activity_upcasters_and_the_state_cache() {
    let stack = Stack::from_env().await;
    let service = stack.spawn_command_service(&[]).await;
    let tenant = unique("health");
    let caller = Caller::of(&tenant, &service);
    caller.append_a_mix(0, 1).await;
    let health = eventually("recent activity shows", Duration::from_secs(60), || async {
        let (status, body) = caller.get("/v1/health").await;
        assert_eq!(status, 200, "{body}");
        (body["recent_activity"]["events_last_hour"] == 5).then_some(body)
    })
    .await;
    assert_eq!(health["tenant"], tenant.as_str());
    assert!(
        health["recent_activity"]["events_current_minute"]
            .as_i64()
            .unwrap()
            <= 5
    );
    // The reference domain upcasts User and Opportunity events written at version 1.
    let upcasters = &health["upcasters"];
    assert!(upcasters["total"].as_u64().unwrap() >= 2, "{upcasters}");
    let user = upcasters["by_aggregate_type"]["User"].as_array().unwrap();
    assert!(
        user.iter()
            .any(|e| e["latest_version"].as_u64().unwrap() > 1
                && e["upcasts_from_versions"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(1))),
        "{upcasters}"
    );
    // Two validations after a discovery: the bus looked the cross-reference's state up three
    // times, the first a miss, the next two from its cache.
    let xref = &health["state_cache"]["by_aggregate_type"]["CrossReference"];
    assert!(xref["hits"].as_u64().unwrap() >= 2, "{xref}");
    assert!(xref["misses"].as_u64().unwrap() >= 1, "{xref}");
    let rate = health["state_cache"]["hit_rate"].as_f64().unwrap();
    assert!(rate > 0.0 && rate < 1.0, "{rate}");
    // The miss was hydrated from the events (no snapshot yet).
    assert!(
        xref["hydrated_from_events"].as_u64().unwrap() >= 1,
        "{xref}"
    );
    assert!(health["replays"]["recent"].is_array(), "{health}");
}

#[tokio::test]
async fn a_restarted_command_service_hydrates_from_snapshots_and_says_so_in_health() {
    let stack = Stack::from_env().await;
    // A snapshot every 2 events: the cross-reference's third event leaves one at version 2.
    let first = stack
        .spawn_command_service(&[("SNAPSHOT_EVERY", "2")])
        .await;
    let tenant = unique("snap");
    Caller::of(&tenant, &first).append_a_mix(0, 1).await;
    eventually("a snapshot written", Duration::from_secs(30), || async {
        let (_, body) = Caller::of(&tenant, &first).get("/v1/health").await;
        let xref = &body["state_cache"]["by_aggregate_type"]["CrossReference"];
        (xref["snapshots_written"].as_u64().unwrap_or(0) >= 1).then_some(())
    })
    .await;
    first.stop().await;
    // A fresh process has an empty cache: its first lookup is hydrated from the snapshot.
    let second = stack
        .spawn_command_service(&[("SNAPSHOT_EVERY", "2")])
        .await;
    let caller = Caller::of(&tenant, &second);
    caller
        .command(
            "CrossReference",
            "xref-0",
            "ValidateCrossReference",
            json!({"validator_agent": "theology", "validation_result": "approved", "reasoning": "three"}),
        )
        .await;
    let (status, health) = caller.get("/v1/health").await;
    assert_eq!(status, 200, "{health}");
    let xref = &health["state_cache"]["by_aggregate_type"]["CrossReference"];
    assert_eq!(xref["hydrated_from_snapshot"], 1, "{xref}");
    assert_eq!(xref["snapshot_hit_rate"], 1.0, "{xref}");
    assert_eq!(health["state_cache"]["snapshot_hit_rate"], 1.0, "{health}");
    second.stop().await;
}

#[tokio::test]
async fn an_aggregates_state_machine_highlights_its_current_state_within_its_tenant() {
    let stack = Stack::from_env().await;
    let service = stack.spawn_command_service(&[]).await;
    let (owner, other) = (unique("sm-a"), unique("sm-b"));
    let caller = Caller::of(&owner, &service);
    caller
        .command(
            "CrossReference",
            "x1",
            "DiscoverCrossReference",
            discover_body(),
        )
        .await;
    let (status, first) = caller.get("/v1/CrossReference/x1/state-machine").await;
    assert_eq!(status, 200, "{first}");
    let (_, state) = caller.get("/v1/CrossReference/x1").await;
    assert_eq!(first["current_state"], state["state_name"]);
    assert_eq!(first["version"], 1);
    let mermaid = first["mermaid"].as_str().unwrap();
    assert!(mermaid.contains("stateDiagram-v2"), "{mermaid}");
    let current = first["current_state"].as_str().unwrap();
    assert!(
        mermaid.contains(&format!("class {current} current")),
        "{mermaid}"
    );

    caller
        .command(
            "CrossReference",
            "x1",
            "ValidateCrossReference",
            validate_body("why"),
        )
        .await;
    let (_, second) = caller.get("/v1/CrossReference/x1/state-machine").await;
    let (_, state) = caller.get("/v1/CrossReference/x1").await;
    assert_eq!(second["current_state"], state["state_name"]);
    assert_eq!(second["version"], 2);

    // Another tenant's aggregate, an unused id and an unknown type are all 404s.
    let (status, p) = Caller::of(&other, &service)
        .get("/v1/CrossReference/x1/state-machine")
        .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (404, Some("aggregate_not_found"))
    );
    let (status, p) = caller.get("/v1/CrossReference/nope/state-machine").await;
    assert_eq!(
        (status, p["code"].as_str()),
        (404, Some("aggregate_not_found"))
    );
    let (status, p) = caller.get("/v1/Nope/x1/state-machine").await;
    assert_eq!(
        (status, p["code"].as_str()),
        (404, Some("unknown_aggregate_type"))
    );
}
