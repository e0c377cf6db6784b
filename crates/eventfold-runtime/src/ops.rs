//! The ops endpoints every service exposes: `/healthz` (the process answers), `/readyz` (its
//! dependencies answer) and `/metrics` (Prometheus text format), and the [`Server`] that serves a
//! service on two listeners:
//!
//! - public (`HTTP_ADDR`): the service's public API and `/healthz`;
//! - admin (`ADMIN_ADDR`): `/healthz`, `/readyz` (it names internal failures), `/metrics` and the
//!   service's admin API.
//!
//! On both, an unknown route is a 404 problem (`no_route`), so an admin route asked on the public
//! port looks like any path that does not exist.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::{BoxFuture, join_all};
use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use serde_json::json;

use crate::{ServiceSettings, Shutdown, problem};

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

    /// The ops routes of the public listener: `/healthz` only.
    fn public_router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .with_state(self.clone())
    }

    /// The ops routes of the admin listener: `/healthz`, `/readyz` and `/metrics`.
    fn admin_router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }
}

/// The 404 problem (`no_route`) of every path no route matches, on either listener.
pub async fn not_found(method: Method, uri: Uri) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "no_route",
        format!("no resource at {method} {}", uri.path()),
    )
}

/// The 405 problem of a known path asked with another method.
async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
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

/// The two APIs of a service, each served beside its listener's ops routes.
#[derive(Default)]
pub struct Routes {
    /// The public API, served on `HTTP_ADDR` beside `/healthz`.
    pub public: Router,
    /// The admin API (operator endpoints), served on `ADMIN_ADDR` beside `/healthz`, `/readyz`
    /// and `/metrics`. Layers added to it (e.g. authentication) wrap these routes only, never
    /// the ops routes.
    pub admin: Router,
}

/// One bound listener and what it serves.
struct Listener {
    listener: tokio::net::TcpListener,
    router: Router,
    header_read_timeout: Duration,
}

impl Listener {
    async fn bind(
        addr: SocketAddr,
        router: Router,
        header_read_timeout: Duration,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
        let router = router
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed);
        Ok(Self {
            listener,
            router,
            header_read_timeout,
        })
    }

    /// Serves until `shutdown` fires (letting requests in flight finish), then fires `shutdown`
    /// itself, so that a listener that stops stops the other one and the workers.
    async fn serve(
        self,
        service: &'static str,
        plane: &'static str,
        shutdown: Shutdown,
    ) -> std::io::Result<()> {
        let addr = self.listener.local_addr()?;
        tracing::info!(service, plane, %addr, "listening");
        crate::serve::serve(
            self.listener,
            self.router,
            self.header_read_timeout,
            shutdown.clone(),
        )
        .await;
        shutdown.trigger();
        Ok(())
    }
}

/// A service's two bound HTTP listeners (public and admin), ready to serve, with its background
/// workers.
pub struct Server {
    service: &'static str,
    public: Listener,
    admin: Listener,
    workers: Vec<Worker>,
}

impl Server {
    /// Binds `settings.http_addr` for `routes.public` and `settings.admin_addr` for
    /// `routes.admin`, each beside its ops routes from `ops` (port 0 picks a free port).
    pub async fn bind(
        service: &'static str,
        settings: &ServiceSettings,
        ops: &Ops,
        routes: Routes,
    ) -> std::io::Result<Self> {
        let public = routes.public.merge(ops.public_router());
        let admin = routes.admin.merge(ops.admin_router());
        Ok(Self {
            service,
            public: Listener::bind(settings.http_addr, public, settings.header_read_timeout)
                .await?,
            admin: Listener::bind(settings.admin_addr, admin, settings.header_read_timeout).await?,
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

    /// The address the public listener actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.public.listener.local_addr()
    }

    /// The address the admin listener actually bound.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.listener.local_addr()
    }

    /// Serves both listeners until `shutdown` fires, letting in-flight requests and the workers
    /// finish.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> std::io::Result<()> {
        let service = self.service;
        let workers: Vec<_> = self
            .workers
            .into_iter()
            .map(|w| tokio::spawn(w(shutdown.clone())))
            .collect();
        let (public, admin) = tokio::join!(
            self.public.serve(service, "public", shutdown.clone()),
            self.admin.serve(service, "admin", shutdown.clone()),
        );
        for worker in workers {
            if let Err(e) = worker.await {
                tracing::error!(service, error = %e, "worker failed");
            }
        }
        public.and(admin)
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
        let (status, body) = get_status(ops.admin_router(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"kafka\":\"connection refused\""), "{body}");
        let (_, metrics) = get_status(ops.admin_router(), "/metrics").await;
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
        assert_eq!(
            get_status(ops.admin_router(), "/readyz").await.0,
            StatusCode::OK
        );
        assert_eq!(
            get_status(ops.admin_router(), "/healthz").await.0,
            StatusCode::OK
        );
        let (_, metrics) = get_status(ops.admin_router(), "/metrics").await;
        assert!(
            metrics.contains("eventfold_up{service=\"test\"} 1"),
            "{metrics}"
        );
    }

