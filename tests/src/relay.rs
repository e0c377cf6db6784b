//! Test kit for the outbox relay: a database of its own per test (so relays of different tests and
//! the stack's relay never share shards), CrossReference event chains written through the event
//! store, a topic prefix of its own (its schemas registered, as `eventfold schemas register` does
//! before a deployment's relays start), and a consumer that reads everything back.

use std::collections::HashMap;
use std::time::Duration;

use eventfold_domain::Aggregate;
use eventfold_kafka::Envelope;
use eventfold_postgres::repository::prepare;
use eventfold_postgres::{CommandMeta, CommandRecord, CommandWrite, EventStore, NewEvent};
use eventfold_reference::CrossReference;
use eventfold_runtime::Env;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use uuid::Uuid;

use crate::{Stack, unique, xref};

/// A fresh database with the migrations applied, dropped by [`RelayDb::drop_database`].
pub struct RelayDb {
    /// Database name.
    pub name: String,
    /// A pool as the migration role.
    pub admin: sqlx::PgPool,
    /// `DATABASE_URL` of the relay login role (member of `eventfold_relay` only).
    pub relay_url: String,
    /// Topic prefix of this test.
    pub prefix: String,
    stack: Stack,
}

impl RelayDb {
    /// Creates the database, migrates it, makes sure the relay login role exists and registers
    /// the schemas of its topic prefix.
    pub async fn create(stack: &Stack) -> Self {
        let db = Self::create_unregistered(stack).await;
        stack.register_schemas(&db.prefix).await;
        db
    }

    /// [`RelayDb::create`] without registering the schemas: for tests of what a relay does when
    /// they are missing.
    pub async fn create_unregistered(stack: &Stack) -> Self {
        let name = unique("ef_relay").replace('-', "_");
        // The stack's own database only serves to create this one: it is not migrated here.
        let admin = sqlx::PgPool::connect_with(stack.database.connect_options())
            .await
            .expect("connect to PostgreSQL as the migration role");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create database");
        crate::login_role(&admin, "ef_test_relay", "eventfold_relay").await;
        admin.close().await;
        let options = stack.database.connect_options().database(&name);
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .expect("connect to the test database");
        eventfold_postgres::MIGRATOR
            .run(&admin)
            .await
            .expect("migrate the test database");
        Self {
            relay_url: stack.role_url("ef_test_relay", Some(&name)),
            prefix: format!("{}.", unique("t")),
            name,
            admin,
            stack: stack.clone(),
        }
    }

    /// An outbox relay, in-process, on this database with `extra` settings.
    pub async fn spawn_relay(&self, extra: &[(&str, &str)]) -> crate::Spawned {
        let settings = outbox_relay::Settings::from_env(&self.env(extra)).expect("relay settings");
        crate::spawn(
            outbox_relay::SERVICE,
            outbox_relay::build(settings).await.expect("start relay"),
        )
    }

    /// The environment of a relay on this database and topic prefix (short lease, small polls).
    pub fn env(&self, extra: &[(&str, &str)]) -> Env {
        let mut pairs = vec![
            ("DATABASE_URL", self.relay_url.as_str()),
            ("KAFKA_TOPIC_PREFIX", self.prefix.as_str()),
            ("KAFKA_TOPIC_PARTITIONS", "3"),
            ("RELAY_POLL_INTERVAL_MS", "200"),
        ];
        pairs.extend_from_slice(extra);
        self.stack.service_env(&pairs)
    }

    /// The same environment as `KEY=value` pairs, for a relay process.
    pub fn env_pairs(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        self.env(extra).pairs()
    }

    /// The topic of CrossReference events.
    pub fn topic(&self) -> String {
        format!("{}CrossReference", self.prefix)
    }

    /// Rows still in the outbox.
    pub async fn outbox_len(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.admin)
            .await
            .expect("count outbox")
    }

    /// Drops the database (after closing the pool; relays must be stopped) and deletes the
    /// test's topics, so that the broker does not accumulate them run after run.
    pub async fn drop_database(self) {
        delete_topics(&self.stack.kafka, &self.prefix).await;
        self.admin.close().await;
        let Ok(admin) = sqlx::PgPool::connect_with(self.stack.database.connect_options()).await
        else {
            return;
        };
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&admin)
        .await;
        admin.close().await;
    }
}

/// Deletes every topic whose name starts with `prefix` (best effort).
pub async fn delete_topics(kafka: &eventfold_kafka::KafkaSettings, prefix: &str) {
    let prefix = prefix.to_owned();
    let _ = kafka
        .delete_topics_where(move |name| name.starts_with(&prefix))
        .await;
}

/// Appends `events` to each CrossReference of `ids`, the first after version `after`, with
/// `per_statement` commands per group commit (one event per command).
pub async fn append_events(
    pool: &sqlx::PgPool,
    ids: &[String],
    events: &[NewEvent],
    after: i64,
    per_statement: usize,
) {
    append_events_of(
        pool,
        CrossReference::TYPE,
        ids,
        events,
        after,
        per_statement,
    )
    .await;
}

