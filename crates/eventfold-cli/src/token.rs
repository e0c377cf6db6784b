//! `eventfold token`: the local issuer's key pair and bearer tokens signed with it, for `make up`,
//! curl sessions and scripts. The key file is `AUTH_ISSUER_KEY_FILE` (default
//! `${EVENTFOLD_CACHE:-$HOME/.cache/eventfold}/auth/issuer.pem`, RSA signing RS256); tokens carry
//! `AUTH_ISSUER` (default `eventfold-local`) and `AUTH_AUDIENCE` (default `eventfold`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use eventfold_auth::{IssuerSettings, JWKS_FILE_NAME, LocalIssuer, scope};
use eventfold_runtime::Env;

use crate::cli::{Outcome, UsageError};

/// `eventfold token …`: `init`, or the options of a token to print.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TokenArgs {
    /// `init`: create (or load) the key pair.
    #[command(subcommand)]
    pub command: Option<TokenCommand>,
    /// Tenant the token acts in (1-64 of A-Z a-z 0-9 - _ .).
    #[arg(long, required = true)]
    pub tenant: Option<String>,
    /// A scope to grant (repeat for more); `all` = commands:write events:read read-models:read admin.
    #[arg(long = "scope", required = true, value_parser = scope_value)]
    pub scopes: Vec<String>,
    /// The token's subject (`sub`).
    #[arg(long, default_value = "local")]
    pub sub: String,
    /// What the subject is.
    #[arg(long, default_value = "user", value_parser = ["user", "agent", "system"])]
    pub actor_kind: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub ttl: u64,
}

/// `eventfold token init`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create the issuer's key pair (or load it) and print the path of its JWKS file.
    Init {
        /// Directory of `issuer.pem` and `jwks.json` (default `<cache>/auth`).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// `all` plus the scopes eventfold knows (a typo is refused rather than signed).
fn scope_value(s: &str) -> Result<String, String> {
    if s == "all" || scope::ALL.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(format!("expected all or one of {}", scope::ALL.join(", ")))
    }
}

/// The scopes `--scope` values grant, `all` expanded, without repeats.
pub fn expand_scopes(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        let granted: Vec<&str> = match v.as_str() {
            "all" => vec![
                scope::COMMANDS_WRITE,
                scope::EVENTS_READ,
                scope::READ_MODELS_READ,
                scope::ADMIN,
            ],
            other => vec![other],
        };
        for s in granted {
            if !out.iter().any(|o| o == s) {
                out.push(s.to_owned());
            }
        }
    }
    out
}

/// Runs `eventfold token …` with the settings of `env`.
pub fn run(args: TokenArgs, env: &Env) -> Result<Outcome, UsageError> {
    let settings = IssuerSettings::from_env(env);
    match args.command {
        Some(TokenCommand::Init { dir }) => {
            let dir = dir.unwrap_or_else(|| eventfold_auth::default_dir(env));
            Ok(match LocalIssuer::init(&dir) {
                Ok(_) => printed(dir.join(JWKS_FILE_NAME).display().to_string()),
                Err(e) => failed(e.to_string()),
            })
        }
        None => {
            let issuer = LocalIssuer::load(&settings.key_file)
                .map_err(|e| UsageError(format!("{e} (create it with `eventfold token init`)")))?;
            let scopes = expand_scopes(&args.scopes);
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let request = settings.request(
                &args.sub,
                &args.actor_kind,
                args.tenant.as_deref().unwrap_or_default(),
                &scopes,
                Duration::from_secs(args.ttl),
            );
            issuer
                .issue(&request)
                .map(printed)
                .map_err(|e| UsageError(format!("cannot issue the token: {e}")))
        }
    }
}

fn printed(line: String) -> Outcome {
    Outcome {
        out: vec![line],
        ok: true,
        ..Outcome::default()
    }
}

fn failed(line: String) -> Outcome {
    Outcome {
        err: vec![line],
        ..Outcome::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_expands_to_every_scope_but_impersonate_without_repeats() {
        let got = expand_scopes(&["events:read".into(), "all".into(), "impersonate".into()]);
        assert_eq!(
            got,
            [
                "events:read",
                "commands:write",
                "read-models:read",
                "admin",
                "impersonate"
            ]
        );
    }

    #[test]
    fn unknown_scopes_are_refused() {
        assert!(scope_value("events:write").is_err());
        assert!(scope_value("admin").is_ok());
    }
}
