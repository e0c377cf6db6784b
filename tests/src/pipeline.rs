//! Test kit for the projector: the whole pipeline on a database, topic prefix, consumer group
//! prefix and Neo4j label suffix of its own (command service in-process, relay and projectors as
//! processes), plus waiting for the read models to catch up and auditing them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use eventfold_postgres::NewEvent;
use eventfold_runtime::Shutdown;
use projector::projection::Projection;
use projector::rebuild::{AuditReport, Stores};
use sqlx::Row;

use crate::relay::{RelayDb, RelayProcess};
use crate::{Spawned, Stack, spawn, unique};

/// Partitions per topic in projector tests (enough for three instances).
pub const PARTITIONS: &str = "6";

/// One isolated installation of eventfold for a test.
pub struct Pipeline {
    /// The database (event store and PostgreSQL read models) and the topic prefix.
    pub db: RelayDb,
    /// Consumer group prefix of this test's projectors.
    pub group_prefix: String,
    /// Neo4j label suffix of this test's graph.
    pub suffix: String,
    /// `DATABASE_URL` of the projector login role (member of `eventfold_projector` and of every
    /// read model's role).
    pub projector_url: String,
    /// The stack.
    pub stack: Stack,
}

impl Pipeline {
    /// A fresh database with roles for the writer, relay and projector.
    pub async fn create(stack: &Stack) -> Self {
        let db = RelayDb::create(stack).await;
        crate::login_role(&db.admin, "ef_test_projector", "eventfold_projector").await;
        crate::grant_read_models(stack, "ef_test_projector").await;
        crate::login_role(&db.admin, "ef_test_writer", "eventfold_writer").await;
        let suffix = format!("_t{:08x}", fastrand::u32(..));
        Self {
            projector_url: stack.role_url("ef_test_projector", Some(&db.name)),
            group_prefix: format!("{}.", unique("g")),
            suffix,
            db,
            stack: stack.clone(),
        }
    }

    /// The command service, in-process, on this database (as the writer role).
    pub async fn command_service(&self) -> Spawned {
        let url = self.stack.role_url("ef_test_writer", Some(&self.db.name));
        let env = self.stack.service_env(&[("DATABASE_URL", url.as_str())]);
        let settings = command_service::Settings::from_env(&env).expect("settings");
        spawn(
            command_service::SERVICE,
            command_service::build(settings).await.expect("start"),
        )
    }

    /// A relay process on this database.
    pub fn relay(&self, id: &str) -> RelayProcess {
        RelayProcess::start(&self.db, id, &[("KAFKA_TOPIC_PARTITIONS", PARTITIONS)])
    }

