//! Abuse limits of a public HTTP API: at most so many requests at once (the rest are shed with
//! 503 and `Retry-After` rather than queued), and a bound on each request's time.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::sync::Semaphore;

use crate::problem::problem;
use crate::{Env, SettingsError};

/// How many requests a public API serves at once and how long one may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLimits {
    /// `HTTP_MAX_CONCURRENT_REQUESTS`: requests served at once (default 512); more are shed.
    pub max_concurrent: usize,
    /// `HTTP_REQUEST_TIMEOUT_SECONDS`: the longest a request may take (default 30).
    pub timeout: Duration,
}

impl RequestLimits {
    /// Reads `HTTP_MAX_CONCURRENT_REQUESTS` and `HTTP_REQUEST_TIMEOUT_SECONDS`.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let max_concurrent: usize = env.parse("HTTP_MAX_CONCURRENT_REQUESTS", 512)?;
        let timeout: u64 = env.parse("HTTP_REQUEST_TIMEOUT_SECONDS", 30)?;
        for (var, value) in [
            ("HTTP_MAX_CONCURRENT_REQUESTS", max_concurrent as u64),
            ("HTTP_REQUEST_TIMEOUT_SECONDS", timeout),
        ] {
            if value == 0 {
                return Err(SettingsError::Invalid {
                    var: var.into(),
                    value: "0".into(),
                    reason: "expected a positive number".into(),
                });
            }
        }
        Ok(Self {
            max_concurrent,
            timeout: Duration::from_secs(timeout),
        })
    }

    /// Wraps `router` in the limits.
    pub fn apply(&self, router: Router) -> Router {
        let state = Limiter {
            permits: Arc::new(Semaphore::new(self.max_concurrent)),
            timeout: self.timeout,
        };
        router.layer(middleware::from_fn_with_state(state, limit))
    }
}

#[derive(Clone)]
struct Limiter {
    permits: Arc<Semaphore>,
    timeout: Duration,
}

async fn limit(State(l): State<Limiter>, request: Request, next: Next) -> Response {
    let Ok(_permit) = l.permits.clone().try_acquire_owned() else {
        return retry_later(
            "overloaded",
            "the service is at its concurrent request limit; retry later",
        );
    };
    match tokio::time::timeout(l.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => retry_later(
            "request_timeout",
            format!(
                "the request took longer than {}s; a command may still have been applied, \
                 retry with the same Idempotency-Key",
                l.timeout.as_secs()
            ),
        ),
    }
}

fn retry_later(code: &str, detail: impl Into<String>) -> Response {
    let mut r = problem(StatusCode::SERVICE_UNAVAILABLE, code, detail);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The method as a metrics label: one of the standard methods, or `other` (a client cannot grow
/// the label set with made-up methods).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    fn slow_router(limits: &RequestLimits, gate: Arc<tokio::sync::Notify>) -> Router {
        limits.apply(Router::new().route(
            "/",
            get(move || {
                let gate = gate.clone();
                async move {
                    gate.notified().await;
                    "done"
                }
            }),
        ))
    }

    #[tokio::test]
    async fn requests_over_the_limit_are_shed_with_503_and_retry_after() {
        let limits = RequestLimits {
            max_concurrent: 1,
            timeout: Duration::from_secs(30),
        };
        let gate = Arc::new(tokio::sync::Notify::new());
        let router = slow_router(&limits, gate.clone());
        let first = tokio::spawn(
            router
                .clone()
                .oneshot(Request::get("/").body(Body::empty()).unwrap()),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = router
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(second.headers()[header::RETRY_AFTER], "1");
        gate.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        // The permit is back.
        gate.notify_one();
        let third = router
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(third.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_request_over_the_timeout_gets_503() {
        let limits = RequestLimits {
            max_concurrent: 4,
            timeout: Duration::from_millis(200),
        };
        let router = slow_router(&limits, Arc::new(tokio::sync::Notify::new()));
        let r = router
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn zero_limits_are_refused_naming_the_variable() {
        let env = Env::from_pairs([("HTTP_MAX_CONCURRENT_REQUESTS", "0")]);
        let e = RequestLimits::from_env(&env).unwrap_err();
        assert!(
            e.to_string().contains("HTTP_MAX_CONCURRENT_REQUESTS"),
            "{e}"
        );
    }

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
