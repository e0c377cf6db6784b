//! The command line: `eventfold <group> <command>`. Settings come from flags or their environment
//! variables (`EVENTFOLD_SCHEMAS_DIR`, `EVENTFOLD_TOPIC_PREFIX`) and, for the registry,
//! `SCHEMA_REGISTRY_URL`, `SCHEMA_REGISTRY_USERNAME`, `SCHEMA_REGISTRY_PASSWORD`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use eventfold_avro::{Catalog, Compatibility, RegistryClient, RegistrySettings};
use eventfold_runtime::Env;

use outbox_relay::parked::AggregateRef;

use crate::token::TokenArgs;
use crate::{check, golden, outbox, projections, register, stats, token};

/// eventfold administration.
#[derive(Debug, Parser)]
#[command(name = "eventfold", version, about)]
pub struct Cli {
    /// The command group.
    #[command(subcommand)]
    pub command: Command,
}

/// Command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Avro schemas: register them, check compatibility, keep the golden corpus.
    #[command(subcommand)]
    Schemas(Schemas),
    /// Rebuild a read model from the event store (blue/green for PostgreSQL read models).
    Rebuild {
        /// Read model name (`opportunities`, `graph`).
        read_model: String,
        /// Events per transaction.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch: u32,
    },
    /// Replay the event store's events that match the filters into a read model's live
    /// generation (the version guard skips what is applied already); a JSON summary on standard
    /// output, progress on standard error when it is a terminal.
    Replay(ReplayArgs),
    /// Compare a read model with a from-scratch replay of the event store, tenant by tenant; one
    /// line per tenant and one for the total (exit 1 on a difference).
    Audit {
        /// Read model name.
        read_model: String,
        /// Only this tenant: replay its events, compare its rows and versions.
        #[arg(long)]
        tenant: Option<String>,
        /// Seconds to wait for the live read model to catch up before comparing.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
    },
    /// Events a read model parked: list, replay, discard.
    #[command(subcommand)]
    Parked(ParkedCommand),
    /// The outbox relay's rows: parked ones (list, release, discard).
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Run a read-only Cypher query on the graph read model; one JSON object per row. It runs in
    /// a READ access-mode transaction: Neo4j refuses any write (exit 1).
    Cypher {
        /// The query, e.g. `MATCH (v:Verse) RETURN v.id AS id LIMIT 5`.
        query: String,
    },
    /// Event store statistics of a tenant (`DATABASE_URL`): totals by event type, category and
    /// aggregate type, first and last event, events per minute over the last hour.
    Stats {
        /// The tenant (default: `default`).
        #[arg(long, default_value = "default")]
        tenant: String,
        /// One JSON object (the body of `GET /v1/stats`) instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Local bearer tokens: `token init` creates the issuer's key pair, `token --tenant T --scope S`
    /// prints a token signed with it.
    Token(TokenArgs),
}

/// `eventfold replay` options.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Read model name.
    pub read_model: String,
    /// Only these event types, comma-separated (e.g. `OpportunityCreated,OpportunityUpdated`).
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    /// Only this aggregate id (repeatable).
    #[arg(long = "aggregate")]
    pub aggregates: Vec<String>,
    /// Only this tenant's streams.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only events recorded at or after this RFC 3339 time.
    #[arg(long)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events recorded before this RFC 3339 time.
    #[arg(long)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Only aggregate versions up to this one.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    pub to_version: Option<i64>,
    /// Events per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Record progress under this name after each batch; a rerun with it resumes after it.
    #[arg(long)]
    pub checkpoint: Option<String>,
    /// Stop after this many batches (resume later with the same --checkpoint).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batches: Option<u32>,
}

/// `eventfold parked …`.
#[derive(Debug, Subcommand)]
pub enum ParkedCommand {
    /// One JSON line per parked event.
    List {
        /// Read model name.
        read_model: String,
    },
    /// Apply the blocked aggregates' events again from the event store; release them on success.
    Replay {
        /// Read model name.
        read_model: String,
        /// Only this aggregate, as TYPE/ID.
        #[arg(long)]
        aggregate: Option<String>,
        /// The tenant of the aggregate given with --aggregate (default: `default`).
        #[arg(long, requires = "aggregate")]
        tenant: Option<String>,
    },
    /// Delete one parked event (a record that can never be applied).
    Discard {
        /// Read model name.
        read_model: String,
        /// Parked event id.
        id: i64,
    },
}

