//! `eventfold-migrate`: applies the event store migrations as the migration role (`DATABASE_URL`),
//! then exits. Run before the services start (the Helm hook Job, `make up`).
//!
//! Exit codes: 0 applied (or nothing to do), 1 the database refused, 2 bad configuration.

use std::process::ExitCode;

use eventfold_postgres::{MIGRATOR, PgSettings};
use eventfold_runtime::{Env, settings::or_exit};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if let Some(arg) = std::env::args().nth(1) {
        let help = arg == "--help" || arg == "-h";
        eprintln!("usage: eventfold-migrate (configured by DATABASE_URL; takes no arguments)");
        return if help {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    }
    let settings = or_exit(
        "eventfold-migrate",
        PgSettings::from_env(&Env::from_process()),
    );
    let pool = match sqlx::PgPool::connect_with(settings.connect_options()).await {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!(
                "eventfold-migrate: cannot connect to {}: {e}",
                eventfold_postgres::redact(&settings.url)
            );
            return ExitCode::from(1);
        }
    };
    match MIGRATOR.run(&pool).await {
        Ok(()) => {
            let applied: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
            println!("eventfold-migrate: schema at {:?}", applied.last());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eventfold-migrate: {e}");
            ExitCode::from(1)
        }
    }
}
