//! Running a projection's grouped writes against its store, and telling transient failures
//! (retry forever) from refusals (retry a few times, then park).

use neo4rs::{BoltType, Txn, query};
use serde_json::Value;
use sqlx::PgConnection;

use crate::projection::{HandlerError, Projection, Write, group};

/// Why applying writes failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The store is unreachable or asked to retry (connection lost, deadlock, Neo4j transient
    /// error): retried with back-off, never a reason to park.
    #[error("store unavailable: {0}")]
    Transient(String),
    /// The handler or the store refused the data (constraint, type, handler error): retried a
    /// few times, then the event is parked.
    #[error("refused: {0}")]
    Refused(String),
    /// The writer's epoch is stale: a rebuild moved the read model on while this writer was
    /// paused or slow. Its transaction is refused; it must restart on the new generation.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The transaction did not finish within the apply timeout (the client's, or the server's
    /// statement, lock or transaction timeout that bounds it). Retried, never parked; the engine
    /// splits a timed-out batch instead of running it whole again.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// The store refuses every write for a reason no event can cause (permission denied, a
    /// read-only transaction after a failover, a missing table): the read model halts with
    /// `reason` and retries with back-off until the operator fixes it. Never parked, since
    /// parking every event would destroy the read model's order.
    #[error("halted ({code}): {reason}")]
    Halted {
        /// The store's error code, e.g. `42501`.
        code: String,
        /// The store's message.
        reason: String,
    },
}

impl ApplyError {
    /// True for [`ApplyError::Transient`], [`ApplyError::TimedOut`] and [`ApplyError::Halted`]:
    /// retried with back-off, never a reason to park.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Transient(_) | Self::TimedOut(_) | Self::Halted { .. }
        )
    }
}

impl From<HandlerError> for ApplyError {
    fn from(e: HandlerError) -> Self {
        Self::Refused(e.0)
    }
}

impl From<sqlx::Error> for ApplyError {
    fn from(e: sqlx::Error) -> Self {
        if let Some(code) = pg_halting(&e) {
            Self::Halted {
                code: code.to_owned(),
                reason: e.to_string(),
            }
        } else if pg_timed_out(&e) {
            Self::TimedOut(e.to_string())
        } else if pg_transient(&e) {
            Self::Transient(e.to_string())
        } else {
            Self::Refused(e.to_string())
        }
    }
}

impl From<neo4rs::Error> for ApplyError {
    fn from(e: neo4rs::Error) -> Self {
        if let Some(code) = neo4j_halting(&e) {
            Self::Halted {
                code,
                reason: e.to_string(),
            }
        } else if neo4j_timed_out(&e) {
            Self::TimedOut(e.to_string())
        } else if neo4j_transient(&e) {
            Self::Transient(e.to_string())
        } else {
            Self::Refused(e.to_string())
        }
    }
}

/// True for the server's own bound on a transaction (`statement_timeout`: 57014,
/// `lock_timeout`: 55P03), which the engine sets to the apply timeout.
pub fn pg_timed_out(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("57014" | "55P03")))
}

/// True for Neo4j's transaction and lock-acquisition timeouts (`db.transaction.timeout`,
/// `db.lock.acquisition.timeout`): the batch is too slow or waits on a lock, not refused.
pub fn neo4j_timed_out(e: &neo4rs::Error) -> bool {
    matches!(e, neo4rs::Error::Neo4j(n)
        if n.code().contains("TransactionTimedOut") || n.code().contains("LockAcquisitionTimeout"))
}

/// PostgreSQL error codes that say the read model cannot be written at all, whatever the event.
const PG_HALTING: &[&str] = &[
    "42501", // insufficient_privilege: a revoked grant, a role without rights
    "25006", // read_only_sql_transaction: connected to a standby after a failover
    "42P01", // undefined_table: a read-model table dropped or not yet created
    "3F000", // invalid_schema_name: the generation's schema is gone
];

/// The code of a PostgreSQL error that halts the read model (see [`ApplyError::Halted`]).
pub fn pg_halting(e: &sqlx::Error) -> Option<&'static str> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    let code = db.code()?;
    PG_HALTING.iter().copied().find(|c| *c == code)
}

