//! PostgreSQL, the only authority of eventfold: connection settings shared by every service, the
//! schema migrations and the event store (events + outbox rows in one transaction).
//!
//! Domain code never depends on this crate.
#![deny(missing_docs)]

pub mod bus;
pub mod repository;
pub mod snapshot;
mod state_cache;
pub mod stats;
pub mod store;

pub use bus::{BusConfig, CommandBus};
pub use repository::{HandleError, Handled, RetryPolicy, handle, hydrate};
pub use snapshot::SnapshotPolicy;
pub use store::{
    Actor, ActorKind, AppendError, AppendOutcome, BatchError, CommandMeta, CommandRecord,
    CommandWrite, EventFilter, EventStore, FeedCursor, NewEvent, RecordedEvent, shard_key,
};

/// The schema migrations in `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

use std::time::Duration;

use eventfold_runtime::{Env, SettingsError};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// How to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `DATABASE_URL`: `postgres://user:password@host:port/database`.
    pub url: String,
    /// `DATABASE_MAX_CONNECTIONS`: pool size (default 10).
    pub max_connections: u32,
}

impl PgSettings {
    /// Reads `DATABASE_URL` (required: no credentials are compiled in) and the pool size.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let url = env.required("DATABASE_URL")?;
        let invalid = |reason: String| SettingsError::Invalid {
            var: "DATABASE_URL".into(),
            value: redact(&url),
            reason,
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid(
                "expected a postgres:// or postgresql:// URL".into(),
            ));
        }
        url.parse::<PgConnectOptions>()
            .map_err(|e| invalid(e.to_string()))?;
        let sslmode = url
            .split_once('?')
            .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("sslmode=")))
            .unwrap_or("prefer");
        eventfold_runtime::settings::refuse_insecure(
            env,
            "DATABASE_URL",
            &redact(&url),
            sslmode != "verify-full",
            "DATABASE_INSECURE",
            "a connection without sslmode=verify-full (encrypted, server certificate and host checked) is refused",
        )?;
        Ok(Self {
            url,
            max_connections: env.parse("DATABASE_MAX_CONNECTIONS", 10)?,
        })
    }

    /// Connection options parsed from the URL.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.url
            .parse()
            .expect("DATABASE_URL was validated in from_env")
    }

    /// A pool that connects on first use, so a service can start (not ready) while the database is down.
    pub fn pool_lazy(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(self.connect_options())
    }
}

/// Succeeds when the database answers a trivial query.
pub async fn probe(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(pool)
        .await
        .map(drop)
}

/// A `/readyz` check named `postgres` that runs [`probe`] on `pool`.
pub fn readiness_check(pool: PgPool) -> eventfold_runtime::ReadinessCheck {
    eventfold_runtime::ReadinessCheck::new("postgres", move || {
        let pool = pool.clone();
        async move { probe(&pool).await.map_err(|e| e.to_string()) }
    })
}

/// The URL with its password replaced, for error messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_needs_sslmode_verify_full_unless_waived() {
        let prod = |url: &str, waive: bool| {
            let mut pairs = vec![("EVENTFOLD_PROFILE", "production"), ("DATABASE_URL", url)];
            pairs.push(("DATABASE_MAX_CONNECTIONS", "4"));
            if waive {
                pairs.push(("DATABASE_INSECURE", "true"));
            }
            PgSettings::from_env(&Env::from_pairs(pairs))
        };
        let err = prod("postgres://u:pw@db/ef?sslmode=require", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DATABASE_INSECURE") && !err.contains("pw@"),
            "{err}"
        );
        assert!(prod("postgres://u:pw@db/ef", false).is_err());
        assert!(prod("postgres://u:pw@db/ef?sslmode=verify-full", false).is_ok());
        assert!(prod("postgres://u:pw@db/ef", true).is_ok());
    }

    #[test]
    fn hides_the_password_of_a_url() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/ef"),
            "postgres://app:***@db:5432/ef"
        );
        assert_eq!(redact("postgres://db/ef"), "postgres://db/ef");
    }

    #[test]
    fn refuses_a_url_that_is_not_postgres_and_does_not_echo_the_password() {
        let env = Env::from_pairs([("DATABASE_URL", "mysql://u:pw@h/db")]);
        let err = PgSettings::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
        assert!(!err.contains("pw@"), "{err}");
    }
}
