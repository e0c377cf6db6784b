//! What to run: read from `BENCH_*` environment variables, each overridable by a `--flag`.

use std::time::Duration;

use eventfold_auth::IssuerSettings;
use eventfold_runtime::{Env, SettingsError};
use sqlx::postgres::PgConnectOptions;

/// Flags and the variables they set; a flag wins over the variable.
const FLAGS: &[(&str, &str, &str)] = &[
    (
        "--seconds",
        "BENCH_SECONDS",
        "timed seconds per target and worker count (20)",
    ),
    (
        "--workers",
        "BENCH_WORKERS",
        "comma-separated worker counts (1,8,32)",
    ),
    (
        "--aggregates",
        "BENCH_AGGREGATES",
        "cross-references discovered at setup (10000)",
    ),
    (
        "--pool-size",
        "BENCH_POOL_SIZE",
        "connections per in-process target (32)",
    ),
    (
        "--targets",
        "BENCH_TARGETS",
        "any of peer,eventfold,http,hydration (all)",
    ),
    (
        "--hydration-events",
        "BENCH_HYDRATION_EVENTS",
        "events of the hydrated aggregate (100)",
    ),
    (
        "--hydration-samples",
        "BENCH_HYDRATION_SAMPLES",
        "timed loads per hydration target (1000)",
    ),
    (
        "--database-url",
        "BENCH_DATABASE_URL",
        "maintenance database, required; bench databases are created beside it",
    ),
    (
        "--http-url",
        "BENCH_HTTP_URL",
        "command-service base URL; unset skips the HTTP target",
    ),
    (
        "--http-noauth-url",
        "BENCH_HTTP_NOAUTH_URL",
        "command-service with AUTH_MODE=disabled; unset skips that row",
    ),
    (
        "--auth-rounds",
        "BENCH_AUTH_ROUNDS",
        "alternating runs of each HTTP row per worker count, auth on and off (2)",
    ),
];

/// Variables without a flag (a token does not belong on a command line, where `ps` shows it).
const VARIABLES: &[(&str, &str)] = &[
    (
        "BENCH_HTTP_TOKEN",
        "bearer token for BENCH_HTTP_URL; unset mints one from the local issuer",
    ),
    (
        "AUTH_ISSUER_KEY_FILE",
        "the local issuer's Ed25519 key (with AUTH_ISSUER, AUTH_AUDIENCE)",
    ),
];

/// The targets that can be selected with `BENCH_TARGETS`.
const TARGETS: &[&str] = &["peer", "eventfold", "http", "hydration"];

/// Where the HTTP target's bearer token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `BENCH_HTTP_TOKEN`, sent as it is.
    Given(String),
    /// Minted at start by the local issuer (`AUTH_ISSUER_KEY_FILE`, `AUTH_ISSUER`, `AUTH_AUDIENCE`).
    Issuer(IssuerSettings),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Given(_) => f.write_str("Given(<redacted>)"),
            Self::Issuer(s) => f.debug_tuple("Issuer").field(s).finish(),
        }
    }
}

/// Everything the run needs to know.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Timed duration of one target at one worker count.
    pub duration: Duration,
    /// Worker counts, run in this order.
    pub workers: Vec<usize>,
    /// Number of cross-references discovered before the timed runs.
    pub aggregates: usize,
    /// Pool size of each in-process target (the same for eventfold and the peer).
    pub pool_size: u32,
    /// Selected targets.
    pub targets: Vec<String>,
    /// Events of the aggregate that hydration loads.
    pub hydration_events: usize,
    /// Timed loads per hydration target.
    pub hydration_samples: usize,
    /// Connection to the maintenance database (`CREATE DATABASE` runs there).
    pub admin: PgConnectOptions,
    /// The command-service to drive over HTTP, if any.
    pub http_url: Option<String>,
    /// Where the bearer token for `http_url` comes from.
    pub http_token: TokenSource,
    /// A command-service with authentication disabled, driven the same way for comparison.
    pub http_noauth_url: Option<String>,
    /// Runs of each HTTP row per worker count, alternating auth on and off (ABBA order), so that
    /// drift of a shared machine falls on both rows alike.
    pub auth_rounds: usize,
    /// The in-process command bus, configured by the command service's variables.
    pub bus: eventfold_postgres::BusConfig,
}