/// `eventfold outbox …`.
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Rows the relay could not publish (and their aggregates' later rows).
    #[command(subcommand)]
    Parked(OutboxParked),
}

/// `eventfold outbox parked …`.
#[derive(Debug, Subcommand)]
pub enum OutboxParked {
    /// One JSON line per parked row: id, aggregate, version, reason, error, parked_at.
    List {
        /// Only this aggregate, as TYPE/ID.
        #[arg(long)]
        aggregate: Option<AggregateRef>,
        /// At most this many rows (oldest first).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
        limit: i64,
    },
    /// Put an aggregate's parked rows back into the outbox (published again, in version order).
    Release {
        /// The aggregate, as TYPE/ID.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        aggregate: Option<AggregateRef>,
        /// Every aggregate with parked rows (each in its own transaction).
        #[arg(long)]
        all: bool,
    },
    /// Delete an aggregate's parked rows (the events stay in the event store; read models get
    /// them only through a rebuild).
    Discard {
        /// The aggregate, as TYPE/ID.
        #[arg(long)]
        aggregate: AggregateRef,
    },
}

/// `eventfold schemas …`.
#[derive(Debug, Subcommand)]
pub enum Schemas {
    /// Register every version of every subject in version order (idempotent).
    Register(Target),
    /// Check every version against the previous one and against the registry.
    Check(CheckArgs),
    /// Compare (or with --write regenerate) the golden corpus.
    Golden(GoldenArgs),
}

/// Where the schemas are and which topics their subjects belong to.
#[derive(Debug, Args)]
pub struct Target {
    /// Directory holding `<AggregateType>/<EventType>.v<N>.avsc`.
    #[arg(long, env = "EVENTFOLD_SCHEMAS_DIR", default_value = "schemas")]
    pub dir: PathBuf,
    /// Topic name prefix; the topic of an aggregate type is `<prefix><AggregateType>`.
    #[arg(long, env = "EVENTFOLD_TOPIC_PREFIX", default_value = "eventfold.")]
    pub topic_prefix: String,
}

/// `schemas check` options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Schemas and topics.
    #[command(flatten)]
    pub target: Target,
    /// Only check local versions against each other (at BACKWARD), without a registry.
    #[arg(long)]
    pub offline: bool,
}

/// `schemas golden` options.
#[derive(Debug, Args)]
pub struct GoldenArgs {
    /// Directory holding the schemas; the corpus is its `golden/` subdirectory.
    #[arg(long, env = "EVENTFOLD_SCHEMAS_DIR", default_value = "schemas")]
    pub dir: PathBuf,
    /// Regenerate `.avro` and `.expected.json` from the `.json` samples instead of comparing.
    #[arg(long)]
    pub write: bool,
}

/// How a command ended: the lines it printed and whether it succeeded.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Lines for standard output.
    pub out: Vec<String>,
    /// Lines for standard error (findings, problems).
    pub err: Vec<String>,
    /// True when the command found nothing wrong.
    pub ok: bool,
}

/// A setting that prevents the command from starting (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn load(dir: &Path) -> Result<Catalog, Outcome> {
    Catalog::load_dir(dir).map_err(|e| Outcome {
        err: vec![e.to_string()],
        ..Outcome::default()
    })
}

fn registry(env: &Env) -> Result<RegistryClient, UsageError> {
    RegistrySettings::from_env(env)
        .map(RegistryClient::new)
        .map_err(|e| UsageError(e.to_string()))
}

