//! `Authenticator::verify` against real signatures: what it accepts, and each reason to refuse.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eventfold_auth::{
    AuthError, AuthSettings, Authenticator, JwksSource, JwtSettings, Principal, unix_now,
};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn accepts_a_good_eddsa_token() {
    let keys = Keys::new();
    let token = keys.ed.issue(&request("acme")).unwrap();
    let p = keys.authenticator().verify(&token).await.unwrap();
    assert_eq!(
        p,
        Principal {
            subject: "alice".into(),
            actor_kind: "agent".into(),
            tenant: "acme".into(),
            scopes: ["admin".to_owned(), "events:read".to_owned()].into(),
        }
    );
}

#[tokio::test]
async fn accepts_a_good_rs256_token() {
    let keys = Keys::new();
    let p = keys
        .authenticator()
        .verify(&keys.rs256(&claims()))
        .await
        .unwrap();
    assert_eq!((p.subject.as_str(), p.tenant.as_str()), ("alice", "acme"));
    assert_eq!(p.actor_kind, "user");
    assert!(p.has("events:read") && p.has("commands:write") && !p.has("admin"));
}

#[tokio::test]
async fn scopes_may_be_a_string_or_an_array_of_strings() {
    let keys = Keys::new();
    let auth = keys.authenticator();
    let from_string = auth
        .verify(
            &keys
                .ed
                .sign(&claims_with(json!({"scope": "admin events:read"})))
                .unwrap(),
        )
        .await
        .unwrap();
    let from_array = auth
        .verify(
            &keys
                .ed
                .sign(&claims_with(json!({"scope": ["admin", "events:read"]})))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(from_string.scopes, from_array.scopes);
    assert!(from_array.has("admin"));
    let none = auth
        .verify(&keys.ed.sign(&claims_with(json!({"scope": null}))).unwrap())
        .await
        .unwrap();
    assert!(none.scopes.is_empty());
}

#[tokio::test]
async fn accepts_an_audience_array_that_contains_the_audience() {
    let keys = Keys::new();
    let token = keys
        .ed
        .sign(&claims_with(json!({"aud": ["billing", AUDIENCE]})))
        .unwrap();
    assert!(keys.authenticator().verify(&token).await.is_ok());
}

async fn refusal(keys: &Keys, token: &str) -> AuthError {
    keys.authenticator().verify(token).await.unwrap_err()
}

#[tokio::test]
async fn refuses_malformed_tokens() {
    let keys = Keys::new();
    for token in ["", "abc", "a.b.c", "e30.e30.e30", "a.b.c.d.e"] {
        assert_eq!(
            refusal(&keys, token).await.code(),
            "malformed_token",
            "{token:?}"
        );
    }
}

#[tokio::test]
async fn refuses_an_expired_token_beyond_the_leeway() {
    let keys = Keys::new();
    let now = unix_now();
    let expired = keys
        .ed
        .sign(&claims_with(json!({"exp": now - 3600})))
        .unwrap();
    assert_eq!(refusal(&keys, &expired).await, AuthError::Expired);
    // Within the 30 s leeway a token that just expired still passes.
    let just = keys.ed.sign(&claims_with(json!({"exp": now - 5}))).unwrap();
    assert!(keys.authenticator().verify(&just).await.is_ok());
}

#[tokio::test]
async fn refuses_a_token_whose_nbf_is_in_the_future() {
    let keys = Keys::new();
    let token = keys
        .ed
        .sign(&claims_with(json!({"nbf": unix_now() + 3600})))
        .unwrap();
    assert_eq!(refusal(&keys, &token).await, AuthError::NotYetValid);
}

#[tokio::test]
async fn refuses_a_token_without_exp() {
    let keys = Keys::new();
    let token = keys.ed.sign(&claims_with(json!({"exp": null}))).unwrap();
    assert_eq!(
        refusal(&keys, &token).await,
        AuthError::MissingClaim("exp".into())
    );
}

#[tokio::test]
async fn refuses_a_wrong_or_missing_issuer() {
    let keys = Keys::new();
    let wrong = keys
        .ed
        .sign(&claims_with(json!({"iss": "https://evil.test"})))
        .unwrap();
    assert_eq!(refusal(&keys, &wrong).await, AuthError::WrongIssuer);
    let missing = keys.ed.sign(&claims_with(json!({"iss": null}))).unwrap();
    assert_eq!(
        refusal(&keys, &missing).await,
        AuthError::MissingClaim("iss".into())
    );
}

#[tokio::test]
async fn refuses_a_wrong_or_missing_audience() {
    let keys = Keys::new();
    let wrong = keys
        .ed
        .sign(&claims_with(json!({"aud": ["billing", "other"]})))
        .unwrap();
    assert_eq!(refusal(&keys, &wrong).await, AuthError::WrongAudience);
    let missing = keys.ed.sign(&claims_with(json!({"aud": null}))).unwrap();
    assert_eq!(
        refusal(&keys, &missing).await,
        AuthError::MissingClaim("aud".into())
    );
}

#[tokio::test]
async fn refuses_an_unsigned_token() {
    let keys = Keys::new();
    for kid in [None, Some(keys.ed.kid()), Some(RSA_KID)] {
        let token = unsigned(kid, &claims());
        assert_eq!(
            refusal(&keys, &token).await,
            AuthError::AlgorithmRefused("none".into())
        );
    }
}

#[tokio::test]
async fn refuses_hs256_tokens_keyed_with_a_public_key() {
    let keys = Keys::new();
    let forged = [
        hs256(Some(keys.ed.kid()), &claims(), keys.ed.public_key()),
        hs256(
            Some(keys.ed.kid()),
            &claims(),
            keys.ed.jwks_json().as_bytes(),
        ),
        hs256(Some(RSA_KID), &claims(), RSA_PUBLIC.as_bytes()),
        hs256(None, &claims(), RSA_PUBLIC.as_bytes()),
    ];
    for token in forged {
        assert_eq!(
            refusal(&keys, &token).await,
            AuthError::AlgorithmRefused("HS256".into())
        );
    }
}

#[tokio::test]
async fn refuses_a_token_whose_alg_differs_from_its_keys() {
    let keys = Keys::new();
    // An RS256 signature presented under the Ed25519 key's kid.
    let token = sign(Algorithm::RS256, Some(keys.ed.kid()), &claims(), &keys.rsa);
    assert_eq!(refusal(&keys, &token).await.code(), "algorithm_refused");
}

#[tokio::test]
async fn refuses_a_token_signed_by_another_key_under_a_trusted_kid() {
    let keys = Keys::new();
    let other_dir = tempfile::tempdir().unwrap();
    other_issuer(other_dir.path());
    let other_pem = std::fs::read(
        other_dir
            .path()
            .join("other")
            .join(eventfold_auth::KEY_FILE_NAME),
    )
    .unwrap();
    let other = EncodingKey::from_ed_pem(&other_pem).unwrap();
    let token = sign(Algorithm::EdDSA, Some(keys.ed.kid()), &claims(), &other);
    assert_eq!(refusal(&keys, &token).await, AuthError::BadSignature);
}

#[tokio::test]
async fn refuses_a_token_whose_claims_were_changed_after_signing() {
    let keys = Keys::new();
    let token = keys.ed.issue(&request("acme")).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(claims_with(json!({"tenant": "other", "scope": "admin"})).to_string())
    };
    let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
    assert_eq!(refusal(&keys, &forged).await, AuthError::BadSignature);
}

