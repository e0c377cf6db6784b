//! The aggregate types the service serves, chosen by name at run time: each type gets its own
//! command bus, behind one object-safe interface.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventfold_domain::{Aggregate, DomainEvent, UpcastError, parse_command};
use eventfold_postgres::bus::BusMetrics;
use eventfold_postgres::{BusConfig, CommandBus, CommandMeta, EventStore, Handled, hydrate};
use eventfold_reference::registry::{AGGREGATE_TYPES, AggregateVisitor, visit};
use serde::Serialize;

use crate::problem::Problem;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A command as received, before it is parsed for its aggregate type.
#[derive(Debug)]
pub struct Submission {
    /// Target aggregate.
    pub aggregate_id: String,
    /// Command name from the URL.
    pub command: String,
    /// JSON body.
    pub body: serde_json::Value,
    /// Envelope.
    pub meta: CommandMeta,
    /// SHA-256 of the canonical request.
    pub request_hash: Vec<u8>,
    /// The caller's expected version, honoured strictly.
    pub expected_version: Option<i64>,
}

/// An aggregate's state as answered by `GET /v1/{type}/{id}`.
#[derive(Debug, Serialize)]
pub struct StateView {
    /// Aggregate type.
    pub aggregate_type: &'static str,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Version the state is at.
    pub version: i64,
    /// Name of the state-machine state.
    pub state_name: &'static str,
    /// The folded state.
    pub state: serde_json::Value,
}

/// One aggregate type, object-safe.
pub trait Domain: Send + Sync {
    /// The command names.
    fn command_names(&self) -> &'static [&'static str];
    /// Parses and handles a command.
    fn execute(&self, submission: Submission) -> BoxFuture<'_, Result<Handled, Problem>>;
    /// The state of `tenant`'s stream now, at a version, or as of a time.
    fn state(
        &self,
        tenant: String,
        aggregate_id: String,
        at_version: Option<i64>,
        as_of: Option<DateTime<Utc>>,
    ) -> BoxFuture<'_, Result<StateView, Problem>>;
    /// A stored payload of `event_type` at `schema_version` brought to the latest version, with
    /// that version: the same upcasters hydration and the projector use.
    fn upcast(
        &self,
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<(serde_json::Value, u32), UpcastError>;
}

struct Typed<A: Aggregate> {
    bus: CommandBus<A>,
    store: EventStore,
}

impl<A: Aggregate> Domain for Typed<A> {
    fn command_names(&self) -> &'static [&'static str] {
        A::command_names()
    }

    fn execute(&self, s: Submission) -> BoxFuture<'_, Result<Handled, Problem>> {
        Box::pin(async move {
            let command = parse_command::<A>(&s.command, s.body)?;
            let handled = self
                .bus
                .handle(
                    s.aggregate_id,
                    command,
                    s.meta,
                    s.request_hash,
                    s.expected_version,
                )
                .await?;
            Ok(handled)
        })
    }

    fn state(
        &self,
        tenant: String,
        aggregate_id: String,
        at_version: Option<i64>,
        as_of: Option<DateTime<Utc>>,
    ) -> BoxFuture<'_, Result<StateView, Problem>> {
        Box::pin(async move {
            let (state, version) =
                hydrate::<A>(&self.store, &tenant, &aggregate_id, at_version, as_of).await?;
            if version == 0 {
                return Err(Problem::not_found(
                    "aggregate_not_found",
                    format!("{} {aggregate_id} has no events at that point", A::TYPE),
                ));
            }
            if let Some(wanted) = at_version
                && wanted != version
            {
                return Err(Problem::not_found(
                    "version_not_found",
                    format!(
                        "{} {aggregate_id} has no version {wanted} (latest {version})",
                        A::TYPE
                    ),
                )
                .with("current_version", version));
            }
            Ok(StateView {
                aggregate_type: A::TYPE,
                aggregate_id,
                version,
                state_name: state.state_name(),
                state: serde_json::to_value(&state).map_err(|e| {
                    Problem::new(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "unserializable_state",
                        e.to_string(),
                    )
                })?,
            })
        })
    }

    fn upcast(
        &self,
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<(serde_json::Value, u32), UpcastError> {
        let upcasters = Self::upcasters();
        let latest = upcasters.upcast(event_type, schema_version, payload)?;
        Ok((latest, upcasters.latest(event_type)))
    }
}

impl<A: Aggregate> Typed<A> {
    fn upcasters() -> &'static eventfold_domain::Upcasters {
        <A::Event as DomainEvent>::upcasters()
    }
}

struct Start<'a> {
    store: &'a EventStore,
    config: &'a BusConfig,
}

impl AggregateVisitor for Start<'_> {
    type Output = Arc<dyn Domain>;
    fn visit<A: Aggregate>(self) -> Arc<dyn Domain> {
        Arc::new(Typed::<A> {
            bus: CommandBus::start(self.store.clone(), self.config.clone()),
            store: self.store.clone(),
        })
    }
}

/// Every aggregate type of the reference domains, by name.
#[derive(Clone)]
pub struct Domains {
    by_name: Arc<BTreeMap<&'static str, Arc<dyn Domain>>>,
}

impl Domains {
    /// Starts a command bus per aggregate type (must run inside the Tokio runtime).
    pub fn start(store: &EventStore, config: &BusConfig, metrics: Option<BusMetrics>) -> Self {
        let config = BusConfig {
            metrics,
            ..config.clone()
        };
        let by_name = AGGREGATE_TYPES
            .iter()
            .filter_map(|name| {
                let start = Start {
                    store,
                    config: &config,
                };
                visit(name, start).map(|d| (*name, d))
            })
            .collect();
        Self {
            by_name: Arc::new(by_name),
        }
    }

    /// The aggregate type called `name`, or a 404 problem.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn Domain>, Problem> {
        self.by_name.get(name).ok_or_else(|| {
            Problem::not_found(
                "unknown_aggregate_type",
                format!(
                    "no aggregate type `{name}`; known: {}",
                    AGGREGATE_TYPES.join(", ")
                ),
            )
        })
    }
}
