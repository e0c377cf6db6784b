//! The printed results: one markdown table per worker count, the cost of authentication over
//! HTTP, the hydration table, and the targets with PASS or MISS computed from the measured numbers.

use std::fmt::Write as _;

use crate::hydration::Hydration;
use crate::workload::Measurement;

/// Name of the peer's row.
pub const PEER: &str = "peer: cqrs-es 0.5 + postgres-es 0.5";
/// Name of eventfold's in-process row.
pub const IN_PROCESS: &str = "eventfold in-process";
/// Name of eventfold's HTTP row (the service authenticates every request).
pub const HTTP: &str = "eventfold over HTTP";
/// Name of eventfold's HTTP row against a service with `AUTH_MODE=disabled`.
pub const HTTP_NOAUTH: &str = "eventfold over HTTP, auth off";
/// How far authentication may move the HTTP row from the auth-off row: 10%.
const AUTH_TOLERANCE: f64 = 0.10;

/// One target's result at one worker count.
pub enum Row {
    /// It ran.
    Measured(Measurement),
    /// It did not run, and why.
    Skipped(String),
}

/// Every target at one worker count.
pub struct Phase {
    /// Concurrent workers.
    pub workers: usize,
    /// (target name, result), the peer first.
    pub rows: Vec<(&'static str, Row)>,
}

impl Phase {
    fn measured(&self, target: &str) -> Option<&Measurement> {
        self.rows.iter().find_map(|(name, row)| match row {
            Row::Measured(m) if *name == target => Some(m),
            _ => None,
        })
    }
}

/// The table of one phase.
pub fn phase_table(phase: &Phase) -> String {
    let peer = phase.measured(PEER);
    let mut out = format!("\n### {} worker(s)\n\n", phase.workers);
    out.push_str(
        "| target | cmd/s | p50 ms | p99 ms | conflicts surfaced | other failures | cmd/s ÷ peer | p99 ÷ peer |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, row) in &phase.rows {
        match row {
            Row::Measured(m) => {
                let ratio = |f: fn(&Measurement) -> f64| {
                    peer.filter(|p| f(p) > 0.0)
                        .map(|p| format!("{:.2}×", f(m) / f(p)))
                        .unwrap_or_else(|| "–".into())
                };
                let _ = writeln!(
                    out,
                    "| {name} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} |",
                    m.per_second(),
                    m.millis(0.5),
                    m.millis(0.99),
                    m.conflicts,
                    m.failed,
                    ratio(Measurement::per_second),
                    ratio(|m| m.millis(0.99)),
                );
                if let Some(e) = &m.first_failure {
                    let _ = writeln!(out, "|   first failure: {} | | | | | | | |", one_line(e));
                }
            }
            Row::Skipped(why) => {
                let _ = writeln!(out, "| {name} | skipped: {} | | | | | | |", one_line(why));
            }
        }
    }
    out
}

/// The HTTP row (auth on) beside the auth-off row of one phase.
struct AuthCost<'a> {
    on: &'a Measurement,
    off: &'a Measurement,
}

impl<'a> AuthCost<'a> {
    /// Both HTTP rows of `phase`, if both were measured.
    fn of(phase: &'a Phase) -> Option<Self> {
        Some(Self {
            on: phase.measured(HTTP)?,
            off: phase.measured(HTTP_NOAUTH)?,
        })
    }

    /// cmd/s auth on ÷ auth off.
    fn throughput(&self) -> f64 {
        ratio(self.on.per_second(), self.off.per_second())
    }

    /// Latency at `quantile`, auth on ÷ auth off.
    fn latency(&self, quantile: f64) -> f64 {
        ratio(self.on.millis(quantile), self.off.millis(quantile))
    }
}

/// `a / b`, NaN (which passes no target) when `b` is not positive.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// The cost of authentication per worker count: the HTTP row over the auth-off row. Empty when
/// the auth-off row was not part of the run.
pub fn auth_table(phases: &[Phase]) -> String {
    if !phases
        .iter()
        .any(|p| p.rows.iter().any(|(name, _)| *name == HTTP_NOAUTH))
    {
        return String::new();
    }
    let mut out = format!("\n### Authentication cost: {HTTP}, auth on ÷ auth off\n\n");
    out.push_str(
        "| workers | auth on cmd/s | auth off cmd/s | cmd/s on ÷ off | p50 ms on / off | p50 on ÷ off | p99 ms on / off | p99 on ÷ off |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for phase in phases {
        match AuthCost::of(phase) {
            Some(c) => {
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {:.0} | {:.2}× | {:.2} / {:.2} | {:.2}× | {:.2} / {:.2} | {:.2}× |",
                    phase.workers,
                    c.on.per_second(),
                    c.off.per_second(),
                    c.throughput(),
                    c.on.millis(0.5),
                    c.off.millis(0.5),
                    c.latency(0.5),
                    c.on.millis(0.99),
                    c.off.millis(0.99),
                    c.latency(0.99),
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "| {} | not measured: both HTTP rows are needed | | | | | | |",
                    phase.workers
                );
            }
        }
    }
    out
}

