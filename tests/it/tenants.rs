//! Tenants through the command-service HTTP API against the real PostgreSQL: a stream is
//! (tenant, aggregate type, aggregate id), so the same id in two tenants is two independent streams;
//! a tenant sees only its own stream of an id (another tenant's is as absent as an unused id), and
//! no read (state, history, correlation, feed) shows another tenant's events.

use eventfold_auth::scope;
use eventfold_tests::xref::{discover_body, validate_body};
use eventfold_tests::{Stack, auth, eventually, unique};
use reqwest::{Client, Response};
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// One tenant's view of the API: a token of that tenant with the command and read scopes.
struct Caller {
    http: Client,
    url: String,
}

impl Caller {
    fn of(tenant: &str, url: &str) -> Self {
        Self {
            http: auth::client(tenant, &[scope::COMMANDS_WRITE, scope::EVENTS_READ]),
            url: url.to_owned(),
        }
    }

    async fn post(&self, path: &str, correlation: Uuid, body: &Value) -> Response {
        self.http
            .post(format!("{}{path}", self.url))
            .header("x-correlation-id", correlation.to_string())
            .json(body)
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

    /// Aggregate ids of every event the global feed shows this tenant.
    async fn feed_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let mut after = String::new();
        loop {
            let page: Value = self
                .get(&format!("/v1/events?limit=1000&after={after}"))
                .await
                .json()
                .await
                .unwrap();
            let events = page["events"].as_array().unwrap();
            if events.is_empty() {
                return ids;
            }
            ids.extend(
                events
                    .iter()
                    .map(|e| e["aggregate_id"].as_str().unwrap().to_owned()),
            );
            after = page["next"].as_str().unwrap().to_owned();
        }
    }
}

