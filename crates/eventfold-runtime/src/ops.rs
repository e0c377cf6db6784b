//! The ops endpoints every service exposes: `/healthz` (the process answers), `/readyz` (its
//! dependencies answer) and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::{BoxFuture, join_all};
use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use serde_json::json;

use crate::Shutdown;

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

type CheckFn = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// A named probe of one dependency; `Err` carries a short reason shown by `/readyz`.
#[derive(Clone)]
pub struct ReadinessCheck {
    name: String,
    check: Arc<CheckFn>,
}

impl ReadinessCheck {
    /// Wraps an async probe under a name such as `postgres` or `kafka`.
    pub fn new<F, Fut>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name: name.into(),
            check: Arc::new(move || Box::pin(check())),
        }
    }

    async fn run(&self) -> (String, Result<(), String>) {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, (self.check)()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
        };
        (self.name.clone(), outcome)
    }
}

/// A service's metrics registry and readiness checks, served by [`Ops::router`].
#[derive(Clone)]
pub struct Ops {
    service: &'static str,
    registry: Registry,
    checks: Arc<Vec<ReadinessCheck>>,
    readiness_failures: IntCounterVec,
}

impl Ops {
    /// Creates the registry for `service` with an `eventfold_up` gauge and build info.
    pub fn new(service: &'static str) -> Self {
        let registry = Registry::new_custom(Some("eventfold".into()), None)
            .expect("static prefix is a valid metric name");
        let up = IntGauge::with_opts(
            Opts::new("up", "1 while the service process runs").const_label("service", service),
        )
        .expect("static metric definition");
        up.set(1);
        let readiness_failures = IntCounterVec::new(
            Opts::new(
                "readiness_check_failures_total",
                "Failed readiness checks by dependency",
            )
            .const_label("service", service),
            &["check"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(up))
            .expect("fresh registry accepts metric");
        registry
            .register(Box::new(readiness_failures.clone()))
            .expect("fresh registry accepts metric");
        Self {
            service,
            registry,
            checks: Arc::new(Vec::new()),
            readiness_failures,
        }
    }

    /// Adds a readiness check; `/readyz` is 200 only when all checks pass.
    pub fn with_check(mut self, check: ReadinessCheck) -> Self {
        Arc::make_mut(&mut self.checks).push(check);
        self
    }

    /// The registry where the service registers its own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The service name used in metrics and logs.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Runs every check concurrently; true when all pass.
    pub async fn check_ready(&self) -> (bool, serde_json::Value) {
        let results = join_all(self.checks.iter().map(ReadinessCheck::run)).await;
        let mut ok = true;
        let mut detail = serde_json::Map::new();
        for (name, outcome) in results {
            match outcome {
                Ok(()) => {
                    detail.insert(name, json!("ok"));
                }
                Err(reason) => {
                    ok = false;
                    self.readiness_failures.with_label_values(&[&name]).inc();
                    detail.insert(name, json!(reason));
                }
            }
        }
        (ok, serde_json::Value::Object(detail))
    }

    /// `/healthz`, `/readyz` and `/metrics`, to merge into the service's router.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }
}

async fn healthz(State(ops): State<Ops>) -> Response {
    axum::Json(json!({"status": "ok", "service": ops.service})).into_response()
}

async fn readyz(State(ops): State<Ops>) -> Response {
    let (ok, checks) = ops.check_ready().await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ok { "ready" } else { "not ready" },
        "service": ops.service,
        "checks": checks,
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(ops): State<Ops>) -> Response {
    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    if let Err(e) = encoder.encode(&ops.registry.gather(), &mut buf) {
        tracing::error!(error = %e, "cannot encode metrics");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
        buf,
    )
        .into_response()
}

type Worker = Box<dyn FnOnce(Shutdown) -> BoxFuture<'static, ()> + Send>;

/// A service's bound HTTP listener and router, ready to serve, with its background workers.
pub struct Server {
    service: &'static str,
    listener: tokio::net::TcpListener,
    router: Router,
    workers: Vec<Worker>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) for `router`.
    pub async fn bind(
        service: &'static str,
        addr: SocketAddr,
        router: Router,
    ) -> std::io::Result<Self> {
        Ok(Self {
            service,
            listener: tokio::net::TcpListener::bind(addr).await?,
            router,
            workers: Vec::new(),
        })
    }

    /// Adds a background worker started with the server; it gets the shutdown signal and the
    /// server waits for it to finish (e.g. its batch in hand) before `run_until_stopped` returns.
    pub fn with_worker<F, Fut>(mut self, worker: F) -> Self
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.workers
            .push(Box::new(move |shutdown| Box::pin(worker(shutdown))));
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` fires, letting in-flight requests and the workers finish.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> std::io::Result<()> {
        tracing::info!(service = self.service, addr = %self.local_addr()?, "listening");
        let workers: Vec<_> = self
            .workers
            .into_iter()
            .map(|w| tokio::spawn(w(shutdown.clone())))
            .collect();
        let stop = shutdown.clone();
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { stop.wait().await })
            .await;
        // The listener only ends early on an I/O error: stop the workers too.
        shutdown.trigger();
        for worker in workers {
            if let Err(e) = worker.await {
                tracing::error!(service = self.service, error = %e, "worker failed");
            }
        }
        served
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_status(router: Router, path: &str) -> (StatusCode, String) {
        let resp = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readyz_is_503_naming_the_failed_dependency() {
        let ops = Ops::new("test")
            .with_check(ReadinessCheck::new("good", || async { Ok(()) }))
            .with_check(ReadinessCheck::new("kafka", || async {
                Err("connection refused".to_owned())
            }));
        let (status, body) = get_status(ops.router(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"kafka\":\"connection refused\""), "{body}");
        let (_, metrics) = get_status(ops.router(), "/metrics").await;
        assert!(
            metrics.contains(
                "eventfold_readiness_check_failures_total{check=\"kafka\",service=\"test\"} 1"
            ),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn readyz_is_200_when_every_check_passes_and_healthz_always_answers() {
        let ops = Ops::new("test").with_check(ReadinessCheck::new("good", || async { Ok(()) }));
        assert_eq!(get_status(ops.router(), "/readyz").await.0, StatusCode::OK);
        assert_eq!(get_status(ops.router(), "/healthz").await.0, StatusCode::OK);
        let (_, metrics) = get_status(ops.router(), "/metrics").await;
        assert!(
            metrics.contains("eventfold_up{service=\"test\"} 1"),
            "{metrics}"
        );
    }
}
