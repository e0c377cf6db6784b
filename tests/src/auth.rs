//! Bearer tokens for the HTTP tests: good ones from the local issuer the stack's services trust
//! (`AUTH_ISSUER_KEY_FILE`, `AUTH_ISSUER`, `AUTH_AUDIENCE`, as `scripts/stack/env.sh` sets them),
//! and forgeries that each break one rule. A token without the scope a route needs is simply
//! `token(tenant, &[])`.

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use eventfold_auth::{
    AuthSettings, Authenticator, IssuerAlgorithm, IssuerSettings, JWKS_FILE_NAME, JwksSource,
    JwtSettings, KEY_FILE_NAME, LocalIssuer, unix_now,
};
use eventfold_runtime::Env;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The subject of every kit token.
pub const SUBJECT: &str = "test";

/// Where the local issuer's key is and what its tokens say (from the process environment).
pub fn settings() -> IssuerSettings {
    IssuerSettings::from_env(&Env::from_process())
}

/// The key-set file the services trust: `AUTH_JWKS_FILE`, else the one beside the issuer's key.
pub fn jwks_file() -> std::path::PathBuf {
    let env = Env::from_process();
    env.raw("AUTH_JWKS_FILE").map_or_else(
        || settings().key_file.with_file_name(JWKS_FILE_NAME),
        Into::into,
    )
}

/// The local issuer; its key pair is created on first use when `make up` has not made it yet.
pub fn issuer() -> &'static LocalIssuer {
    static ISSUER: OnceLock<LocalIssuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let key_file = settings().key_file;
        if key_file.exists() {
            return LocalIssuer::load(&key_file).expect("load the local issuer's key");
        }
        assert_eq!(
            key_file.file_name().and_then(|n| n.to_str()),
            Some(KEY_FILE_NAME),
            "AUTH_ISSUER_KEY_FILE={} does not exist (run `eventfold token init`)",
            key_file.display()
        );
        LocalIssuer::init(key_file.parent().expect("a key file in a directory"))
            .expect("create the local issuer's key pair")
    })
}

/// The `AUTH_*` variables of a service started in-process that trusts the kit's tokens.
pub fn service_env() -> Vec<(&'static str, String)> {
    issuer();
    let s = settings();
    vec![
        ("AUTH_MODE", "jwt".to_owned()),
        ("AUTH_JWKS_FILE", jwks_file().display().to_string()),
        ("AUTH_ISSUER", s.issuer),
        ("AUTH_AUDIENCE", s.audience),
    ]
}

/// An authenticator with the same trust as the stack's services.
pub fn authenticator() -> Authenticator {
    issuer();
    let s = settings();
    Authenticator::new(AuthSettings::jwt(JwtSettings::new(
        JwksSource::File(jwks_file()),
        s.issuer,
        s.audience,
    )))
    .expect("authenticator")
}

/// A valid token (subject `test`, a user, valid for an hour) for `tenant` with `scopes`.
pub fn token(tenant: &str, scopes: &[&str]) -> String {
    token_as(SUBJECT, "user", tenant, scopes)
}

/// A valid token for `subject` of `actor_kind` (`user`, `agent`, `system`).
pub fn token_as(subject: &str, actor_kind: &str, tenant: &str, scopes: &[&str]) -> String {
    let request = settings().request(
        subject,
        actor_kind,
        tenant,
        scopes,
        Duration::from_secs(3600),
    );
    issuer().issue(&request).expect("issue a token")
}

/// An HTTP client that sends `Authorization: Bearer <token(tenant, scopes)>` on every request.
pub fn client(tenant: &str, scopes: &[&str]) -> reqwest::Client {
    client_with(&token(tenant, scopes))
}

/// An HTTP client that sends `Authorization: Bearer <token>` on every request.
pub fn client_with(token: &str) -> reqwest::Client {
    builder_with(token).build().expect("HTTP client")
}

/// A client builder whose requests carry `Authorization: Bearer <token>` (for timeouts etc.).
pub fn builder_with(token: &str) -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .expect("a token is a valid header value");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder().default_headers(headers)
}

/// A token of tenant `default` holding every scope (commands, reads, admin, impersonation).
pub fn operator_token() -> String {
    token("default", &eventfold_auth::scope::ALL)
}

/// A client sending [`operator_token`], for tests whose subject is not authorization.
pub fn operator() -> reqwest::Client {
    client_with(&operator_token())
}

/// The claims of `token(tenant, scopes)`, for forgeries to change.
pub fn claims(tenant: &str, scopes: &[&str]) -> Value {
    let s = settings();
    let now = unix_now();
    json!({
        "iss": s.issuer, "aud": s.audience, "sub": SUBJECT, "tenant": tenant,
        "actor_kind": "user", "scope": scopes.join(" "), "iat": now, "exp": now + 3600,
    })
}

/// `claims` signed by the trusted key (any rule the claims break is the only thing wrong).
pub fn signed(claims: &Value) -> String {
    issuer().sign(claims).expect("sign")
}

/// Expired an hour ago (beyond any leeway); otherwise valid.
pub fn expired(tenant: &str, scopes: &[&str]) -> String {
    let mut c = claims(tenant, scopes);
    c["iat"] = json!(unix_now() - 7200);
    c["exp"] = json!(unix_now() - 3600);
    signed(&c)
}

/// For another audience; otherwise valid.
pub fn wrong_audience(tenant: &str, scopes: &[&str]) -> String {
    let mut c = claims(tenant, scopes);
    c["aud"] = json!("some-other-api");
    signed(&c)
}

/// From another issuer name (signed by the trusted key); otherwise valid.
pub fn wrong_issuer(tenant: &str, scopes: &[&str]) -> String {
    let mut c = claims(tenant, scopes);
    c["iss"] = json!("https://someone-else.example");
    signed(&c)
}

/// Unsigned (`alg: none`, empty signature), naming the trusted key.
pub fn alg_none(tenant: &str, scopes: &[&str]) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": issuer().kid()});
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims(tenant, scopes).to_string())
    )
}

/// HS256 with the trusted public key as the HMAC secret (algorithm confusion), naming its kid.
pub fn hs256_with_public_key(tenant: &str, scopes: &[&str]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(issuer().kid().to_owned());
    let secret = EncodingKey::from_secret(issuer().public_key()).expect("secret");
    jsonwebtoken::encode(&header, &claims(tenant, scopes), &secret).expect("sign")
}

/// Signed by an untrusted key of the trusted key's kind while naming the trusted key's kid (a bad
/// signature).
pub fn signed_by_another_key(tenant: &str, scopes: &[&str]) -> String {
    let dir = std::env::temp_dir().join(crate::unique("eventfold-untrusted-issuer"));
    let algorithm = issuer().algorithm();
    let kind = if algorithm == Algorithm::EdDSA {
        IssuerAlgorithm::EdDsa
    } else {
        IssuerAlgorithm::Rs256
    };
    LocalIssuer::init_with(&dir, kind).expect("untrusted key pair");
    let pem = std::fs::read(dir.join(KEY_FILE_NAME)).expect("read the untrusted key");
    let _ = std::fs::remove_dir_all(&dir);
    let key = if algorithm == Algorithm::EdDSA {
        EncodingKey::from_ed_pem(&pem)
    } else {
        EncodingKey::from_rsa_pem(&pem)
    }
    .expect("untrusted key");
    let mut header = Header::new(algorithm);
    header.kid = Some(issuer().kid().to_owned());
    jsonwebtoken::encode(&header, &claims(tenant, scopes), &key).expect("sign")
}
