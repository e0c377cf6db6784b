//! The audit filters of the event reads over HTTP against the real PostgreSQL: a tenant of its own
//! gets events of several types, categories and actors in three time windows (bounded by the
//! database's clock), and every filter of the history and the feed, alone and combined, with and
//! without paging, returns exactly the events the test itself counts from what it wrote. An event
//! stored at an old schema version comes back upcast by default and as stored with
//! `as_stored=true`; another tenant sees none of it; bad values answer their documented codes.

use chrono::{DateTime, Utc};
use eventfold_auth::scope;
use eventfold_domain::Aggregate;
use eventfold_postgres::{Actor, ActorKind, CommandMeta, CommandRecord, EventStore, NewEvent};
use eventfold_reference::Opportunity;
use eventfold_tests::xref::{discover_body, validate_body};
use eventfold_tests::{Spawned, Stack, auth, eventually, unique};
use reqwest::{Client, Response};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// An event the test wrote: enough to count what each filter must return.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Written {
    aggregate_id: String,
    event_type: &'static str,
    category: &'static str,
    actor: &'static str,
    window: usize,
}

/// A caller of one tenant, as one subject, with the read, write and impersonate scopes.
fn client(tenant: &str, subject: &str) -> Client {
    auth::client_with(&auth::token_as(
        subject,
        "user",
        tenant,
        &[
            scope::COMMANDS_WRITE,
            scope::EVENTS_READ,
            scope::IMPERSONATE,
        ],
    ))
}

struct Trail {
    url: String,
    tenant: String,
    store: EventStore,
    written: Vec<Written>,
    /// The database clock between the windows: window `w` is `[bounds[w-1], bounds[w])`.
    bounds: Vec<DateTime<Utc>>,
    _service: Spawned,
}

impl Trail {
    async fn start() -> Self {
        let stack = Stack::from_env().await;
        let service = stack.spawn_command_service(&[]).await;
        Self {
            url: service.url.clone(),
            tenant: unique("audit"),
            store: EventStore::new(stack.writer_pool().await),
            written: Vec::new(),
            bounds: Vec::new(),
            _service: service,
        }
    }

    /// Ends the current window at the database's clock (the one `recorded_at` is taken from).
    async fn close_window(&mut self) {
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(self.store.pool())
            .await
            .unwrap();
        self.bounds.push(now);
    }

    /// Runs a CrossReference command as `subject`, or as `as_actor` through impersonation.
    async fn xref(
        &mut self,
        subject: &str,
        as_actor: Option<&'static str>,
        id: &str,
        command: &str,
        body: &Value,
    ) {
        let mut request = client(&self.tenant, subject)
            .post(format!(
                "{}/v1/CrossReference/{id}/commands/{command}",
                self.url
            ))
            .json(body);
        if let Some(a) = as_actor {
            request = request.header("x-actor", a);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 200, "{command}: {}", r.text().await.unwrap());
        let (event_type, category) = match command {
            "DiscoverCrossReference" => ("CrossReferenceDiscovered", "discovery"),
            _ => ("CrossReferenceValidated", "validation"),
        };
        let actor = as_actor.unwrap_or(match subject {
            "alice" => "user:alice",
            _ => "user:bob",
        });
        self.written.push(Written {
            aggregate_id: id.to_owned(),
            event_type,
            category,
            actor,
            window: self.bounds.len(),
        });
    }

