//! Typed reading of environment variables with errors that name the variable.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A setting that is missing or cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// A required variable is not set.
    #[error("environment variable {0} is required but not set")]
    Missing(String),
    /// A variable is set but its value does not parse.
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        var: String,
        /// The value found.
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

/// A snapshot of the variables a service reads; tests build one from a map instead of the process env.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// Takes the current process environment.
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    /// Builds an environment from explicit pairs.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Every variable as `(name, value)`, e.g. to hand to a child process.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Sets `var` (tests and container start-up fill in addresses this way).
    pub fn set(&mut self, var: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(var.into(), value.into());
    }

    /// The raw value of `var`, treating an empty value as unset.
    pub fn raw(&self, var: &str) -> Option<&str> {
        self.vars
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A string setting with a default.
    pub fn string(&self, var: &str, default: &str) -> String {
        self.raw(var).unwrap_or(default).to_owned()
    }

    /// A required string setting.
    pub fn required(&self, var: &str) -> Result<String, SettingsError> {
        self.raw(var)
            .map(str::to_owned)
            .ok_or_else(|| SettingsError::Missing(var.to_owned()))
    }

    /// A parsed setting with a default.
    pub fn parse<T>(&self, var: &str, default: T) -> Result<T, SettingsError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(var) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|e: T::Err| SettingsError::Invalid {
                var: var.to_owned(),
                value: value.to_owned(),
                reason: e.to_string(),
            }),
        }
    }
}

/// The settings every service shares: where its two listeners bind and how it logs.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// `HTTP_ADDR`: listen address of the public API and `/healthz`.
    pub http_addr: SocketAddr,
    /// `ADMIN_ADDR`: listen address of the admin plane (`/healthz`, `/readyz`, `/metrics` and the
    /// service's admin API); default: `HTTP_ADDR`'s host with its port + 1000 (port 0 stays 0).
    pub admin_addr: SocketAddr,
    /// `LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: crate::telemetry::LogFormat,
    /// `HTTP_HEADER_READ_TIMEOUT_SECONDS`: how long either listener waits for a request's line and
    /// headers (and an idle keep-alive connection for its next request) before it closes the
    /// connection (default 10).
    pub header_read_timeout: Duration,
}

impl ServiceSettings {
    /// Reads `HTTP_ADDR` (default `127.0.0.1:<default_port>`), `ADMIN_ADDR`, `LOG_FORMAT` and
    /// `HTTP_HEADER_READ_TIMEOUT_SECONDS`.
    pub fn from_env(env: &Env, default_port: u16) -> Result<Self, SettingsError> {
        let http_addr = env.parse(
            "HTTP_ADDR",
            SocketAddr::from(([127, 0, 0, 1], default_port)),
        )?;
        let admin_addr = match env.raw("ADMIN_ADDR") {
            Some(_) => env.parse("ADMIN_ADDR", http_addr)?,
            None => default_admin_addr(http_addr).ok_or_else(|| SettingsError::Invalid {
                var: "HTTP_ADDR".into(),
                value: http_addr.to_string(),
                reason: format!(
                    "the default ADMIN_ADDR port ({} + {ADMIN_PORT_OFFSET}) is above 65535; \
                     set ADMIN_ADDR",
                    http_addr.port()
                ),
            })?,
        };
        if admin_addr.port() != 0 && admin_addr == http_addr {
            return Err(SettingsError::Invalid {
                var: "ADMIN_ADDR".into(),
                value: admin_addr.to_string(),
                reason: "must differ from HTTP_ADDR (the admin plane has a listener of its own)"
                    .into(),
            });
        }
        let header_read_timeout: u64 = env.parse("HTTP_HEADER_READ_TIMEOUT_SECONDS", 10)?;
        if header_read_timeout == 0 {
            return Err(SettingsError::Invalid {
                var: "HTTP_HEADER_READ_TIMEOUT_SECONDS".into(),
                value: "0".into(),
                reason: "expected a positive number".into(),
            });
        }
        Ok(Self {
            http_addr,
            admin_addr,
            log_format: env.parse("LOG_FORMAT", crate::telemetry::LogFormat::Text)?,
            header_read_timeout: Duration::from_secs(header_read_timeout),
        })
    }
}

/// How far above the public port the admin port lies by default (8080 → 9080).
pub const ADMIN_PORT_OFFSET: u16 = 1000;

/// `http`'s host with its port + [`ADMIN_PORT_OFFSET`] (port 0, "any free port", stays 0);
/// `None` when that port does not exist.
fn default_admin_addr(http: SocketAddr) -> Option<SocketAddr> {
    let port = match http.port() {
        0 => 0,
        p => p.checked_add(ADMIN_PORT_OFFSET)?,
    };
    Some(SocketAddr::new(http.ip(), port))
}

/// True when `EVENTFOLD_PROFILE=production`: then each dependency's settings refuse a plaintext or
/// unverified connection unless its `*_INSECURE=true` says so explicitly. `development` (the
/// default) allows them.
pub fn production(env: &Env) -> Result<bool, SettingsError> {
    match env.string("EVENTFOLD_PROFILE", "development").as_str() {
        "development" => Ok(false),
        "production" => Ok(true),
        other => Err(SettingsError::Invalid {
            var: "EVENTFOLD_PROFILE".into(),
            value: other.into(),
            reason: "expected development or production".into(),
        }),
    }
}

/// Under the production profile, refuses `value` of `var` for `reason` unless `insecure_var` is
/// `true` (an explicit, visible exception).
pub fn refuse_insecure(
    env: &Env,
    var: &str,
    value: &str,
    insecure: bool,
    insecure_var: &str,
    reason: &str,
) -> Result<(), SettingsError> {
    if !insecure || !production(env)? || env.parse(insecure_var, false)? {
        return Ok(());
    }
    Err(SettingsError::Invalid {
        var: var.into(),
        value: value.into(),
        reason: format!(
            "{reason} under EVENTFOLD_PROFILE=production (set {insecure_var}=true to allow it)"
        ),
    })
}