async fn assert_not_found(r: Response, code: &str) {
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_in_two_tenants_is_two_independent_streams() {
    let service = Stack::from_env().await.spawn_command_service(&[]).await;
    let (a, b) = (
        Caller::of("tenant-a", &service.url),
        Caller::of("tenant-b", &service.url),
    );
    let id = format!("GEN.1.1:JHN.1.1:{}", unique("tenant"));
    let cmd = |c: &str| format!("/v1/CrossReference/{id}/commands/{c}");
    let correlation = Uuid::new_v4();
    let command_id = Uuid::new_v4();
    let created = a
        .post(
            &format!("{}?command_id={command_id}", cmd("DiscoverCrossReference")),
            correlation,
            &discover_body(),
        )
        .await;
    assert_eq!(created.status(), 200);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["version"], 1, "{created}");

    // Before tenant B uses the id, its stream is empty: reads answer 404 and a command that needs
    // an existing aggregate is refused exactly as for an id nobody used.
    for path in [
        format!("/v1/CrossReference/{id}"),
        format!("/v1/CrossReference/{id}?at_version=1"),
        format!(
            "/v1/CrossReference/{id}?as_of={}",
            urlencode(&chrono::Utc::now().to_rfc3339())
        ),
        format!("/v1/CrossReference/{id}/events"),
    ] {
        assert_not_found(b.get(&path).await, "aggregate_not_found").await;
    }
    let r = b
        .post(
            &cmd("ValidateCrossReference"),
            Uuid::new_v4(),
            &validate_body("other tenant"),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (&body["code"], &body["state"]),
        (&Value::from("invalid_transition"), &Value::from("Initial")),
        "{body}"
    );
    // Reusing A's command id replays nothing of A's answer (the request hash holds the tenant).
    let r = b
        .post(
            &format!("{}?command_id={command_id}", cmd("DiscoverCrossReference")),
            correlation,
            &discover_body(),
        )
        .await;
    assert_ne!(r.status(), 200, "another tenant got a replay of A's answer");
    assert_not_found(
        b.get(&format!("/v1/correlations/{correlation}/events"))
            .await,
        "correlation_not_found",
    )
    .await;
    assert!(!b.feed_ids().await.contains(&id));

    // Tenant B creates the same id: its own stream, at version 1, then 2.
    let b_correlation = Uuid::new_v4();
    let r = b
        .post(
            &cmd("DiscoverCrossReference"),
            b_correlation,
            &discover_body(),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["version"], 1, "{r}");
    let r = b
        .post(
            &cmd("ValidateCrossReference"),
            b_correlation,
            &validate_body("tenant b"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["version"], 2, "{r}");

    // Each history holds only its own events, each state its own version.
    for (caller, tenant, versions) in [(&a, "tenant-a", vec![1]), (&b, "tenant-b", vec![1, 2])] {
        let history: Value = caller
            .get(&format!("/v1/CrossReference/{id}/events"))
            .await
            .json()
            .await
            .unwrap();
        let events = history["events"].as_array().unwrap();
        let got: Vec<i64> = events
            .iter()
            .map(|e| e["version"].as_i64().unwrap())
            .collect();
        assert_eq!(got, versions, "{history}");
        assert!(events.iter().all(|e| e["tenant"] == tenant), "{history}");
        let state: Value = caller
            .get(&format!("/v1/CrossReference/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(state["version"], *versions.last().unwrap(), "{state}");
        // The global feed is commit-safe: an event shows once every transaction on the server
        // that began before it has ended, so a long transaction elsewhere delays it.
        eventually(
            "the stream in its tenant's feed",
            Duration::from_secs(30),
            || async { caller.feed_ids().await.contains(&id).then_some(()) },
        )
        .await;
    }
    let a_state: Value = a
        .get(&format!("/v1/CrossReference/{id}"))
        .await
        .json()
        .await
        .unwrap();
    let b_state: Value = b
        .get(&format!("/v1/CrossReference/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(
        a_state["state_name"], b_state["state_name"],
        "{a_state} {b_state}"
    );

    // A's next command follows A's version 1, untouched by B's two events.
    let r = a
        .post(
            &format!("{}?expected_version=1", cmd("ValidateCrossReference")),
            correlation,
            &validate_body("tenant a"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["version"], 2, "{r}");
    // Each tenant's correlation shows only its own events.
    let page: Value = b
        .get(&format!("/v1/correlations/{b_correlation}/events"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2, "{page}");
    assert_not_found(
        a.get(&format!("/v1/correlations/{b_correlation}/events"))
            .await,
        "correlation_not_found",
    )
    .await;
}

/// Events written before streams were per tenant carry the tenant label `default`: they still
/// load and answer for a `default` token, and another tenant's same id is a separate stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_written_before_the_migration_still_answer_for_the_default_tenant() {
    let stack = Stack::from_env().await;
    let service = stack.spawn_command_service(&[]).await;
    let id = format!("GEN.1.1:JHN.1.1:{}", unique("premigration"));
    // A row as an older build wrote it (no tenant given by the writer: the label `default`),
    // inserted directly so that it does not go through the per-tenant code path.
    let pool = stack.writer_pool().await;
    let (event_type, schema_version, category, payload) = discovered();
    sqlx::query(
        "INSERT INTO events (event_id, event_type, schema_version, category, aggregate_type, \
           aggregate_id, version, occurred_at, correlation_id, actor_kind, actor_id, tenant, payload) \
         VALUES ($1, $5, $6, $7, 'CrossReference', $2, 1, now(), \
           $3, 'system', 'old-build', 'default', $4)",
    )
    .bind(Uuid::new_v4())
    .bind(&id)
    .bind(Uuid::new_v4())
    .bind(payload)
    .bind(event_type)
    .bind(schema_version)
    .bind(category)
    .execute(&pool)
    .await
    .unwrap();
    let default = Caller::of("default", &service.url);
    let state: Value = default
        .get(&format!("/v1/CrossReference/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(state["version"], 1, "{state}");
    let r = default
        .post(
            &format!("/v1/CrossReference/{id}/commands/ValidateCrossReference"),
            Uuid::new_v4(),
            &validate_body("after the migration"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["version"], 2, "{r}");
    let other = Caller::of("tenant-other", &service.url);
    assert_not_found(
        other.get(&format!("/v1/CrossReference/{id}")).await,
        "aggregate_not_found",
    )
    .await;
}

/// A discovery as the reference domain stores it: type, schema version, category, payload.
fn discovered() -> (String, i32, String, Value) {
    use eventfold_domain::{Aggregate, DomainEvent};
    use eventfold_reference::CrossReference;
    let events = CrossReference::default()
        .decide(&eventfold_tests::xref::discover())
        .unwrap();
    let e = &events[0];
    (
        e.event_type().to_owned(),
        e.schema_version() as i32,
        e.category().as_str().to_owned(),
        serde_json::to_value(e).unwrap(),
    )
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// The correlation endpoint pages: `limit` and `after_position`, with `next_after_position`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correlation_is_read_in_pages() {
    let service = Stack::from_env().await.spawn_command_service(&[]).await;
    let a = Caller::of("tenant-pages", &service.url);
    let correlation = Uuid::new_v4();
    for i in 0..5 {
        let id = format!("GEN.1.{i}:JHN.1.{i}:{}", unique("page"));
        let r = a
            .post(
                &format!("/v1/CrossReference/{id}/commands/DiscoverCrossReference"),
                correlation,
                &discover_body(),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let mut seen = 0;
    let mut after = 0i64;
    let mut pages = 0;
    loop {
        let page: Value = a
            .get(&format!(
                "/v1/correlations/{correlation}/events?limit=2&after_position={after}"
            ))
            .await
            .json()
            .await
            .unwrap();
        seen += page["events"].as_array().unwrap().len();
        pages += 1;
        match page["next_after_position"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!((seen, pages), (5, 3));
}

/// Two tenants through Kafka to the PostgreSQL read model: the projector's read API (list, one,
/// user, stats) shows each tenant only its own rows; another tenant's row is 404; the same id
/// created by both is two rows, one per tenant, each read by its own tenant; the audit is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_read_api_shows_each_tenant_only_its_own_rows() {
    use eventfold_tests::pipeline::Pipeline;
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let api = p.command_service().await;
    let relay = p.relay("r1");
    let projector = p.projector("p1", &[("PROJECTOR_READ_MODELS", "opportunities")]);
    let scopes = [
        scope::COMMANDS_WRITE,
        scope::EVENTS_READ,
        scope::READ_MODELS_READ,
    ];
    let (a, b) = (
        auth::client("tenant-a", &scopes),
        auth::client("tenant-b", &scopes),
    );
    for (http, tenant, n) in [(&a, "a", 3), (&b, "b", 2)] {
        for i in 0..=n {
            let id = if i == n {
                "opp-shared".to_owned()
            } else {
                format!("opp-{tenant}-{i}")
            };
            let r = http
                .post(format!(
                    "{}/v1/Opportunity/{id}/commands/CreateOpportunity",
                    api.url
                ))
                .json(&serde_json::json!({
                    "opportunity_id": id, "title": format!("{tenant} {i}"),
                    "ai_solution_type": "nlp", "market_size_estimate": 1000}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let id = format!("user-{tenant}");
        let r = http
            .post(format!("{}/v1/User/{id}/commands/RegisterUser", api.url))
            .json(&serde_json::json!({"user_id": id, "email": format!("{tenant}@example.org")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    p.caught_up("opportunities", std::time::Duration::from_secs(90))
        .await;
    let get = |http: &Client, path: &str| {
        let (http, url) = (http.clone(), format!("{}{path}", projector.url));
        async move { http.get(url).send().await.unwrap() }
    };
    for (http, own, other, n) in [(&a, "a", "b", 3), (&b, "b", "a", 2)] {
        let list: Value = get(http, "/v1/read/opportunities?limit=100")
            .await
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["aggregate_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), n + 1, "{list}");
        assert!(
            ids.iter()
                .all(|id| id.starts_with(&format!("opp-{own}-")) || *id == "opp-shared"),
            "{list}"
        );
        let shared: Value = get(http, "/v1/read/opportunities/opp-shared")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(shared["title"], format!("{own} {n}"), "{shared}");
        assert_eq!(shared["tenant"], format!("tenant-{own}"), "{shared}");
        let stats: Value = get(http, "/v1/read/opportunities/stats")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            (stats["total"].as_i64(), stats["users"].as_i64()),
            (Some(n as i64 + 1), Some(1)),
            "{stats}"
        );
        assert_eq!(
            get(http, &format!("/v1/read/opportunities/opp-{own}-0"))
                .await
                .status(),
            200
        );
        assert_eq!(
            get(http, &format!("/v1/read/users/user-{own}"))
                .await
                .status(),
            200
        );
        assert_not_found(
            get(http, &format!("/v1/read/opportunities/opp-{other}-0")).await,
            "unknown_opportunity",
        )
        .await;
        assert_not_found(
            get(http, &format!("/v1/read/users/user-{other}")).await,
            "unknown_user",
        )
        .await;
        let r = get(
            http,
            &format!("/v1/read/opportunities?tenant=tenant-{other}"),
        )
        .await;
        assert_eq!(r.status(), 403);
    }
    let report = p.audit("opportunities").await;
    assert!(report.is_clean(), "{report:?}");

    // The database enforces it too: as the read API's role, row-level security shows one
    // tenant's rows, and a query that names no tenant is refused rather than shown every row or
    // none, on a session that never named one and on one whose earlier transactions did (the
    // setting then reads as an empty string). One connection runs all of them, in order.
    let mut conn = p.db.admin.acquire().await.unwrap();
    let fresh = count_naming_no_tenant(&mut conn).await;
    assert!(
        fresh.is_err(),
        "rows shown to a session that never named a tenant: {fresh:?}"
    );
    for (tenant, want) in [("tenant-a", 4), ("tenant-b", 3)] {
        let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        sqlx::query(
            "SELECT set_config('role', 'eventfold_reader', true), \
                    set_config('eventfold.tenant', $1, true)",
        )
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rm_opportunities_g1.opportunities WHERE aggregate_id LIKE 'opp-%'",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(n, want, "{tenant}");
    }
    let emptied = count_naming_no_tenant(&mut conn).await;
    match &emptied {
        Err(sqlx::Error::Database(d)) => assert_eq!(d.code().as_deref(), Some("42501"), "{d}"),
        other => panic!("rows shown to a query that named no tenant after one that did: {other:?}"),
    }
    drop(conn);
    projector.stop().await;
    relay.stop().await;
    api.shutdown.trigger();
    p.drop_all().await;
}

/// Counts the generation-1 opportunities as the read API's role in a transaction that names no
/// tenant.
async fn count_naming_no_tenant(c: &mut sqlx::PgConnection) -> Result<i64, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(c).await?;
    sqlx::query("SET LOCAL ROLE eventfold_reader")
        .execute(&mut *tx)
        .await?;
    sqlx::query_scalar("SELECT count(*) FROM rm_opportunities_g1.opportunities")
        .fetch_one(&mut *tx)
        .await
}

/// Two tenants through Kafka to the Neo4j graph: the same cross-reference id between the same
/// verses, the same interview, project and sentence ids, and commands with the same causation id
/// are separate nodes and relationships per tenant (two `CROSS_REFERENCE` between two separate
/// pairs of verses, two interviews, ...), no relationship joins nodes of two tenants, and the
/// audit of the graph is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_ids_in_two_tenants_are_separate_nodes_of_the_graph() {
    use eventfold_tests::pipeline::Pipeline;
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let api = p.command_service().await;
    let relay = p.relay("r1");
    let projector = p.projector("p1", &[("PROJECTOR_READ_MODELS", "graph")]);
    let xref = "GEN.1.1:JHN.1.1";
    let cause = Uuid::new_v4();
    let validations = [("tenant-a", 1), ("tenant-b", 0)];
    for (tenant, n) in validations {
        let http = auth::client(tenant, &[scope::COMMANDS_WRITE]);
        let send = |t: &str, id: &str, name: &str, body: Value| {
            let req = http
                .post(format!("{}/v1/{t}/{id}/commands/{name}", api.url))
                .header("x-causation-id", cause.to_string())
                .json(&body);
            let name = name.to_owned();
            async move {
                let r = req.send().await.unwrap();
                let status = r.status();
                assert_eq!(status, 200, "{name}: {}", r.text().await.unwrap());
            }
        };
        send(
            "CrossReference",
            xref,
            "DiscoverCrossReference",
            discover_body(),
        )
        .await;
        for _ in 0..n {
            send(
                "CrossReference",
                xref,
                "ValidateCrossReference",
                validate_body(tenant),
            )
            .await;
        }
        send(
            "Interview",
            "int-shared",
            "CreateInterview",
            serde_json::json!({"project_id": "proj-shared", "title": tenant, "source": "upload"}),
        )
        .await;
        send(
            "Sentence",
            "sen-shared",
            "CreateSentence",
            serde_json::json!({"interview_id": "int-shared", "index": 0, "text": tenant}),
        )
        .await;
        send(
            "Sentence",
            "sen-shared",
            "GenerateAnalysis",
            serde_json::json!({"model": "m", "model_version": "1",
                "classification": {"intent": "need"}}),
        )
        .await;
        send(
            "Sentence",
            "sen-shared",
            "OverrideAnalysis",
            serde_json::json!({"fields_overridden": {"intent": tenant}}),
        )
        .await;
    }
    p.caught_up("graph", std::time::Duration::from_secs(90))
        .await;

    // One node of each kind per tenant, each with its tenant.
    for label in [
        "Verse",
        "Project",
        "Interview",
        "Sentence",
        "Analysis",
        "Override",
    ] {
        let (nodes, tenants) = (
            p.graph_count(&format!("MATCH (n:{label}{{g}}) RETURN count(n) AS n"))
                .await,
            p.graph_count(&format!(
                "MATCH (n:{label}{{g}}) RETURN count(DISTINCT n.tenant) AS n"
            ))
            .await,
        );
        let verses = if label == "Verse" { 2 } else { 1 };
        assert_eq!((nodes, tenants), (2 * verses, 2), "{label}");
    }
    // Two CROSS_REFERENCE of the same id, each between its own tenant's two verses, with its
    // own tenant's validations; the same for the interview's, sentence's and analysis' edges.
    for (tenant, n) in validations {
        let q = format!(
            "MATCH (s:Verse{{g}} {{id: 'GEN.1.1', tenant: '{tenant}'}}) \
             -[x:CROSS_REFERENCE{{g}} {{id: '{xref}', tenant: '{tenant}'}}]-> \
             (t:Verse{{g}} {{id: 'JHN.1.1', tenant: '{tenant}'}}) \
             WHERE x.validations = {n} RETURN count(x) AS n"
        );
        assert_eq!(p.graph_count(&q).await, 1, "{tenant}: {q}");
        let q = format!(
            "MATCH (:Project{{g}} {{tenant: '{tenant}', id: 'proj-shared'}}) \
             -[:HAS_INTERVIEW{{g}}]->(i:Interview{{g}} {{tenant: '{tenant}', title: '{tenant}'}}) \
             -[:HAS_SENTENCE{{g}}]->(s:Sentence{{g}} {{tenant: '{tenant}', text: '{tenant}'}}) \
             -[:HAS_ANALYSIS{{g}}]->(:Analysis{{g}} {{tenant: '{tenant}'}}) \
             -[:OVERRIDDEN_BY{{g}}]->(o:Override{{g}} {{tenant: '{tenant}'}}) \
             WHERE o.fields CONTAINS '{tenant}' RETURN count(*) AS n"
        );
        assert_eq!(p.graph_count(&q).await, 1, "{tenant}: {q}");
        // The shared causation id is a cause node per tenant, causing only its tenant's events.
        let q = format!(
            "MATCH (c:Event{{g}} {{tenant: '{tenant}', id: '{cause}'}})-[:CAUSED{{g}}]->(e) \
             WHERE e.tenant = '{tenant}' RETURN count(e) AS n"
        );
        assert_eq!(p.graph_count(&q).await, 1 + n + 4, "{tenant}: {q}");
    }
    // Every label of the read model (not the projector's own bookkeeping nodes).
    let nodes = [
        "Verse",
        "Event",
        "Project",
        "Interview",
        "Sentence",
        "Analysis",
        "Override",
    ]
    .map(|l| format!("{l}{{g}}"))
    .join("|");
    assert_eq!(
        p.graph_count("MATCH (:Verse{g})-[r:CROSS_REFERENCE{g}]->(:Verse{g}) RETURN count(r) AS n")
            .await,
        2
    );
    assert_eq!(
        p.graph_count(&format!(
            "MATCH (c:Event{{g}} {{id: '{cause}'}}) RETURN count(c) AS n"
        ))
        .await,
        2
    );
    assert_eq!(
        p.graph_count(&format!(
            "MATCH (a:{nodes})-[r]->(b) WHERE a.tenant <> b.tenant RETURN count(r) AS n"
        ))
        .await,
        0,
        "a relationship joins two tenants"
    );
    assert_eq!(
        p.graph_count(&format!(
            "MATCH (n:{nodes}) WHERE n.tenant IS NULL RETURN count(n) AS n"
        ))
        .await,
        0,
        "a graph node without a tenant"
    );
    let report = p.audit("graph").await;
    assert!(report.is_clean(), "{report:?}");
    assert!(report.expected_rows > 0, "{report:?}");
    projector.stop().await;
    relay.stop().await;
    api.shutdown.trigger();
    p.drop_all().await;
}

/// A graph written before nodes carried a tenant (id-only constraints, verses without `tenant`):
/// the projector's setup drops the old constraints and gives those nodes the default tenant, so
/// the default tenant's next event updates the old cross-reference, and another tenant's same id
/// gets nodes of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_written_before_tenants_answers_for_the_default_tenant_after_setup() {
    use eventfold_kafka::Envelope;
    use projector::apply::{apply_neo4j, render};
    use projector::models::graph::Graph;
    use projector::projection::{ProjectedEvent, Projection};
    use projector::target::Target;
    let stack = Stack::from_env().await;
    let graph = stack.neo4j.graph().unwrap();
    let g = format!("_old{:08x}", fastrand::u32(..));
    let run = |cypher: &str| {
        let (graph, q) = (graph.clone(), render(cypher, &g));
        async move { graph.run(neo4rs::query(&q)).await.unwrap() }
    };
    for l in ["Verse", "Event"] {
        run(&format!(
            "CREATE CONSTRAINT {}_id{{g}} IF NOT EXISTS FOR (n:{l}{{g}}) REQUIRE n.id IS UNIQUE",
            l.to_lowercase()
        ))
        .await;
    }
    run(
        "CREATE CONSTRAINT cross_reference_id_unique{g} IF NOT EXISTS \
         FOR ()-[x:CROSS_REFERENCE{g}]-() REQUIRE x.id IS UNIQUE",
    )
    .await;
    run(
        "CREATE (:Verse{g} {id: 'GEN.1.1'})-[:CROSS_REFERENCE{g} {id: 'GEN.1.1:JHN.1.1', \
         tenant: 'default', status: 'discovered', validations: 0, last_version: 1}]-> \
         (:Verse{g} {id: 'JHN.1.1'})",
    )
    .await;
    let target = Target::Neo4j {
        graph: graph.clone(),
        g: g.clone(),
        fence: None,
    };
    target.setup(&Graph).await.unwrap();

    let event = |tenant: &str, version: i64, event_type: &str, payload: Value| ProjectedEvent {
        envelope: Envelope {
            event_id: Uuid::new_v4().to_string(),
            event_type: event_type.into(),
            aggregate_type: "CrossReference".into(),
            aggregate_id: "GEN.1.1:JHN.1.1".into(),
            aggregate_version: version,
            tenant: tenant.into(),
            occurred_at: "2026-12-08T00:00:00+00:00".into(),
            ..Envelope::default()
        },
        payload,
    };
    let validated = event(
        "default",
        2,
        "CrossReferenceValidated",
        serde_json::json!({"cross_ref_id": "GEN.1.1:JHN.1.1", "validator_agent": "a",
            "validation_result": "approved", "confidence_before": 0.5,
            "confidence_after": 0.6, "reasoning": "r", "theological_checks": {},
            "status": "validated"}),
    );
    let discovered = event(
        "tenant-b",
        1,
        "CrossReferenceDiscovered",
        serde_json::json!({"source_ref": "GEN.1.1", "target_ref": "JHN.1.1",
            "connection_type": "thematic", "initial_confidence": 0.5,
            "discovery_method": "embedding", "feature_vector": [0.1],
            "semantic_similarity": 0.8}),
    );
    for e in [validated, discovered] {
        let mut txn = graph.start_txn().await.unwrap();
        apply_neo4j(&mut txn, &g, &Graph, Graph.writes(&e).unwrap())
            .await
            .unwrap();
        txn.commit().await.unwrap();
    }
    let rows = |cypher: &str| {
        let (graph, q) = (graph.clone(), render(cypher, &g));
        async move {
            let mut out = Vec::new();
            let mut rows = graph.execute(neo4rs::query(&q)).await.unwrap();
            while let Some(row) = rows.next().await.unwrap() {
                out.push(row.get::<String>("row").unwrap());
            }
            out.sort();
            out
        }
    };
    let edges = rows(
        "MATCH (s:Verse{g})-[x:CROSS_REFERENCE{g}]->(t:Verse{g}) \
         RETURN s.tenant + ' ' + s.id + ' ' + x.tenant + ' ' + x.status + ' ' + \
         toString(x.validations) + ' ' + t.tenant + ' ' + t.id AS row",
    )
    .await;
    let constraints = rows(
        "SHOW CONSTRAINTS YIELD name WHERE name ENDS WITH '{g}' \
         AND NOT name STARTS WITH 'projector_' RETURN name AS row",
    )
    .await;
    target.drop_all(&Graph).await.unwrap();
    assert_eq!(
        edges,
        [
            "default GEN.1.1 default validated 1 default JHN.1.1",
            "tenant-b GEN.1.1 tenant-b discovered 0 tenant-b JHN.1.1",
        ]
    );
    let mut expected: Vec<String> = [
        "analysis",
        "cross_reference",
        "event",
        "graphmodel",
        "graphnode",
        "interview",
        "lxxdivergence",
        "override",
        "project",
        "propheticproof",
        "sentence",
        "verse",
        "workflow",
    ]
    .iter()
    .map(|l| format!("{l}_tenant_id{g}"))
    .collect();
    expected.sort();
    assert_eq!(constraints, expected, "the id-only constraints are dropped");
}