    /// Appends an `OpportunityCreated` at schema version 1, as an old build wrote it.
    async fn old_opportunity(&mut self, id: &str, payload: &Value) {
        let meta = CommandMeta {
            command_id: Uuid::new_v4(),
            correlation_id: Uuid::new_v4(),
            causation_id: None,
            actor: Actor {
                kind: ActorKind::System,
                id: "old-build".into(),
            },
            tenant: self.tenant.clone(),
            metadata: json!({}),
            occurred_at: Utc::now(),
        };
        let event = NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "OpportunityCreated".into(),
            schema_version: 1,
            category: "domain".into(),
            payload: payload.clone(),
        };
        let record = CommandRecord {
            command_name: "Import".into(),
            request_hash: vec![1],
            response: json!({}),
        };
        self.store
            .append(Opportunity::TYPE, id, 0, &[event], &meta, &record)
            .await
            .expect("append a v1 row");
        self.written.push(Written {
            aggregate_id: id.to_owned(),
            event_type: "OpportunityCreated",
            category: "domain",
            actor: "system:old-build",
            window: self.bounds.len(),
        });
    }

    /// The time bound `i` as a query value (percent-encoded: it carries a `+` offset).
    fn at(&self, i: usize) -> String {
        self.bounds[i]
            .to_rfc3339()
            .replace('+', "%2B")
            .replace(':', "%3A")
    }

    /// What the test wrote that `keep` accepts, sorted.
    fn expected(&self, keep: impl Fn(&Written) -> bool) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .written
            .iter()
            .filter(|w| keep(w))
            .map(|w| (w.aggregate_id.clone(), w.event_type.to_owned()))
            .collect();
        v.sort();
        v
    }

    async fn get(&self, tenant: &str, path: &str) -> Response {
        client(tenant, "alice")
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    /// Every event of the tenant's feed with the filter `query`, read in pages of `page`.
    async fn feed(&self, tenant: &str, query: &str, page: usize) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after = String::new();
        loop {
            let r = self
                .get(
                    tenant,
                    &format!("/v1/events?{query}&limit={page}&after={after}"),
                )
                .await;
            assert_eq!(r.status(), 200, "feed ?{query}");
            let body: Value = r.json().await.unwrap();
            let got = body["events"].as_array().unwrap();
            assert!(got.len() <= page, "a page holds at most limit events");
            if got.is_empty() {
                return events;
            }
            events.extend(got.iter().cloned());
            after = body["next"].as_str().unwrap().to_owned();
        }
    }

    /// Every event of one aggregate's history with the filter `query`, read in pages of `page`.
    async fn history(&self, aggregate: &str, query: &str, page: usize) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let r = self
                .get(
                    &self.tenant,
                    &format!("/v1/{aggregate}/events?{query}&limit={page}&after_version={after}"),
                )
                .await;
            assert_eq!(r.status(), 200, "history ?{query}");
            let body: Value = r.json().await.unwrap();
            events.extend(body["events"].as_array().unwrap().iter().cloned());
            match body["next_after_version"].as_i64() {
                Some(v) => after = v,
                None => return events,
            }
        }
    }
}

/// Which written events a filter must return.
type Keep = Box<dyn Fn(&Written) -> bool>;

