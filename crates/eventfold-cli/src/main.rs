//! `eventfold`: the admin command (see `eventfold --help`).

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use eventfold_cli::cli::{Cli, run};
use eventfold_runtime::Env;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            e.print()?;
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            let text = e.to_string();
            let line = match e.kind() {
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    "error: a command is required (see `eventfold --help`)".to_owned()
                }
                // clap lists the missing arguments on the lines after the first: keep them on it.
                ErrorKind::MissingRequiredArgument => text
                    .lines()
                    .take_while(|l| !l.is_empty())
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => text
                    .lines()
                    .next()
                    .unwrap_or("error: invalid arguments")
                    .to_owned(),
            };
            eprintln!("{line}");
            return Ok(ExitCode::from(2));
        }
    };
    match run(cli, &Env::from_process()).await {
        Ok(outcome) => {
            outcome.out.iter().for_each(|l| println!("{l}"));
            outcome.err.iter().for_each(|l| eprintln!("{l}"));
            Ok(if outcome.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
    }
}
