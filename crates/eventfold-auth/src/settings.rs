//! `AUTH_*` environment settings: whether tokens are checked, which keys and claims to trust.

use std::path::PathBuf;
use std::time::Duration;

use eventfold_runtime::{Env, SettingsError};

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `AUTH_MODE`: `jwt` (default) or `disabled`.
    pub mode: AuthMode,
}

/// `AUTH_MODE`.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Every request is [`crate::Principal::anonymous`] (local experiments only; Helm refuses it).
    Disabled,
    /// Bearer JWTs verified against a key set.
    Jwt(JwtSettings),
}

/// What a bearer token must satisfy.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// Where the public keys come from (`AUTH_JWKS_FILE` or `AUTH_JWKS_URL`).
    pub jwks: JwksSource,
    /// `AUTH_ISSUER`: the exact `iss` required.
    pub issuer: String,
    /// `AUTH_AUDIENCE`: a value `aud` must contain.
    pub audience: String,
    /// `AUTH_LEEWAY_SECONDS` (default 30): clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// `AUTH_JWKS_MIN_REFRESH_SECONDS` (default 30): at most one key-set reload per interval.
    pub jwks_min_refresh: Duration,
    /// `AUTH_SCOPE_CLAIM` (default `scope`).
    pub scope_claim: String,
    /// `AUTH_TENANT_CLAIM` (default `tenant`).
    pub tenant_claim: String,
    /// `AUTH_ACTOR_KIND_CLAIM` (default `actor_kind`).
    pub actor_kind_claim: String,
}

/// Where the JSON Web Key Set is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file, read at start and re-read on an unknown `kid`.
    File(PathBuf),
    /// An HTTP(S) URL, fetched on first use and again on an unknown `kid`.
    Url(String),
}

impl JwtSettings {
    /// Settings with the default leeway, refresh interval and claim names.
    pub fn new(jwks: JwksSource, issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            jwks,
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Duration::from_secs(30),
            jwks_min_refresh: Duration::from_secs(30),
            scope_claim: "scope".into(),
            tenant_claim: "tenant".into(),
            actor_kind_claim: "actor_kind".into(),
        }
    }
}

impl AuthSettings {
    /// Reads `AUTH_MODE` and, in `jwt` mode, the key source, issuer, audience, leeway, refresh
    /// interval and claim names.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let mode = match env.string("AUTH_MODE", "jwt").as_str() {
            "disabled" if eventfold_runtime::settings::production(env)? => {
                return Err(SettingsError::Invalid {
                    var: "AUTH_MODE".into(),
                    value: "disabled".into(),
                    reason: "refused under EVENTFOLD_PROFILE=production".into(),
                });
            }
            "disabled" => AuthMode::Disabled,
            "jwt" => AuthMode::Jwt(jwt_from_env(env)?),
            other => {
                return Err(SettingsError::Invalid {
                    var: "AUTH_MODE".into(),
                    value: other.into(),
                    reason: "expected `jwt` or `disabled`".into(),
                });
            }
        };
        Ok(Self { mode })
    }

    /// Settings that check JWTs as `jwt` says.
    pub fn jwt(jwt: JwtSettings) -> Self {
        Self {
            mode: AuthMode::Jwt(jwt),
        }
    }

    /// True when `AUTH_MODE=disabled`: no token is checked.
    pub fn disabled(&self) -> bool {
        matches!(self.mode, AuthMode::Disabled)
    }
}

