//! `eventfold outbox parked list|release|discard`: the outbox relay's parked rows, against the
//! event store (`DATABASE_URL`). The SQL is the relay's own ([`outbox_relay::parked`]), so the
//! command and the relay's admin routes do the same thing.

use eventfold_postgres::PgSettings;
use eventfold_runtime::Env;
use outbox_relay::admin::DISCARD_NOTE;
use outbox_relay::parked::{self, AggregateRef};
use sqlx::PgPool;

use crate::cli::{Outcome, UsageError};

fn pool(env: &Env) -> Result<PgPool, UsageError> {
    PgSettings::from_env(env)
        .map(|db| db.pool_lazy())
        .map_err(|e| UsageError(e.to_string()))
}

fn json_line(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn failed(e: impl std::fmt::Display) -> Outcome {
    Outcome {
        err: vec![e.to_string()],
        ..Outcome::default()
    }
}

/// `eventfold outbox parked list [--aggregate TYPE/ID] [--limit N]`: one JSON line per parked row
/// (id, aggregate, version, reason, error, parked_at, ...), oldest first.
pub async fn list(
    env: &Env,
    aggregate: Option<&AggregateRef>,
    limit: i64,
) -> Result<Outcome, UsageError> {
    let pool = pool(env)?;
    Ok(match parked::list(&pool, aggregate, 0, limit).await {
        Ok(rows) => Outcome {
            out: rows.iter().map(json_line).collect(),
            ok: true,
            ..Outcome::default()
        },
        Err(e) => failed(format!("outbox_parked: {e}")),
    })
}

/// `eventfold outbox parked release (--aggregate TYPE/ID | --all)`: one JSON line per released
/// aggregate; exit 1 when the named aggregate has no parked rows.
pub async fn release(env: &Env, aggregate: Option<&AggregateRef>) -> Result<Outcome, UsageError> {
    let pool = pool(env)?;
    let targets = match aggregate {
        Some(a) => vec![a.clone()],
        None => match parked::aggregates(&pool).await {
            Ok(all) => all,
            Err(e) => return Ok(failed(format!("outbox_parked: {e}"))),
        },
    };
    let mut o = Outcome {
        ok: true,
        ..Outcome::default()
    };
    for a in &targets {
        match parked::release(&pool, a).await {
            Ok(Some(m)) => o.out.push(json_line(&serde_json::json!({ "released": m }))),
            Ok(None) if aggregate.is_some() => {
                o.err.push(format!("no parked outbox rows of {a}"));
                o.ok = false;
            }
            Ok(None) => {}
            Err(e) => {
                o.err.push(format!("releasing {a}: {e}"));
                o.ok = false;
                return Ok(o);
            }
        }
    }
    if o.out.is_empty() && o.ok {
        o.err.push("no parked outbox rows".into());
    }
    Ok(o)
}

/// `eventfold outbox parked discard --aggregate TYPE/ID`: deletes the aggregate's parked rows and
/// says that the events reach read models only through a rebuild.
pub async fn discard(env: &Env, aggregate: &AggregateRef) -> Result<Outcome, UsageError> {
    let pool = pool(env)?;
    Ok(match parked::discard(&pool, aggregate).await {
        Ok(Some(m)) => Outcome {
            out: vec![
                json_line(&serde_json::json!({ "discarded": m })),
                format!("note: {DISCARD_NOTE}"),
            ],
            ok: true,
            ..Outcome::default()
        },
        Ok(None) => failed(format!("no parked outbox rows of {aggregate}")),
        Err(e) => failed(format!("discarding {aggregate}: {e}")),
    })
}
