//! Tenants through the command-service HTTP API against the real PostgreSQL: a stream belongs to
//! the tenant that created it; another tenant's commands and reads of it answer 404 exactly like a
//! missing aggregate, write nothing, and no read (state, history, correlation, feed) shows it.

use eventfold_auth::scope;
use eventfold_tests::xref::{discover_body, validate_body};
use eventfold_tests::{Stack, auth, unique};
use reqwest::{Client, Response};
use serde_json::Value;
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
async fn another_tenants_aggregate_answers_404_everywhere_and_nothing_is_written() {
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

    // The other tenant: its commands are refused as for a missing aggregate, and write nothing.
    let r = b
        .post(
            &cmd("ValidateCrossReference"),
            Uuid::new_v4(),
            &validate_body("other tenant"),
        )
        .await;
    assert_not_found(r, "aggregate_not_found").await;
    let r = b
        .post(
            &cmd("DiscoverCrossReference"),
            Uuid::new_v4(),
            &discover_body(),
        )
        .await;
    assert_not_found(r, "aggregate_not_found").await;
    // Reusing the owner's command id replays nothing of the owner's answer.
    let r = b
        .post(
            &format!("{}?command_id={command_id}", cmd("DiscoverCrossReference")),
            correlation,
            &discover_body(),
        )
        .await;
    assert_ne!(
        r.status(),
        200,
        "another tenant got a replay of the owner's answer"
    );
    let history: Value = a
        .get(&format!("/v1/CrossReference/{id}/events"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["events"].as_array().unwrap().len(), 1, "{history}");
    assert_eq!(history["events"][0]["tenant"], "tenant-a");

    // The other tenant's reads: 404 like a missing aggregate, absent from the feed.
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
        let missing = path.replace(&id, &format!("{id}-missing"));
        assert_not_found(b.get(&missing).await, "aggregate_not_found").await;
    }
    assert_not_found(
        b.get(&format!("/v1/correlations/{correlation}/events"))
            .await,
        "correlation_not_found",
    )
    .await;
    assert!(!b.feed_ids().await.contains(&id));

    // The owner still sees everything.
    assert_eq!(
        a.get(&format!("/v1/CrossReference/{id}")).await.status(),
        200
    );
    assert_eq!(
        a.get(&format!("/v1/correlations/{correlation}/events"))
            .await
            .status(),
        200
    );
    assert!(a.feed_ids().await.contains(&id));
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
/// user, stats) shows each tenant only its own rows; another tenant's row is 404.
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
        for i in 0..n {
            let id = format!("opp-{tenant}-{i}");
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
        assert_eq!(ids.len(), n, "{list}");
        assert!(
            ids.iter().all(|id| id.starts_with(&format!("opp-{own}-"))),
            "{list}"
        );
        let stats: Value = get(http, "/v1/read/opportunities/stats")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            (stats["total"].as_i64(), stats["users"].as_i64()),
            (Some(n as i64), Some(1)),
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
    projector.stop().await;
    relay.stop().await;
    api.shutdown.trigger();
    p.drop_all().await;
}