impl BenchConfig {
    /// Reads the configuration from `env` with `args` (without the program name) applied on top;
    /// the error is one line naming the flag or variable.
    pub fn from_env_and_args(mut env: Env, args: &[String]) -> Result<Self, String> {
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag, Some(value.to_owned())),
                None => (arg.as_str(), None),
            };
            let Some((_, var, _)) = FLAGS.iter().find(|(f, _, _)| *f == flag) else {
                return Err(format!("unknown argument `{arg}` (see --help)"));
            };
            let value = match inline {
                Some(v) => v,
                None => args
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("flag {flag} needs a value"))?,
            };
            env.set(*var, value);
        }
        Self::from_env(&env).map_err(|e| e.to_string())
    }

    fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let seconds: f64 = env.parse("BENCH_SECONDS", 20.0)?;
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(invalid(
                "BENCH_SECONDS",
                &seconds.to_string(),
                "must be > 0",
            ));
        }
        let workers = list(env, "BENCH_WORKERS", "1,8,32")?
            .iter()
            .map(|w| match w.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(invalid("BENCH_WORKERS", w, "expected positive integers")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let targets = list(env, "BENCH_TARGETS", &TARGETS.join(","))?;
        if let Some(unknown) = targets.iter().find(|t| !TARGETS.contains(&t.as_str())) {
            return Err(invalid(
                "BENCH_TARGETS",
                unknown,
                "expected peer, eventfold, http or hydration",
            ));
        }
        // No compiled-in credentials: `make bench` passes the stack's server.
        let url = env.required("BENCH_DATABASE_URL")?;
        let admin = url.parse::<PgConnectOptions>().map_err(|e| {
            invalid(
                "BENCH_DATABASE_URL",
                &eventfold_postgres::redact(&url),
                &e.to_string(),
            )
        })?;
        let http_token = match env.raw("BENCH_HTTP_TOKEN") {
            Some(token) => TokenSource::Given(token.trim().to_owned()),
            None => TokenSource::Issuer(IssuerSettings::from_env(env)),
        };
        Ok(Self {
            duration: Duration::from_secs_f64(seconds),
            workers,
            aggregates: positive(env, "BENCH_AGGREGATES", 10_000)?,
            pool_size: positive(env, "BENCH_POOL_SIZE", 32)? as u32,
            targets,
            hydration_events: positive(env, "BENCH_HYDRATION_EVENTS", 100)?,
            hydration_samples: positive(env, "BENCH_HYDRATION_SAMPLES", 1000)?,
            admin,
            http_url: base_url(env, "BENCH_HTTP_URL")?,
            http_token,
            http_noauth_url: base_url(env, "BENCH_HTTP_NOAUTH_URL")?,
            auth_rounds: positive(env, "BENCH_AUTH_ROUNDS", 2)?,
            bus: eventfold_postgres::BusConfig::from_env(env)?,
        })
    }

    /// True when `target` was selected.
    pub fn runs(&self, target: &str) -> bool {
        self.targets.iter().any(|t| t == target)
    }
}

/// True when the command line asks for the usage text.
pub fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "--help" || a == "-h")
}

/// The usage text for `--help`.
pub fn usage() -> String {
    let mut text = String::from(
        "eventfold-bench: eventfold's write side against cqrs-es 0.5 + postgres-es 0.5\n\n\
         Needs the local stack's PostgreSQL (`make up`); creates and drops its own databases.\n\n",
    );
    for (flag, var, help) in FLAGS {
        text.push_str(&format!("  {flag:<20} {var:<24} {help}\n"));
    }
    text.push_str("\nWithout a flag:\n\n");
    for (var, help) in VARIABLES {
        text.push_str(&format!("  {:<20} {var:<24} {help}\n", ""));
    }
    text
}

/// An optional service base URL without its trailing slash; it must be http(s).
fn base_url(env: &Env, var: &str) -> Result<Option<String>, SettingsError> {
    let Some(url) = env.raw(var).map(|u| u.trim_end_matches('/').to_owned()) else {
        return Ok(None);
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(invalid(var, &url, "expected an http:// or https:// URL"));
    }
    Ok(Some(url))
}

fn list(env: &Env, var: &str, default: &str) -> Result<Vec<String>, SettingsError> {
    let items: Vec<String> = env
        .string(var, default)
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err(invalid(var, "", "must not be empty"));
    }
    Ok(items)
}

fn positive(env: &Env, var: &str, default: usize) -> Result<usize, SettingsError> {
    match env.parse(var, default)? {
        0 => Err(invalid(var, "0", "must be > 0")),
        n => Ok(n),
    }
}

