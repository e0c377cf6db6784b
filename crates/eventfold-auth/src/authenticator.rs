//! Token verification: header checks, key selection (with a bounded key-set refresh), signature
//! and registered claims, then the eventfold claims that make a [`Principal`].

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::error::AuthError;
use crate::jwks::{KeySet, Lookup};
use crate::principal::{ACTOR_KINDS, Principal, valid_subject, valid_tenant};
use crate::settings::{AuthMode, AuthSettings, JwksSource, JwtSettings};

/// While no key set was ever loaded, a failed fetch is retried at most this often.
const FIRST_LOAD_RETRY: Duration = Duration::from_secs(1);

/// Verifies bearer tokens (cheap to clone: one shared state).
#[derive(Clone)]
pub struct Authenticator {
    inner: Option<Arc<Verifier>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            None => f.write_str("Authenticator(disabled)"),
            Some(v) => f
                .debug_struct("Authenticator")
                .field("jwks", &v.settings.jwks)
                .field("issuer", &v.settings.issuer)
                .field("audience", &v.settings.audience)
                .finish(),
        }
    }
}

struct Verifier {
    settings: JwtSettings,
    /// The checks of an RS256 and of an EdDSA token, built once (not per request).
    rs256: Validation,
    eddsa: Validation,
    http: Option<reqwest::Client>,
    keys: RwLock<Option<Arc<KeySet>>>,
    reload: tokio::sync::Mutex<Reload>,
}

/// When the key set was last (re)loaded, and how the last attempt failed.
#[derive(Default)]
struct Reload {
    last_attempt: Option<Instant>,
    last_error: Option<AuthError>,
}

impl Authenticator {
    /// [`Authenticator::new`] for a service starting up: with `AUTH_MODE=disabled` it logs a
    /// warning (every start), since then anyone reaching the port is trusted.
    pub fn for_service(service: &str, settings: AuthSettings) -> Result<Self, AuthError> {
        let auth = Self::new(settings)?;
        if auth.disabled() {
            tracing::warn!(
                service,
                "AUTH_MODE=disabled: every request is taken as tenant `default` with every scope; \
                 never run so outside a development machine"
            );
        }
        Ok(auth)
    }

    /// An authenticator for `settings`; a key-set file is read now, a URL on first use.
    pub fn new(settings: AuthSettings) -> Result<Self, AuthError> {
        let settings = match settings.mode {
            AuthMode::Disabled => return Ok(Self { inner: None }),
            AuthMode::Jwt(jwt) => jwt,
        };
        let (keys, http, last_attempt) = match &settings.jwks {
            JwksSource::File(path) => (
                Some(Arc::new(KeySet::load_file_now(path)?)),
                None,
                Some(Instant::now()),
            ),
            JwksSource::Url(_) => {
                let http = reqwest::Client::builder()
                    .timeout(crate::jwks::FETCH_TIMEOUT)
                    .build()
                    .map_err(|e| AuthError::JwksUnavailable(format!("HTTP client: {e}")))?;
                (None, Some(http), None)
            }
        };
        Ok(Self {
            inner: Some(Arc::new(Verifier {
                rs256: validation(&settings, Algorithm::RS256),
                eddsa: validation(&settings, Algorithm::EdDSA),
                settings,
                http,
                keys: RwLock::new(keys),
                reload: tokio::sync::Mutex::new(Reload {
                    last_attempt,
                    last_error: None,
                }),
            })),
        })
    }

    /// True when no token is checked (`AUTH_MODE=disabled`).
    pub fn disabled(&self) -> bool {
        self.inner.is_none()
    }

    /// The principal of a valid `token`, or why it is refused. In disabled mode every token (even
    /// garbage) gives [`Principal::anonymous`].
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        match &self.inner {
            None => Ok(Principal::anonymous()),
            Some(v) => v.verify(token).await,
        }
    }
}

