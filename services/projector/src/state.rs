//! Which generation of each read model is live, and whether it is being rebuilt
//! (`projector_read_models`), watched by the running projectors.

use std::time::Duration;

use neo4rs::Graph;
use sqlx::{PgPool, Row};
use tokio::sync::watch;

use crate::projection::{Projection, Store};
use crate::target::{Target, pg_schema};

/// The live generation of a read model and the rebuild flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelState {
    /// Live generation (PostgreSQL schema `rm_<name>_g<generation>`).
    pub generation: i32,
    /// True while `eventfold rebuild` runs.
    pub rebuilding: bool,
}

/// Registers the read model if new and returns its state.
pub async fn ensure(pool: &PgPool, p: &dyn Projection) -> Result<ModelState, sqlx::Error> {
    sqlx::query(
        "INSERT INTO projector_read_models (name, store) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(p.name())
    .bind(p.store().as_str())
    .execute(pool)
    .await?;
    current(pool, p.name()).await
}

/// The state of `name`.
pub async fn current(pool: &PgPool, name: &str) -> Result<ModelState, sqlx::Error> {
    let r = sqlx::query("SELECT generation, rebuilding FROM projector_read_models WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await?;
    Ok(ModelState {
        generation: r.get(0),
        rebuilding: r.get(1),
    })
}

/// Sets the rebuild flag.
pub async fn set_rebuilding(pool: &PgPool, name: &str, on: bool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projector_read_models SET rebuilding = $2, updated_at = clock_timestamp() \
         WHERE name = $1",
    )
    .bind(name)
    .bind(on)
    .execute(pool)
    .await?;
    Ok(())
}

/// Makes `generation` live and clears the rebuild flag.
pub async fn switch(pool: &PgPool, name: &str, generation: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projector_read_models SET generation = $2, rebuilding = false, \
         rebuilt_at = clock_timestamp(), updated_at = clock_timestamp() WHERE name = $1",
    )
    .bind(name)
    .bind(generation)
    .execute(pool)
    .await?;
    Ok(())
}

/// The store location of `generation` of `p`: PostgreSQL schema per generation; Neo4j is
/// rebuilt in place, so its live generation is always the graph with `stores.graph_suffix`,
/// fenced by the generation as its epoch.
pub fn target(p: &dyn Projection, generation: i32, stores: &Stores) -> Target {
    match p.store() {
        Store::Postgres => Target::Postgres {
            pool: stores.pool.clone(),
            schema: pg_schema(p.name(), generation),
        },
        Store::Neo4j => Target::Neo4j {
            graph: stores.graph.clone(),
            g: stores.graph_suffix.clone(),
            fence: Some(crate::target::Fence {
                read_model: p.name().to_owned(),
                epoch: generation,
            }),
        },
    }
}

/// The clients a projector, rebuild, replay or audit needs.
#[derive(Clone)]
pub struct Stores {
    /// The read models' and event store's database.
    pub pool: PgPool,
    /// The graph.
    pub graph: Graph,
    /// `NEO4J_LABEL_SUFFIX`: appended to every label and relationship type of the live graph
    /// read models (default empty), so that several installations can share one Neo4j.
    pub graph_suffix: String,
    /// Events per transaction in rebuilds and audits.
    pub batch: usize,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("graph_suffix", &self.graph_suffix)
            .field("batch", &self.batch)
            .finish()
    }
}

/// Polls the state of `name` now and then every `every`, publishing changes; until the first
/// answer the value is `initial`.
pub fn watch_state(
    pool: PgPool,
    name: &'static str,
    initial: ModelState,
    every: Duration,
) -> watch::Receiver<ModelState> {
    let (tx, rx) = watch::channel(initial);
    tokio::spawn(async move {
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = tx.closed() => return,
                }
            }
            match current(&pool, name).await {
                Ok(s) => {
                    tx.send_if_modified(|old| {
                        let changed = *old != s;
                        *old = s;
                        changed
                    });
                }
                Err(e) => tracing::debug!(read_model = name, error = %e, "cannot read model state"),
            }
        }
    });
    rx
}
