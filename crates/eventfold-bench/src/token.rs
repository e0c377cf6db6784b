//! The bearer token of the HTTP target with authentication on: `BENCH_HTTP_TOKEN` as given, or
//! one minted at start by the local issuer the stack's services trust. One token serves the whole
//! run; the service verifies it on every request (its keys are cached there), and that per-request
//! cost is what the auth-off row sets apart.

use std::time::Duration;

use eventfold_auth::{AuthError, LocalIssuer, scope};

use crate::config::{BenchConfig, TokenSource};

/// The subject of a minted token (the service records it as the commands' actor).
pub const SUBJECT: &str = "eventfold-bench";
/// The tenant of a minted token (the one `AUTH_MODE=disabled` gives every request, too).
pub const TENANT: &str = "default";
/// The scopes of a minted token: commands, and reads of what they wrote.
pub const SCOPES: [&str; 2] = [scope::COMMANDS_WRITE, scope::EVENTS_READ];
/// Timed runs per worker count besides the HTTP rows' (peer, in-process).
const OTHER_RUNS_PER_PHASE: u32 = 2;
/// Margin for the untimed setups, checkpoints and a slow machine.
const MARGIN: Duration = Duration::from_secs(3600);

/// The token `source` names, minted valid for `ttl` when it comes from the local issuer.
pub fn bearer(source: &TokenSource, ttl: Duration) -> Result<String, AuthError> {
    let settings = match source {
        TokenSource::Given(token) => return Ok(token.clone()),
        TokenSource::Issuer(settings) => settings,
    };
    LocalIssuer::load(&settings.key_file)?
        .issue(&settings.request(SUBJECT, "system", TENANT, &SCOPES, ttl))
}

/// How long a minted token must stay valid: every timed run of the run, plus a margin.
pub fn lifetime(config: &BenchConfig) -> Duration {
    // The HTTP rows, with and without authentication, run `auth_rounds` times each.
    let http_runs = 2u32.saturating_mul(config.auth_rounds as u32);
    let runs = (OTHER_RUNS_PER_PHASE + http_runs).saturating_mul(config.workers.len() as u32);
    config.duration.saturating_mul(runs) + MARGIN
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventfold_auth::{
        AuthSettings, Authenticator, IssuerSettings, JWKS_FILE_NAME, JwksSource, JwtSettings,
        KEY_FILE_NAME,
    };
    use eventfold_runtime::Env;

    fn settings(dir: &std::path::Path) -> IssuerSettings {
        IssuerSettings {
            key_file: dir.join(KEY_FILE_NAME),
            issuer: "bench-issuer".into(),
            audience: "bench-audience".into(),
        }
    }

    #[tokio::test]
    async fn mints_a_token_the_services_accept_for_commands_and_reads_of_tenant_default() {
        let dir = tempfile::tempdir().unwrap();
        LocalIssuer::init(dir.path()).unwrap();
        let s = settings(dir.path());
        let token = bearer(&TokenSource::Issuer(s.clone()), Duration::from_secs(600)).unwrap();
        let verifier = Authenticator::new(AuthSettings::jwt(JwtSettings::new(
            JwksSource::File(dir.path().join(JWKS_FILE_NAME)),
            s.issuer,
            s.audience,
        )))
        .unwrap();
        let principal = verifier.verify(&token).await.unwrap();
        assert_eq!(principal.tenant, "default");
        assert_eq!(principal.subject, SUBJECT);
        assert!(principal.has(scope::COMMANDS_WRITE));
        assert!(principal.has(scope::EVENTS_READ));
        assert!(!principal.has(scope::ADMIN));
    }

    #[tokio::test]
    async fn a_minted_token_is_refused_for_another_audience() {
        let dir = tempfile::tempdir().unwrap();
        LocalIssuer::init(dir.path()).unwrap();
        let token = bearer(
            &TokenSource::Issuer(settings(dir.path())),
            Duration::from_secs(600),
        )
        .unwrap();
        let verifier = Authenticator::new(AuthSettings::jwt(JwtSettings::new(
            JwksSource::File(dir.path().join(JWKS_FILE_NAME)),
            "bench-issuer",
            "eventfold",
        )))
        .unwrap();
        assert_eq!(
            verifier.verify(&token).await.unwrap_err(),
            AuthError::WrongAudience
        );
    }

    #[test]
    fn sends_a_given_token_as_it_is_without_reading_a_key() {
        let token = bearer(
            &TokenSource::Given("given.token.value".into()),
            Duration::ZERO,
        );
        assert_eq!(token.unwrap(), "given.token.value");
    }

    #[test]
    fn names_the_key_file_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let err = bearer(
            &TokenSource::Issuer(settings(dir.path())),
            Duration::from_secs(60),
        )
        .unwrap_err();
        assert_eq!(err.code(), "issuer_key");
        assert!(err.to_string().contains(KEY_FILE_NAME), "{err}");
    }

    #[test]
    fn a_minted_token_outlives_every_timed_run() {
        let config = BenchConfig::from_env_and_args(
            Env::from_pairs([
                ("BENCH_SECONDS", "600"),
                ("BENCH_WORKERS", "1,8,32"),
                ("BENCH_DATABASE_URL", "postgres://127.0.0.1:5432/postgres"),
            ]),
            &[],
        )
        .unwrap();
        // 3 worker counts × (peer, in-process, 2 rounds of each HTTP row) × 10 min = 3 h, plus
        // the margin.
        assert_eq!(lifetime(&config), Duration::from_secs(3 * 3600 + 3600));
    }
}
