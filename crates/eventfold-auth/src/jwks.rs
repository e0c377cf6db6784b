//! The trusted public keys: a JSON Web Key Set parsed into verification keys, each bound to the one
//! algorithm its type allows (RSA -> RS256, OKP/Ed25519 -> EdDSA).

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::error::AuthError;
use crate::settings::JwksSource;

/// How long fetching a key set over HTTP may take.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One verification key.
struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The usable keys of a key set (keys of other types or uses are left out).
pub(crate) struct KeySet {
    keys: Vec<Key>,
}

/// The outcome of looking a token's key up.
pub(crate) enum Lookup {
    /// The index of the key to verify with.
    Found(usize),
    /// The key named by `kid` is for another algorithm than the token's header says.
    AlgorithmMismatch(Algorithm),
    /// No key fits (the set may be stale).
    Missing,
}

impl KeySet {
    /// Parses a JWKS document; a set without any usable key is refused.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no `keys` array")?;
        let keys: Vec<Key> = entries.iter().filter_map(key_of).collect();
        if keys.is_empty() {
            return Err("no RSA or Ed25519 signing key in the set".into());
        }
        Ok(Self { keys })
    }

    /// The verification key at `index` (from [`KeySet::lookup`]).
    pub(crate) fn key(&self, index: usize) -> &DecodingKey {
        &self.keys[index].key
    }

    /// Reads or fetches the key set of `source`.
    pub(crate) async fn load(
        source: &JwksSource,
        http: Option<&reqwest::Client>,
    ) -> Result<Self, AuthError> {
        let text = match source {
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            JwksSource::Url(url) => fetch(url, http).await,
        };
        text.and_then(|t| Self::parse(&t))
            .map_err(AuthError::JwksUnavailable)
    }

    /// Reads a key-set file now (so a service refuses to start without its keys).
    pub(crate) fn load_file_now(path: &std::path::Path) -> Result<Self, AuthError> {
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|t| Self::parse(&t))
            .map_err(AuthError::JwksUnavailable)
    }

    /// The key for a token signed with `alg`: the one named `kid`, or without a kid the only key
    /// of that algorithm.
    pub(crate) fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        match kid {
            Some(kid) => match self.keys.iter().position(|k| k.kid.as_deref() == Some(kid)) {
                Some(i) if self.keys[i].alg == alg => Lookup::Found(i),
                Some(i) => Lookup::AlgorithmMismatch(self.keys[i].alg),
                None => Lookup::Missing,
            },
            None => {
                let mut fitting = (0..self.keys.len()).filter(|i| self.keys[*i].alg == alg);
                match (fitting.next(), fitting.next()) {
                    (Some(i), None) => Lookup::Found(i),
                    _ => Lookup::Missing,
                }
            }
        }
    }
}

async fn fetch(url: &str, http: Option<&reqwest::Client>) -> Result<String, String> {
    let http = http.ok_or("no HTTP client")?;
    let response = http
        .get(url)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    response
        .text()
        .await
        .map_err(|e| format!("cannot read {url}: {e}"))
}

/// A usable key from one JWK, or `None` for a key of another type, use or algorithm.
fn key_of(jwk: &Value) -> Option<Key> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if field("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let declared = field("alg");
    let (alg, key) = match (field("kty")?, field("crv")) {
        ("RSA", _) if declared.is_none_or(|a| a == "RS256") => (
            Algorithm::RS256,
            DecodingKey::from_rsa_components(field("n")?, field("e")?),
        ),
        ("OKP", Some("Ed25519")) if declared.is_none_or(|a| a == "EdDSA" || a == "Ed25519") => (
            Algorithm::EdDSA,
            DecodingKey::from_ed_components(field("x")?),
        ),
        _ => return None,
    };
    match key {
        Ok(key) => Some(Key {
            kid: field("kid").map(str::to_owned),
            alg,
            key,
        }),
        Err(e) => {
            tracing::warn!(kid = field("kid"), error = %e, "ignoring an unusable key of the key set");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn set(keys: Value) -> Result<KeySet, String> {
        KeySet::parse(&serde_json::json!({ "keys": keys }).to_string())
    }

    #[test]
    fn keeps_signing_keys_and_skips_the_rest() {
        let s = set(serde_json::json!([
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "ed"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "enc", "use": "enc"},
            {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "ec"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        ]))
        .unwrap();
        assert_eq!(s.keys.len(), 1);
        assert!(matches!(
            s.lookup(Some("ed"), Algorithm::EdDSA),
            Lookup::Found(_)
        ));
        assert!(matches!(
            s.lookup(Some("hmac"), Algorithm::HS256),
            Lookup::Missing
        ));
    }

    #[test]
    fn refuses_a_set_without_usable_keys() {
        assert!(set(serde_json::json!([{"kty": "oct", "k": "c2VjcmV0"}])).is_err());
        assert!(KeySet::parse("{}").is_err());
        assert!(KeySet::parse("not json").is_err());
    }

    #[test]
    fn a_key_named_by_kid_only_serves_its_own_algorithm() {
        let s = set(serde_json::json!([{"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "ed"}]))
            .unwrap();
        assert!(matches!(
            s.lookup(Some("ed"), Algorithm::RS256),
            Lookup::AlgorithmMismatch(Algorithm::EdDSA)
        ));
    }

    #[test]
    fn without_kid_the_single_key_of_the_algorithm_is_used() {
        let one = set(serde_json::json!([{"kty": "OKP", "crv": "Ed25519", "x": ED_X}])).unwrap();
        assert!(matches!(
            one.lookup(None, Algorithm::EdDSA),
            Lookup::Found(_)
        ));
        assert!(matches!(
            one.lookup(None, Algorithm::RS256),
            Lookup::Missing
        ));
        let two = set(serde_json::json!([
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "a"},
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "b"},
        ]))
        .unwrap();
        assert!(matches!(
            two.lookup(None, Algorithm::EdDSA),
            Lookup::Missing
        ));
    }
}