#[tokio::test]
async fn refuses_missing_tenant_or_subject() {
    let keys = Keys::new();
    let no_tenant = keys.ed.sign(&claims_with(json!({"tenant": null}))).unwrap();
    assert_eq!(refusal(&keys, &no_tenant).await, AuthError::NoTenant);
    let bad_tenant = keys
        .ed
        .sign(&claims_with(json!({"tenant": "../etc"})))
        .unwrap();
    assert_eq!(refusal(&keys, &bad_tenant).await, AuthError::BadTenant);
    let no_sub = keys.ed.sign(&claims_with(json!({"sub": null}))).unwrap();
    assert_eq!(
        refusal(&keys, &no_sub).await,
        AuthError::MissingClaim("sub".into())
    );
    let long_sub = keys
        .ed
        .sign(&claims_with(json!({"sub": "s".repeat(129)})))
        .unwrap();
    assert_eq!(refusal(&keys, &long_sub).await, AuthError::BadSubject);
}

#[tokio::test]
async fn uses_the_only_key_of_the_algorithm_when_the_token_has_no_kid() {
    let keys = Keys::new();
    let token = sign(Algorithm::RS256, None, &claims(), &keys.rsa);
    assert!(keys.authenticator().verify(&token).await.is_ok());
}

#[tokio::test]
async fn refuses_an_unknown_kid() {
    let keys = Keys::new();
    let other_dir = tempfile::tempdir().unwrap();
    let token = other_issuer(other_dir.path()).sign(&claims()).unwrap();
    assert!(matches!(
        refusal(&keys, &token).await,
        AuthError::UnknownKey(_)
    ));
}

#[tokio::test]
async fn a_rotated_key_file_is_reread_on_an_unknown_kid() {
    let keys = Keys::new();
    let mut settings = keys.settings();
    settings.jwks_min_refresh = Duration::ZERO;
    let auth = Authenticator::new(AuthSettings::jwt(settings)).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let rotated = other_issuer(other_dir.path());
    let token = rotated.sign(&claims()).unwrap();
    assert!(matches!(
        auth.verify(&token).await,
        Err(AuthError::UnknownKey(_))
    ));

    keys.publish(&[ed_jwk(&rotated), keys.rsa_jwk()]);
    assert!(auth.verify(&token).await.is_ok());
    // The key dropped from the set is no longer trusted once the set is re-read.
    let old = keys.ed.issue(&request("acme")).unwrap();
    assert!(matches!(
        auth.verify(&old).await,
        Err(AuthError::UnknownKey(_))
    ));
}

