//! The test kit's tokens against the trust of the stack's services: the good one passes with its
//! tenant and scopes, each forgery is refused for its own reason.

use eventfold_auth::scope;
use eventfold_tests::auth;

#[tokio::test]
async fn a_kit_token_carries_its_tenant_and_scopes() {
    let p = auth::authenticator()
        .verify(&auth::token("acme", &[scope::EVENTS_READ, scope::ADMIN]))
        .await
        .expect("a kit token is trusted");
    assert_eq!((p.subject.as_str(), p.tenant.as_str()), ("test", "acme"));
    assert_eq!(p.actor_kind, "user");
    assert!(p.has(scope::EVENTS_READ) && p.has(scope::ADMIN));
    assert!(!p.has(scope::COMMANDS_WRITE));

    let agent = auth::authenticator()
        .verify(&auth::token_as("planner", "agent", "acme", &[]))
        .await
        .unwrap();
    assert_eq!(agent.actor_kind, "agent");
    assert!(agent.scopes.is_empty());
}

#[tokio::test]
async fn each_forged_token_is_refused_for_its_own_reason() {
    let a = auth::authenticator();
    let s = [scope::COMMANDS_WRITE];
    for (token, code) in [
        (auth::expired("acme", &s), "token_expired"),
        (auth::wrong_audience("acme", &s), "wrong_audience"),
        (auth::wrong_issuer("acme", &s), "wrong_issuer"),
        (auth::alg_none("acme", &s), "algorithm_refused"),
        (auth::hs256_with_public_key("acme", &s), "algorithm_refused"),
        (auth::signed_by_another_key("acme", &s), "bad_signature"),
    ] {
        let err = a.verify(&token).await.expect_err(code);
        assert_eq!(err.code(), code, "{err}");
    }
}

#[tokio::test]
async fn the_kit_client_sends_the_bearer_token() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before the headers ended");
            request.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8(request).unwrap()
    });
    let status = auth::client("acme", &[scope::EVENTS_READ])
        .get(&url)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    let request = server.await.unwrap();
    let token = request
        .lines()
        .find_map(|l| l.strip_prefix("authorization: Bearer "))
        .unwrap_or_else(|| panic!("no bearer header in {request}"));
    let p = auth::authenticator().verify(token).await.unwrap();
    assert!(p.has(scope::EVENTS_READ));
}
