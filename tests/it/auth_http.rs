//! Bearer tokens at the command-service HTTP API (in-process, trusting the kit's issuer): each bad
//! token is 401 with a `WWW-Authenticate` challenge, a good token without the route's scope is 403,
//! and a command is recorded as the token's subject (another actor only with `impersonate`).

use eventfold_auth::scope;
use eventfold_tests::xref::discover_body;
use eventfold_tests::{Stack, auth, unique};
use reqwest::{Client, Response};
use serde_json::Value;

/// Asserts a problem answer with `status` and `code`.
async fn refused(r: Response, status: u16, code: &str, what: &str) {
    assert_eq!(r.status().as_u16(), status, "{what}");
    if status == 401 || code == "insufficient_scope" {
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.starts_with("Bearer realm=\"eventfold\""),
            "{what}: {challenge}"
        );
    }
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{what}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_401_missing_scopes_403_and_nothing_is_written() {
    let service = Stack::from_env().await.spawn_command_service(&[]).await;
    let id = format!("GEN.1.1:JHN.1.1:{}", unique("auth"));
    let create = format!(
        "{}/v1/CrossReference/{id}/commands/DiscoverCrossReference",
        service.url
    );
    let read = format!("{}/v1/CrossReference/{id}/events", service.url);
    let all = [scope::COMMANDS_WRITE, scope::EVENTS_READ];
    let anonymous = Client::new();
    refused(
        anonymous
            .post(&create)
            .json(&discover_body())
            .send()
            .await
            .unwrap(),
        401,
        "missing_token",
        "no token",
    )
    .await;
    for (token, code, what) in [
        (auth::expired("default", &all), "token_expired", "expired"),
        (
            auth::wrong_audience("default", &all),
            "wrong_audience",
            "wrong audience",
        ),
        (
            auth::wrong_issuer("default", &all),
            "wrong_issuer",
            "wrong issuer",
        ),
        (
            auth::alg_none("default", &all),
            "algorithm_refused",
            "alg none",
        ),
        (
            auth::hs256_with_public_key("default", &all),
            "algorithm_refused",
            "HS256 signed with the public key",
        ),
        (
            auth::signed_by_another_key("default", &all),
            "bad_signature",
            "signed by another key",
        ),
        ("not.a.jwt".to_owned(), "malformed_token", "malformed"),
    ] {
        let r = anonymous
            .post(&create)
            .bearer_auth(&token)
            .json(&discover_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        let body: Value = r.json().await.unwrap();
        // The code names the broken rule; a forgery may be caught by an earlier rule first.
        assert!(body["code"].is_string(), "{what}: {body}");
        if what != "HS256 signed with the public key" && what != "signed by another key" {
            assert_eq!(body["code"], code, "{what}: {body}");
        }
    }
    // Good tokens without the route's scope.
    let reader = auth::client("default", &[scope::EVENTS_READ]);
    refused(
        reader
            .post(&create)
            .json(&discover_body())
            .send()
            .await
            .unwrap(),
        403,
        "insufficient_scope",
        "command without commands:write",
    )
    .await;
    let writer = auth::client("default", &[scope::COMMANDS_WRITE]);
    refused(
        writer.get(&read).send().await.unwrap(),
        403,
        "insufficient_scope",
        "read without events:read",
    )
    .await;
    // Nothing of the refused commands was written.
    let full = auth::client("default", &all);
    assert_eq!(full.get(&read).send().await.unwrap().status(), 404);
    // An unknown route stays 404 without a token; a path shaped like an aggregate's needs one.
    let r = anonymous
        .get(format!("{}/v2/nothing", service.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = full
        .get(format!("{}/v1/parked/opportunities", service.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_record_the_tokens_subject_and_impersonation_needs_its_scope() {
    let service = Stack::from_env().await.spawn_command_service(&[]).await;
    let id = format!("GEN.1.1:JHN.1.1:{}", unique("actor"));
    let create = format!(
        "{}/v1/CrossReference/{id}/commands/DiscoverCrossReference",
        service.url
    );
    let read = format!("{}/v1/CrossReference/{id}/events", service.url);
    let agent = auth::client_with(&auth::token_as(
        "discovery-bot",
        "agent",
        "default",
        &[scope::COMMANDS_WRITE, scope::EVENTS_READ],
    ));
    // X-Actor without the impersonate scope: refused, nothing written.
    let r = agent
        .post(&create)
        .header("x-actor", "user:someone-else")
        .json(&discover_body())
        .send()
        .await
        .unwrap();
    refused(
        r,
        403,
        "impersonation_not_allowed",
        "X-Actor without impersonate",
    )
    .await;
    assert_eq!(agent.get(&read).send().await.unwrap().status(), 404);

    let r = agent
        .post(&create)
        .json(&discover_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let history: Value = agent.get(&read).send().await.unwrap().json().await.unwrap();
    let event = &history["events"][0];
    assert_eq!(
        (&event["actor_kind"], &event["actor_id"], &event["tenant"]),
        (
            &Value::from("agent"),
            &Value::from("discovery-bot"),
            &Value::from("default")
        ),
        "{event}"
    );

    // A gateway with impersonate records the user it acts for, and itself in the metadata.
    let gateway = auth::client_with(&auth::token_as(
        "gateway",
        "system",
        "default",
        &[
            scope::COMMANDS_WRITE,
            scope::EVENTS_READ,
            scope::IMPERSONATE,
        ],
    ));
    let other = format!("GEN.1.2:JHN.1.2:{}", unique("actor"));
    let r = gateway
        .post(format!(
            "{}/v1/CrossReference/{other}/commands/DiscoverCrossReference",
            service.url
        ))
        .header("x-actor", "user:alice")
        .json(&discover_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let history: Value = gateway
        .get(format!("{}/v1/CrossReference/{other}/events", service.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event = &history["events"][0];
    assert_eq!(event["actor_id"], "alice", "{event}");
    assert_eq!(
        event["metadata"]["impersonated_by"], "system:gateway",
        "{event}"
    );
}
