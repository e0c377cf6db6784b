//! A real HTTP reverse proxy in front of the real schema registry that asks for basic auth, as a
//! production registry does: a request without the expected credentials gets 401, one with them
//! gets 403 while access is denied, one about a subject the gate refuses gets 422 (the registry
//! refusing a schema), the rest is forwarded to the registry as it came. The stack's registry runs
//! without authentication (and is shared), so this is how tests see a registry refuse credentials
//! or a schema. Every request is recorded with the status it got.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

/// Media type of the Confluent registry API.
const REGISTRY_JSON: &str = "application/vnd.schemaregistry.v1+json";

/// One request the gate answered: method, path and the status it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Path (without the query).
    pub path: String,
    /// Status answered (the registry's own when forwarded).
    pub status: u16,
}

#[derive(Debug)]
struct Policy {
    /// `Authorization` header value a request must carry.
    expected: String,
    /// Answer 403 to requests with the right credentials.
    denied: bool,
    /// Subjects whose requests get 422.
    refused: Vec<String>,
}

struct Inner {
    upstream: String,
    http: reqwest::Client,
    policy: Mutex<Policy>,
    seen: Mutex<Vec<Seen>>,
}

/// The gate: its URL (give it to a service as `SCHEMA_REGISTRY_URL`) and its policy switches.
pub struct RegistryGate {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

impl RegistryGate {
    /// Starts the gate on a free port in front of the registry at `upstream`, accepting only
    /// basic auth `user:password`.
    pub async fn start(upstream: &str, user: &str, password: &str) -> Self {
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            policy: Mutex::new(Policy {
                expected: basic(user, password),
                denied: false,
                refused: Vec::new(),
            }),
            seen: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the registry gate");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, inner, task }
    }

    /// From now on, accept basic auth `user:password` (and only that).
    pub fn require(&self, user: &str, password: &str) {
        self.inner.policy.lock().unwrap().expected = basic(user, password);
    }

    /// Answer 403 (access denied) to requests with the right credentials while `denied`.
    pub fn deny(&self, denied: bool) {
        self.inner.policy.lock().unwrap().denied = denied;
    }

    /// Answer 422 (the registry refuses the schema) to every request about `subject` while
    /// `refused`.
    pub fn refuse_subject(&self, subject: &str, refused: bool) {
        let mut p = self.inner.policy.lock().unwrap();
        p.refused.retain(|s| s != subject);
        if refused {
            p.refused.push(subject.to_owned());
        }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }
}

impl Drop for RegistryGate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn refusal(status: StatusCode, code: u32, message: &str) -> Response {
    let body = serde_json::json!({ "error_code": code, "message": message }).to_string();
    let mut resp = (status, [(header::CONTENT_TYPE, REGISTRY_JSON)], body).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"schema-registry\""),
        );
    }
    resp
}

async fn forward(State(gate): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let given = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (expected, denied, refused) = {
        let p = gate.policy.lock().unwrap();
        let refused = p
            .refused
            .iter()
            .any(|s| path.split('/').any(|segment| segment == s));
        (p.expected.clone(), p.denied, refused)
    };
    let resp = if given.as_deref() != Some(expected.as_str()) {
        refusal(StatusCode::UNAUTHORIZED, 40101, "Unauthorized")
    } else if denied {
        refusal(
            StatusCode::FORBIDDEN,
            40301,
            "User is denied operation on this resource",
        )
    } else if refused {
        refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "Invalid schema (refused by the test's registry gate)",
        )
    } else {
        let body = axum::body::to_bytes(body, 16 << 20)
            .await
            .unwrap_or_default();
        let target = format!(
            "{}{}",
            gate.upstream,
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut out = gate.http.request(parts.method.clone(), target).body(body);
        for name in [header::CONTENT_TYPE, header::ACCEPT] {
            if let Some(v) = parts.headers.get(&name) {
                out = out.header(name, v);
            }
        }
        match out.send().await {
            Ok(r) => {
                let status = r.status();
                let content_type = r.headers().get(header::CONTENT_TYPE).cloned();
                let bytes = r.bytes().await.unwrap_or_default();
                let mut resp = Response::new(Body::from(bytes));
                *resp.status_mut() = status;
                if let Some(ct) = content_type {
                    resp.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                resp
            }
            Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        }
    };
    gate.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path,
        status: resp.status().as_u16(),
    });
    resp
}