    async fn fetch(http: &reqwest::Client, addr: SocketAddr, path: &str) -> (u16, String, String) {
        let resp = http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, resp.text().await.unwrap())
    }

    fn settings() -> ServiceSettings {
        let env = crate::Env::from_pairs([("HTTP_ADDR", "127.0.0.1:0")]);
        ServiceSettings::from_env(&env, 0).unwrap()
    }

    #[tokio::test]
    async fn the_public_listener_serves_its_api_and_healthz_and_the_admin_one_the_rest() {
        let ops = Ops::new("test");
        let routes = Routes {
            public: Router::new().route("/v1/things", get(|| async { "things" })),
            admin: Router::new().route("/v1/admin-thing", get(|| async { "admin" })),
        };
        let server = Server::bind("test", &settings(), &ops, routes)
            .await
            .unwrap();
        let (public, admin) = (server.local_addr().unwrap(), server.admin_addr().unwrap());
        assert_ne!(public, admin);
        let shutdown = Shutdown::new();
        let running = tokio::spawn(server.run_until_stopped(shutdown.clone()));
        let http = reqwest::Client::new();

        assert_eq!(fetch(&http, public, "/v1/things").await.0, 200);
        assert_eq!(fetch(&http, public, "/healthz").await.0, 200);
        for path in ["/readyz", "/metrics", "/v1/admin-thing", "/nowhere"] {
            let (status, content_type, body) = fetch(&http, public, path).await;
            assert_eq!(status, 404, "public {path}: {body}");
            assert_eq!(content_type, "application/problem+json", "public {path}");
            assert!(
                body.contains("\"code\":\"no_route\""),
                "public {path}: {body}"
            );
        }

        for path in ["/healthz", "/readyz", "/metrics", "/v1/admin-thing"] {
            assert_eq!(fetch(&http, admin, path).await.0, 200, "admin {path}");
        }
        let (status, content_type, _) = fetch(&http, admin, "/v1/things").await;
        assert_eq!(
            (status, content_type.as_str()),
            (404, "application/problem+json")
        );
        let resp = http
            .post(format!("http://{admin}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 405);

        shutdown.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(5), running)
            .await
            .expect("both listeners stop on shutdown")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn layers_on_the_admin_api_do_not_wrap_the_ops_routes() {
        let ops = Ops::new("test");
        let refuse = axum::middleware::from_fn(
            |_req: axum::extract::Request, _next: axum::middleware::Next| async {
                StatusCode::UNAUTHORIZED.into_response()
            },
        );
        let routes = Routes {
            public: Router::new(),
            admin: Router::new()
                .route("/v1/admin-thing", get(|| async { "admin" }))
                .layer(refuse),
        };
        let server = Server::bind("test", &settings(), &ops, routes)
            .await
            .unwrap();
        let admin = server.admin_addr().unwrap();
        let shutdown = Shutdown::new();
        let running = tokio::spawn(server.run_until_stopped(shutdown.clone()));
        let http = reqwest::Client::new();
        assert_eq!(fetch(&http, admin, "/v1/admin-thing").await.0, 401);
        for path in ["/healthz", "/readyz", "/metrics"] {
            assert_eq!(fetch(&http, admin, path).await.0, 200, "admin {path}");
        }
        shutdown.trigger();
        running.await.unwrap().unwrap();
    }

    /// Writes `sent` on a new connection to `addr`, then nothing; returns how long the server
    /// took to close the connection, and what it wrote before closing.
    async fn stall_after(addr: SocketAddr, sent: &[u8]) -> (Duration, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = tokio::time::Instant::now();
        tcp.write_all(sent).await.unwrap();
        let mut answer = Vec::new();
        // EOF or a reset both mean the server closed the connection.
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
            .await
            .expect("the server closes a stalled connection");
        (started.elapsed(), answer)
    }

    #[tokio::test]
    async fn a_client_that_stalls_in_its_request_head_is_disconnected_after_the_header_read_timeout()
     {
        let timeout = Duration::from_millis(500);
        let mut settings = settings();
        settings.header_read_timeout = timeout;
        let routes = Routes {
            public: Router::new().route("/v1/things", get(|| async { "things" })),
            admin: Router::new(),
        };
        let server = Server::bind("test", &settings, &Ops::new("test"), routes)
            .await
            .unwrap();
        let (public, admin) = (server.local_addr().unwrap(), server.admin_addr().unwrap());
        let shutdown = Shutdown::new();
        let running = tokio::spawn(server.run_until_stopped(shutdown.clone()));

        for (addr, sent) in [
            (
                public,
                &b"GET /v1/things HTTP/1.1\r\nHost: x\r\nX-Slow: "[..],
            ),
            (public, &b"GET /v1/thi"[..]),
            (public, &b""[..]),
            (admin, &b"GET /healthz HTTP/1.1\r\n"[..]),
        ] {
            let (took, answer) = stall_after(addr, sent).await;
            let sent = String::from_utf8_lossy(sent);
            assert!(answer.is_empty(), "{sent:?} got an answer: {answer:?}");
            assert!(
                took >= timeout - Duration::from_millis(50) && took < timeout * 3,
                "{sent:?} closed after {took:?}, timeout {timeout:?}"
            );
        }

        // A head that arrives in pieces, all within the timeout, is served.
        let (_, answer) = {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut tcp = tokio::net::TcpStream::connect(public).await.unwrap();
            for piece in [
                "GET /v1/things HTTP/1.1\r\n",
                "Host: x\r\n",
                "Connection: close\r\n\r\n",
            ] {
                tcp.write_all(piece.as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut answer = Vec::new();
            tcp.read_to_end(&mut answer).await.unwrap();
            ((), String::from_utf8(answer).unwrap())
        };
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("things"), "{answer}");
        let http = reqwest::Client::new();
        assert_eq!(fetch(&http, public, "/v1/things").await.0, 200);
        assert_eq!(fetch(&http, admin, "/healthz").await.0, 200);

        shutdown.trigger();
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_half_sent_request_holds_up_shutdown_no_longer_than_the_header_read_timeout() {
        use tokio::io::AsyncWriteExt;
        let timeout = Duration::from_millis(800);
        let mut settings = settings();
        settings.header_read_timeout = timeout;
        let server = Server::bind("test", &settings, &Ops::new("test"), Routes::default())
            .await
            .unwrap();
        let public = server.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let running = tokio::spawn(server.run_until_stopped(shutdown.clone()));
        let mut slow = tokio::net::TcpStream::connect(public).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost")
            .await
            .unwrap();
        // An idle connection closes at once on shutdown.
        let _idle = tokio::net::TcpStream::connect(public).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = tokio::time::Instant::now();
        shutdown.trigger();
        tokio::time::timeout(timeout * 3, running)
            .await
            .expect("the server stops once the half-sent request times out")
            .unwrap()
            .unwrap();
        assert!(started.elapsed() < timeout * 3, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn binding_a_taken_admin_port_fails_naming_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let env = crate::Env::from_pairs([
            ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("ADMIN_ADDR", taken.local_addr().unwrap().to_string()),
        ]);
        let settings = ServiceSettings::from_env(&env, 0).unwrap();
        let err = Server::bind("test", &settings, &Ops::new("test"), Routes::default())
            .await
            .err()
            .expect("the admin port is taken");
        assert!(
            err.to_string()
                .contains(&taken.local_addr().unwrap().to_string()),
            "{err}"
        );
    }
}