fn jwt_from_env(env: &Env) -> Result<JwtSettings, SettingsError> {
    let jwks = match (env.raw("AUTH_JWKS_FILE"), env.raw("AUTH_JWKS_URL")) {
        (Some(file), None) => JwksSource::File(PathBuf::from(file)),
        (None, Some(url)) => {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(SettingsError::Invalid {
                    var: "AUTH_JWKS_URL".into(),
                    value: url.into(),
                    reason: "expected an http:// or https:// URL".into(),
                });
            }
            JwksSource::Url(url.into())
        }
        (None, None) => return Err(SettingsError::Missing("AUTH_JWKS_FILE".into())),
        (Some(_), Some(url)) => {
            return Err(SettingsError::Invalid {
                var: "AUTH_JWKS_URL".into(),
                value: url.into(),
                reason: "set AUTH_JWKS_FILE or AUTH_JWKS_URL, not both".into(),
            });
        }
    };
    let mut jwt = JwtSettings::new(
        jwks,
        env.required("AUTH_ISSUER")?,
        env.required("AUTH_AUDIENCE")?,
    );
    jwt.leeway = Duration::from_secs(env.parse("AUTH_LEEWAY_SECONDS", 30u64)?);
    jwt.jwks_min_refresh = Duration::from_secs(env.parse("AUTH_JWKS_MIN_REFRESH_SECONDS", 30u64)?);
    jwt.scope_claim = env.string("AUTH_SCOPE_CLAIM", "scope");
    jwt.tenant_claim = env.string("AUTH_TENANT_CLAIM", "tenant");
    jwt.actor_kind_claim = env.string("AUTH_ACTOR_KIND_CLAIM", "actor_kind");
    Ok(jwt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_auth_disabled_without_exception() {
        let env = Env::from_pairs([
            ("EVENTFOLD_PROFILE", "production"),
            ("AUTH_MODE", "disabled"),
            ("AUTH_INSECURE", "true"),
        ]);
        let e = AuthSettings::from_env(&env).unwrap_err().to_string();
        assert!(e.contains("AUTH_MODE"), "{e}");
    }

    fn jwt(pairs: &[(&str, &str)]) -> Result<JwtSettings, SettingsError> {
        match AuthSettings::from_env(&Env::from_pairs(pairs.iter().copied()))?.mode {
            AuthMode::Jwt(j) => Ok(j),
            AuthMode::Disabled => panic!("expected jwt mode"),
        }
    }

    #[test]
    fn disabled_mode_needs_nothing_else() {
        let s = AuthSettings::from_env(&Env::from_pairs([("AUTH_MODE", "disabled")])).unwrap();
        assert!(s.disabled());
    }

    #[test]
    fn refuses_an_unknown_mode() {
        let err = AuthSettings::from_env(&Env::from_pairs([("AUTH_MODE", "basic")])).unwrap_err();
        assert!(err.to_string().contains("AUTH_MODE"), "{err}");
    }

    #[test]
    fn jwt_mode_is_the_default_and_requires_a_key_set_issuer_and_audience() {
        assert_eq!(
            jwt(&[]).unwrap_err(),
            SettingsError::Missing("AUTH_JWKS_FILE".into())
        );
        assert_eq!(
            jwt(&[("AUTH_JWKS_FILE", "/k.json"), ("AUTH_AUDIENCE", "a")]).unwrap_err(),
            SettingsError::Missing("AUTH_ISSUER".into())
        );
        assert_eq!(
            jwt(&[("AUTH_JWKS_FILE", "/k.json"), ("AUTH_ISSUER", "i")]).unwrap_err(),
            SettingsError::Missing("AUTH_AUDIENCE".into())
        );
    }

    #[test]
    fn refuses_both_a_jwks_file_and_url() {
        let err = jwt(&[
            ("AUTH_JWKS_FILE", "/k.json"),
            ("AUTH_JWKS_URL", "https://idp/jwks"),
            ("AUTH_ISSUER", "i"),
            ("AUTH_AUDIENCE", "a"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
    }

    #[test]
    fn reads_every_setting() {
        let j = jwt(&[
            ("AUTH_JWKS_URL", "https://idp.example/jwks.json"),
            ("AUTH_ISSUER", "https://idp.example/"),
            ("AUTH_AUDIENCE", "eventfold"),
            ("AUTH_LEEWAY_SECONDS", "5"),
            ("AUTH_JWKS_MIN_REFRESH_SECONDS", "60"),
            ("AUTH_SCOPE_CLAIM", "scp"),
            ("AUTH_TENANT_CLAIM", "org"),
            ("AUTH_ACTOR_KIND_CLAIM", "kind"),
        ])
        .unwrap();
        assert_eq!(
            j.jwks,
            JwksSource::Url("https://idp.example/jwks.json".into())
        );
        assert_eq!(j.issuer, "https://idp.example/");
        assert_eq!(j.audience, "eventfold");
        assert_eq!(j.leeway, Duration::from_secs(5));
        assert_eq!(j.jwks_min_refresh, Duration::from_secs(60));
        assert_eq!(
            (
                j.scope_claim.as_str(),
                j.tenant_claim.as_str(),
                j.actor_kind_claim.as_str()
            ),
            ("scp", "org", "kind")
        );
    }

    #[test]
    fn refuses_a_leeway_that_is_not_a_number() {
        let err = jwt(&[
            ("AUTH_JWKS_FILE", "/k.json"),
            ("AUTH_ISSUER", "i"),
            ("AUTH_AUDIENCE", "a"),
            ("AUTH_LEEWAY_SECONDS", "soon"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("AUTH_LEEWAY_SECONDS"), "{err}");
    }
}