/// One hydration target's result.
pub struct HydrationRow {
    /// Target name.
    pub name: &'static str,
    /// Measured, not available, or skipped with a reason.
    pub result: Result<Hydration, String>,
}

/// The hydration table; ratios are to the peer's p50.
pub fn hydration_table(events: usize, rows: &[HydrationRow]) -> String {
    let peer_p50 = rows.iter().find_map(|r| match &r.result {
        Ok(Hydration::Measured(h)) if r.name == PEER => Some(h.value_at_quantile(0.5) as f64),
        _ => None,
    });
    let mut out = format!("\n### Hydration of a {events}-event cross-reference\n\n");
    out.push_str("| target | p50 ms | p99 ms | p50 ÷ peer |\n|---|---:|---:|---:|\n");
    for row in rows {
        match &row.result {
            Ok(Hydration::Measured(h)) => {
                let p50 = h.value_at_quantile(0.5) as f64;
                let ratio = peer_p50
                    .filter(|p| *p > 0.0)
                    .map(|p| format!("{:.2}×", p50 / p))
                    .unwrap_or_else(|| "–".into());
                let _ = writeln!(
                    out,
                    "| {} | {:.3} | {:.3} | {ratio} |",
                    row.name,
                    p50 / 1000.0,
                    h.value_at_quantile(0.99) as f64 / 1000.0
                );
            }
            Err(why) => {
                let _ = writeln!(out, "| {} | skipped: {} | | |", row.name, one_line(why));
            }
        }
    }
    out
}

/// The write side's performance targets, judged on the phase with 32 workers (or the largest one run).
pub fn targets(phases: &[Phase], hydration: &[HydrationRow], snapshot_row: &str) -> String {
    let mut out = String::from("\n### Write-side targets\n\n");
    let Some(phase) = phases
        .iter()
        .find(|p| p.workers == 32)
        .or_else(|| phases.iter().max_by_key(|p| p.workers))
    else {
        out.push_str("no timed run: no targets to judge\n");
        return out;
    };
    if phase.workers != 32 {
        let _ = writeln!(
            out,
            "(judged at {} workers: the targets are stated for 32)\n",
            phase.workers
        );
    }
    out.push_str("| target | measured | verdict |\n|---|---|---|\n");
    let peer = phase.measured(PEER);
    let eventfold = phase.measured(IN_PROCESS);
    let http = phase.measured(HTTP);
    let mut line = |what: &str, verdict: Verdict| {
        let _ = writeln!(out, "| {what} | {} | {} |", verdict.measured, verdict.word);
    };
    line(
        "eventfold in-process cmd/s ≥ 4× peer",
        match (eventfold, peer) {
            (Some(e), Some(p)) if p.per_second() > 0.0 => {
                let r = e.per_second() / p.per_second();
                Verdict::judge(
                    r >= 4.0,
                    format!(
                        "{:.2}× ({:.0} vs {:.0} cmd/s)",
                        r,
                        e.per_second(),
                        p.per_second()
                    ),
                )
            }
            _ => Verdict::not_run(),
        },
    );
    line(
        "eventfold in-process p99 ≤ peer p99",
        match (eventfold, peer) {
            (Some(e), Some(p)) => Verdict::judge(
                e.applied > 0 && e.millis(0.99) <= p.millis(0.99),
                format!("{:.2} ms vs {:.2} ms", e.millis(0.99), p.millis(0.99)),
            ),
            _ => Verdict::not_run(),
        },
    );
    line(
        "eventfold in-process conflicts surfaced = 0",
        match eventfold {
            Some(e) => Verdict::judge(e.conflicts == 0, e.conflicts.to_string()),
            None => Verdict::not_run(),
        },
    );
    line(
        "eventfold over HTTP cmd/s ≥ 2× peer in-process",
        match (http, peer) {
            (Some(h), Some(p)) if p.per_second() > 0.0 => {
                let r = h.per_second() / p.per_second();
                Verdict::judge(
                    r >= 2.0,
                    format!(
                        "{:.2}× ({:.0} vs {:.0} cmd/s)",
                        r,
                        h.per_second(),
                        p.per_second()
                    ),
                )
            }
            _ => Verdict::not_run(),
        },
    );
    let cost = AuthCost::of(phase);
    let within = format!("within {:.0}% of auth off", 100.0 * AUTH_TOLERANCE);
    line(
        &format!(
            "{HTTP} cmd/s with auth {within} (≥ {:.2}×)",
            1.0 - AUTH_TOLERANCE
        ),
        match &cost {
            Some(c) => Verdict::judge(
                c.throughput() >= 1.0 - AUTH_TOLERANCE,
                format!(
                    "{:.2}× ({:.0} vs {:.0} cmd/s)",
                    c.throughput(),
                    c.on.per_second(),
                    c.off.per_second()
                ),
            ),
            None => Verdict::not_run(),
        },
    );
    for (label, quantile) in [("p50", 0.5), ("p99", 0.99)] {
        line(
            &format!(
                "{HTTP} {label} with auth {within} (≤ {:.2}×)",
                1.0 + AUTH_TOLERANCE
            ),
            match &cost {
                Some(c) => Verdict::judge(
                    c.on.applied > 0 && c.latency(quantile) <= 1.0 + AUTH_TOLERANCE,
                    format!(
                        "{:.2}× ({:.2} vs {:.2} ms)",
                        c.latency(quantile),
                        c.on.millis(quantile),
                        c.off.millis(quantile)
                    ),
                ),
                None => Verdict::not_run(),
            },
        );
    }
    let p50 = |name: &str| {
        hydration.iter().find_map(|r| match &r.result {
            Ok(Hydration::Measured(h)) if r.name == name => Some(h.value_at_quantile(0.5) as f64),
            _ => None,
        })
    };
    line(
        "hydration with snapshot p50 ≤ 0.5× peer p50",
        match (p50(snapshot_row), p50(PEER)) {
            (Some(s), Some(p)) if p > 0.0 => Verdict::judge(
                s / p <= 0.5,
                format!("{:.2}× ({:.3} vs {:.3} ms)", s / p, s / 1000.0, p / 1000.0),
            ),
            _ => Verdict::not_run(),
        },
    );
    out
}