/// [`append_events`] for aggregates of `aggregate_type`.
pub async fn append_events_of(
    pool: &sqlx::PgPool,
    aggregate_type: &str,
    ids: &[String],
    events: &[NewEvent],
    after: i64,
    per_statement: usize,
) {
    append_events_as(
        pool,
        "default",
        aggregate_type,
        ids,
        events,
        after,
        per_statement,
    )
    .await;
}

/// [`append_events_of`] in the streams of `tenant`.
pub async fn append_events_as(
    pool: &sqlx::PgPool,
    tenant: &str,
    aggregate_type: &str,
    ids: &[String],
    events: &[NewEvent],
    after: i64,
    per_statement: usize,
) {
    let store = EventStore::new(pool.clone());
    let meta = CommandMeta {
        tenant: tenant.into(),
        ..xref::meta()
    };
    let record = CommandRecord {
        command_name: "test".into(),
        request_hash: vec![],
        response: serde_json::json!({}),
    };
    for (v, template) in events.iter().enumerate() {
        for group in ids.chunks(per_statement) {
            let events: Vec<[NewEvent; 1]> = group
                .iter()
                .map(|_| {
                    [NewEvent {
                        event_id: Uuid::now_v7(),
                        ..template.clone()
                    }]
                })
                .collect();
            let metas: Vec<CommandMeta> = group
                .iter()
                .map(|_| CommandMeta {
                    command_id: Uuid::new_v4(),
                    ..meta.clone()
                })
                .collect();
            let writes: Vec<CommandWrite<'_>> = group
                .iter()
                .zip(&events)
                .zip(&metas)
                .map(|((id, events), meta)| CommandWrite {
                    aggregate_id: id,
                    expected_version: after + v as i64,
                    events,
                    meta,
                    record: &record,
                })
                .collect();
            store
                .append_batch(aggregate_type, &writes)
                .await
                .expect("append");
        }
    }
}

/// The events of one CrossReference: discovered, then validated `versions - 1` times.
pub fn xref_chain(versions: usize) -> Vec<NewEvent> {
    let mut state = CrossReference::default();
    let mut out = Vec::with_capacity(versions);
    while out.len() < versions {
        let command = if out.is_empty() {
            xref::discover()
        } else {
            xref::validate_with(&format!("round {}", out.len()))
        };
        let events = state.decide(&command).expect("a valid chain");
        let prepared =
            prepare::<CrossReference>(&command, &events, out.len() as i64, Uuid::nil(), &[])
                .expect("prepare");
        for e in &events {
            state = state.apply(e);
        }
        out.extend(prepared.events);
    }
    out.truncate(versions);
    out
}

/// A record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Consumed {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key as text.
    pub key: String,
    /// Envelope from the headers.
    pub envelope: Envelope,
    /// The value bytes.
    pub value: Vec<u8>,
}

