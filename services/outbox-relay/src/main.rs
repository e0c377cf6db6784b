//! `outbox-relay` binary: settings from the environment, then run until SIGTERM.

use anyhow::Context;
use eventfold_runtime::{Env, Shutdown, settings::or_exit, telemetry};
use outbox_relay::Settings;

/// mimalloc, the allocator of every eventfold service.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = or_exit("outbox-relay", Settings::from_env(&Env::from_process()));
    telemetry::init(settings.service.log_format);
    let server = outbox_relay::build(settings)
        .await
        .context("failed to start outbox-relay")?;
    server.run_until_stopped(Shutdown::on_signals()).await?;
    tracing::info!("outbox-relay stopped");
    Ok(())
}
