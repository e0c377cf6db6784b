//! `eventfold-faults`: runs faults of the fault suite against the stack in the environment and
//! prints one verdict table. `--list`, `--all`, or fault names (`F1 F15`); exit 0 when every row
//! passed, 1 when one failed, 2 on bad input or an unreachable stack.

use eventfold_faults::{faults, select, stack, table, verdict::Verdict};
use eventfold_tests::Stack;

fn usage_error(message: &str) -> ! {
    eprintln!("eventfold-faults: {message}");
    std::process::exit(2);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<String> = match args.first().map(String::as_str) {
        Some("--list") => {
            for (name, what) in faults::FAULTS {
                println!("{name:<4} {what}");
            }
            return Ok(());
        }
        Some("--all") if args.len() == 1 => faults::FAULTS
            .iter()
            .map(|(n, _)| (*n).to_string())
            .collect(),
        None => usage_error("usage: eventfold-faults --list | --all | FAULT... (e.g. F1 F15)"),
        Some(_) => args
            .iter()
            .flat_map(|a| a.split([',', ' ']))
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
    };
    if let Some(flag) = names.iter().find(|n| n.starts_with('-')) {
        usage_error(&format!(
            "unknown option {flag} (use --list, --all or fault names)"
        ));
    }
    let selected = select(&names).unwrap_or_else(|unknown| {
        usage_error(&format!(
            "unknown fault {} (known: {})",
            unknown.join(", "),
            faults::FAULTS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(" ")
        ))
    });
    let stack = Stack::from_env().await;
    if let Err(why) = stack::reachable(&stack).await {
        usage_error(&format!(
            "stack not reachable: {why} (start it with `make up`)"
        ));
    }
    // The migrations create the group roles the per-fault login roles join.
    stack.admin_pool().await.close().await;
    let ctl = stack::StackCtl::from_env();
    let mut rows = Vec::new();
    for name in selected {
        eprintln!("==> {name}");
        let started = std::time::Instant::now();
        let task = {
            let (stack, ctl) = (stack.clone(), ctl.clone());
            tokio::spawn(async move { faults::run(name, &stack, &ctl).await })
        };
        let row = match task.await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => Verdict::broken(name, e.to_string()),
            Err(e) => Verdict::broken(name, format!("panicked: {e}")),
        };
        eprintln!(
            "<== {name} in {:.0} s: {}",
            started.elapsed().as_secs_f64(),
            if row.passed() { "ok" } else { "FAILED" }
        );
        for note in &row.notes {
            eprintln!("    {note}");
        }
        rows.push(row);
    }
    print!("{}", table(&rows));
    if rows.iter().all(Verdict::passed) {
        Ok(())
    } else {
        std::process::exit(1);
    }
}