/// The code of a Neo4j error that halts the read model: access denied or a read-only database.
pub fn neo4j_halting(e: &neo4rs::Error) -> Option<String> {
    let neo4rs::Error::Neo4j(n) = e else {
        return None;
    };
    let code = n.code();
    (code == "Neo.ClientError.Security.Forbidden"
        || code == "Neo.ClientError.General.ForbiddenOnReadOnlyDatabase"
        || code == "Neo.ClientError.General.WriteOnReadOnlyAccessDatabase")
        .then(|| code.to_owned())
}

/// True when a PostgreSQL error is about the connection or concurrency, not the data.
pub fn pg_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08 connection, 40 serialization/deadlock, 53 resources, 57 operator
            // intervention (shutdown), 58 system error.
            ["08", "40", "53", "57", "58"]
                .iter()
                .any(|class| code.starts_with(class))
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}

/// True when a Neo4j error is about the connection or the server's state, not the data.
pub fn neo4j_transient(e: &neo4rs::Error) -> bool {
    match e {
        neo4rs::Error::Neo4j(n) => {
            let code = n.code();
            code.starts_with("Neo.TransientError")
                || code.starts_with("Neo.ClientError.Security")
                || code.starts_with("Neo.ClientError.Cluster")
                || code.contains("DatabaseUnavailable")
        }
        neo4rs::Error::UnexpectedMessage(_)
        | neo4rs::Error::UnknownMessage(_)
        | neo4rs::Error::ConversionError
        | neo4rs::Error::DeserializationError(_) => false,
        // IO, connection, timeouts, pool errors, routing, ignored requests, auth.
        _ => true,
    }
}

/// `statement` with `{schema}` (PostgreSQL) or `{g}` (Neo4j label suffix) filled in.
pub fn render(statement: &str, target: &str) -> String {
    statement.replace("{schema}", target).replace("{g}", target)
}

fn statement_of(p: &dyn Projection, key: &str) -> Result<&'static str, ApplyError> {
    p.statement(key).ok_or_else(|| {
        ApplyError::Refused(format!("projection {} has no statement `{key}`", p.name()))
    })
}

/// Runs `writes` on a PostgreSQL connection (inside the caller's transaction), grouped by
/// statement, each statement once with `$1` = the rows as a `jsonb` array.
pub async fn apply_pg(
    conn: &mut PgConnection,
    schema: &str,
    p: &dyn Projection,
    writes: Vec<Write>,
) -> Result<(), ApplyError> {
    for (key, rows) in group(writes) {
        let sql = render(statement_of(p, key)?, schema);
        sqlx::query(&sql)
            .bind(Value::Array(rows))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Runs `writes` in a Neo4j transaction, grouped by statement, each statement once with
/// `$rows` = the rows as a list of maps; `g` is the label suffix of the generation.
pub async fn apply_neo4j(
    txn: &mut Txn,
    g: &str,
    p: &dyn Projection,
    writes: Vec<Write>,
) -> Result<(), ApplyError> {
    for (key, rows) in group(writes) {
        let cypher = render(statement_of(p, key)?, g);
        let rows = BoltType::try_from(Value::Array(rows))
            .map_err(|e| ApplyError::Refused(format!("rows for `{key}`: {e}")))?;
        txn.run(query(&cypher).param("rows", rows)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_schema_and_label_suffix() {
        assert_eq!(
            render("INSERT INTO {schema}.t", "rm_x_g2"),
            "INSERT INTO rm_x_g2.t"
        );
        assert_eq!(
            render("MERGE (v:Verse{g} {id: 1})", "_audit"),
            "MERGE (v:Verse_audit {id: 1})"
        );
    }

    #[test]
    fn connection_errors_are_transient_and_data_errors_are_not() {
        assert!(pg_transient(&sqlx::Error::PoolTimedOut));
        assert!(!pg_transient(&sqlx::Error::RowNotFound));
        assert!(neo4j_transient(&neo4rs::Error::ConnectionError));
        assert!(!neo4j_transient(&neo4rs::Error::ConversionError));
    }
}