struct Verdict {
    measured: String,
    word: &'static str,
}

impl Verdict {
    fn judge(pass: bool, measured: String) -> Self {
        Self {
            measured,
            word: if pass { "PASS" } else { "MISS" },
        }
    }

    fn not_run() -> Self {
        Self {
            measured: "no measurement".into(),
            word: "NOT RUN",
        }
    }
}

fn one_line(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.replace('|', "/").chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::workload::{Measurement, histogram, record};

    /// `applied` commands in one second, every one taking `millis` (below 2 ms a histogram of
    /// three significant digits is exact).
    fn measured(applied: u64, millis: u64) -> Row {
        let mut latency = histogram();
        for _ in 0..applied {
            record(&mut latency, Duration::from_millis(millis));
        }
        Row::Measured(Measurement {
            applied,
            elapsed: Duration::from_secs(1),
            latency,
            ..Measurement::empty()
        })
    }

    fn phase(on: Row, off: Row) -> Phase {
        Phase {
            workers: 32,
            rows: vec![(HTTP, on), (HTTP_NOAUTH, off)],
        }
    }

    fn verdict(report: &str, what: &str) -> String {
        let line = report
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no line with {what:?} in\n{report}"));
        line.trim_end_matches(" |")
            .rsplit("| ")
            .next()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn authentication_within_ten_percent_passes() {
        let report = targets(&[phase(measured(950, 1), measured(1000, 1))], &[], "");
        assert_eq!(verdict(&report, "cmd/s with auth within 10%"), "PASS");
        assert_eq!(verdict(&report, "p50 with auth within 10%"), "PASS");
        assert_eq!(verdict(&report, "p99 with auth within 10%"), "PASS");
        assert!(report.contains("0.95× (950 vs 1000 cmd/s)"), "{report}");
    }

    #[test]
    fn authentication_costing_more_than_ten_percent_misses() {
        let report = targets(&[phase(measured(800, 2), measured(1000, 1))], &[], "");
        assert_eq!(verdict(&report, "cmd/s with auth within 10%"), "MISS");
        assert_eq!(verdict(&report, "p50 with auth within 10%"), "MISS");
        assert_eq!(verdict(&report, "p99 with auth within 10%"), "MISS");
    }

    #[test]
    fn without_the_auth_off_row_the_cost_is_not_judged_nor_tabled() {
        let only_on = Phase {
            workers: 32,
            rows: vec![(HTTP, measured(1000, 10))],
        };
        let report = targets(&[only_on], &[], "");
        assert_eq!(verdict(&report, "cmd/s with auth within 10%"), "NOT RUN");
        assert_eq!(auth_table(&[]), "");
        let skipped = phase(measured(1000, 10), Row::Skipped("unset".into()));
        assert!(auth_table(&[skipped]).contains("not measured"));
    }

    #[test]
    fn the_auth_table_shows_both_rows_and_their_ratios() {
        let table = auth_table(&[phase(measured(900, 2), measured(1000, 1))]);
        assert!(
            table.contains("| 32 | 900 | 1000 | 0.90× | 2.00 / 1.00 | 2.00× |"),
            "{table}"
        );
    }
}