    /// The environment of a projector of this pipeline.
    pub fn projector_env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("DATABASE_URL", self.projector_url.as_str()),
            ("KAFKA_TOPIC_PREFIX", self.db.prefix.as_str()),
            ("KAFKA_TOPIC_PARTITIONS", PARTITIONS),
            ("PROJECTOR_GROUP_PREFIX", self.group_prefix.as_str()),
            ("NEO4J_LABEL_SUFFIX", self.suffix.as_str()),
            ("PROJECTOR_STATE_POLL_MS", "200"),
            ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
            // Process managers of this pipeline send to its own command service when a test says
            // where (`extra`); otherwise to a closed port, never to the shared stack's service.
            ("PROCESS_COMMAND_URL", "http://127.0.0.1:9"),
        ];
        pairs.extend_from_slice(extra);
        self.stack.service_env(&pairs).pairs()
    }

    /// A projector process (all read models unless `extra` sets `PROJECTOR_READ_MODELS`).
    pub fn projector(&self, id: &str, extra: &[(&str, &str)]) -> RelayProcess {
        RelayProcess::start_binary("projector", &self.db.name, id, self.projector_env(extra))
    }

    /// Settings of an in-process consumer of this pipeline's topics (batches of 300).
    pub fn consumer_settings(&self) -> projector::consumer::ConsumerSettings {
        projector::consumer::ConsumerSettings {
            kafka: self.stack.kafka.clone(),
            topic_prefix: self.db.prefix.clone(),
            group_prefix: self.group_prefix.clone(),
            group: None,
            batch_size: 300,
            batch_wait: Duration::from_millis(5),
            session_timeout_ms: 6000,
            max_poll_interval_ms: 300_000,
        }
    }

    /// A processor of `p`'s generation `generation` in `mode`, parking without a dead-letter
    /// topic, without metrics, with the default apply timeout.
    pub fn processor(
        &self,
        p: &Arc<dyn Projection>,
        generation: i32,
        mode: projector::engine::Mode,
    ) -> projector::engine::Processor {
        let stores = self.stores();
        projector::engine::Processor {
            projection: p.clone(),
            target: projector::state::target(&**p, generation, &stores),
            parking: projector::parking::Parking::new(stores.pool.clone(), p.name(), None),
            max_attempts: 3,
            metrics: None,
            mode,
            apply_timeout: projector::engine::APPLY_TIMEOUT,
        }
    }

    /// Rebuild, replay and audit access to this pipeline's stores.
    pub fn stores(&self) -> Stores {
        Stores {
            pool: self.db.admin.clone(),
            graph: self.stack.neo4j.graph().expect("neo4j settings"),
            graph_suffix: self.suffix.clone(),
            batch: 2000,
        }
    }

    /// The read model `name`.
    pub fn model(name: &str) -> Arc<dyn Projection> {
        projector::models::registry()
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("read model {name}"))
    }

    /// Waits until every aggregate of `name`'s types has its last version applied or parked
    /// events, or panics after `timeout` with what is missing.
    pub async fn caught_up(&self, name: &str, timeout: Duration) {
        self.caught_up_with(&Self::model(name), timeout).await;
    }

    /// [`Pipeline::caught_up`] for any projection.
    pub async fn caught_up_with(&self, p: &Arc<dyn Projection>, timeout: Duration) {
        let name = p.name();
        let stores = self.stores();
        let deadline = tokio::time::Instant::now() + timeout;
        let types: Vec<String> = p.aggregate_types().iter().map(|t| t.to_string()).collect();
        loop {
            let expected: HashMap<projector::target::AggregateKey, i64> = sqlx::query(
                "SELECT tenant, aggregate_type, aggregate_id, max(version) FROM events \
                 WHERE aggregate_type = ANY($1) AND (tenant, aggregate_type, aggregate_id) NOT IN \
                   (SELECT tenant, aggregate_type, aggregate_id FROM parked_events \
                    WHERE read_model = $2 AND aggregate_id IS NOT NULL) \
                 GROUP BY 1, 2, 3",
            )
            .bind(&types)
            .bind(name)
            .fetch_all(&self.db.admin)
            .await
            .expect("event store versions")
            .into_iter()
            .map(|r| {
                let key = projector::target::AggregateKey::new(
                    r.get::<String, _>(0),
                    r.get::<String, _>(1),
                    r.get::<String, _>(2),
                );
                (key, r.get(3))
            })
            .collect();
            let state = projector::state::ensure(&stores.pool, &**p)
                .await
                .expect("read model state");
            let live = projector::state::target(&**p, state.generation, &stores);
            let applied = live.versions().await.unwrap_or_default();
            let behind: Vec<_> = expected
                .iter()
                .filter(|(k, v)| applied.get(*k) != Some(*v))
                .take(5)
                .collect();
            if behind.is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} not caught up within {timeout:?}: e.g. {behind:?} (applied {:?})",
                behind
                    .iter()
                    .map(|(k, _)| applied.get(*k))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The one row's column `n` of `cypher` on this pipeline's graph (`{g}` stands for its label
    /// suffix), e.g. a `count(...) AS n`.
    pub async fn graph_count(&self, cypher: &str) -> i64 {
        let graph = self.stack.neo4j.graph().expect("graph");
        let q = cypher.replace("{g}", &self.suffix);
        let mut rows = graph.execute(neo4rs::query(&q)).await.expect("cypher");
        let row = rows.next().await.expect("row").expect("one row");
        row.get::<i64>("n").expect("n")
    }

    /// `eventfold audit <name>` on this pipeline.
    pub async fn audit(&self, name: &str) -> AuditReport {
        self.audit_with(&Self::model(name)).await
    }

    /// [`Pipeline::audit`] for any projection.
    pub async fn audit_with(&self, p: &Arc<dyn Projection>) -> AuditReport {
        self.audit_of(p, None).await
    }

    /// `eventfold audit <p> [--tenant <tenant>]` on this pipeline.
    pub async fn audit_of(&self, p: &Arc<dyn Projection>, tenant: Option<&str>) -> AuditReport {
        let stores = self.stores();
        let wait = Duration::from_secs(30);
        projector::rebuild::audit(p, &stores, tenant, wait, &Shutdown::new())
            .await
            .expect("audit runs")
    }

    /// Parked events of `name` by reason.
    pub async fn parked(&self, name: &str) -> HashMap<String, i64> {
        sqlx::query("SELECT reason, count(*) FROM parked_events WHERE read_model = $1 GROUP BY 1")
            .bind(name)
            .fetch_all(&self.db.admin)
            .await
            .expect("parked")
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// Appends the events of `chain` to each of `ids` (aggregate `aggregate_type`).
    pub async fn append(&self, aggregate_type: &str, ids: &[String], chain: &[NewEvent]) {
        crate::relay::append_events_of(&self.db.admin, aggregate_type, ids, chain, 0, 200).await;
    }

    /// Removes the test's graph (labels with its suffix) and drops the database.
    pub async fn drop_all(self) {
        let stores = self.stores();
        for p in projector::models::registry().all() {
            if p.store() == projector::projection::Store::Neo4j {
                let t = projector::target::Target::Neo4j {
                    graph: stores.graph.clone(),
                    g: self.suffix.clone(),
                    fence: None,
                };
                let _ = t.drop_all(&**p).await;
            }
        }
        self.db.drop_database().await;
    }
}

/// The events of one Opportunity: created, then updated `versions - 1` times.
pub fn opportunity_chain(versions: usize, title: &str) -> Vec<NewEvent> {
    use eventfold_domain::Aggregate;
    use eventfold_reference::Opportunity;
    use eventfold_reference::opportunity::opportunity::Command;
    let mut state = Opportunity::default();
    let mut out = Vec::with_capacity(versions);
    while out.len() < versions {
        let body = if out.is_empty() {
            serde_json::json!({"CreateOpportunity": {
                "opportunity_id": "o", "title": title, "description": "d",
                "ai_solution_type": "nlp", "market_size_estimate": 1000}})
        } else {
            serde_json::json!({"UpdateOpportunity": {
                "market_size_estimate": 1000 + out.len() as u64}})
        };
        let command: Command = serde_json::from_value(body).expect("a valid command");
        let events = state.decide(&command).expect("a valid chain");
        let prepared = eventfold_postgres::repository::prepare::<Opportunity>(
            &command,
            &events,
            out.len() as i64,
            uuid::Uuid::nil(),
            &[],
        )
        .expect("prepare");
        for e in &events {
            state = state.apply(e);
        }
        out.extend(prepared.events);
    }
    out.truncate(versions);
    out
}
