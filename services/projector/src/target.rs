//! Where one generation of a read model is written: its rows, its applied versions (the version
//! guard) and its consumer offsets, all changed in one transaction of the same store.

use std::collections::HashMap;

use neo4rs::{BoltType, Graph, Txn, query};
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::apply::{ApplyError, apply_neo4j, apply_pg, render};
use crate::projection::{Projection, Store, Write};

/// A topic partition.
pub type Partition = (String, i32);
/// A stream as the projector keys it: tenant, aggregate type and aggregate id (the same id in two
/// tenants is two streams, each with its own versions).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize)]
pub struct AggregateKey {
    /// Tenant of the stream.
    pub tenant: String,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
}

impl AggregateKey {
    /// The stream `(tenant, aggregate_type, aggregate_id)`.
    pub fn new(
        tenant: impl Into<String>,
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
    ) -> Self {
        Self {
            tenant: tenant.into(),
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
        }
    }
}

impl std::fmt::Display for AggregateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.tenant, self.aggregate_type, self.aggregate_id
        )
    }
}

/// One generation of a read model in its store.
#[derive(Clone)]
pub enum Target {
    /// Tables in `schema`, plus `{schema}._versions` and `{schema}._offsets`.
    Postgres {
        /// The read models' database.
        pool: PgPool,
        /// Schema of the generation, e.g. `rm_opportunities_g1`.
        schema: String,
    },
    /// Labels with suffix `g`, plus `ProjectorVersion{g}` and `ProjectorOffset{g}` nodes.
    Neo4j {
        /// The graph.
        graph: Graph,
        /// Label suffix of the generation (`""` for the live graph).
        g: String,
        /// The epoch every transaction must still hold; `None` for tools that only read or
        /// own the graph outright (audit scratch graphs, test clean-up).
        fence: Option<Fence>,
    },
}

/// The epoch a Neo4j writer was started with. A Neo4j read model is rebuilt in place, so a
/// writer that missed the rebuild (a batch still running, a paused projector) must not write
/// into the rebuilt graph: every transaction first takes the read model's epoch node and fails
/// with [`ApplyError::Fenced`] when the rebuild has moved it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// Read model name (the epoch node's key).
    pub read_model: String,
    /// The generation this writer belongs to.
    pub epoch: i32,
}

/// Takes the read model's epoch node (created on first use) and returns its epoch. The write
/// lock taken by `SET` is held to the end of the transaction, so a rebuild that moves the epoch
/// on waits for a transaction in flight, and every later transaction sees the new epoch.
pub const TAKE_EPOCH_CYPHER: &str = "MERGE (e:ProjectorEpoch{g} {read_model: $name}) \
     ON CREATE SET e.epoch = $epoch \
     SET e.locked = true REMOVE e.locked \
     RETURN e.epoch AS epoch";

/// Moves the read model's epoch on (waits for the transaction in flight that holds it).
pub const MOVE_EPOCH_CYPHER: &str = "MERGE (e:ProjectorEpoch{g} {read_model: $name}) \
     SET e.epoch = $epoch, e.moved_at = datetime()";

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres { schema, .. } => write!(f, "postgres schema {schema}"),
            Self::Neo4j { g, .. } => write!(f, "neo4j generation {g:?}"),
        }
    }
}

/// PostgreSQL schema of generation `generation` of `name`.
pub fn pg_schema(name: &str, generation: i32) -> String {
    format!("rm_{name}_g{generation}")
}

/// The PostgreSQL role that owns every generation of read model `name` (declared by a migration
/// with `eventfold_declare_read_model`).
pub fn read_model_role(name: &str) -> String {
    format!("eventfold_rm_{name}")
}

