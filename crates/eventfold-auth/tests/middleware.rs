//! The axum middleware, extractor and scope check: status codes, problem bodies and challenges.

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eventfold_auth::{
    AuthSettings, Authenticator, JwksSource, JwtSettings, Principal, authenticate, require, scope,
    unix_now,
};
use serde_json::{Value, json};
use support::*;
use tower::ServiceExt;

async fn whoami(principal: Principal) -> Response {
    axum::Json(json!({
        "sub": principal.subject, "tenant": principal.tenant, "kind": principal.actor_kind,
    }))
    .into_response()
}

async fn admin_only(principal: Principal) -> Response {
    match require(&principal, scope::ADMIN) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refusal) => refusal,
    }
}

fn app(auth: Authenticator) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/admin", get(admin_only))
        .layer(axum::middleware::from_fn_with_state(auth, authenticate))
}

struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    content_type: Option<String>,
    body: Value,
}

async fn call(app: Router, path: &str, authorization: Option<&str>) -> Answer {
    let mut req = Request::get(path);
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let text = |name| {
        res.headers()
            .get(name)
            .map(|v: &axum::http::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let (challenge, content_type) = (text(header::WWW_AUTHENTICATE), text(header::CONTENT_TYPE));
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        challenge,
        content_type,
        body,
    }
}

#[tokio::test]
async fn a_valid_token_reaches_the_handler_as_a_principal() {
    let keys = Keys::new();
    let token = keys.ed.issue(&request("acme")).unwrap();
    let a = call(
        app(keys.authenticator()),
        "/whoami",
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body,
        json!({"sub": "alice", "tenant": "acme", "kind": "agent"})
    );
    // The scheme is case-insensitive.
    let a = call(
        app(keys.authenticator()),
        "/whoami",
        Some(&format!("bearer {token}")),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn no_token_is_a_401_with_a_bare_challenge() {
    let keys = Keys::new();
    for authorization in [None, Some("Basic YWxpY2U6c2VjcmV0")] {
        let a = call(app(keys.authenticator()), "/whoami", authorization).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.challenge.as_deref(), Some("Bearer realm=\"eventfold\""));
        assert_eq!(a.content_type.as_deref(), Some("application/problem+json"));
        assert_eq!(a.body["code"], "missing_token");
        assert_eq!(a.body["status"], 401);
    }
}

#[tokio::test]
async fn an_invalid_token_is_a_401_naming_the_reason() {
    let keys = Keys::new();
    let expired = keys
        .ed
        .sign(&claims_with(json!({"exp": unix_now() - 3600})))
        .unwrap();
    let cases = [
        ("Bearer ", "malformed_token"),
        ("Bearer not.a.token", "malformed_token"),
        (&format!("Bearer {expired}") as &str, "token_expired"),
        (
            &format!("Bearer {}", unsigned(None, &claims())),
            "algorithm_refused",
        ),
        (
            &format!(
                "Bearer {}",
                keys.ed.sign(&claims_with(json!({"aud": "x"}))).unwrap()
            ),
            "wrong_audience",
        ),
    ];
    for (authorization, code) in cases {
        let a = call(app(keys.authenticator()), "/whoami", Some(authorization)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{authorization}");
        assert_eq!(a.body["code"], code, "{authorization}");
        let challenge = a.challenge.expect("WWW-Authenticate");
        assert!(
            challenge.starts_with(
                "Bearer realm=\"eventfold\", error=\"invalid_token\", error_description=\""
            ),
            "{challenge}"
        );
        assert!(challenge.ends_with('"'), "{challenge}");
        assert_eq!(a.content_type.as_deref(), Some("application/problem+json"));
    }
}

#[tokio::test]
async fn a_missing_scope_is_a_403_naming_the_scope() {
    let keys = Keys::new();
    let token = keys.ed.sign(&claims()).unwrap();
    let a = call(
        app(keys.authenticator()),
        "/admin",
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        a.challenge.as_deref(),
        Some("Bearer realm=\"eventfold\", error=\"insufficient_scope\", scope=\"admin\"")
    );
    assert_eq!(a.body["code"], "insufficient_scope");
    assert_eq!(a.body["status"], 403);
    assert_eq!(a.content_type.as_deref(), Some("application/problem+json"));

    let admin = keys
        .ed
        .sign(&claims_with(json!({"scope": "admin"})))
        .unwrap();
    let a = call(
        app(keys.authenticator()),
        "/admin",
        Some(&format!("Bearer {admin}")),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn disabled_mode_lets_every_request_in_as_anonymous() {
    let auth = Authenticator::new(
        AuthSettings::from_env(&eventfold_runtime::Env::from_pairs([(
            "AUTH_MODE",
            "disabled",
        )]))
        .unwrap(),
    )
    .unwrap();
    let a = call(app(auth.clone()), "/whoami", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body,
        json!({"sub": "anonymous", "tenant": "default", "kind": "user"})
    );
    let a = call(app(auth), "/admin", Some("Bearer garbage")).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_extractor_refuses_when_the_middleware_did_not_run() {
    let app = Router::new().route("/whoami", get(whoami));
    let a = call(app, "/whoami", Some("Bearer whatever")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.body["code"], "missing_token");
}

#[tokio::test]
async fn an_unreachable_key_set_is_a_503_without_internals() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/secret-path/jwks.json",
        listener.local_addr().unwrap()
    );
    drop(listener);
    let auth = Authenticator::new(AuthSettings::jwt(JwtSettings::new(
        JwksSource::Url(url),
        ISSUER,
        AUDIENCE,
    )))
    .unwrap();
    let keys = Keys::new();
    let token = keys.ed.sign(&claims()).unwrap();
    let a = call(app(auth), "/whoami", Some(&format!("Bearer {token}"))).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body["code"], "jwks_unavailable");
    assert!(a.challenge.is_none());
    assert!(
        !a.body["detail"].as_str().unwrap().contains("secret-path"),
        "{}",
        a.body
    );
}