fn pairs(events: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["aggregate_id"].as_str().unwrap().to_owned(),
                e["event_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn problem(r: Response, code: &str) {
    // A from after its to is well-formed parameter by parameter: 422, the other codes 400.
    let status = if code == "invalid_time_range" {
        422
    } else {
        400
    };
    assert_eq!(r.status(), status, "{code}");
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{code}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
}

/// Writes three windows of events; returns the trail and the ids (`a`, `b`, `c`, `d`, opportunity).
async fn written_trail() -> (Trail, [String; 5]) {
    let mut t = Trail::start().await;
    let id = |n: &str| format!("GEN.1.1:JHN.1.1:{}", unique(n));
    let [a, b, c, d] = [id("a"), id("b"), id("c"), id("d")];
    let opportunity = unique("opportunity");
    let discover = discover_body();
    let validate = validate_body("audit");

    // Window 0: alice discovers a and b; an old build imported an opportunity.
    t.xref("alice", None, &a, "DiscoverCrossReference", &discover)
        .await;
    t.xref("alice", None, &b, "DiscoverCrossReference", &discover)
        .await;
    t.old_opportunity(
        &opportunity,
        &json!({"opportunity_id": "7", "title": "AI Chatbot", "description": "",
                "ai_solution_type": "nlp", "market_size": 1000000}),
    )
    .await;
    t.close_window().await;
    // Window 1: the theology agent validates a and b (bob sends it); alice discovers c.
    t.xref(
        "bob",
        Some("agent:theology"),
        &a,
        "ValidateCrossReference",
        &validate,
    )
    .await;
    t.xref(
        "bob",
        Some("agent:theology"),
        &b,
        "ValidateCrossReference",
        &validate,
    )
    .await;
    t.xref("alice", None, &c, "DiscoverCrossReference", &discover)
        .await;
    t.close_window().await;
    // Window 2: bob discovers d; the agent validates c.
    t.xref("bob", None, &d, "DiscoverCrossReference", &discover)
        .await;
    t.xref(
        "alice",
        Some("agent:theology"),
        &c,
        "ValidateCrossReference",
        &validate,
    )
    .await;
    // The global feed is commit-safe: an event shows once every transaction on the server that
    // began before it has ended, so a long transaction elsewhere delays it. Wait for all of them.
    let written = t.written.len();
    eventually(
        "every written event in the feed",
        Duration::from_secs(30),
        || async { (t.feed(&t.tenant, "", 1000).await.len() == written).then_some(()) },
    )
    .await;
    (t, [a, b, c, d, opportunity])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_alone_and_combined_returns_what_was_written() {
    let (t, [a, ..]) = written_trail().await;
    assert_eq!(t.written.len(), 8);
    let (t1, t2) = (t.at(0), t.at(1));
    let cases: Vec<(String, Keep)> = vec![
        (String::new(), Box::new(|_| true)),
        (format!("from={t1}"), Box::new(|w| w.window >= 1)),
        (format!("to={t1}"), Box::new(|w| w.window == 0)),
        (format!("from={t1}&to={t2}"), Box::new(|w| w.window == 1)),
        (format!("from={t1}&to={t1}"), Box::new(|_| false)),
        (
            "actor=user:alice".into(),
            Box::new(|w| w.actor == "user:alice"),
        ),
        ("actor=user:bob".into(), Box::new(|w| w.actor == "user:bob")),
        (
            "actor=agent:theology".into(),
            Box::new(|w| w.actor == "agent:theology"),
        ),
        (
            "actor=system:old-build".into(),
            Box::new(|w| w.actor == "system:old-build"),
        ),
        ("actor=agent:alice".into(), Box::new(|_| false)),
        (
            "category=validation".into(),
            Box::new(|w| w.category == "validation"),
        ),
        (
            "category=discovery,domain".into(),
            Box::new(|w| w.category == "discovery" || w.category == "domain"),
        ),
        ("category=oracle".into(), Box::new(|_| false)),
        (
            "types=CrossReferenceValidated".into(),
            Box::new(|w| w.event_type == "CrossReferenceValidated"),
        ),
        (
            "types=OpportunityCreated,%20CrossReferenceDiscovered".into(),
            Box::new(|w| w.event_type != "CrossReferenceValidated"),
        ),
        (
            format!("actor=agent:theology&from={t2}"),
            Box::new(|w| w.actor == "agent:theology" && w.window == 2),
        ),
        (
            format!("category=discovery&from={t1}&to={t2}"),
            Box::new(|w| w.category == "discovery" && w.window == 1),
        ),
        (
            "types=CrossReferenceDiscovered&actor=user:alice&category=discovery".into(),
            Box::new(|w| w.event_type == "CrossReferenceDiscovered" && w.actor == "user:alice"),
        ),
        (
            format!("types=CrossReferenceDiscovered&actor=user:bob&to={t2}"),
            Box::new(|_| false),
        ),
    ];
    for (query, keep) in &cases {
        let want = t.expected(keep);
        let all = t.feed(&t.tenant, query, 1000).await;
        assert_eq!(pairs(&all), want, "feed ?{query}");
        let paged = t.feed(&t.tenant, query, 2).await;
        assert_eq!(paged, all, "feed ?{query} in pages of 2");
    }
    let nonempty = cases.iter().filter(|(_, k)| !t.expected(k).is_empty());
    assert!(nonempty.count() >= 14, "the cases are not vacuous");

    // One aggregate's history: the same filters, inside its stream, paged by version.
    let history_cases: [(String, usize); 6] = [
        (String::new(), 2),
        ("types=CrossReferenceValidated".into(), 1),
        ("actor=agent:theology&category=validation".into(), 1),
        (format!("to={t1}"), 1),
        (format!("from={t1}"), 1),
        ("actor=user:bob".into(), 0),
    ];
    for (query, count) in history_cases {
        let want = t.expected(|w| w.aggregate_id == a);
        let got = t.history(&format!("CrossReference/{a}"), &query, 1).await;
        assert_eq!(got.len(), count, "history ?{query}");
        assert!(pairs(&got).iter().all(|p| want.contains(p)), "?{query}");
    }
    // A filter matching nothing is an empty page of an existing stream; an unused id stays 404.
    let r = t
        .get(
            &t.tenant,
            &format!(
                "/v1/CrossReference/{}/events?actor=user:bob",
                unique("none")
            ),
        )
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_are_upcast_by_default_and_as_stored_on_request() {
    let (t, [.., opportunity]) = written_trail().await;
    let stored = json!({"opportunity_id": "7", "title": "AI Chatbot", "description": "",
                        "ai_solution_type": "nlp", "market_size": 1000000});
    let path = format!("Opportunity/{opportunity}");
    for (name, events) in [
        ("history", t.history(&path, "", 100).await),
        (
            "feed",
            t.feed(&t.tenant, "types=OpportunityCreated", 100).await,
        ),
    ] {
        let [e] = &events[..] else {
            panic!("{name}: {events:?}")
        };
        assert_eq!(e["schema_version"], 2, "{name}: upcast to the latest");
        assert_eq!(e["stored_schema_version"], 1, "{name}");
        assert_eq!(e["payload"]["market_size_estimate"], 1000000, "{name}");
        assert_eq!(
            e["payload"]["ai_solution_category"], "natural_language_processing",
            "{name}"
        );
        assert!(e["payload"].get("market_size").is_none(), "{name}");
    }
    for (name, events) in [
        ("history", t.history(&path, "as_stored=true", 100).await),
        (
            "feed",
            t.feed(&t.tenant, "types=OpportunityCreated&as_stored=true", 100)
                .await,
        ),
    ] {
        let [e] = &events[..] else {
            panic!("{name}: {events:?}")
        };
        assert_eq!(e["schema_version"], 1, "{name}: the stored version");
        assert_eq!(
            e["payload"], stored,
            "{name}: the stored payload, byte for byte"
        );
    }
    // Events written at the latest version read the same either way.
    let latest = t
        .feed(&t.tenant, "types=CrossReferenceValidated", 100)
        .await;
    let as_stored = t
        .feed(
            &t.tenant,
            "types=CrossReferenceValidated&as_stored=true",
            100,
        )
        .await;
    assert_eq!(latest.len(), 3);
    assert_eq!(latest, as_stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_sees_none_of_it_and_bad_values_are_refused() {
    let (t, [a, ..]) = written_trail().await;
    let other = unique("audit-other");
    for query in [
        "",
        "actor=user:alice",
        "category=discovery,validation,domain",
        "types=CrossReferenceDiscovered,CrossReferenceValidated,OpportunityCreated",
    ] {
        assert!(t.feed(&other, query, 1000).await.is_empty(), "?{query}");
    }
    let r = t
        .get(
            &other,
            &format!("/v1/CrossReference/{a}/events?actor=user:alice"),
        )
        .await;
    assert_eq!(r.status(), 404);

    // The parameters are described where the routes are.
    let openapi: Value = reqwest::get(format!("{}/openapi.json", t.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in ["/v1/events", "/v1/{aggregate_type}/{aggregate_id}/events"] {
        let names: Vec<&str> = openapi["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for name in [
            "from",
            "to",
            "actor",
            "category",
            "types",
            "as_stored",
            "limit",
        ] {
            assert!(names.contains(&name), "{path} describes {name}: {names:?}");
        }
    }

    let history = format!("/v1/CrossReference/{a}/events");
    for base in ["/v1/events", history.as_str()] {
        for (query, code) in [
            ("from=yesterday", "invalid_time"),
            ("to=2026-13-01T00:00:00Z", "invalid_time"),
            (
                "from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
                "invalid_time_range",
            ),
            ("actor=alice", "invalid_actor"),
            ("actor=robot:x", "invalid_actor"),
            ("category=gossip", "unknown_category"),
            ("category=", "unknown_category"),
            ("types=", "invalid_types"),
            ("types=,,", "invalid_types"),
            ("as_stored=maybe", "invalid_query"),
            ("limit=0&category=discovery", "invalid_query"),
        ] {
            problem(t.get(&t.tenant, &format!("{base}?{query}")).await, code).await;
        }
    }
}