/// What a token signed with `alg` must satisfy: issuer, audience, `exp`, `nbf` (with the leeway).
fn validation(settings: &JwtSettings, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = settings.leeway.as_secs();
    v.validate_nbf = true;
    v.set_issuer(&[&settings.issuer]);
    v.set_audience(&[&settings.audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v
}

/// The header fields that decide the key, read before anything is trusted.
#[derive(Debug)]
struct Header {
    alg: Algorithm,
    kid: Option<String>,
}

impl Verifier {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = header_of(token)?;
        let (keys, index) = self.key_for(&header).await?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(
            token,
            keys.key(index),
            if header.alg == Algorithm::RS256 {
                &self.rs256
            } else {
                &self.eddsa
            },
        )?;
        principal_of(&data.claims, &self.settings)
    }

    /// The key set and the index of the key to verify `header`'s token with, refreshing the set
    /// (at most once per `jwks_min_refresh`) when no key fits.
    async fn key_for(&self, header: &Header) -> Result<(Arc<KeySet>, usize), AuthError> {
        let seen = self.current();
        if let Some(keys) = &seen
            && let Some(i) = find(keys, header)?
        {
            return Ok((keys.clone(), i));
        }
        let keys = self.refresh(seen.as_ref()).await?;
        match find(&keys, header)? {
            Some(i) => Ok((keys, i)),
            None => Err(AuthError::UnknownKey(
                header.kid.clone().unwrap_or_else(|| "(no kid)".into()),
            )),
        }
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().expect("key set lock").clone()
    }

    /// Reloads the key set unless another request just did (`seen` is stale) or the last reload
    /// is too recent; returns the set to look in.
    async fn refresh(&self, seen: Option<&Arc<KeySet>>) -> Result<Arc<KeySet>, AuthError> {
        let mut reload = self.reload.lock().await;
        let now = self.current();
        match (&now, seen) {
            (Some(now), Some(seen)) if !Arc::ptr_eq(now, seen) => return Ok(now.clone()),
            (Some(now), None) => return Ok(now.clone()),
            _ => {}
        }
        let bound = match now {
            Some(_) => self.settings.jwks_min_refresh,
            None => FIRST_LOAD_RETRY.min(self.settings.jwks_min_refresh),
        };
        if reload.last_attempt.is_some_and(|at| at.elapsed() < bound) {
            return match (now, &reload.last_error) {
                (Some(now), _) => Ok(now),
                (None, Some(e)) => Err(e.clone()),
                (None, None) => Err(AuthError::JwksUnavailable("not loaded yet".into())),
            };
        }
        reload.last_attempt = Some(Instant::now());
        match KeySet::load(&self.settings.jwks, self.http.as_ref()).await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *self.keys.write().expect("key set lock") = Some(keys.clone());
                reload.last_error = None;
                tracing::info!(source = ?self.settings.jwks, "key set (re)loaded");
                Ok(keys)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload the key set");
                reload.last_error = Some(e.clone());
                Err(e)
            }
        }
    }
}

/// The index of the key for `header` in `keys`, `None` when the set may be stale.
fn find(keys: &KeySet, header: &Header) -> Result<Option<usize>, AuthError> {
    match keys.lookup(header.kid.as_deref(), header.alg) {
        Lookup::Found(i) => Ok(Some(i)),
        Lookup::AlgorithmMismatch(key_alg) => Err(AuthError::AlgorithmRefused(format!(
            "{:?} with a {key_alg:?} key",
            header.alg
        ))),
        Lookup::Missing => Ok(None),
    }
}

/// Reads `alg` and `kid` from the token's header; only RS256 and EdDSA pass (never `none` or an
/// HMAC algorithm, which would let a public key act as a shared secret).
fn header_of(token: &str) -> Result<Header, AuthError> {
    let malformed = |why: &str| AuthError::Malformed(why.to_owned());
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected three dot-separated parts"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| malformed("header is not base64url"))?;
    let json: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| malformed("header is not a JSON object"))?;
    let alg = match json.get("alg").and_then(Value::as_str) {
        Some("RS256") => Algorithm::RS256,
        Some("EdDSA") => Algorithm::EdDSA,
        Some(other) => return Err(AuthError::AlgorithmRefused(other.to_owned())),
        None => return Err(malformed("header has no alg")),
    };
    if json.contains_key("crit") {
        return Err(malformed("critical header extensions are not supported"));
    }
    let kid = match json.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(malformed("kid is not a string")),
    };
    Ok(Header { alg, kid })
}

