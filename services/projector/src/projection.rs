//! The projection API: what a read model declares, and the pure mapping from events to batched
//! writes that the engine runs.
//!
//! A projection is declarative: for every event it handles it returns [`Write`]s — a statement
//! key and one parameter row (a JSON object). The engine groups the rows of a batch by statement
//! and runs each statement once with all its rows (`$1` as a `jsonb` array for PostgreSQL,
//! `$rows` as a list of maps for Neo4j), in the same transaction as the stored consumer offsets.
//! Events of one aggregate are applied in version order: a batch is cut into waves (the first
//! event of every aggregate, then the second, ...), and within a wave the statements run in the
//! order their keys first appear.

use std::fmt;

use eventfold_domain::DomainEvent;
use eventfold_kafka::Envelope;
use serde_json::Value;

/// The database a read model lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Tables in a PostgreSQL schema per generation; offsets in the same database.
    Postgres,
    /// A Neo4j graph; offsets as nodes in the same graph.
    Neo4j,
}

impl Store {
    /// `postgres` or `neo4j`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Neo4j => "neo4j",
        }
    }
}

/// One event as a projection sees it: the envelope and the payload upcast to the latest version.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectedEvent {
    /// Ids, aggregate, version, time, causation.
    pub envelope: Envelope,
    /// The JSON payload at the latest schema version of its event type.
    pub payload: Value,
}

impl ProjectedEvent {
    /// The payload as the typed domain event `E` (e.g. `opportunity::Event`).
    pub fn domain<E: DomainEvent>(&self) -> Result<E, HandlerError> {
        E::from_payload(&self.envelope.event_type, self.payload.clone())
            .map_err(|e| HandlerError::new(format!("{}: {e}", self.envelope.event_type)))
    }
}

/// One parameter row for the statement named `statement`.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// Key of the statement (see [`Projection::statement`]).
    pub statement: &'static str,
    /// The row: a JSON object whose fields the statement reads.
    pub row: Value,
}

impl Write {
    /// A row for `statement`.
    pub fn new(statement: &'static str, row: Value) -> Self {
        Self { statement, row }
    }
}

/// A handler refused an event (it will be retried, then parked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

impl HandlerError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A read model: the events it consumes and how they change it.
///
/// Statements may contain `{schema}` (PostgreSQL: the schema of the generation being written)
/// and are run with one parameter: PostgreSQL `$1` is a `jsonb` array of the rows (read it with
/// `jsonb_to_recordset($1)` or `jsonb_array_elements($1)`); Neo4j `$rows` is a list of maps
/// (`UNWIND $rows AS r`). A statement must be idempotent for a row applied twice only where
/// the engine's version guard cannot see it (it skips every event at or below an aggregate's
/// last applied version).
pub trait Projection: Send + Sync + 'static {
    /// Read model name: consumer group suffix, offsets key, `eventfold rebuild <name>`.
    fn name(&self) -> &'static str;
    /// Where it is stored.
    fn store(&self) -> Store;
    /// The aggregate types whose topics it consumes.
    fn aggregate_types(&self) -> &'static [&'static str];
    /// Statements run at start-up and before a rebuild, in order (tables, constraints,
    /// indexes); each must be idempotent (`IF NOT EXISTS`).
    fn setup(&self) -> Vec<String>;
    /// Statements that empty the read model (Neo4j rebuild; PostgreSQL drops the generation's
    /// schema instead). A Neo4j statement deletes a bounded slice and returns the number deleted
    /// as `c`; it is repeated until that is 0 (one huge delete would exhaust the server's
    /// transaction memory).
    fn reset(&self) -> Vec<String>;
    /// The statement named `key`; `None` for a key it never writes.
    fn statement(&self, key: &str) -> Option<&'static str>;
    /// The writes for `event`, without I/O; empty for an event that does not concern it.
    fn writes(&self, event: &ProjectedEvent) -> Result<Vec<Write>, HandlerError>;
    /// Queries that list the whole read model for `eventfold audit`, each returning per entity
    /// a text column (PostgreSQL) or field (Neo4j) named `row`, e.g. a JSON text of every stored
    /// property, and one named `tenant`, the tenant the entity belongs to; the rows of two
    /// generations are compared, tenant by tenant, as sorted multisets. `eventfold audit
    /// --tenant` keeps one tenant's rows (`WHERE tenant = ..` around each query), so a read
    /// model must keep tenants apart: no entity may be written by events of two tenants.
    fn dump(&self) -> Vec<&'static str>;
    /// Neo4j: every node label it writes (without `{g}`), so that a rebuilt generation can be
    /// relabelled to the live one. Empty for PostgreSQL.
    fn labels(&self) -> &'static [&'static str] {
        &[]
    }
}

