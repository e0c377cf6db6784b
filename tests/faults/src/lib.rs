//! The fault suite: each fault of RELIABILITY.md's menu run against the real stack with real
//! service processes under a steady command load, ending in one shared verdict (C1-C5) over every
//! acknowledged command. Depends on the integration test kit (`eventfold-tests`) for the isolated
//! pipeline (database, topic prefix, group prefix, label suffix); nothing depends on it.
#![deny(missing_docs)]

pub mod faults;
pub mod load;
pub mod procs;
pub mod rig;
pub mod stack;
pub mod verdict;

use verdict::Verdict;

/// Why a fault could not run to its verdict.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// Setting up, injecting or healing failed.
    #[error("{0}")]
    Setup(String),
    /// A process or file operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// PostgreSQL.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// Kafka.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// HTTP to a service.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// Neo4j.
    #[error("neo4j: {0}")]
    Neo4j(#[from] neo4rs::Error),
    /// Reading a read model.
    #[error("read model: {0}")]
    ReadModel(#[from] projector::apply::ApplyError),
    /// The audit (replay) of a read model.
    #[error("audit: {0}")]
    Audit(#[from] projector::rebuild::RebuildError),
}

/// The names of the faults in `FAULTS`, checked: the unknown ones are the error.
pub fn select(names: &[String]) -> Result<Vec<&'static str>, Vec<String>> {
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for n in names {
        let n = n.trim().to_uppercase();
        match faults::FAULTS.iter().find(|(f, _)| *f == n) {
            Some((f, _)) => out.push(*f),
            None => unknown.push(n),
        }
    }
    if unknown.is_empty() {
        Ok(out)
    } else {
        Err(unknown)
    }
}

/// The verdicts as one table.
pub fn table(rows: &[Verdict]) -> String {
    let mut out = format!(
        "{:<6} {:>8} {:>8} {:>6} {:>10} {:>6} {:>10} {:>7} {:>11}  {}\n",
        "fault",
        "acked",
        "events",
        "lost",
        "duplicated",
        "order",
        "topic-dups",
        "parked",
        "recovery-s",
        "result"
    );
    for v in rows {
        let recovery = v
            .recovery
            .map_or_else(|| "-".to_string(), |r| format!("{r:.1}/{:.0}", v.bound));
        let result = if v.passed() {
            "ok".to_string()
        } else {
            format!("FAIL: {}", v.failures.join("; "))
        };
        out.push_str(&format!(
            "{:<6} {:>8} {:>8} {:>6} {:>10} {:>6} {:>10} {:>7} {:>11}  {}\n",
            v.fault,
            v.acked,
            v.events,
            v.lost,
            v.duplicated,
            v.order,
            v.topic_dups,
            v.parked,
            recovery,
            result
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_known_faults_in_any_case_and_names_the_unknown_ones() {
        assert_eq!(select(&["f1".into(), "F15".into()]), Ok(vec!["F1", "F15"]));
        assert_eq!(
            select(&["F1".into(), "F99".into()]),
            Err(vec!["F99".to_string()])
        );
    }

    #[test]
    fn a_row_with_a_loss_or_a_slow_recovery_fails() {
        let ok = Verdict {
            fault: "F1".into(),
            recovery: Some(2.0),
            bound: 30.0,
            ..Verdict::default()
        };
        assert!(ok.passed());
        assert!(
            !Verdict {
                lost: 1,
                ..ok.clone()
            }
            .passed()
        );
        assert!(
            !Verdict {
                recovery: Some(31.0),
                ..ok.clone()
            }
            .passed()
        );
        assert!(
            !Verdict {
                recovery: None,
                ..ok.clone()
            }
            .passed()
        );
        assert!(
            table(&[ok])
                .lines()
                .nth(1)
                .is_some_and(|l| l.ends_with("ok"))
        );
    }
}