const PG_ENGINE_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS {schema}._versions (aggregate_type text NOT NULL, \
     aggregate_id text NOT NULL, tenant text NOT NULL DEFAULT 'default', \
     last_version bigint NOT NULL, \
     PRIMARY KEY (aggregate_type, aggregate_id, tenant)) WITH (fillfactor = 70)",
    // A generation created before streams were per tenant: its version guard gets the tenant
    // column, filled from the tenant of each stream's events (until then a stream had exactly
    // one tenant), and the tenant joins its key. Nothing to do for a newer generation.
    "DO $$ BEGIN \
     IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = '{schema}' \
       AND table_name = '_versions' AND column_name = 'tenant') THEN \
       ALTER TABLE {schema}._versions ADD COLUMN tenant text NOT NULL DEFAULT 'default'; \
       UPDATE {schema}._versions v SET tenant = e.tenant FROM events e \
         WHERE e.aggregate_type = v.aggregate_type AND e.aggregate_id = v.aggregate_id \
           AND e.version = 1 AND e.tenant <> v.tenant; \
       ALTER TABLE {schema}._versions DROP CONSTRAINT _versions_pkey; \
       ALTER TABLE {schema}._versions ADD PRIMARY KEY (aggregate_type, aggregate_id, tenant); \
     END IF; END $$",
    "CREATE TABLE IF NOT EXISTS {schema}._offsets (topic text NOT NULL, \
     \"partition\" integer NOT NULL, next_offset bigint NOT NULL, \
     updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (topic, \"partition\")) WITH (fillfactor = 50)",
];

/// Locks (and creates at version 0) the version-guard nodes of `$keys`, in the given order.
pub const LOCK_VERSIONS_CYPHER: &str = "UNWIND $keys AS k \
     MERGE (v:ProjectorVersion{g} {key: k.key}) \
     ON CREATE SET v.tenant = k.tenant, v.aggregate_type = k.t, v.aggregate_id = k.id, \
       v.last_version = 0 \
     SET v.locked = true REMOVE v.locked \
     RETURN k.tenant AS tenant, k.t AS t, k.id AS id, v.last_version AS last";

/// Locks (and creates at offset -1) the offset nodes of the partitions `$keys`, in the given order.
pub const LOCK_OFFSETS_CYPHER: &str = "UNWIND $keys AS k \
     MERGE (o:ProjectorOffset{g} {key: k.key}) \
     ON CREATE SET o.topic = k.topic, o.partition = k.partition, o.next_offset = -1 \
     SET o.batches = coalesce(o.batches, 0) + 1 \
     RETURN o.topic AS topic, o.partition AS partition, o.next_offset AS next_offset";

/// Stores the last applied version of each aggregate in `$rows` (never moves one back).
pub const SAVE_VERSIONS_CYPHER: &str = "UNWIND $rows AS r MERGE (v:ProjectorVersion{g} {key: r.key}) \
     ON CREATE SET v.tenant = r.tenant, v.aggregate_type = r.t, v.aggregate_id = r.id, \
       v.last_version = r.v \
     SET v.last_version = CASE WHEN v.last_version > r.v THEN v.last_version ELSE r.v END";

/// Stores the next offset of each partition in `$rows` (never moves one back).
pub const SAVE_OFFSETS_CYPHER: &str = "UNWIND $rows AS r MERGE (o:ProjectorOffset{g} {key: r.key}) \
     ON CREATE SET o.topic = r.topic, o.partition = r.partition, o.next_offset = r.o \
     SET o.next_offset = CASE WHEN o.next_offset > r.o THEN o.next_offset ELSE r.o END";

/// Deletes up to 5000 version-guard nodes (a reset repeats it until it deletes none, so one
/// transaction stays small however large the graph).
pub const RESET_VERSIONS_CYPHER: &str =
    "MATCH (n:ProjectorVersion{g}) WITH n LIMIT 5000 DETACH DELETE n RETURN count(*) AS c";

/// Deletes up to 5000 offset nodes (repeated like [`RESET_VERSIONS_CYPHER`]).
pub const RESET_OFFSETS_CYPHER: &str =
    "MATCH (n:ProjectorOffset{g}) WITH n LIMIT 5000 DETACH DELETE n RETURN count(*) AS c";

/// Deletes the read model's epoch node (dropping the generation).
pub const DROP_EPOCH_CYPHER: &str =
    "MATCH (e:ProjectorEpoch{g} {read_model: $name}) DETACH DELETE e";

