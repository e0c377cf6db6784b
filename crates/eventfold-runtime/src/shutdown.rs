//! A cloneable shutdown signal fired by SIGTERM or Ctrl-C (or by hand in tests).

use tokio::sync::watch;

/// Resolves once shutdown has been requested; every clone sees the same signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    tx: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal that fires only when [`Shutdown::trigger`] is called.
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            rx,
            tx: std::sync::Arc::new(tx),
        }
    }

    /// A signal that also fires on SIGTERM or SIGINT.
    pub fn on_signals() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            trigger.trigger();
        });
        shutdown
    }

    /// Requests shutdown.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    /// True once shutdown has been requested.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until shutdown is requested.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // The sender lives as long as any clone of self, so this only ends on `true`.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_a_trigger() {
        let s = Shutdown::new();
        let c = s.clone();
        assert!(!c.is_triggered());
        s.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(1), c.wait())
            .await
            .expect("clone woke up");
        assert!(c.is_triggered());
    }
}