/// Unwraps settings or ends the process with a one-line message and exit code 2 (bad configuration).
pub fn or_exit<T>(service: &str, settings: Result<T, SettingsError>) -> T {
    settings.unwrap_or_else(|e| {
        eprintln!("{service}: {e}");
        std::process::exit(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_back_to_the_default_when_unset_or_empty() {
        let env = Env::from_pairs([("EMPTY", "")]);
        assert_eq!(env.string("EMPTY", "d"), "d");
        assert_eq!(env.parse("UNSET", 7u16).unwrap(), 7);
    }

    #[test]
    fn names_the_variable_when_a_value_does_not_parse() {
        let env = Env::from_pairs([("HTTP_ADDR", "not-an-addr")]);
        let err = env
            .parse::<SocketAddr>("HTTP_ADDR", "127.0.0.1:1".parse().unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("HTTP_ADDR"), "{err}");
    }

    #[test]
    fn refuses_an_unknown_log_format() {
        let env = Env::from_pairs([("LOG_FORMAT", "xml")]);
        let err = ServiceSettings::from_env(&env, 8080).unwrap_err();
        assert!(err.to_string().contains("LOG_FORMAT"), "{err}");
    }

    #[test]
    fn the_admin_port_defaults_to_the_http_port_plus_1000_on_the_same_host() {
        let s = ServiceSettings::from_env(&Env::default(), 8080).unwrap();
        assert_eq!(s.http_addr, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
        assert_eq!(
            s.admin_addr,
            "127.0.0.1:9080".parse::<SocketAddr>().unwrap()
        );
        let env = Env::from_pairs([("HTTP_ADDR", "0.0.0.0:8083")]);
        let s = ServiceSettings::from_env(&env, 8080).unwrap();
        assert_eq!(s.admin_addr, "0.0.0.0:9083".parse::<SocketAddr>().unwrap());
        let env = Env::from_pairs([("HTTP_ADDR", "127.0.0.1:0")]);
        let s = ServiceSettings::from_env(&env, 8080).unwrap();
        assert_eq!(s.admin_addr.port(), 0);
    }

    #[test]
    fn admin_addr_overrides_the_default_and_must_differ_from_http_addr() {
        let env = Env::from_pairs([("ADMIN_ADDR", "0.0.0.0:7000")]);
        let s = ServiceSettings::from_env(&env, 8080).unwrap();
        assert_eq!(s.admin_addr, "0.0.0.0:7000".parse::<SocketAddr>().unwrap());
        let env = Env::from_pairs([
            ("HTTP_ADDR", "127.0.0.1:8080"),
            ("ADMIN_ADDR", "127.0.0.1:8080"),
        ]);
        let err = ServiceSettings::from_env(&env, 8080).unwrap_err();
        assert!(err.to_string().contains("ADMIN_ADDR"), "{err}");
        let env = Env::from_pairs([("ADMIN_ADDR", "nowhere")]);
        let err = ServiceSettings::from_env(&env, 8080).unwrap_err();
        assert!(err.to_string().contains("ADMIN_ADDR"), "{err}");
    }

    #[test]
    fn the_header_read_timeout_defaults_to_10_seconds_and_refuses_zero() {
        let s = ServiceSettings::from_env(&Env::default(), 8080).unwrap();
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
        let env = Env::from_pairs([("HTTP_HEADER_READ_TIMEOUT_SECONDS", "3")]);
        let s = ServiceSettings::from_env(&env, 8080).unwrap();
        assert_eq!(s.header_read_timeout, Duration::from_secs(3));
        let env = Env::from_pairs([("HTTP_HEADER_READ_TIMEOUT_SECONDS", "0")]);
        let err = ServiceSettings::from_env(&env, 8080).unwrap_err();
        assert!(
            err.to_string().contains("HTTP_HEADER_READ_TIMEOUT_SECONDS"),
            "{err}"
        );
    }

    #[test]
    fn an_http_port_without_room_for_the_admin_port_asks_for_admin_addr() {
        let env = Env::from_pairs([("HTTP_ADDR", "127.0.0.1:65000")]);
        let err = ServiceSettings::from_env(&env, 8080).unwrap_err();
        assert!(err.to_string().contains("set ADMIN_ADDR"), "{err}");
    }

    #[test]
    fn the_production_profile_refuses_insecure_values_unless_told_otherwise() {
        let dev = Env::default();
        assert!(refuse_insecure(&dev, "X_URL", "http://x", true, "X_INSECURE", "plain").is_ok());
        let prod = Env::from_pairs([("EVENTFOLD_PROFILE", "production")]);
        let e =
            refuse_insecure(&prod, "X_URL", "http://x", true, "X_INSECURE", "plain").unwrap_err();
        assert!(e.to_string().contains("X_INSECURE=true"), "{e}");
        assert!(refuse_insecure(&prod, "X_URL", "https://x", false, "X_INSECURE", "plain").is_ok());
        let waived = Env::from_pairs([("EVENTFOLD_PROFILE", "production"), ("X_INSECURE", "true")]);
        assert!(refuse_insecure(&waived, "X_URL", "http://x", true, "X_INSECURE", "plain").is_ok());
        let bad = Env::from_pairs([("EVENTFOLD_PROFILE", "prod")]);
        assert!(production(&bad).is_err());
    }

    #[test]
    fn reports_a_missing_required_variable() {
        let env = Env::default();
        assert_eq!(
            env.required("DATABASE_URL"),
            Err(SettingsError::Missing("DATABASE_URL".into()))
        );
    }
}