/// Runs `cli` with the registry settings of `env`.
pub async fn run(cli: Cli, env: &Env) -> Result<Outcome, UsageError> {
    let schemas = match cli.command {
        Command::Schemas(s) => s,
        Command::Rebuild { read_model, batch } => {
            return projections::rebuild(env, &read_model, batch as usize).await;
        }
        Command::Replay(args) => return projections::replay_events(env, args).await,
        Command::Audit {
            read_model,
            tenant,
            wait_secs,
        } => {
            let wait = Duration::from_secs(wait_secs);
            return projections::audit(env, &read_model, tenant.as_deref(), wait).await;
        }
        Command::Parked(ParkedCommand::List { read_model }) => {
            return projections::list(env, &read_model).await;
        }
        Command::Parked(ParkedCommand::Replay {
            read_model,
            aggregate,
            tenant,
        }) => {
            return projections::replay(env, &read_model, aggregate.as_deref(), tenant.as_deref())
                .await;
        }
        Command::Parked(ParkedCommand::Discard { read_model, id }) => {
            return projections::discard(env, &read_model, id).await;
        }
        Command::Cypher { query } => return projections::cypher(env, &query).await,
        Command::Token(args) => return token::run(args, env),
        Command::Stats { tenant, json } => return stats::show(env, &tenant, json).await,
        Command::Outbox(OutboxCommand::Parked(c)) => {
            return match c {
                OutboxParked::List { aggregate, limit } => {
                    outbox::list(env, aggregate.as_ref(), limit).await
                }
                OutboxParked::Release { aggregate, .. } => {
                    outbox::release(env, aggregate.as_ref()).await
                }
                OutboxParked::Discard { aggregate } => outbox::discard(env, &aggregate).await,
            };
        }
    };
    Ok(match schemas {
        Schemas::Register(t) => {
            let client = registry(env)?;
            let catalog = match load(&t.dir) {
                Ok(c) => c,
                Err(o) => return Ok(o),
            };
            match register::register_all(&catalog, &client, &t.topic_prefix).await {
                Ok(done) => Outcome {
                    out: done
                        .iter()
                        .map(|r| format!("{} v{}: id {}", r.subject, r.version, r.id))
                        .collect(),
                    ok: true,
                    ..Outcome::default()
                },
                Err((what, e)) => Outcome {
                    err: vec![format!("{what}: {e}")],
                    ..Outcome::default()
                },
            }
        }
        Schemas::Check(a) => {
            let client = if a.offline {
                None
            } else {
                Some(registry(env)?)
            };
            let catalog = match load(&a.target.dir) {
                Ok(c) => c,
                Err(o) => return Ok(o),
            };
            check_all(&catalog, client.as_ref(), &a.target.topic_prefix).await
        }
        Schemas::Golden(g) => {
            let catalog = match load(&g.dir) {
                Ok(c) => c,
                Err(o) => return Ok(o),
            };
            let dir = g.dir.join("golden");
            let result = if g.write {
                golden::write(&catalog, &dir).map(|n| format!("wrote {n} golden samples"))
            } else {
                golden::check(&catalog, &dir).map(|n| format!("{n} golden samples match"))
            };
            match result {
                Ok(line) => Outcome {
                    out: vec![line],
                    ok: true,
                    ..Outcome::default()
                },
                Err(problems) => Outcome {
                    err: problems,
                    ..Outcome::default()
                },
            }
        }
    })
}

async fn check_all(catalog: &Catalog, client: Option<&RegistryClient>, prefix: &str) -> Outcome {
    let mut o = Outcome::default();
    let level = match client {
        None => Compatibility::Backward,
        Some(c) => match c.compatibility().await {
            Ok(level) => level.unwrap_or(Compatibility::Backward),
            Err(e) => {
                o.err.push(format!("schema registry: {e}"));
                return o;
            }
        },
    };
    o.out.push(format!(
        "{} schema versions, compatibility {level:?}",
        catalog.files().len()
    ));
    let mut findings = check::check_local(catalog, level, prefix);
    if let Some(client) = client {
        match check::check_registry(catalog, client, prefix).await {
            Ok((notes, more)) => {
                o.out.extend(notes);
                findings.extend(more);
            }
            Err(e) => {
                o.err.push(format!("schema registry: {e}"));
                return o;
            }
        }
    }
    o.err
        .extend(findings.iter().map(|f| format!("incompatible: {f}")));
    o.ok = findings.is_empty();
    o
}
