//! The command-service HTTP API against the real PostgreSQL, logged in as the writer role: the
//! curl tour (create, validate twice, read at a version and as of a time, history, correlation,
//! feed), idempotency, and every bad-input row of RELIABILITY.md ("a rejected command writes
//! nothing; no input reaches a 500").

use std::time::Duration;

use eventfold_tests::xref::{discover_body, validate_body};
use eventfold_tests::{Spawned, Stack, unique};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

struct Api {
    http: Client,
    url: String,
    _service: Spawned,
}

impl Api {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let service = Stack::from_env().await.spawn_command_service(extra).await;
        Self {
            http: eventfold_tests::auth::operator(),
            url: service.url.clone(),
            _service: service,
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Response {
        self.http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Response {
        self.http
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    async fn event_count(&self, id: &str) -> usize {
        let r = self.get(&format!("/v1/CrossReference/{id}/events")).await;
        if r.status() == 404 {
            return 0;
        }
        let body: Value = r.json().await.unwrap();
        body["events"].as_array().unwrap().len()
    }
}

fn cmd(id: &str, command: &str) -> String {
    format!("/v1/CrossReference/{id}/commands/{command}")
}

/// Asserts a problem+json answer with `status` and `code`; returns its body.
async fn problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "content type"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string());
    body
}

#[tokio::test]
async fn the_tour_creates_validates_twice_and_reads_versions_times_history_and_feeds() {
    let api = Api::start(&[]).await;
    let id = format!("GEN.1.1:JHN.1.1:{}", unique("tour"));
    let correlation = uuid::Uuid::new_v4();
    let created: Value = api
        .http
        .post(format!("{}{}", api.url, cmd(&id, "DiscoverCrossReference")))
        .header("x-correlation-id", correlation.to_string())
        .header("x-actor", "agent:discovery")
        .json(&discover_body())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["version"], 1, "{created}");
    assert_eq!(created["correlation_id"], correlation.to_string());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for (n, result) in [(2, "approved"), (3, "approved")] {
        let mut body = validate_body("creation parallel");
        body["validation_result"] = json!(result);
        let r = api
            .http
            .post(format!("{}{}", api.url, cmd(&id, "ValidateCrossReference")))
            .header("x-correlation-id", correlation.to_string())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["version"], n);
    }

    let now = api.get_json(&format!("/v1/CrossReference/{id}")).await;
    assert_eq!(
        (now["version"].clone(), now["state_name"].clone()),
        (json!(3), json!("Validated"))
    );
    let v1 = api
        .get_json(&format!("/v1/CrossReference/{id}?at_version=1"))
        .await;
    assert_eq!(
        (v1["version"].clone(), v1["state_name"].clone()),
        (json!(1), json!("Discovered"))
    );
    let as_of = api
        .http
        .get(format!("{}/v1/CrossReference/{id}", api.url))
        .query(&[("as_of", between.to_rfc3339())])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(as_of["version"], 1, "{as_of}");
    problem(
        api.get(&format!("/v1/CrossReference/{id}?at_version=9"))
            .await,
        404,
        "version_not_found",
    )
    .await;

    let page = api
        .get_json(&format!("/v1/CrossReference/{id}/events?limit=2"))
        .await;
    let versions: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect();
    assert_eq!(
        (versions, page["next_after_version"].clone()),
        (vec![1, 2], json!(2))
    );
    let rest = api
        .get_json(&format!("/v1/CrossReference/{id}/events?after_version=2"))
        .await;
    assert_eq!(rest["events"][0]["version"], 3);
    assert_eq!(rest["events"][0]["actor_kind"], "user");
    assert_eq!(rest["next_after_version"], Value::Null);

    let corr = api
        .get_json(&format!("/v1/correlations/{correlation}/events"))
        .await;
    assert_eq!(corr["events"].as_array().unwrap().len(), 3);
    assert_eq!(corr["events"][0]["actor_id"], "discovery");

    // The global feed, filtered by type, eventually contains our three events in order.
    let mut cursor = String::from("0-0");
    let mut ours = Vec::new();
    loop {
        let page = api
            .get_json(&format!(
                "/v1/events?after={cursor}&limit=1000&types=CrossReferenceDiscovered,CrossReferenceValidated"
            ))
            .await;
        let events = page["events"].as_array().unwrap();
        for e in events {
            if e["aggregate_id"] == id.as_str() {
                ours.push(e["version"].as_i64().unwrap());
            }
        }
        if events.is_empty() {
            break;
        }
        cursor = page["next"].as_str().unwrap().to_owned();
    }
    assert_eq!(ours, vec![1, 2, 3]);

    let types = api.get_json("/v1/types").await;
    assert!(types["aggregate_types"].as_array().unwrap().len() >= 4);
    let mermaid = api
        .get("/v1/types/CrossReference/state-machine")
        .await
        .text()
        .await
        .unwrap();
    assert!(mermaid.contains("stateDiagram-v2"), "{mermaid}");
    let openapi = api.get_json("/openapi.json").await;
    assert!(
        openapi["paths"]["/v1/CrossReference/{aggregate_id}/commands/ValidateCrossReference"]
            ["post"]
            .is_object()
    );
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_request() {
    let api = Api::start(&[]).await;
    let id = unique("idem");
    // Keys are scoped by tenant, not by aggregate: a fresh one per run.
    let key = unique("discover-once");
    let send = |key: String, body: Value| {
        let (http, url) = (
            api.http.clone(),
            format!("{}{}", api.url, cmd(&id, "DiscoverCrossReference")),
        );
        async move {
            http.post(url)
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let first = send(key.clone(), discover_body()).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let again = send(key.clone(), discover_body()).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["event_ids"], first["event_ids"]);
    assert_eq!(again["replayed"], true);
    let mut other = discover_body();
    other["initial_confidence"] = json!(0.9);
    problem(
        send(key.clone(), other).await,
        422,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(api.event_count(&id).await, 1);
}

#[tokio::test]
async fn of_two_commands_with_the_same_expected_version_exactly_one_wins() {
    let api = Api::start(&[]).await;
    let id = unique("race");
    assert_eq!(
        api.post(&cmd(&id, "DiscoverCrossReference"), &discover_body())
            .await
            .status(),
        200
    );
    let path = format!("{}?expected_version=1", cmd(&id, "ValidateCrossReference"));
    let (body_a, body_b) = (validate_body("a"), validate_body("b"));
    let (a, b) = tokio::join!(api.post(&path, &body_a), api.post(&path, &body_b));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    let loser = if a.status() == 409 { a } else { b };
    let body = problem(loser, 409, "version_conflict").await;
    assert_eq!(body["current_version"], 2);
    assert_eq!(api.event_count(&id).await, 2);
}

#[tokio::test]
async fn bad_bodies_get_400_413_or_415_and_write_nothing() {
    let api = Api::start(&[("COMMAND_BODY_LIMIT_BYTES", "4096")]).await;
    let id = unique("bad");
    assert_eq!(
        api.post(&cmd(&id, "DiscoverCrossReference"), &discover_body())
            .await
            .status(),
        200
    );
    let path = cmd(&id, "ValidateCrossReference");
    let json = "application/json";
    for (body, code) in [
        (&b"{\"validator_agent\": \"x\""[..], "malformed_json"),
        (b"{\"reasoning\": \"\\ud800\"}", "malformed_json"),
        (b"[1, 2]", "invalid_body"),
        (b"\"text\"", "invalid_body"),
    ] {
        problem(api.post_raw(&path, json, body.to_vec()).await, 400, code).await;
    }
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let deep = format!("{{\"validator_agent\": {deep}}}");
    problem(
        api.post_raw(&path, json, deep.into_bytes()).await,
        400,
        "malformed_json",
    )
    .await;

    let wrong_type = api
        .post(
            &path,
            &json!({"validator_agent": "x", "validation_result": "approved", "reasoning": 5}),
        )
        .await;
    assert_eq!(
        problem(wrong_type, 400, "invalid_field").await["pointer"],
        "/reasoning"
    );
    let missing = api
        .post(&path, &json!({"validator_agent": "x", "reasoning": "r"}))
        .await;
    let missing = problem(missing, 400, "invalid_field").await;
    assert!(
        missing["detail"]
            .as_str()
            .unwrap()
            .contains("validation_result"),
        "{missing}"
    );
    let mut unknown = validate_body("r");
    unknown["surprise"] = json!(1);
    problem(api.post(&path, &unknown).await, 400, "invalid_field").await;
    let overflow = api
        .post_raw(
            &cmd(&id, "RefineCrossReference"),
            json,
            br#"{"refinement_type": "x", "new_confidence": 1e400}"#.to_vec(),
        )
        .await;
    assert_eq!(overflow.status(), 400);

    problem(
        api.post_raw(
            &path,
            "text/plain",
            serde_json::to_vec(&validate_body("r")).unwrap(),
        )
        .await,
        415,
        "unsupported_media_type",
    )
    .await;
    problem(
        api.post_raw(&path, "application/x-www-form-urlencoded", b"a=1".to_vec())
            .await,
        415,
        "unsupported_media_type",
    )
    .await;
    let big = validate_body(&"x".repeat(5000));
    problem(api.post(&path, &big).await, 413, "payload_too_large").await;
    assert_eq!(api.event_count(&id).await, 1);
}

#[tokio::test]
async fn unknown_things_are_404_and_bad_headers_or_queries_400() {
    let api = Api::start(&[]).await;
    let id = unique("missing");
    problem(
        api.post(&format!("/v1/Nope/{id}/commands/X"), &json!({}))
            .await,
        404,
        "unknown_aggregate_type",
    )
    .await;
    problem(
        api.post(&cmd(&id, "Explode"), &json!({})).await,
        404,
        "unknown_command",
    )
    .await;
    problem(
        api.get(&format!("/v1/CrossReference/{id}")).await,
        404,
        "aggregate_not_found",
    )
    .await;
    problem(
        api.get(&format!("/v1/CrossReference/{id}/events")).await,
        404,
        "aggregate_not_found",
    )
    .await;
    problem(
        api.get(&format!("/v1/correlations/{}/events", uuid::Uuid::new_v4()))
            .await,
        404,
        "correlation_not_found",
    )
    .await;
    problem(
        api.get("/v1/correlations/not-a-uuid/events").await,
        400,
        "invalid_path",
    )
    .await;
    problem(api.get("/nowhere").await, 404, "no_route").await;
    problem(
        api.get(&format!("/v1/CrossReference/{id}?at_version=abc"))
            .await,
        400,
        "invalid_query",
    )
    .await;
    problem(
        api.get(&format!("/v1/CrossReference/{id}?as_of=yesterday"))
            .await,
        400,
        "invalid_query",
    )
    .await;
    problem(api.get("/v1/events?after=12").await, 400, "invalid_query").await;
    problem(api.get("/v1/events?limit=0").await, 400, "invalid_query").await;
    let long_id = "x".repeat(300);
    problem(
        api.post(&cmd(&long_id, "DiscoverCrossReference"), &discover_body())
            .await,
        400,
        "invalid_aggregate_id",
    )
    .await;

    for (name, value) in [
        ("x-correlation-id", "nope"),
        ("x-actor", "robot:r2"),
        ("traceparent", "garbage"),
        ("idempotency-key", ""),
    ] {
        let r = api
            .http
            .post(format!("{}{}", api.url, cmd(&id, "DiscoverCrossReference")))
            .header(name, value)
            .json(&discover_body())
            .send()
            .await
            .unwrap();
        problem(r, 400, "invalid_header").await;
    }
    let r = api
        .http
        .delete(format!("{}{}", api.url, cmd(&id, "DiscoverCrossReference")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(api.event_count(&id).await, 0);
}

#[tokio::test]
async fn domain_refusals_are_422_with_a_code_and_odd_text_is_stored_byte_exact() {
    let api = Api::start(&[]).await;
    let id = unique("domain");
    let transition = api
        .post(&cmd(&id, "ValidateCrossReference"), &validate_body("r"))
        .await;
    let body = problem(transition, 422, "invalid_transition").await;
    assert_eq!(
        (body["state"].clone(), body["command"].clone()),
        (json!("Initial"), json!("ValidateCrossReference"))
    );
    assert_eq!(
        api.post(&cmd(&id, "DiscoverCrossReference"), &discover_body())
            .await
            .status(),
        200
    );
    problem(
        api.post(
            &cmd(&id, "ValidateCrossReference"),
            &validate_body("nul \u{0} inside"),
        )
        .await,
        422,
        "nul_in_string",
    )
    .await;
    let mut out_of_range = discover_body();
    out_of_range["initial_confidence"] = json!(7.5);
    let other = unique("domain");
    let r = api
        .post(&cmd(&other, "DiscoverCrossReference"), &out_of_range)
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.json::<Value>().await.unwrap()["code"].is_string());
    let huge = validate_body(&"é".repeat(200_000));
    problem(
        api.post(&cmd(&id, "ValidateCrossReference"), &huge).await,
        422,
        "text_too_long",
    )
    .await;
    assert_eq!(api.event_count(&id).await, 1);
    assert_eq!(api.event_count(&other).await, 0);

    // Emoji, right-to-left text, both Unicode normal forms and injection text are kept verbatim.
    let odd = "🙂 שָׁלוֹם e\u{301} é '); DROP TABLE events; -- MATCH (n) DETACH DELETE n";
    assert_eq!(
        api.post(&cmd(&id, "ValidateCrossReference"), &validate_body(odd))
            .await
            .status(),
        200
    );
    let history = api
        .get_json(&format!("/v1/CrossReference/{id}/events?after_version=1"))
        .await;
    assert_eq!(history["events"][0]["payload"]["reasoning"], odd);
}

#[tokio::test]
async fn a_nul_in_a_read_is_a_400_not_a_store_error() {
    let api = Api::start(&[]).await;
    // PostgreSQL refuses a NUL in text; each of these reached it and answered 503 before.
    for path in [
        "/v1/CrossReference/a%00b",
        "/v1/CrossReference/a%00b/events",
        "/v1/CrossReference/a%00b/state-machine",
    ] {
        problem(api.get(path).await, 400, "invalid_aggregate_id").await;
    }
    problem(
        api.get("/v1/events?types=A%00B").await,
        400,
        "invalid_types",
    )
    .await;
    problem(
        api.get("/v1/events?actor=user:a%00b").await,
        400,
        "invalid_actor",
    )
    .await;
}

#[tokio::test]
async fn an_integral_float_fills_an_integer_field_and_empty_optional_headers_are_absent() {
    let api = Api::start(&[]).await;
    let id = unique("contract");
    let body = json!({"opportunity_id": id, "title": "Triage", "ai_solution_type": "nlp",
        "market_size_estimate": 5000000.0});
    let r = api
        .http
        .post(format!(
            "{}/v1/Opportunity/{id}/commands/CreateOpportunity",
            api.url
        ))
        .header("traceparent", "")
        .header("x-correlation-id", "")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = api
        .http
        .post(format!(
            "{}/v1/Opportunity/{id}/commands/ArchiveOpportunity?command_id={}",
            api.url,
            uuid::Uuid::now_v7()
        ))
        .header("idempotency-key", uuid::Uuid::now_v7().to_string())
        .json(&json!({"reason": "duplicate"}))
        .send()
        .await
        .unwrap();
    problem(r, 422, "command_id_mismatch").await;
}
