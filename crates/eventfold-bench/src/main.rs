//! `eventfold-bench` (`make bench`): eventfold's write side against cqrs-es 0.5 + postgres-es 0.5
//! on the same PostgreSQL. Not a test: it prints numbers, it judges nothing but the write side's
//! performance targets.

mod bench;
mod config;
mod database;
mod http;
mod hydration;
mod in_process;
mod peer;
mod report;
mod token;
mod workload;

use config::BenchConfig;
use eventfold_runtime::Env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if config::wants_help(&args) {
        print!("{}", config::usage());
        return Ok(());
    }
    let config = BenchConfig::from_env_and_args(Env::from_process(), &args).unwrap_or_else(|e| {
        eprintln!("eventfold-bench: {e}");
        std::process::exit(2)
    });
    bench::run(&config).await
}