impl fmt::Debug for dyn Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Projection")
            .field("name", &self.name())
            .field("store", &self.store())
            .finish()
    }
}

/// The read models one projector process runs, by name.
#[derive(Debug, Default)]
pub struct Registry {
    projections: Vec<std::sync::Arc<dyn Projection>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `projection` (a later one with the same name replaces it).
    pub fn with(mut self, projection: impl Projection) -> Self {
        self.projections.retain(|p| p.name() != projection.name());
        self.projections.push(std::sync::Arc::new(projection));
        self
    }

    /// Every registered projection, in registration order.
    pub fn all(&self) -> &[std::sync::Arc<dyn Projection>] {
        &self.projections
    }

    /// The projection named `name`.
    pub fn get(&self, name: &str) -> Option<&std::sync::Arc<dyn Projection>> {
        self.projections.iter().find(|p| p.name() == name)
    }

    /// Only the projections named in `names` (all of them when `names` is empty); an unknown
    /// name is returned as the error.
    pub fn only(&self, names: &[String]) -> Result<Self, String> {
        if names.is_empty() {
            return Ok(Self {
                projections: self.projections.clone(),
            });
        }
        let mut projections = Vec::new();
        for n in names {
            projections.push(self.get(n).cloned().ok_or_else(|| n.clone())?);
        }
        Ok(Self { projections })
    }
}

/// Cuts `events` (already in per-stream order) into waves: wave k holds the k-th event of
/// every stream (tenant, aggregate type, aggregate id) present, in the order the streams first
/// appear.
pub fn waves<T>(events: Vec<T>, stream_of: impl Fn(&T) -> (&str, &str, &str)) -> Vec<Vec<T>> {
    let mut depth: std::collections::HashMap<(String, String, String), usize> =
        std::collections::HashMap::new();
    let mut out: Vec<Vec<T>> = Vec::new();
    for e in events {
        let (tenant, t, id) = stream_of(&e);
        let d = depth
            .entry((tenant.to_owned(), t.to_owned(), id.to_owned()))
            .or_insert(0);
        if out.len() <= *d {
            out.push(Vec::new());
        }
        out[*d].push(e);
        *d += 1;
    }
    out
}

/// Groups writes by statement key, keys in first-seen order.
pub fn group(writes: impl IntoIterator<Item = Write>) -> Vec<(&'static str, Vec<Value>)> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for w in writes {
        match out.iter_mut().find(|(k, _)| *k == w.statement) {
            Some((_, rows)) => rows.push(w.row),
            None => out.push((w.statement, vec![w.row])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn waves_keep_each_aggregates_order_and_put_one_event_per_aggregate_in_a_wave() {
        let events = vec![("A", 1), ("B", 1), ("A", 2), ("A", 3), ("C", 1), ("B", 2)];
        let w = waves(events, |(id, _)| ("t", "T", id));
        assert_eq!(
            w,
            vec![
                vec![("A", 1), ("B", 1), ("C", 1)],
                vec![("A", 2), ("B", 2)],
                vec![("A", 3)],
            ]
        );
    }

    #[test]
    fn group_keeps_first_seen_key_order() {
        let g = group([
            Write::new("b", json!(1)),
            Write::new("a", json!(2)),
            Write::new("b", json!(3)),
        ]);
        assert_eq!(
            g,
            vec![("b", vec![json!(1), json!(3)]), ("a", vec![json!(2)])]
        );
    }
}
