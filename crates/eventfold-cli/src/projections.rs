//! `eventfold rebuild`, `eventfold replay`, `eventfold audit` and `eventfold parked`: read model maintenance against
//! the event store (`DATABASE_URL`) and Neo4j (`NEO4J_*`).

use std::sync::Arc;
use std::time::Duration;

use eventfold_postgres::PgSettings;
use eventfold_runtime::{Env, Shutdown};
use projector::neo4j::Neo4jSettings;
use projector::parking::Parking;
use projector::projection::Projection;
use projector::rebuild::{self, Stores};
use projector::replay::{self, ReplayRequest, ReplaySummary};

use crate::cli::{Outcome, ReplayArgs, UsageError};

fn stores(env: &Env, batch: usize) -> Result<Stores, UsageError> {
    let db = PgSettings::from_env(env).map_err(|e| UsageError(e.to_string()))?;
    let neo = Neo4jSettings::from_env(env).map_err(|e| UsageError(e.to_string()))?;
    let graph = neo
        .graph()
        .map_err(|e| UsageError(format!("NEO4J_URI: {e}")))?;
    Ok(Stores {
        pool: db.pool_lazy(),
        graph,
        graph_suffix: neo.label_suffix.clone(),
        batch,
    })
}

fn model(name: &str) -> Result<Arc<dyn Projection>, UsageError> {
    let registry = projector::models::registry();
    registry.get(name).cloned().ok_or_else(|| {
        let known: Vec<&str> = registry.all().iter().map(|p| p.name()).collect();
        UsageError(format!(
            "unknown read model `{name}` (known: {})",
            known.join(", ")
        ))
    })
}

fn failed(e: impl std::fmt::Display) -> Outcome {
    Outcome {
        err: vec![e.to_string()],
        ..Outcome::default()
    }
}

fn json_line(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// `eventfold rebuild <read-model>`.
pub async fn rebuild(env: &Env, name: &str, batch: usize) -> Result<Outcome, UsageError> {
    let p = model(name)?;
    let stores = stores(env, batch)?;
    let shutdown = Shutdown::on_signals();
    Ok(match rebuild::rebuild(&p, &stores, &shutdown).await {
        Ok(r) => Outcome {
            out: vec![json_line(&r)],
            ok: true,
            ..Outcome::default()
        },
        Err(e) => failed(e),
    })
}

/// `eventfold replay <read-model> [filters]`: the summary as one JSON line on standard output,
/// a progress line on standard error after each batch when it is a terminal. A request that
/// cannot run (see [`rebuild::RebuildError::Invalid`]) is a usage error (exit 2) before anything
/// is read.
pub async fn replay_events(env: &Env, args: ReplayArgs) -> Result<Outcome, UsageError> {
    use std::io::{IsTerminal, Write};
    let p = model(&args.read_model)?;
    let req = ReplayRequest {
        tenant: args.tenant,
        types: args.types,
        aggregates: args.aggregates,
        from: args.from,
        to: args.to,
        to_version: args.to_version,
        batch: args.batch as usize,
        checkpoint: args.checkpoint,
        max_batches: args.max_batches.map(|m| m as usize),
    };
    req.check(&*p).map_err(|e| {
        let flag = match e.field {
            "aggregates" => "aggregate".to_owned(),
            f => f.replace('_', "-"),
        };
        UsageError(format!("--{flag}: {}", e.message))
    })?;
    let stores = stores(env, req.batch)?;
    let shutdown = Shutdown::on_signals();
    let tty = std::io::stderr().is_terminal();
    let mut progress = |s: &ReplaySummary| {
        if tty {
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\r{} batches, {} events matched, {} applied, {} skipped, {} parked, position {}, {:.1} s",
                s.batches,
                s.matched,
                s.applied,
                s.skipped,
                s.parked,
                s.last_position.unwrap_or(0),
                s.seconds
            );
            let _ = err.flush();
        }
    };
    let result = replay::replay(&p, &stores, &req, &mut progress, &shutdown).await;
    if tty {
        eprintln!();
    }
    Ok(match result {
        Ok(s) => Outcome {
            out: vec![json_line(&s)],
            ok: true,
            ..Outcome::default()
        },
        Err(e) => failed(e),
    })
}

/// `eventfold audit <read-model> [--tenant T]`: one line per tenant and one for the total on
/// standard output, the differences found on standard error; exit 0 when every tenant is clean,
/// 1 otherwise. A tenant that is not a valid tenant id, or that has no events, rows or versions
/// in the read model (a misspelt name would otherwise audit clean), is a usage error (exit 2).
pub async fn audit(
    env: &Env,
    name: &str,
    tenant: Option<&str>,
    wait: Duration,
) -> Result<Outcome, UsageError> {
    let p = model(name)?;
    if let Some(t) = tenant
        && !eventfold_auth::valid_tenant(t)
    {
        return Err(UsageError(format!(
            "--tenant `{t}`: expected 1-64 characters of A-Z a-z 0-9 - _ ."
        )));
    }
    let stores = stores(env, 2000)?;
    let shutdown = Shutdown::on_signals();
    let r = match rebuild::audit(&p, &stores, tenant, wait, &shutdown).await {
        Ok(r) => r,
        Err(e) => return Ok(failed(e)),
    };
    if let Some(t) = tenant
        && r.tenant(t)
            .is_none_or(|a| a.events == 0 && a.live_rows == 0 && a.expected_rows == 0 && a.clean)
    {
        return Err(UsageError(format!(
            "--tenant `{t}`: no events, rows or versions of this tenant in {name}"
        )));
    }
    let mut out: Vec<String> = r
        .tenants
        .iter()
        .map(|t| {
            let who = if t.tenant.is_empty() {
                "(no tenant)".to_owned()
            } else {
                format!("tenant {}", t.tenant)
            };
            audit_line(
                &who,
                t.clean,
                t.events,
                t.live_rows,
                t.expected_rows,
                [
                    t.missing_count,
                    t.unexpected_count,
                    t.version_mismatch_count,
                ],
            )
        })
        .collect();
    out.push(audit_line(
        "total",
        r.is_clean(),
        r.events,
        r.live_rows,
        r.expected_rows,
        [
            r.missing_count,
            r.unexpected_count,
            r.version_mismatch_count,
        ],
    ));
    let err = r
        .missing
        .iter()
        .map(|m| format!("missing or different: {m}"))
        .chain(r.unexpected.iter().map(|u| format!("unexpected: {u}")))
        .chain(r.version_mismatches.iter().map(|v| format!("version: {v}")))
        .collect();
    Ok(Outcome {
        ok: r.is_clean(),
        out,
        err,
    })
}

