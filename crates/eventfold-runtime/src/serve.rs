//! Serving a router on a TCP listener over HTTP/1.1, with hyper driven directly because
//! `axum::serve` has no header-read timeout: without one, a client that sends its request head a
//! byte at a time (slowloris), or nothing at all, holds a connection and its task forever, and a
//! few thousand such clients exhaust the process's file descriptors. Graceful shutdown works as
//! it did under `axum::serve`: stop accepting, let requests in flight finish, then return.

use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Shutdown;

/// Serves `router` on `listener` until `shutdown` fires, then waits for the open connections to
/// finish their requests. A connection whose request head (request line and headers) has not
/// fully arrived `header_read_timeout` after the server started waiting for it is closed without
/// an answer; this also bounds how long an idle keep-alive connection stays open, and how long a
/// half-sent request can hold up a graceful shutdown.
pub(crate) async fn serve(
    mut listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: Shutdown,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    // Each connection task holds a receiver: once all are dropped, every connection has ended.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            // axum's accept logs and backs off on errors such as EMFILE instead of failing.
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = shutdown.wait() => break,
        };
        // Answers leave at once rather than waiting for the client's ACK (Nagle).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let stop = shutdown.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let mut connection = pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = stop.wait() => {
                    // Closes an idle connection at once; one with a request in progress after
                    // its response (or its header-read timeout).
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            log_close(peer, served);
            drop(open);
        });
    }
    drop(listener);
    drop(open_rx);
    open_tx.closed().await;
}

fn log_close(peer: SocketAddr, served: hyper::Result<()>) {
    match served {
        Ok(()) => {}
        Err(e) if e.is_timeout() => {
            tracing::debug!(%peer, "closed a connection whose request head did not arrive in time");
        }
        Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
    }
}