fn invalid(var: &str, value: &str, reason: &str) -> SettingsError {
    SettingsError::Invalid {
        var: var.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration from `pairs` (with a `BENCH_DATABASE_URL`, which has no default) and
    /// `args`.
    fn parse(pairs: &[(&str, &str)], args: &[&str]) -> Result<BenchConfig, String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut env =
            Env::from_pairs([("BENCH_DATABASE_URL", "postgres://127.0.0.1:5432/postgres")]);
        for (var, value) in pairs {
            env.set(*var, *value);
        }
        BenchConfig::from_env_and_args(env, &args)
    }

    #[test]
    fn needs_a_database_url_since_no_credentials_are_compiled_in() {
        let Err(err) = BenchConfig::from_env_and_args(Env::from_pairs::<_, &str, &str>([]), &[])
        else {
            panic!("accepted without BENCH_DATABASE_URL");
        };
        assert!(err.contains("BENCH_DATABASE_URL"), "{err}");
    }

    #[test]
    fn defaults_to_the_benchmark_workload() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!(c.duration, Duration::from_secs(20));
        assert_eq!(c.workers, vec![1, 8, 32]);
        assert_eq!(c.aggregates, 10_000);
        assert!(c.http_url.is_none());
        assert!(c.http_noauth_url.is_none());
        assert_eq!(
            c.http_token,
            TokenSource::Issuer(IssuerSettings::from_env(&Env::from_pairs(Vec::<(
                &str,
                &str
            )>::new(
            ))))
        );
    }

    #[test]
    fn reads_both_http_targets_and_a_given_token() {
        let c = parse(
            &[
                ("BENCH_HTTP_URL", "http://127.0.0.1:18080/"),
                ("BENCH_HTTP_TOKEN", "eyJ.a.b\n"),
            ],
            &["--http-noauth-url", "http://127.0.0.1:18090"],
        )
        .unwrap();
        assert_eq!(c.http_url.as_deref(), Some("http://127.0.0.1:18080"));
        assert_eq!(c.http_noauth_url.as_deref(), Some("http://127.0.0.1:18090"));
        assert_eq!(c.http_token, TokenSource::Given("eyJ.a.b".into()));
        assert!(
            !format!("{c:?}").contains("eyJ"),
            "the token is not printed"
        );
    }

    #[test]
    fn mints_with_the_issuer_variables_when_no_token_is_given() {
        let c = parse(
            &[
                ("BENCH_HTTP_TOKEN", ""),
                ("AUTH_ISSUER_KEY_FILE", "/keys/issuer.pem"),
                ("AUTH_ISSUER", "bench-issuer"),
                ("AUTH_AUDIENCE", "bench-audience"),
            ],
            &[],
        )
        .unwrap();
        let TokenSource::Issuer(s) = c.http_token else {
            panic!("expected the local issuer, got {:?}", c.http_token)
        };
        assert_eq!(s.key_file, std::path::PathBuf::from("/keys/issuer.pem"));
        assert_eq!(
            (s.issuer.as_str(), s.audience.as_str()),
            ("bench-issuer", "bench-audience")
        );
    }

    #[test]
    fn refuses_an_auth_off_url_that_is_not_http() {
        let err = parse(&[("BENCH_HTTP_NOAUTH_URL", "127.0.0.1:18090")], &[]).unwrap_err();
        assert!(err.contains("BENCH_HTTP_NOAUTH_URL"), "{err}");
        let c = parse(&[("BENCH_HTTP_NOAUTH_URL", "")], &[]).unwrap();
        assert!(c.http_noauth_url.is_none(), "empty skips the row");
    }

    #[test]
    fn a_flag_overrides_the_variable() {
        let c = parse(
            &[("BENCH_SECONDS", "20")],
            &["--seconds", "2", "--workers=4,2"],
        )
        .unwrap();
        assert_eq!(c.duration, Duration::from_secs(2));
        assert_eq!(c.workers, vec![4, 2]);
    }

    #[test]
    fn refuses_an_unknown_flag_a_zero_worker_count_and_an_unknown_target() {
        assert!(parse(&[], &["--fast"]).is_err());
        let err = parse(&[("BENCH_WORKERS", "1,0")], &[]).unwrap_err();
        assert!(err.contains("BENCH_WORKERS"), "{err}");
        assert!(
            parse(&[], &["--seconds"])
                .unwrap_err()
                .contains("--seconds")
        );
        assert!(parse(&[("BENCH_TARGETS", "peer,redis")], &[]).is_err());
    }
}
