//! One isolated installation per fault: a database of its own (event store, outbox, PostgreSQL
//! read models), a topic prefix, a consumer group prefix and a Neo4j label suffix of its own, and
//! the services as real processes started from the built binaries.

use std::path::PathBuf;
use std::time::Duration;

use eventfold_tests::Stack;
use eventfold_tests::pipeline::{PARTITIONS, Pipeline};

use crate::FaultError;
use crate::procs::Proc;

/// Settings of the stack instance that the services must share with it (a 3-broker cluster's
/// replication factor and min ISR, set by `scripts/stack/env.sh`), passed through when set.
const PASSED_THROUGH: &[&str] = &[
    "KAFKA_TOPIC_REPLICATION",
    "KAFKA_TOPIC_MIN_ISR",
    "KAFKA_TOPIC_RETENTION_MS",
];

fn passed_through() -> Vec<(String, String)> {
    PASSED_THROUGH
        .iter()
        .filter_map(|k| Some(((*k).to_string(), std::env::var(k).ok()?)))
        .collect()
}

/// What a fault needs started.
#[derive(Debug, Clone)]
pub struct RigOptions {
    /// Relay processes.
    pub relays: usize,
    /// Extra environment of every relay.
    pub relay_env: Vec<(String, String)>,
    /// Extra environment of every projector.
    pub projector_env: Vec<(String, String)>,
}

impl Default for RigOptions {
    fn default() -> Self {
        Self {
            relays: 1,
            relay_env: Vec::new(),
            projector_env: Vec::new(),
        }
    }
}

/// The pipeline of one fault and its processes.
pub struct Rig {
    /// Database, topic prefix, group prefix, label suffix.
    pub pipeline: Pipeline,
    /// HTTP client for probes and metrics.
    pub http: reqwest::Client,
    /// The command-service process.
    pub command: Proc,
    /// Relay processes.
    pub relays: Vec<Proc>,
    /// Projector processes.
    pub projectors: Vec<Proc>,
    /// Where the processes log.
    pub logs: PathBuf,
    options: RigOptions,
}

impl Rig {
    /// Creates the database and starts a command service, `options.relays` relays and one
    /// projector, and waits until they are ready.
    pub async fn start(
        stack: &Stack,
        fault: &str,
        options: RigOptions,
    ) -> Result<Self, FaultError> {
        let pipeline = Pipeline::create(stack).await;
        let logs = std::env::var("EVENTFOLD_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir())
            .join("logs")
            .join(format!("faults-{fault}-{}", pipeline.db.name));
        std::fs::create_dir_all(&logs)?;
        let http = eventfold_tests::auth::operator();
        let writer = stack.role_url("ef_test_writer", Some(&pipeline.db.name));
        let command_env = stack
            .service_env(&[("DATABASE_URL", writer.as_str())])
            .pairs();
        let mut options = options;
        let shared = passed_through();
        options.relay_env.splice(0..0, shared.clone());
        options.projector_env.splice(0..0, shared);
        let command = Proc::start("command-service", "command", &logs, command_env)?;
        let mut rig = Self {
            pipeline,
            http,
            command,
            relays: Vec::new(),
            projectors: Vec::new(),
            logs,
            options,
        };
        for i in 0..rig.options.relays {
            let relay = rig.start_relay(&format!("relay-{i}"))?;
            rig.relays.push(relay);
        }
        let projector = rig.start_projector("projector-0", &[])?;
        rig.projectors.push(projector);
        rig.command
            .ready(&rig.http, Duration::from_secs(60))
            .await?;
        for p in rig.relays.iter().chain(&rig.projectors) {
            p.ready(&rig.http, Duration::from_secs(60)).await?;
        }
        Ok(rig)
    }

    /// Starts one more relay process named `id`.
    pub fn start_relay(&self, id: &str) -> Result<Proc, FaultError> {
        let mut extra: Vec<(&str, &str)> =
            vec![("RELAY_ID", id), ("KAFKA_TOPIC_PARTITIONS", PARTITIONS)];
        extra.extend(
            self.options
                .relay_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        Proc::start(
            "outbox-relay",
            id,
            &self.logs,
            self.pipeline.db.env_pairs(&extra),
        )
    }

    /// Starts one more projector process named `id` (all read models), with `extra` environment.
    pub fn start_projector(&self, id: &str, extra: &[(&str, &str)]) -> Result<Proc, FaultError> {
        let mut pairs: Vec<(&str, &str)> = self
            .options
            .projector_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.extend_from_slice(extra);
        Proc::start(
            "projector",
            id,
            &self.logs,
            self.pipeline.projector_env(&pairs),
        )
    }

    /// Stops every process and removes the database, topics and graph of this fault; when the
    /// verdict failed, they are kept for a look and the verdict says where.
    pub async fn finish(self, verdict: &mut crate::verdict::Verdict) -> Result<(), FaultError> {
        self.command.stop().await?;
        for p in self.relays.into_iter().chain(self.projectors) {
            p.stop().await?;
        }
        if verdict.passed() {
            self.pipeline.drop_all().await;
        } else {
            verdict.notes.push(format!(
                "kept for a look: database {}, topics {}*, graph labels *{}, logs {}",
                self.pipeline.db.name,
                self.pipeline.db.prefix,
                self.pipeline.suffix,
                self.logs.display()
            ));
        }
        Ok(())
    }
}
