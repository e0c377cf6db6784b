//! `eventfold stats [--tenant T] [--json]`: a tenant's event store statistics, against the event
//! store (`DATABASE_URL`). The statistics are caught up first, as `GET /v1/stats` does, with the
//! same code ([`eventfold_postgres::stats`]).

use std::collections::BTreeMap;

use eventfold_postgres::PgSettings;
use eventfold_postgres::stats::{self, EventStats};
use eventfold_runtime::Env;

use crate::cli::{Outcome, UsageError};

/// Events folded per transaction when catching up.
const BATCH: i64 = 5000;
/// Batches folded at most before printing.
const MAX_BATCHES: u32 = 20;

/// Catches the statistics up and prints `tenant`'s, as a summary or one JSON object.
pub async fn show(env: &Env, tenant: &str, json: bool) -> Result<Outcome, UsageError> {
    let pool = PgSettings::from_env(env)
        .map(|db| db.pool_lazy())
        .map_err(|e| UsageError(e.to_string()))?;
    let read = async {
        let complete = stats::catch_up(&pool, BATCH, MAX_BATCHES).await?;
        Ok::<_, sqlx::Error>((stats::read(&pool, tenant).await?, complete))
    };
    Ok(match read.await {
        Ok((s, complete)) => Outcome {
            out: if json {
                let mut v = serde_json::to_value(&s).unwrap_or_default();
                v["complete"] = complete.into();
                vec![v.to_string()]
            } else {
                summary(&s, complete)
            },
            ok: true,
            ..Outcome::default()
        },
        Err(e) => Outcome {
            err: vec![format!("event statistics: {e}")],
            ..Outcome::default()
        },
    })
}

/// The statistics as lines a person reads.
pub fn summary(s: &EventStats, complete: bool) -> Vec<String> {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("-".to_owned(), |t| {
            t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        })
    };
    let mut out = vec![
        format!("tenant {}: {} events", s.tenant, s.total_events),
        format!(
            "first event {}, last event {}",
            time(s.first_event_at),
            time(s.last_event_at)
        ),
        format!(
            "last hour: {} events, current minute: {}",
            s.last_hour(),
            s.current_minute()
        ),
    ];
    if !complete {
        out.push("(still catching up: later events are not counted yet)".into());
    }
    let table = |out: &mut Vec<String>, title: &str, counts: &BTreeMap<String, i64>| {
        out.push(format!("by {title}:"));
        let width = counts.keys().map(String::len).max().unwrap_or(0);
        for (k, n) in counts {
            out.push(format!("  {k:<width$}  {n:>10}"));
        }
    };
    table(&mut out, "aggregate type", &s.by_aggregate_type);
    table(&mut out, "event type", &s.by_event_type);
    table(&mut out, "category", &s.by_category);
    let minutes: Vec<String> = s
        .events_per_minute
        .iter()
        .map(|m| m.count.to_string())
        .collect();
    out.push(format!(
        "per minute, last 60, oldest first: {}",
        minutes.join(" ")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventfold_postgres::stats::MinuteCount;

    #[test]
    fn the_summary_names_the_tenant_totals_and_each_count() {
        let now = chrono::Utc::now();
        let s = EventStats {
            tenant: "acme".into(),
            total_events: 3,
            by_event_type: [("UserRegistered".to_owned(), 3)].into(),
            by_category: [("user".to_owned(), 3)].into(),
            by_aggregate_type: [("User".to_owned(), 3)].into(),
            first_event_at: Some(now),
            last_event_at: Some(now),
            events_per_minute: (0..60)
                .map(|i| MinuteCount {
                    minute: now,
                    count: i64::from(i == 59) * 3,
                })
                .collect(),
            watermark_position: 3,
            watermark_updated_at: now,
        };
        let text = summary(&s, false).join("\n");
        assert!(text.starts_with("tenant acme: 3 events"), "{text}");
        assert!(
            text.contains("last hour: 3 events, current minute: 3"),
            "{text}"
        );
        assert!(text.contains("still catching up"), "{text}");
        assert!(text.contains("  UserRegistered           3"), "{text}");
        assert!(text.ends_with(" 0 3"), "{text}");
    }
}
