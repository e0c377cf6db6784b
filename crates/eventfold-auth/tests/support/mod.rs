//! Keys, key sets and token forgery shared by the authentication tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use eventfold_auth::{
    AuthSettings, Authenticator, IssuerAlgorithm, JwksSource, JwtSettings, LocalIssuer,
    TokenRequest, unix_now,
};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "eventfold";
pub const RSA_KID: &str = "rsa-1";
pub const RSA_PRIVATE: &str = include_str!("../fixtures/rsa-private.pem");
pub const RSA_PUBLIC: &str = include_str!("../fixtures/rsa-public.pem");

/// An Ed25519 issuer and the RSA fixture key, published together in `jwks.json`.
pub struct Keys {
    pub dir: tempfile::TempDir,
    pub ed: LocalIssuer,
    pub rsa: EncodingKey,
}

impl Keys {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ed =
            LocalIssuer::init_with(&dir.path().join("ed"), IssuerAlgorithm::EdDsa).expect("issuer");
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("RSA fixture");
        let keys = Self { dir, ed, rsa };
        keys.publish(&[keys.ed_jwk(), keys.rsa_jwk()]);
        keys
    }

    pub fn jwks_path(&self) -> PathBuf {
        self.dir.path().join("jwks.json")
    }

    /// Rewrites the key set file with `keys`.
    pub fn publish(&self, keys: &[Value]) {
        std::fs::write(self.jwks_path(), json!({ "keys": keys }).to_string()).expect("write jwks");
    }

    pub fn ed_jwk(&self) -> Value {
        ed_jwk(&self.ed)
    }

    pub fn rsa_jwk(&self) -> Value {
        let jwk = Jwk::from_encoding_key(&self.rsa, Algorithm::RS256).expect("RSA JWK");
        let AlgorithmParameters::RSA(p) = jwk.algorithm else {
            panic!("not RSA")
        };
        json!({"kty": "RSA", "n": p.n, "e": p.e, "kid": RSA_KID, "alg": "RS256", "use": "sig"})
    }

    pub fn settings(&self) -> JwtSettings {
        JwtSettings::new(JwksSource::File(self.jwks_path()), ISSUER, AUDIENCE)
    }

    pub fn authenticator(&self) -> Authenticator {
        Authenticator::new(AuthSettings::jwt(self.settings())).expect("authenticator")
    }

    pub fn rs256(&self, claims: &Value) -> String {
        sign(Algorithm::RS256, Some(RSA_KID), claims, &self.rsa)
    }
}

/// The public JWK of `issuer`, as its `jwks.json` has it.
pub fn ed_jwk(issuer: &LocalIssuer) -> Value {
    let jwks: Value = serde_json::from_str(&issuer.jwks_json()).expect("JSON");
    jwks["keys"][0].clone()
}

/// A second Ed25519 issuer in its own directory.
pub fn other_issuer(dir: &Path) -> LocalIssuer {
    LocalIssuer::init_with(&dir.join("other"), IssuerAlgorithm::EdDsa).expect("issuer")
}

/// The claims of a valid token.
pub fn claims() -> Value {
    let now = unix_now();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "tenant": "acme",
        "scope": "events:read commands:write", "iat": now, "exp": now + 600,
    })
}

/// `claims()` with `changes` merged in (a `null` removes the claim).
pub fn claims_with(changes: Value) -> Value {
    let mut c = claims();
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            c.as_object_mut().expect("object").remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

pub fn request(tenant: &str) -> TokenRequest {
    TokenRequest {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        subject: "alice".into(),
        tenant: tenant.into(),
        actor_kind: "agent".into(),
        scopes: vec!["events:read".into(), "admin".into()],
        ttl: Duration::from_secs(300),
    }
}

pub fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

/// An unsigned token (`alg: none`).
pub fn unsigned(kid: Option<&str>, claims: &Value) -> String {
    let header = match kid {
        Some(kid) => json!({"alg": "none", "typ": "JWT", "kid": kid}),
        None => json!({"alg": "none", "typ": "JWT"}),
    };
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// An HS256 token whose HMAC secret is `secret` (e.g. a public key: algorithm confusion).
pub fn hs256(kid: Option<&str>, claims: &Value, secret: &[u8]) -> String {
    sign(
        Algorithm::HS256,
        kid,
        claims,
        &EncodingKey::from_secret(secret).expect("secret"),
    )
}
