//! `projector` binary: settings from the environment, then run until SIGTERM.

use anyhow::Context;
use eventfold_runtime::{Env, Shutdown, settings::or_exit, telemetry};
use projector::Settings;

/// mimalloc, the allocator of every eventfold service.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = or_exit("projector", Settings::from_env(&Env::from_process()));
    telemetry::init(settings.service.log_format);
    let server = projector::build(settings)
        .await
        .context("failed to start projector")?;
    server.run_until_stopped(Shutdown::on_signals()).await?;
    tracing::info!("projector stopped");
    Ok(())
}
