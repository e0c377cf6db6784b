//! The admin plane: each service serves `/readyz`, `/metrics` and its admin API on its admin
//! listener only (the public one answers them 404 like any unknown path), a parked-event replay
//! refuses an aggregate that is not blocked, and `eventfold cypher` cannot write to the graph.

use std::time::Duration;

use eventfold_cli::cli::{Cli, Command, Outcome, ParkedCommand};
use eventfold_runtime::Env;
use eventfold_tests::pipeline::{Pipeline, opportunity_chain};
use eventfold_tests::{Spawned, Stack, eventually, spawn, unique};
use reqwest::Client;
use serde_json::{Value, json};

/// The projector of `p` in-process (opportunities only).
async fn spawn_projector(p: &Pipeline) -> Spawned {
    let env = Env::from_pairs(p.projector_env(&[("PROJECTOR_READ_MODELS", "opportunities")]));
    let settings = projector::Settings::from_env(&env).expect("projector settings");
    spawn(
        projector::SERVICE,
        projector::build(settings).await.expect("start projector"),
    )
}

/// The relay of `p` in-process.
/// Status and body of `method path` at `base`.
async fn call(http: &Client, method: &str, base: &str, path: &str) -> (u16, Value, String) {
    let url = format!("{base}{path}");
    let request = match method {
        "GET" => http.get(&url),
        "POST" => http.post(&url).json(&json!({})),
        "DELETE" => http.delete(&url),
        other => panic!("method {other}"),
    };
    let resp = request.send().await.expect("request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        content_type,
    )
}