#[tokio::test]
async fn the_key_file_is_reread_at_most_once_per_interval() {
    let keys = Keys::new();
    let mut settings = keys.settings();
    settings.jwks_min_refresh = Duration::from_secs(3600);
    let auth = Authenticator::new(AuthSettings::jwt(settings)).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let rotated = other_issuer(other_dir.path());
    keys.publish(&[ed_jwk(&rotated)]);
    // The file was read at start, less than the interval ago: no re-read yet.
    let token = rotated.sign(&claims()).unwrap();
    assert!(matches!(
        auth.verify(&token).await,
        Err(AuthError::UnknownKey(_))
    ));
    assert!(auth.verify(&keys.rs256(&claims())).await.is_ok());
}

#[test]
fn a_missing_key_file_stops_the_start() {
    let settings = JwtSettings::new(
        JwksSource::File("/nonexistent/jwks.json".into()),
        ISSUER,
        AUDIENCE,
    );
    let err = Authenticator::new(AuthSettings::jwt(settings)).expect_err("refused");
    assert_eq!(err.code(), "jwks_unavailable");
}

#[tokio::test]
async fn disabled_mode_gives_every_token_the_anonymous_principal() {
    let settings = AuthSettings::from_env(&eventfold_runtime::Env::from_pairs([(
        "AUTH_MODE",
        "disabled",
    )]))
    .unwrap();
    let auth = Authenticator::new(settings).unwrap();
    assert!(auth.disabled());
    assert_eq!(
        auth.verify("garbage").await.unwrap(),
        Principal::anonymous()
    );
}

/// A key-set server on 127.0.0.1:0 that serves the current document and counts fetches.
struct JwksServer {
    url: String,
    doc: Arc<std::sync::Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

async fn jwks_server(doc: Value) -> JwksServer {
    let doc = Arc::new(std::sync::Mutex::new(doc));
    let hits = Arc::new(AtomicUsize::new(0));
    let (d, h) = (doc.clone(), hits.clone());
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (d, h) = (d.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                axum::Json(d.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    JwksServer { url, doc, hits }
}

fn url_authenticator(url: &str, min_refresh: Duration) -> Authenticator {
    let mut settings = JwtSettings::new(JwksSource::Url(url.into()), ISSUER, AUDIENCE);
    settings.jwks_min_refresh = min_refresh;
    Authenticator::new(AuthSettings::jwt(settings)).unwrap()
}

#[tokio::test]
async fn a_jwks_url_is_fetched_on_first_use_and_cached() {
    let keys = Keys::new();
    let server = jwks_server(json!({"keys": [keys.ed_jwk(), keys.rsa_jwk()]})).await;
    let auth = url_authenticator(&server.url, Duration::from_secs(3600));
    assert_eq!(server.hits.load(Ordering::SeqCst), 0, "fetched lazily");
    for _ in 0..3 {
        assert!(auth.verify(&keys.rs256(&claims())).await.is_ok());
        assert!(
            auth.verify(&keys.ed.issue(&request("t")).unwrap())
                .await
                .is_ok()
        );
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_jwks_url_is_refetched_on_an_unknown_kid_at_a_bounded_rate() {
    let keys = Keys::new();
    let server = jwks_server(json!({"keys": [keys.ed_jwk()]})).await;
    let auth = url_authenticator(&server.url, Duration::from_millis(1500));
    assert!(
        auth.verify(&keys.ed.issue(&request("t")).unwrap())
            .await
            .is_ok()
    );

    *server.doc.lock().unwrap() = json!({"keys": [keys.ed_jwk(), keys.rsa_jwk()]});
    let rotated = keys.rs256(&claims());
    for _ in 0..5 {
        assert!(matches!(
            auth.verify(&rotated).await,
            Err(AuthError::UnknownKey(_))
        ));
    }
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        1,
        "no refetch within the interval"
    );

    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(auth.verify(&rotated).await.is_ok());
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    let other_dir = tempfile::tempdir().unwrap();
    let unknown = other_issuer(other_dir.path()).sign(&claims()).unwrap();
    for _ in 0..5 {
        assert!(auth.verify(&unknown).await.is_err());
    }
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        2,
        "unknown kids do not hammer the key server"
    );
}

#[tokio::test]
async fn an_unreachable_jwks_url_is_reported_as_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    drop(listener);
    let keys = Keys::new();
    let auth = url_authenticator(&url, Duration::from_secs(30));
    let err = auth.verify(&keys.rs256(&claims())).await.unwrap_err();
    assert_eq!(err.code(), "jwks_unavailable");
}
