//! Runs a command against an aggregate: hydrate from the store, decide, append. A version conflict
//! is retried by reloading and deciding again (bounded, with jitter) unless the caller named an
//! expected version; a repeated command id replays the first result.

use std::time::Duration;

use eventfold_domain::{Aggregate, DomainError, DomainEvent};
use uuid::Uuid;

use crate::store::{AppendError, AppendOutcome, CommandMeta, CommandRecord, EventStore, NewEvent};

/// How often and how patiently a conflicting command is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (the first included).
    pub max_attempts: u32,
    /// Upper bound of the first back-off; doubles on every retry, with full jitter.
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(4),
        }
    }
}

/// The result of a handled command, as returned to the caller (and replayed for a repeated id).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Handled {
    /// The command id.
    pub command_id: Uuid,
    /// Aggregate version after the command.
    pub version: i64,
    /// Ids of the events appended.
    pub event_ids: Vec<Uuid>,
    /// True when this is a replay of an earlier identical command.
    #[serde(default)]
    pub replayed: bool,
}

/// Why a command was not applied.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The aggregate refused the command.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The version moved (past the retry bound, or the caller's expected version was stale).
    #[error("version conflict: aggregate is at version {current_version}")]
    Conflict {
        /// The current version.
        current_version: i64,
    },
    /// The command id was already used for a different request.
    #[error("command id {0} was already used for a different request")]
    IdempotencyMismatch(Uuid),
    /// A stored event could not be read back as this aggregate's event.
    #[error("stored event {event_id} ({event_type}) cannot be read: {source}")]
    CorruptEvent {
        /// Event id.
        event_id: Uuid,
        /// Event type.
        event_type: String,
        /// Decoding error.
        source: serde_json::Error,
    },
    /// The database failed.
    #[error("event store: {0}")]
    Database(#[from] sqlx::Error),
}

/// Rebuilds `A` from its events, up to `up_to_version` and recorded at or before `as_of` when given.
/// Returns the state and its version.
pub async fn hydrate<A: Aggregate>(
    store: &EventStore,
    aggregate_id: &str,
    up_to_version: Option<i64>,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(A, i64), HandleError> {
    let events = store
        .load(A::TYPE, aggregate_id, 0, up_to_version, as_of, None)
        .await?;
    let mut state = A::default();
    let mut version = 0;
    for e in events {
        let stored = A::Event::from_stored(&e.event_type, e.schema_version as u32, e.payload);
        let event = stored.map_err(|source| HandleError::CorruptEvent {
            event_id: e.event_id,
            event_type: e.event_type.clone(),
            source: source.into(),
        })?;
        state = state.apply(&event);
        version = e.version;
    }
    Ok((state, version))
}

/// Handles `command` for aggregate `aggregate_id` of type `A`.
///
/// `request_hash` identifies the request behind `meta.command_id`: a repeat with the same hash gets
/// the first result back, a repeat with another hash is refused. With `expected_version`, a stale
/// version is a conflict at once; without it, conflicts are retried per `policy`.
pub async fn handle<A: Aggregate>(
    store: &EventStore,
    aggregate_id: &str,
    command: &A::Command,
    meta: &CommandMeta,
    request_hash: &[u8],
    expected_version: Option<i64>,
    policy: RetryPolicy,
) -> Result<Handled, HandleError> {
    // A repeat is answered before deciding (the command may no longer be valid in today's state);
    // a repeat racing this one is caught by the append's command-id claim instead.
    if let Some(record) = store.command(meta.command_id).await? {
        return replay(meta.command_id, &record, request_hash);
    }
    let mut attempt = 1;
    loop {
        let (state, version) = hydrate::<A>(store, aggregate_id, None, None).await?;
        if let Some(expected) = expected_version
            && expected != version
        {
            return Err(HandleError::Conflict {
                current_version: version,
            });
        }
        let events = state.decide(command)?;
        let new_events: Vec<NewEvent> = events
            .iter()
            .map(|e| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: e.event_type().to_owned(),
                schema_version: e.schema_version() as i32,
                category: e.category().as_str().to_owned(),
                payload: serde_json::to_value(e).expect("domain events serialize to JSON"),
            })
            .collect();
        let handled = Handled {
            command_id: meta.command_id,
            version: version + new_events.len() as i64,
            event_ids: new_events.iter().map(|e| e.event_id).collect(),
            replayed: false,
        };
        let record = CommandRecord {
            command_name: A::command_name(command).to_owned(),
            request_hash: request_hash.to_vec(),
            response: serde_json::to_value(&handled).expect("response serializes"),
        };
        match store
            .append(A::TYPE, aggregate_id, version, &new_events, meta, &record)
            .await
        {
            Ok(AppendOutcome::Appended { .. }) => return Ok(handled),
            Ok(AppendOutcome::Duplicate(record)) => {
                return replay(meta.command_id, &record, request_hash);
            }
            Err(AppendError::Conflict { current_version }) => {
                if expected_version.is_some() || attempt >= policy.max_attempts {
                    return Err(HandleError::Conflict { current_version });
                }
                tokio::time::sleep(backoff(policy, attempt)).await;
                attempt += 1;
            }
            Err(AppendError::Database(e)) => return Err(e.into()),
        }
    }
}

fn replay(
    command_id: Uuid,
    record: &CommandRecord,
    request_hash: &[u8],
) -> Result<Handled, HandleError> {
    if record.request_hash != request_hash {
        return Err(HandleError::IdempotencyMismatch(command_id));
    }
    let mut handled: Handled = serde_json::from_value(record.response.clone())
        .map_err(|e| HandleError::Database(sqlx::Error::Decode(Box::new(e))))?;
    handled.replayed = true;
    Ok(handled)
}

/// Full jitter: a random delay in `0..base * 2^(attempt-1)`.
fn backoff(policy: RetryPolicy, attempt: u32) -> Duration {
    let cap = policy.base_delay.as_micros() as u64 * (1u64 << (attempt - 1).min(10));
    let random = Uuid::new_v4().as_u64_pair().0;
    Duration::from_micros(random % cap.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_below_the_doubling_cap() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(4),
        };
        for attempt in 1..=5 {
            for _ in 0..100 {
                assert!(backoff(policy, attempt) < Duration::from_millis(4 << (attempt - 1)));
            }
        }
    }
}