/// Asserts that `method path` at `base` is the 404 problem of an unknown route.
#[track_caller]
fn assert_no_route(what: &str, (status, body, content_type): &(u16, Value, String)) {
    assert_eq!(*status, 404, "{what}: {body}");
    assert_eq!(content_type, "application/problem+json", "{what}");
    assert_eq!(body["code"], "no_route", "{what}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_metrics_and_admin_routes_answer_on_the_admin_port_only() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let services = vec![
        p.command_service().await,
        p.db.spawn_relay(&[]).await,
        spawn_projector(&p).await,
    ];
    let http = eventfold_tests::auth::operator();
    for s in &services {
        let (public, admin) = (s.url.as_str(), s.admin_url.as_str());
        assert_ne!(public, admin, "{}", s.name);
        // Ops routes: /healthz on both, /readyz and /metrics on the admin port only.
        assert_eq!(call(&http, "GET", public, "/healthz").await.0, 200);
        assert_eq!(call(&http, "GET", admin, "/healthz").await.0, 200);
        eventually("ready on the admin port", Duration::from_secs(60), || {
            let http = http.clone();
            async move { (call(&http, "GET", admin, "/readyz").await.0 == 200).then_some(()) }
        })
        .await;
        let metrics = http
            .get(format!("{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains(&format!("eventfold_up{{service=\"{}\"}} 1", s.name)),
            "{}: {metrics}",
            s.name
        );
        for path in ["/readyz", "/metrics"] {
            let what = format!("{} public {path}", s.name);
            assert_no_route(&what, &call(&http, "GET", public, path).await);
        }
    }
    let [command, relay, projector] = &services[..] else {
        unreachable!("three services")
    };

    // The relay's parked-row API: admin port only.
    assert_eq!(
        call(&http, "GET", &relay.admin_url, "/v1/outbox/parked")
            .await
            .0,
        200
    );
    for (method, path) in [
        ("GET", "/v1/outbox/parked"),
        ("POST", "/v1/outbox/parked/release"),
        ("POST", "/v1/outbox/parked/discard"),
    ] {
        let what = format!("relay public {method} {path}");
        assert_no_route(&what, &call(&http, method, &relay.url, path).await);
    }

    // The projector's admin API: admin port only; its read API: public port only.
    let (status, models, _) = call(&http, "GET", &projector.admin_url, "/v1/read-models").await;
    assert_eq!(status, 200, "{models}");
    assert_eq!(
        models["read_models"][0]["name"], "opportunities",
        "{models}"
    );
    assert_eq!(
        call(
            &http,
            "GET",
            &projector.admin_url,
            "/v1/parked/opportunities"
        )
        .await
        .0,
        200
    );
    for (method, path) in [
        ("GET", "/v1/read-models"),
        ("GET", "/v1/parked/opportunities"),
        ("POST", "/v1/parked/opportunities/replay"),
        ("DELETE", "/v1/parked/opportunities/1"),
    ] {
        let what = format!("projector public {method} {path}");
        assert_no_route(&what, &call(&http, method, &projector.url, path).await);
    }
    // Nothing projected yet: the read API answers that the read model is not built (not 404).
    let read = call(&http, "GET", &projector.url, "/v1/read/opportunities").await;
    assert!(
        read.0 == 200 || read.1["code"] == "read_model_not_ready",
        "{} {}",
        read.0,
        read.1
    );
    let what = "projector admin GET /v1/read/opportunities";
    assert_no_route(
        what,
        &call(&http, "GET", &projector.admin_url, "/v1/read/opportunities").await,
    );

    // Admin APIs need a token with the admin scope; the read API one with read-models:read.
    let anonymous = Client::new();
    let no_admin = eventfold_tests::auth::client(
        "default",
        &[
            eventfold_auth::scope::COMMANDS_WRITE,
            eventfold_auth::scope::EVENTS_READ,
            eventfold_auth::scope::READ_MODELS_READ,
        ],
    );
    let no_reads = eventfold_tests::auth::client("default", &[eventfold_auth::scope::ADMIN]);
    for (base, path) in [
        (&relay.admin_url, "/v1/outbox/parked"),
        (&projector.admin_url, "/v1/read-models"),
        (&projector.admin_url, "/v1/parked/opportunities"),
    ] {
        let (status, body, _) = call(&anonymous, "GET", base, path).await;
        assert_eq!(
            (status, &body["code"]),
            (401, &json!("missing_token")),
            "{path}"
        );
        let (status, body, _) = call(&no_admin, "GET", base, path).await;
        assert_eq!(
            (status, &body["code"]),
            (403, &json!("insufficient_scope")),
            "{path}"
        );
    }
    let (status, body, _) = call(&no_reads, "GET", &projector.url, "/v1/read/opportunities").await;
    assert_eq!((status, &body["code"]), (403, &json!("insufficient_scope")));
    let (status, _, _) = call(&anonymous, "GET", &projector.url, "/v1/read/opportunities").await;
    assert_eq!(status, 401);

    // The command service: API on the public port, none of it on the admin port.
    assert_eq!(call(&http, "GET", &command.url, "/v1/types").await.0, 200);
    let what = "command-service admin GET /v1/types";
    assert_no_route(
        what,
        &call(&http, "GET", &command.admin_url, "/v1/types").await,
    );

    for s in services {
        s.stop().await;
    }
    p.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_an_aggregate_without_parked_events_is_refused_and_changes_nothing() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    // No relay: the events below stay in the event store, never reach Kafka, and so are never
    // applied. A replay that accepted the aggregate would apply them from the event store.
    p.append(
        "Opportunity",
        &["idle-1".to_string()],
        &opportunity_chain(3, "idle"),
    )
    .await;
    let projector = spawn_projector(&p).await;
    let http = eventfold_tests::auth::operator();
    let admin = projector.admin_url.clone();
    eventually("read model set up", Duration::from_secs(60), || async {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('rm_opportunities_g1.opportunities')::text")
                .fetch_one(&p.db.admin)
                .await
                .unwrap();
        exists.map(|_| ())
    })
    .await;

    for id in ["idle-1", "never-written"] {
        let r = http
            .post(format!("{admin}/v1/parked/opportunities/replay"))
            .json(&json!({"aggregate_type": "Opportunity", "aggregate_id": id}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 404, "{id}: {body}");
        assert_eq!(body["code"], "nothing_parked", "{id}: {body}");
    }
    let applied: Option<i64> = sqlx::query_scalar(
        "SELECT last_version FROM rm_opportunities_g1.opportunities WHERE aggregate_id = 'idle-1'",
    )
    .fetch_optional(&p.db.admin)
    .await
    .unwrap();
    assert_eq!(applied, None, "the refused replay applied events");
    assert!(p.parked("opportunities").await.is_empty());

    // The same refusal through `eventfold parked replay --aggregate`.
    let out = cli(
        &p.projector_env(&[]),
        Command::Parked(ParkedCommand::Replay {
            read_model: "opportunities".into(),
            aggregate: Some("Opportunity/idle-1".into()),
            tenant: None,
        }),
    )
    .await;
    assert!(!out.ok, "{out:?}");
    assert!(out.err.join("\n").contains("no parked events"), "{out:?}");
    let applied: Option<i64> = sqlx::query_scalar(
        "SELECT last_version FROM rm_opportunities_g1.opportunities WHERE aggregate_id = 'idle-1'",
    )
    .fetch_optional(&p.db.admin)
    .await
    .unwrap();
    assert_eq!(applied, None, "the refused CLI replay applied events");

    projector.stop().await;
    p.drop_all().await;
}

/// Runs `eventfold <command>` in-process with `env`.
async fn cli(env: &[(String, String)], command: Command) -> Outcome {
    eventfold_cli::cli::run(Cli { command }, &Env::from_pairs(env.to_vec()))
        .await
        .expect("runs")
}

/// `eventfold cypher <query>`.
fn cypher(query: &str) -> Command {
    Command::Cypher {
        query: query.into(),
    }
}

#[tokio::test]
async fn eventfold_cypher_refuses_to_write_and_still_reads() {
    let stack = Stack::from_env().await;
    let env = stack.service_env(&[]).pairs();
    let label = unique("CypherProbe").replace('-', "_");
    let graph = stack.neo4j.graph().expect("graph");
    graph
        .run(neo4rs::query(&format!("CREATE (:{label} {{id: 'kept'}})")))
        .await
        .expect("set up a node");
    let writes = [
        format!("CREATE (n:{label} {{id: 'new'}})"),
        format!("MERGE (n:{label} {{id: 'merged'}}) RETURN n.id AS id"),
        format!("MATCH (n:{label}) SET n.touched = true"),
        format!("MATCH (n:{label}) DETACH DELETE n"),
        format!("MATCH (n:{label}) REMOVE n.id"),
        format!("CREATE INDEX {label}_id IF NOT EXISTS FOR (n:{label}) ON (n.id)"),
        format!("CALL db.createLabel('{label}_token')"),
    ];
    for q in &writes {
        let out = cli(&env, cypher(q)).await;
        assert!(!out.ok, "{q}: {out:?}");
        let err = out.err.join("\n");
        assert!(
            err.contains("is read-only and this query writes"),
            "{q}: {err}"
        );
    }
    let read = format!("MATCH (n:{label}) RETURN n.id AS id, n.touched AS touched");
    let out = cli(&env, cypher(&read)).await;
    assert!(out.ok, "{out:?}");
    assert_eq!(out.out, vec![r#"{"id":"kept","touched":null}"#.to_string()]);
    let mut indexes = graph
        .execute(neo4rs::query(&format!(
            "SHOW INDEXES YIELD name WHERE name = '{label}_id' RETURN count(*) AS n"
        )))
        .await
        .expect("SHOW INDEXES");
    let row = indexes.next().await.expect("row").expect("one row");
    assert_eq!(row.get::<i64>("n").expect("n"), 0, "the index was created");
    graph
        .run(neo4rs::query(&format!("MATCH (n:{label}) DETACH DELETE n")))
        .await
        .expect("clean up");
}