/// The eventfold claims of verified `claims`.
fn principal_of(claims: &Map<String, Value>, s: &JwtSettings) -> Result<Principal, AuthError> {
    let present = |name: &str| claims.get(name).filter(|v| !v.is_null());
    let subject = match present("sub") {
        Some(Value::String(sub)) if valid_subject(sub) => sub.clone(),
        Some(Value::String(_)) => return Err(AuthError::BadSubject),
        Some(_) => return Err(AuthError::BadClaim("sub".into())),
        None => return Err(AuthError::MissingClaim("sub".into())),
    };
    let tenant = match present(&s.tenant_claim) {
        Some(Value::String(t)) if valid_tenant(t) => t.clone(),
        Some(_) => return Err(AuthError::BadTenant),
        None => return Err(AuthError::NoTenant),
    };
    let actor_kind = match present(&s.actor_kind_claim) {
        None => "user".to_owned(),
        Some(Value::String(k)) if ACTOR_KINDS.contains(&k.as_str()) => k.clone(),
        Some(_) => return Err(AuthError::BadActorKind),
    };
    let bad_scope = || AuthError::BadClaim(s.scope_claim.clone());
    let scopes: BTreeSet<String> = match present(&s.scope_claim) {
        None => BTreeSet::new(),
        Some(Value::String(list)) => list.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad_scope))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad_scope()),
    };
    Ok(Principal {
        subject,
        actor_kind,
        tenant,
        scopes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn token_with_header(h: Value) -> String {
        format!("{}.{}.c2ln", b64(&h), b64(&json!({"sub": "x"})))
    }

    #[test]
    fn refuses_none_and_hmac_algorithms_before_looking_for_a_key() {
        for alg in ["none", "HS256", "HS384", "HS512", "ES256", "PS256", "RS512"] {
            let err = header_of(&token_with_header(json!({"alg": alg}))).unwrap_err();
            assert_eq!(err, AuthError::AlgorithmRefused(alg.into()));
        }
    }

    #[test]
    fn refuses_tokens_that_are_not_three_base64url_parts() {
        for t in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "!!.e30.c2ln",
            &format!("{}.e30.c2ln", b64(&json!([1]))),
        ] {
            assert_eq!(header_of(t).unwrap_err().code(), "malformed_token", "{t}");
        }
    }

    #[test]
    fn reads_alg_and_kid() {
        let h = header_of(&token_with_header(json!({"alg": "EdDSA", "kid": "k1"}))).unwrap();
        assert_eq!((h.alg, h.kid.as_deref()), (Algorithm::EdDSA, Some("k1")));
    }

    fn settings() -> JwtSettings {
        JwtSettings::new(JwksSource::File("/unused".into()), "iss", "aud")
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn scopes_may_be_a_space_separated_string_or_an_array() {
        let s = settings();
        let from_string = principal_of(
            &claims(json!({"sub": "a", "tenant": "t", "scope": "events:read  admin"})),
            &s,
        )
        .unwrap();
        let from_array = principal_of(
            &claims(json!({"sub": "a", "tenant": "t", "scope": ["events:read", "admin"]})),
            &s,
        )
        .unwrap();
        assert_eq!(from_string, from_array);
        assert!(from_string.has("admin") && from_string.has("events:read"));
        assert_eq!(from_string.actor_kind, "user");
        let err = principal_of(
            &claims(json!({"sub": "a", "tenant": "t", "scope": [1]})),
            &s,
        );
        assert_eq!(err.unwrap_err(), AuthError::BadClaim("scope".into()));
    }

    #[test]
    fn claim_names_come_from_the_settings() {
        let mut s = settings();
        s.scope_claim = "scp".into();
        s.tenant_claim = "org".into();
        s.actor_kind_claim = "kind".into();
        let p = principal_of(
            &claims(
                json!({"sub": "a", "org": "acme", "kind": "agent", "scp": "admin", "tenant": "x"}),
            ),
            &s,
        )
        .unwrap();
        assert_eq!(
            (p.tenant.as_str(), p.actor_kind.as_str()),
            ("acme", "agent")
        );
        assert!(p.has("admin"));
    }

    #[test]
    fn refuses_missing_or_bad_tenant_subject_and_actor_kind() {
        let s = settings();
        let p = |v: Value| principal_of(&claims(v), &s).unwrap_err();
        assert_eq!(p(json!({"sub": "a"})), AuthError::NoTenant);
        assert_eq!(p(json!({"sub": "a", "tenant": null})), AuthError::NoTenant);
        assert_eq!(
            p(json!({"sub": "a", "tenant": "a/b"})),
            AuthError::BadTenant
        );
        assert_eq!(p(json!({"sub": "a", "tenant": 7})), AuthError::BadTenant);
        assert_eq!(
            p(json!({"tenant": "t"})),
            AuthError::MissingClaim("sub".into())
        );
        assert_eq!(p(json!({"sub": "", "tenant": "t"})), AuthError::BadSubject);
        assert_eq!(
            p(json!({"sub": "a", "tenant": "t", "actor_kind": "robot"})),
            AuthError::BadActorKind
        );
    }
}