/// One line of the audit: `<who>: clean|NOT CLEAN, <n> events, rows <live> live / <expected>
/// expected, <m> missing or different, <u> unexpected, <v> version mismatches`.
fn audit_line(
    who: &str,
    clean: bool,
    events: usize,
    live: usize,
    expected: usize,
    [missing, unexpected, versions]: [usize; 3],
) -> String {
    let verdict = if clean { "clean" } else { "NOT CLEAN" };
    format!(
        "{who}: {verdict}, {events} events, rows {live} live / {expected} expected, \
         {missing} missing or different, {unexpected} unexpected, {versions} version mismatches"
    )
}

/// `eventfold parked list <read-model>`: one JSON line per parked event.
pub async fn list(env: &Env, name: &str) -> Result<Outcome, UsageError> {
    let p = model(name)?;
    let stores = stores(env, 1)?;
    let parking = Parking::new(stores.pool, p.name(), None);
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        match parking.list(after, 1000).await {
            Ok(items) if items.is_empty() => break,
            Ok(items) => {
                after = items.last().map_or(after, |i| i.id);
                out.extend(items.iter().map(json_line));
            }
            Err(e) => return Ok(failed(e)),
        }
    }
    Ok(Outcome {
        out,
        ok: true,
        ..Outcome::default()
    })
}

/// `eventfold parked replay <read-model> [--aggregate TYPE/ID] [--tenant TENANT]` (the tenant of
/// the stream defaults to `default`).
pub async fn replay(
    env: &Env,
    name: &str,
    aggregate: Option<&str>,
    tenant: Option<&str>,
) -> Result<Outcome, UsageError> {
    let p = model(name)?;
    let only = match aggregate {
        None => None,
        Some(a) => {
            let (t, i) = a
                .split_once('/')
                .ok_or_else(|| UsageError(format!("--aggregate `{a}`: expected TYPE/ID")))?;
            Some(projector::target::AggregateKey::new(
                tenant.unwrap_or("default"),
                t,
                i,
            ))
        }
    };
    let stores = stores(env, 2000)?;
    let shutdown = Shutdown::on_signals();
    Ok(
        match rebuild::replay_parked(&p, &stores, only, &shutdown).await {
            Ok(reports) => Outcome {
                ok: reports.iter().all(|r| r.error.is_none()),
                out: reports.iter().map(json_line).collect(),
                err: reports
                    .iter()
                    .filter_map(|r| {
                        let e = r.error.as_ref()?;
                        Some(format!(
                            "{}/{}/{}: {e}",
                            r.tenant, r.aggregate_type, r.aggregate_id
                        ))
                    })
                    .collect(),
            },
            Err(e) => failed(e),
        },
    )
}

/// `eventfold parked discard <read-model> <id>`.
pub async fn discard(env: &Env, name: &str, id: i64) -> Result<Outcome, UsageError> {
    let p = model(name)?;
    let stores = stores(env, 1)?;
    Ok(
        match Parking::new(stores.pool, p.name(), None).discard(id).await {
            Ok(true) => Outcome {
                out: vec![format!("discarded parked event {id}")],
                ok: true,
                ..Outcome::default()
            },
            Ok(false) => failed(format!("no parked event {id} in {name}")),
            Err(e) => failed(e),
        },
    )
}

/// `eventfold cypher <query>`: a read-only query against `NEO4J_*`, one JSON line per row.
///
/// The query runs in a READ access-mode transaction (Bolt `mode: "r"`), in which Neo4j itself
/// refuses every write (`CREATE`, `MERGE`, `SET`, `DELETE`, `REMOVE`, schema and token changes)
/// with `Neo.ClientError.Statement.AccessMode`; that refusal is reported as such.
pub async fn cypher(env: &Env, query: &str) -> Result<Outcome, UsageError> {
    let stores = stores(env, 1)?;
    let mut rows = match stores.graph.execute_read(neo4rs::query(query)).await {
        Ok(r) => r,
        Err(e) => return Ok(failed(cypher_error(e))),
    };
    let mut out = Vec::new();
    loop {
        match rows.next().await {
            Ok(Some(row)) => match row.to::<serde_json::Value>() {
                Ok(v) => out.push(v.to_string()),
                Err(e) => return Ok(failed(format!("row: {e}"))),
            },
            Ok(None) => break,
            Err(e) => return Ok(failed(cypher_error(e))),
        }
    }
    Ok(Outcome {
        out,
        ok: true,
        ..Outcome::default()
    })
}

/// Neo4j's refusal of a write in read mode, said plainly; any other error as it is.
fn cypher_error(e: neo4rs::Error) -> String {
    match &e {
        neo4rs::Error::Neo4j(n) if n.code() == "Neo.ClientError.Statement.AccessMode" => format!(
            "refused: `eventfold cypher` is read-only and this query writes ({})",
            n.message()
        ),
        _ => e.to_string(),
    }
}