/// Reads `topic` from the beginning until `done` says so, or panics after `timeout`.
pub async fn consume_until(
    stack: &Stack,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Consumed]) -> bool,
) -> Vec<Consumed> {
    let consumer: StreamConsumer = stack
        .kafka
        .client_config()
        .set("group.id", unique("relay-check"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    // `done` may look at every record: ask it after each 1,000 records and whenever the topic is
    // quiet for 300 ms, not after every record.
    let mut check = true;
    loop {
        if check && done(&out) {
            break;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let incomplete: Vec<_> = versions_by_aggregate(&out)
                .into_iter()
                .map(|(k, v)| (k, v.iter().max().copied().unwrap_or(0)))
                .take(5)
                .collect();
            panic!(
                "consuming {topic}: condition not reached within {timeout:?} ({} records; some \
                 aggregates and their last version: {incomplete:?})",
                out.len()
            );
        }
        let wait = (deadline - now).min(Duration::from_millis(300));
        let Ok(next) = tokio::time::timeout(wait, consumer.recv()).await else {
            check = true;
            continue;
        };
        let msg = match next {
            Ok(m) => m,
            // The relay creates the topic with its first record: until then the topic is unknown.
            Err(e) => {
                eprintln!("consuming {topic}: {e} (retrying)");
                tokio::time::sleep(Duration::from_millis(200)).await;
                check = true;
                continue;
            }
        };
        out.push(Consumed {
            partition: msg.partition(),
            offset: msg.offset(),
            key: String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned(),
            envelope: Envelope::from_headers(msg.headers().expect("headers")).expect("envelope"),
            value: msg.payload().unwrap_or_default().to_vec(),
        });
        check = out.len() % 1000 == 0;
    }
    out
}

/// Reads `topic` until each of `aggregates` aggregates reached version `versions`, then checks
/// that every aggregate's versions arrived complete and in order; returns the records and the
/// number of duplicates.
pub async fn consume_complete(
    stack: &Stack,
    topic: &str,
    aggregates: usize,
    versions: usize,
) -> (Vec<Consumed>, usize) {
    let records = consume_until(stack, topic, Duration::from_secs(120), |r| {
        r.len() >= aggregates * versions && {
            let by = versions_by_aggregate(r);
            by.len() == aggregates
                && by
                    .values()
                    .all(|v| v.iter().max() == Some(&(versions as i64)))
        }
    })
    .await;
    let duplicates = versions_by_aggregate(&records)
        .iter()
        .map(|(aggregate, v)| check_in_order(aggregate, v, versions as i64))
        .sum();
    (records, duplicates)
}

/// Per aggregate, the versions in the order Kafka delivered them.
pub fn versions_by_aggregate(records: &[Consumed]) -> HashMap<String, Vec<i64>> {
    let mut sorted: Vec<&Consumed> = records.iter().collect();
    sorted.sort_by_key(|c| (c.partition, c.offset));
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for c in sorted {
        out.entry(c.key.clone())
            .or_default()
            .push(c.envelope.aggregate_version);
    }
    out
}

/// Checks at-least-once in order: every version 1..=n appears, and none appears before its
/// predecessor did (duplicates of earlier versions allowed). Returns the number of duplicates.
pub fn check_in_order(aggregate: &str, versions: &[i64], n: i64) -> usize {
    let mut max = 0;
    let mut duplicates = 0;
    for v in versions {
        assert!(
            *v <= max + 1,
            "{aggregate}: version {v} arrived before {} ({versions:?})",
            max + 1
        );
        if *v <= max {
            duplicates += 1;
        }
        max = max.max(*v);
    }
    assert_eq!(max, n, "{aggregate}: last version");
    duplicates
}

/// A relay running as its own process (so that it can be killed with SIGKILL or paused).
pub struct RelayProcess {
    /// The child process.
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:<port>` of its public listener (API and `/healthz`).
    pub url: String,
    /// `http://127.0.0.1:<port>` of its admin listener (`/readyz`, `/metrics`, admin API).
    pub admin_url: String,
    /// Its `RELAY_ID`.
    pub id: String,
}

impl RelayProcess {
    /// Starts `outbox-relay` (built next to the test binaries) on `db` as relay `id`.
    pub fn start(db: &RelayDb, id: &str, extra: &[(&str, &str)]) -> Self {
        let mut pairs = vec![("RELAY_ID", id)];
        pairs.extend_from_slice(extra);
        Self::start_binary("outbox-relay", &db.name, id, db.env_pairs(&pairs))
    }

    /// Starts service `binary` (built next to the test binaries) with `env` and a free
    /// `HTTP_ADDR` and `ADMIN_ADDR`; logs go to `<cache>/logs/test-<binary>-<db>-<id>.log`.
    pub fn start_binary(binary: &str, db: &str, id: &str, env: Vec<(String, String)>) -> Self {
        let [port, admin_port] = free_ports();
        let addr = format!("127.0.0.1:{port}");
        let admin_addr = format!("127.0.0.1:{admin_port}");
        let logs = std::env::var("EVENTFOLD_CACHE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir())
            .join("logs");
        let _ = std::fs::create_dir_all(&logs);
        let log = std::fs::File::create(logs.join(format!("test-{binary}-{db}-{id}.log")))
            .expect("log file");
        let child = tokio::process::Command::new(service_binary(binary))
            .env_clear()
            .envs(env)
            .env("HTTP_ADDR", &addr)
            .env("ADMIN_ADDR", &admin_addr)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary} (built by `make test` first): {e}"));
        Self {
            child,
            url: format!("http://{addr}"),
            admin_url: format!("http://{admin_addr}"),
            id: id.into(),
        }
    }

    /// Sends `signal` (e.g. `libc`'s SIGKILL = 9, SIGSTOP = 19, SIGCONT = 18) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -s {signal} {pid}");
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn stop(mut self) {
        self.signal("TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("stops within 30 s after SIGTERM")
            .expect("wait");
        assert!(status.success(), "{} exit: {status}", self.id);
    }
}

/// `N` distinct ports free on 127.0.0.1 (all bound at once, so none is handed out twice).
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [std::net::TcpListener; N] =
        std::array::from_fn(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"));
    listeners.map(|l| l.local_addr().expect("bound").port())
}

/// The `outbox-relay` binary of this build: next to the test binary's `deps` directory.
pub fn relay_binary() -> std::path::PathBuf {
    service_binary("outbox-relay")
}

/// The service binary `name` of this build: next to the test binary's `deps` directory.
pub fn service_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    dir.join(name)
}

/// The value of the unlabelled metric `name` in Prometheus text, if present.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
        .trim()
        .parse()
        .ok()
}

/// Shard locks held per backend pid in `db` (one pid per relay).
pub async fn shard_locks(db: &RelayDb) -> Vec<(i32, i64)> {
    sqlx::query_as(
        "SELECT pid, count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::bigint::oid \
         AND objsubid = 2 AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         GROUP BY pid ORDER BY pid",
    )
    .bind(i64::from(outbox_relay::shards::LOCK_CLASS))
    .fetch_all(&db.admin)
    .await
    .expect("pg_locks")
}
