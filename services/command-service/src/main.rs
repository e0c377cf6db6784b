//! `command-service` binary: settings from the environment, then serve until SIGTERM.

use anyhow::Context;
use command_service::Settings;
use eventfold_runtime::{Env, Shutdown, settings::or_exit, telemetry};

/// mimalloc, the allocator of every eventfold service: under load glibc malloc spent about 40% of
/// this service's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = or_exit("command-service", Settings::from_env(&Env::from_process()));
    telemetry::init(settings.service.log_format);
    let server = command_service::build(settings)
        .await
        .context("failed to start command-service")?;
    server.run_until_stopped(Shutdown::on_signals()).await?;
    tracing::info!("command-service stopped");
    Ok(())
}