const NEO_ENGINE_SETUP: &[&str] = &[
    "CREATE CONSTRAINT projector_offset{g} IF NOT EXISTS FOR (o:ProjectorOffset{g}) REQUIRE o.key IS UNIQUE",
    "CREATE CONSTRAINT projector_version{g} IF NOT EXISTS FOR (v:ProjectorVersion{g}) REQUIRE v.key IS UNIQUE",
    "CREATE CONSTRAINT projector_epoch{g} IF NOT EXISTS FOR (e:ProjectorEpoch{g}) REQUIRE e.read_model IS UNIQUE",
];

impl Target {
    /// Creates what the generation needs (schema, engine tables, the projection's setup).
    pub async fn setup(&self, p: &dyn Projection) -> Result<(), ApplyError> {
        match self {
            Self::Postgres { pool, schema } => {
                let mut conn = pool.acquire().await?;
                // Concurrent instances may set up the same schema: serialise them.
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(schema)
                    .execute(&mut *tx)
                    .await?;
                // Whoever sets it up (a projector, or `eventfold rebuild` as another role), the
                // generation belongs to the read model's role: the schema is created by the
                // migration role's function (projectors hold no CREATE on the database), and the
                // tables by that role, so every projector granted the read model can use them.
                sqlx::query("SELECT eventfold_create_read_model_schema($1, $2)")
                    .bind(p.name())
                    .bind(schema)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&format!("SET LOCAL ROLE {}", read_model_role(p.name())))
                    .execute(&mut *tx)
                    .await?;
                for s in PG_ENGINE_TABLES
                    .iter()
                    .map(|s| s.to_string())
                    .chain(p.setup())
                {
                    sqlx::query(&render(&s, schema)).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Self::Neo4j { graph, g, .. } => {
                for s in NEO_ENGINE_SETUP
                    .iter()
                    .map(|s| s.to_string())
                    .chain(p.setup())
                {
                    graph.run(query(&render(&s, g))).await?;
                }
            }
        }
        Ok(())
    }

    /// Deletes the generation: drops the PostgreSQL schema, or empties the Neo4j generation
    /// and drops its constraints and indexes.
    pub async fn drop_all(&self, p: &dyn Projection) -> Result<(), ApplyError> {
        match self {
            Self::Postgres { pool, schema } => {
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(pool)
                    .await?;
            }
            Self::Neo4j { graph, g, .. } => {
                self.reset(p).await?;
                graph
                    .run(query(&render(DROP_EPOCH_CYPHER, g)).param("name", p.name()))
                    .await?;
                if !g.is_empty() {
                    for (kind, plural) in [("CONSTRAINT", "CONSTRAINTS"), ("INDEX", "INDEXES")] {
                        let mut rows = graph
                            .execute(
                                query(&format!(
                                    "SHOW {plural} YIELD name WHERE name ENDS WITH $g RETURN name"
                                ))
                                .param("g", g.as_str()),
                            )
                            .await?;
                        let mut names = Vec::new();
                        while let Some(row) = rows.next().await? {
                            names.push(row.get::<String>("name").map_err(neo_de)?);
                        }
                        for n in names {
                            graph
                                .run(query(&format!("DROP {kind} {n} IF EXISTS")))
                                .await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Empties the generation's rows, versions and offsets (keeps its schema or constraints).
    pub async fn reset(&self, p: &dyn Projection) -> Result<(), ApplyError> {
        match self {
            Self::Postgres { pool, schema } => {
                let mut tx = pool.begin().await?;
                for s in p.reset().into_iter().chain([
                    "TRUNCATE {schema}._versions".to_owned(),
                    "TRUNCATE {schema}._offsets".to_owned(),
                ]) {
                    sqlx::query(&render(&s, schema)).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Self::Neo4j { graph, g, .. } => {
                for s in p.reset().into_iter().chain([
                    RESET_VERSIONS_CYPHER.to_owned(),
                    RESET_OFFSETS_CYPHER.to_owned(),
                ]) {
                    let statement = render(&s, g);
                    loop {
                        let mut rows = graph.execute(query(&statement)).await?;
                        let mut deleted = 0;
                        while let Some(row) = rows.next().await? {
                            deleted += row.get::<i64>("c").unwrap_or(0);
                        }
                        if deleted == 0 {
                            break;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Every stored offset of the generation.
    pub async fn offsets(&self) -> Result<HashMap<Partition, i64>, ApplyError> {
        self.triples(
            "SELECT topic, \"partition\", next_offset FROM {schema}._offsets",
            "MATCH (o:ProjectorOffset{g}) RETURN o.topic AS a, o.partition AS b, o.next_offset AS c",
        )
        .await
    }

    /// Every entry of the version guard (for the auditor). A Neo4j version node written before
    /// streams were per tenant has no tenant: it counts as `default`'s.
    pub async fn versions(&self) -> Result<HashMap<AggregateKey, i64>, ApplyError> {
        self.versions_of(None).await
    }

    /// The entries of the version guard of `tenant`'s streams (every tenant's when `None`).
    pub async fn versions_of(
        &self,
        tenant: Option<&str>,
    ) -> Result<HashMap<AggregateKey, i64>, ApplyError> {
        let mut out = HashMap::new();
        match self {
            Self::Postgres { pool, schema } => {
                let sql = render(
                    "SELECT tenant, aggregate_type, aggregate_id, last_version \
                     FROM {schema}._versions \
                     WHERE last_version > 0 AND ($1::text IS NULL OR tenant = $1)",
                    schema,
                );
                for r in sqlx::query(&sql).bind(tenant).fetch_all(pool).await? {
                    let key = AggregateKey::new(
                        r.try_get::<String, _>(0)?,
                        r.try_get::<String, _>(1)?,
                        r.try_get::<String, _>(2)?,
                    );
                    out.insert(key, r.try_get(3)?);
                }
            }
            Self::Neo4j { graph, g, .. } => {
                let cypher = render(
                    "MATCH (v:ProjectorVersion{g}) WHERE v.last_version > 0 \
                       AND ($tenant IS NULL OR coalesce(v.tenant, 'default') = $tenant) \
                     RETURN coalesce(v.tenant, 'default') AS tenant, v.aggregate_type AS t, \
                       v.aggregate_id AS id, v.last_version AS last",
                    g,
                );
                let mut rows = graph
                    .execute(query(&cypher).param("tenant", tenant))
                    .await?;
                while let Some(row) = rows.next().await? {
                    let key = AggregateKey::new(
                        row.get::<String>("tenant").map_err(neo_de)?,
                        row.get::<String>("t").map_err(neo_de)?,
                        row.get::<String>("id").map_err(neo_de)?,
                    );
                    out.insert(key, row.get("last").map_err(neo_de)?);
                }
            }
        }
        Ok(out)
    }

    /// Rows of three columns (`a`, `b`, `c` in Cypher) as a map `(a, b) -> c`.
    async fn triples<B>(
        &self,
        sql: &str,
        cypher: &str,
    ) -> Result<HashMap<(String, B), i64>, ApplyError>
    where
        B: std::hash::Hash
            + Eq
            + for<'r> sqlx::Decode<'r, sqlx::Postgres>
            + sqlx::Type<sqlx::Postgres>
            + serde::de::DeserializeOwned,
    {
        let mut out = HashMap::new();
        match self {
            Self::Postgres { pool, schema } => {
                for r in sqlx::query(&render(sql, schema)).fetch_all(pool).await? {
                    out.insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
                }
            }
            Self::Neo4j { graph, g, .. } => {
                let mut rows = graph.execute(query(&render(cypher, g))).await?;
                while let Some(row) = rows.next().await? {
                    out.insert(
                        (row.get("a").map_err(neo_de)?, row.get("b").map_err(neo_de)?),
                        row.get("c").map_err(neo_de)?,
                    );
                }
            }
        }
        Ok(out)
    }

    /// The rows of every dump query as `(tenant, JSON text)`, sorted (a row that names no tenant
    /// has `""`); only `tenant`'s rows when given.
    pub async fn dump(
        &self,
        p: &dyn Projection,
        tenant: Option<&str>,
    ) -> Result<Vec<(String, String)>, ApplyError> {
        let mut out = Vec::new();
        for (i, q) in p.dump().into_iter().enumerate() {
            match self {
                Self::Postgres { pool, schema } => {
                    let q = render(q, schema);
                    let rows = match tenant {
                        None => sqlx::query(&q).fetch_all(pool).await?,
                        Some(t) => {
                            // A plain subquery: PostgreSQL pushes the filter down to the table.
                            let q =
                                format!("SELECT tenant, row FROM ({q}) AS dump WHERE tenant = $1");
                            sqlx::query(&q).bind(t).fetch_all(pool).await?
                        }
                    };
                    for r in rows {
                        let owner: Option<String> = r.try_get("tenant")?;
                        let text: String = r.try_get("row")?;
                        // Re-serialise so that key order and spacing do not matter.
                        let v: Value = serde_json::from_str(&text)
                            .map_err(|e| ApplyError::Refused(format!("dump row: {e}")))?;
                        out.push((owner.unwrap_or_default(), format!("{i}:{v}")));
                    }
                }
                Self::Neo4j { graph, g, .. } => {
                    let q = render(q, g);
                    let q = match tenant {
                        None => query(&q),
                        Some(t) => query(&format!(
                            "CALL {{ {q} }} WITH tenant, row WHERE tenant = $tenant \
                             RETURN tenant, row"
                        ))
                        .param("tenant", t),
                    };
                    let mut rows = graph.execute(q).await?;
                    while let Some(row) = rows.next().await? {
                        let owner: Option<String> = row.get("tenant").map_err(neo_de)?;
                        let v: Value = row.get("row").map_err(neo_de)?;
                        out.push((owner.unwrap_or_default(), format!("{i}:{}", unsuffix(v, g))));
                    }
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Opens a transaction.
    pub async fn begin(&self) -> Result<Tx, ApplyError> {
        Ok(match self {
            Self::Postgres { pool, schema } => Tx::Postgres {
                tx: pool.begin().await?,
                schema: schema.clone(),
            },
            Self::Neo4j { graph, g, fence } => {
                let mut txn = graph.start_txn().await?;
                if let Some(f) = fence {
                    let mut rows = txn
                        .execute(
                            query(&render(TAKE_EPOCH_CYPHER, g))
                                .param("name", f.read_model.as_str())
                                .param("epoch", i64::from(f.epoch)),
                        )
                        .await?;
                    let mut held = None;
                    while let Some(row) = rows.next(&mut txn).await? {
                        held = Some(row.get::<i64>("epoch").map_err(neo_de)?);
                    }
                    if held != Some(i64::from(f.epoch)) {
                        let _ = txn.rollback().await;
                        return Err(ApplyError::Fenced(format!(
                            "{} epoch {} is stale: the graph is at epoch {}",
                            f.read_model,
                            f.epoch,
                            held.map_or("unknown".into(), |e| e.to_string())
                        )));
                    }
                }
                Tx::Neo4j {
                    txn: Box::new(txn),
                    g: g.clone(),
                }
            }
        })
    }

    /// Neo4j: moves the read model's epoch to `epoch`, fencing off every writer started with
    /// an older one (waits for the transaction in flight). PostgreSQL: nothing to do, a new
    /// generation is a new schema.
    pub async fn move_epoch(&self, read_model: &str, epoch: i32) -> Result<(), ApplyError> {
        if let Self::Neo4j { graph, g, .. } = self {
            graph
                .run(
                    query(&render(MOVE_EPOCH_CYPHER, g))
                        .param("name", read_model)
                        .param("epoch", i64::from(epoch)),
                )
                .await?;
        }
        Ok(())
    }

    /// The store kind.
    pub fn store(&self) -> Store {
        match self {
            Self::Postgres { .. } => Store::Postgres,
            Self::Neo4j { .. } => Store::Neo4j,
        }
    }
}

/// Label suffixes vanish from dumped strings, so two generations compare equal.
fn unsuffix(v: Value, g: &str) -> Value {
    if g.is_empty() {
        return v;
    }
    match v {
        Value::String(s) => Value::String(s.replace(g, "")),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| unsuffix(x, g)).collect()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, x)| (k, unsuffix(x, g))).collect())
        }
        other => other,
    }
}

fn neo_de(e: impl std::fmt::Display) -> ApplyError {
    ApplyError::Refused(format!("unexpected Neo4j row: {e}"))
}

/// A transaction on one generation.
pub enum Tx {
    /// A PostgreSQL transaction.
    Postgres {
        /// The transaction.
        tx: Transaction<'static, Postgres>,
        /// The generation's schema.
        schema: String,
    },
    /// A Neo4j transaction.
    Neo4j {
        /// The transaction (boxed: the driver's transaction is large).
        txn: Box<Txn>,
        /// The generation's label suffix.
        g: String,
    },
}

impl Tx {
    /// Locks the offsets of `partitions` until commit and returns them (-1 when none stored):
    /// a second instance working on the same partition waits, then sees what this one stored.
    pub async fn lock_offsets(
        &mut self,
        partitions: &[Partition],
    ) -> Result<HashMap<Partition, i64>, ApplyError> {
        let mut sorted = partitions.to_vec();
        sorted.sort();
        sorted.dedup();
        let topics: Vec<&str> = sorted.iter().map(|(t, _)| t.as_str()).collect();
        let parts: Vec<i32> = sorted.iter().map(|(_, p)| *p).collect();
        let mut out = HashMap::new();
        match self {
            Self::Postgres { tx, schema } => {
                sqlx::query(&format!(
                    "INSERT INTO {schema}._offsets (topic, \"partition\", next_offset) \
                     SELECT t, p, -1 FROM unnest($1::text[], $2::int[]) AS u(t, p) \
                     ORDER BY t, p ON CONFLICT DO NOTHING"
                ))
                .bind(&topics)
                .bind(&parts)
                .execute(&mut **tx)
                .await?;
                let rows = sqlx::query(&format!(
                    "SELECT o.topic, o.\"partition\", o.next_offset FROM {schema}._offsets o \
                     JOIN unnest($1::text[], $2::int[]) AS u(t, p) \
                       ON o.topic = u.t AND o.\"partition\" = u.p \
                     ORDER BY o.topic, o.\"partition\" FOR UPDATE OF o"
                ))
                .bind(&topics)
                .bind(&parts)
                .fetch_all(&mut **tx)
                .await?;
                for r in rows {
                    out.insert((r.get(0), r.get(1)), r.get(2));
                }
            }
            Self::Neo4j { txn, g } => {
                let keys: Vec<Value> = sorted
                    .iter()
                    .map(|(t, p)| json!({"key": format!("{t}/{p}"), "topic": t, "partition": p}))
                    .collect();
                let mut rows = txn
                    .execute(
                        query(&render(LOCK_OFFSETS_CYPHER, g))
                            .param("keys", bolt(Value::Array(keys))?),
                    )
                    .await?;
                while let Some(row) = rows.next(&mut **txn).await? {
                    let t: String = row.get("topic").map_err(neo_de)?;
                    let p: i64 = row.get("partition").map_err(neo_de)?;
                    let o: i64 = row.get("next_offset").map_err(neo_de)?;
                    out.insert((t, p as i32), o);
                }
            }
        }
        Ok(out)
    }

    /// Locks the version-guard entries of `keys` until commit and returns their last applied
    /// versions (absent = none applied). Whoever else applies events of these aggregates (another
    /// instance, a replay of parked events) waits here, then sees what this transaction stored:
    /// a version read without the lock could be stale by the time the writes run, and the same
    /// event would take effect twice. Keys are locked in sorted order, so two batches cannot
    /// deadlock; an entry that does not exist yet is created at version 0 so that it can be locked.
    pub async fn lock_versions(
        &mut self,
        keys: &[AggregateKey],
    ) -> Result<HashMap<AggregateKey, i64>, ApplyError> {
        let mut out = HashMap::new();
        if keys.is_empty() {
            return Ok(out);
        }
        let mut sorted = keys.to_vec();
        sorted.sort();
        sorted.dedup();
        match self {
            Self::Postgres { tx, schema } => {
                let tenants: Vec<&str> = sorted.iter().map(|k| k.tenant.as_str()).collect();
                let types: Vec<&str> = sorted.iter().map(|k| k.aggregate_type.as_str()).collect();
                let ids: Vec<&str> = sorted.iter().map(|k| k.aggregate_id.as_str()).collect();
                sqlx::query(&format!(
                    "INSERT INTO {schema}._versions (tenant, aggregate_type, aggregate_id, last_version) \
                     SELECT n, t, i, 0 FROM unnest($1::text[], $2::text[], $3::text[]) AS u(n, t, i) \
                     ORDER BY t, i, n ON CONFLICT DO NOTHING"
                ))
                .bind(&tenants)
                .bind(&types)
                .bind(&ids)
                .execute(&mut **tx)
                .await?;
                let rows = sqlx::query(&format!(
                    "SELECT v.tenant, v.aggregate_type, v.aggregate_id, v.last_version \
                     FROM {schema}._versions v \
                     JOIN unnest($1::text[], $2::text[], $3::text[]) AS u(n, t, i) \
                       ON v.tenant = u.n AND v.aggregate_type = u.t AND v.aggregate_id = u.i \
                     ORDER BY v.aggregate_type, v.aggregate_id, v.tenant FOR UPDATE OF v"
                ))
                .bind(&tenants)
                .bind(&types)
                .bind(&ids)
                .fetch_all(&mut **tx)
                .await?;
                for r in rows {
                    let v: i64 = r.get(3);
                    if v > 0 {
                        out.insert(
                            AggregateKey::new(
                                r.get::<String, _>(0),
                                r.get::<String, _>(1),
                                r.get::<String, _>(2),
                            ),
                            v,
                        );
                    }
                }
            }
            Self::Neo4j { txn, g, .. } => {
                let list: Vec<Value> = sorted
                    .iter()
                    .map(|k| {
                        json!({"key": version_key(k), "tenant": k.tenant,
                            "t": k.aggregate_type, "id": k.aggregate_id})
                    })
                    .collect();
                // Setting a property takes the node's write lock until the transaction ends
                // (the value itself is removed again in the same statement).
                let mut rows = txn
                    .execute(
                        query(&render(LOCK_VERSIONS_CYPHER, g))
                            .param("keys", bolt(Value::Array(list))?),
                    )
                    .await?;
                while let Some(row) = rows.next(&mut **txn).await? {
                    let last: i64 = row.get("last").map_err(neo_de)?;
                    if last > 0 {
                        let key = AggregateKey::new(
                            row.get::<String>("tenant").map_err(neo_de)?,
                            row.get::<String>("t").map_err(neo_de)?,
                            row.get::<String>("id").map_err(neo_de)?,
                        );
                        out.insert(key, last);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Bounds how long the server keeps working for this transaction: a client that timed out
    /// and dropped it must not leave a statement holding its locks behind (the batch is retried
    /// in halves, which would wait for them). PostgreSQL: `statement_timeout` and `lock_timeout`
    /// for this transaction; Neo4j: the server's `db.transaction.timeout` (set by the stack's
    /// launcher, see README), as the driver cannot set one per transaction.
    pub async fn bound(&mut self, timeout: std::time::Duration) -> Result<(), ApplyError> {
        if let Self::Postgres { tx, .. } = self {
            let ms = format!("{}ms", timeout.as_millis().max(1));
            sqlx::query(
                "SELECT set_config('statement_timeout', $1, true), \
                        set_config('lock_timeout', $1, true)",
            )
            .bind(&ms)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Runs a projection's writes.
    pub async fn apply(
        &mut self,
        p: &dyn Projection,
        writes: Vec<Write>,
    ) -> Result<(), ApplyError> {
        match self {
            Self::Postgres { tx, schema } => apply_pg(tx, schema, p, writes).await,
            Self::Neo4j { txn, g } => apply_neo4j(txn, g, p, writes).await,
        }
    }

    /// Stores the new last applied versions.
    pub async fn save_versions(
        &mut self,
        versions: &HashMap<AggregateKey, i64>,
    ) -> Result<(), ApplyError> {
        if versions.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<_> = versions.iter().collect();
        sorted.sort();
        match self {
            Self::Postgres { tx, schema } => {
                let tenants: Vec<&str> = sorted.iter().map(|(k, _)| k.tenant.as_str()).collect();
                let types: Vec<&str> = sorted
                    .iter()
                    .map(|(k, _)| k.aggregate_type.as_str())
                    .collect();
                let ids: Vec<&str> = sorted
                    .iter()
                    .map(|(k, _)| k.aggregate_id.as_str())
                    .collect();
                let vs: Vec<i64> = sorted.iter().map(|(_, v)| **v).collect();
                sqlx::query(&format!(
                    "INSERT INTO {schema}._versions (aggregate_type, aggregate_id, tenant, last_version) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) \
                     ON CONFLICT (aggregate_type, aggregate_id, tenant) DO UPDATE \
                     SET last_version = GREATEST({schema}._versions.last_version, EXCLUDED.last_version)"
                ))
                .bind(&types)
                .bind(&ids)
                .bind(&tenants)
                .bind(&vs)
                .execute(&mut **tx)
                .await?;
            }
            Self::Neo4j { txn, g } => {
                let rows: Vec<Value> = sorted
                    .iter()
                    .map(|(k, v)| {
                        json!({"key": version_key(k), "tenant": k.tenant, "t": k.aggregate_type,
                            "id": k.aggregate_id, "v": v})
                    })
                    .collect();
                txn.run(
                    query(&render(SAVE_VERSIONS_CYPHER, g))
                        .param("rows", bolt(Value::Array(rows))?),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Stores the next offset to consume of each partition.
    pub async fn save_offsets(
        &mut self,
        offsets: &HashMap<Partition, i64>,
    ) -> Result<(), ApplyError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<_> = offsets.iter().collect();
        sorted.sort();
        match self {
            Self::Postgres { tx, schema } => {
                let topics: Vec<&str> = sorted.iter().map(|((t, _), _)| t.as_str()).collect();
                let parts: Vec<i32> = sorted.iter().map(|((_, p), _)| *p).collect();
                let next: Vec<i64> = sorted.iter().map(|(_, o)| **o).collect();
                sqlx::query(&format!(
                    "INSERT INTO {schema}._offsets (topic, \"partition\", next_offset) \
                     SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[]) \
                     ON CONFLICT (topic, \"partition\") DO UPDATE \
                     SET next_offset = GREATEST({schema}._offsets.next_offset, EXCLUDED.next_offset), \
                         updated_at = clock_timestamp()"
                ))
                .bind(&topics)
                .bind(&parts)
                .bind(&next)
                .execute(&mut **tx)
                .await?;
            }
            Self::Neo4j { txn, g } => {
                let rows: Vec<Value> = sorted
                    .iter()
                    .map(|((t, p), o)| {
                        json!({"key": format!("{t}/{p}"), "topic": t, "partition": p, "o": o})
                    })
                    .collect();
                txn.run(
                    query(&render(SAVE_OFFSETS_CYPHER, g)).param("rows", bolt(Value::Array(rows))?),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), ApplyError> {
        match self {
            Self::Postgres { tx, .. } => tx.commit().await?,
            Self::Neo4j { txn, .. } => {
                txn.commit().await?;
            }
        }
        Ok(())
    }

    /// Rolls back (errors are ignored: the transaction is gone either way).
    pub async fn rollback(self) {
        match self {
            Self::Postgres { tx, .. } => {
                let _ = tx.rollback().await;
            }
            Self::Neo4j { txn, .. } => {
                let _ = txn.rollback().await;
            }
        }
    }
}

/// The key of a stream's version node: `type/id` for tenant `default` (the key every node had
/// before streams were per tenant, so an existing graph keeps its guard), `tenant\u{1f}type/id`
/// for any other tenant.
fn version_key(k: &AggregateKey) -> String {
    if k.tenant == "default" {
        format!("{}/{}", k.aggregate_type, k.aggregate_id)
    } else {
        format!("{}\u{1f}{}/{}", k.tenant, k.aggregate_type, k.aggregate_id)
    }
}

fn bolt(v: Value) -> Result<BoltType, ApplyError> {
    BoltType::try_from(v).map_err(|e| ApplyError::Refused(format!("parameter: {e}")))
}
