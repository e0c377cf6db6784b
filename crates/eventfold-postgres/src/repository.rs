//! Runs a command against an aggregate: hydrate from the store, decide, append. A version conflict
//! is retried by reloading and deciding again (bounded, with jitter) unless the caller named an
//! expected version; a repeated command id replays the first result.

use std::collections::HashMap;
use std::time::Duration;

use eventfold_domain::{Aggregate, DomainError, DomainEvent};
use uuid::Uuid;

use crate::snapshot::{Snapshot, StoredEvent};
use crate::store::{
    AppendError, AppendOutcome, CommandMeta, CommandRecord, EventStore, NewEvent, RecordedEvent,
};

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
    /// The command or its events carry something the store refuses (e.g. a NUL character).
    #[error("{message}")]
    Invalid {
        /// Machine-readable code.
        code: &'static str,
        /// What is wrong, and where.
        message: String,
    },
    /// The database failed.
    #[error("event store: {0}")]
    Database(#[from] sqlx::Error),
}

/// Turns a stored event into `A`'s event type.
pub fn decode<A: Aggregate>(e: impl Into<StoredEvent>) -> Result<A::Event, HandleError> {
    let e: StoredEvent = e.into();
    let stored = A::Event::from_stored(&e.event_type, e.schema_version as u32, e.payload);
    stored.map_err(|source| HandleError::CorruptEvent {
        event_id: e.event_id,
        event_type: e.event_type,
        source: source.into(),
    })
}

/// Folds `events` into `state`, returning the new state and the last version seen.
fn fold<A: Aggregate>(
    mut state: A,
    mut version: i64,
    events: impl IntoIterator<Item = impl Into<StoredEvent>>,
) -> Result<(A, i64), HandleError> {
    for e in events {
        let e: StoredEvent = e.into();
        let v = e.version;
        state = state.apply(&decode::<A>(e)?);
        version = v;
    }
    Ok((state, version))
}

/// A snapshot's state, or `None` when it no longer deserializes (it is then ignored).
fn restore<A: Aggregate>(snapshot: Option<Snapshot>) -> (A, i64) {
    snapshot
        .and_then(|s| {
            serde_json::from_str::<A>(&s.state)
                .ok()
                .map(|a| (a, s.version))
        })
        .unwrap_or_default()
}

/// Rebuilds `tenant`'s stream of `A` from its newest usable snapshot and the events after it, up
/// to `up_to_version` and recorded at or before `as_of` when given. Returns the state and its
/// version (0: no events, also when only another tenant has a stream with this id).
pub async fn hydrate<A: Aggregate>(
    store: &EventStore,
    tenant: &str,
    aggregate_id: &str,
    up_to_version: Option<i64>,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(A, i64), HandleError> {
    let target = match as_of {
        Some(t) => {
            let at = store
                .version_as_of(tenant, A::TYPE, aggregate_id, t)
                .await?;
            Some(up_to_version.map_or(at, |v| v.min(at)))
        }
        None => up_to_version,
    };
    let (snapshot, events) = store
        .load_for_hydration(tenant, A::TYPE, aggregate_id, A::STATE_VERSION, target)
        .await?;
    let Some(snapshot) = snapshot else {
        return fold(A::default(), 0, events);
    };
    match serde_json::from_str::<A>(&snapshot.state) {
        Ok(state) => fold(state, snapshot.version, events),
        // A snapshot that no longer deserializes is ignored: read every event instead.
        Err(_) => {
            let all = store
                .load(tenant, A::TYPE, aggregate_id, 0, target, None, None)
                .await?;
            fold(A::default(), 0, all)
        }
    }
}

/// States hydrated by [`hydrate_many`]: each aggregate's state and version (or its own decoding
/// error), and how many of them started from a snapshot.
pub struct Hydrated<A> {
    /// State and version per aggregate id.
    pub states: HashMap<String, Result<(A, i64), HandleError>>,
    /// Aggregates restored from a usable snapshot (the others were folded from their first event).
    pub from_snapshot: usize,
}

/// Rebuilds the current state of `tenant`'s streams of several aggregates of type `A` with two
/// queries (snapshots, then the events after them).
pub async fn hydrate_many<A: Aggregate>(
    store: &EventStore,
    tenant: &str,
    aggregate_ids: &[String],
) -> Result<Hydrated<A>, sqlx::Error> {
    let mut snapshots = store
        .latest_snapshots(tenant, A::TYPE, aggregate_ids, A::STATE_VERSION, None)
        .await?;
    let mut states: HashMap<String, (A, i64)> = aggregate_ids
        .iter()
        .map(|id| (id.clone(), restore::<A>(snapshots.remove(id))))
        .collect();
    let from_snapshot = states.values().filter(|(_, v)| *v > 0).count();
    let after: Vec<(String, i64)> = states.iter().map(|(id, (_, v))| (id.clone(), *v)).collect();
    let mut events: HashMap<String, Vec<RecordedEvent>> = HashMap::new();
    for e in store.load_after(tenant, A::TYPE, &after).await? {
        events.entry(e.aggregate_id.clone()).or_default().push(e);
    }
    let states = aggregate_ids
        .iter()
        .map(|id| {
            let (state, version) = states.remove(id).unwrap_or_default();
            let folded = fold(state, version, events.remove(id).unwrap_or_default());
            (id.clone(), folded)
        })
        .collect();
    Ok(Hydrated {
        states,
        from_snapshot,
    })
}

/// A decided command ready to append: its events, the answer and what a repeat is answered with.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Events to append.
    pub events: Vec<NewEvent>,
    /// The answer to the caller.
    pub handled: Handled,
    /// The idempotency record.
    pub record: CommandRecord,
}

/// Serializes decided `events` of `A` following `version` and checks that PostgreSQL will take them.
pub fn prepare<A: Aggregate>(
    command: &A::Command,
    events: &[A::Event],
    version: i64,
    command_id: Uuid,
    request_hash: &[u8],
) -> Result<Prepared, HandleError> {
    let mut new_events = Vec::with_capacity(events.len());
    for e in events {
        let payload = serde_json::to_value(e).map_err(|e| HandleError::Invalid {
            code: "unserializable_event",
            message: e.to_string(),
        })?;
        if contains_nul(&payload)
            && let Some(pointer) = find_nul(&payload, String::new())
        {
            return Err(HandleError::Invalid {
                code: "nul_in_string",
                message: format!(
                    "{} would store a string containing \\u0000 at {pointer}, which PostgreSQL refuses",
                    e.event_type()
                ),
            });
        }
        new_events.push(NewEvent {
            event_id: Uuid::now_v7(),
            event_type: e.event_type().to_owned(),
            schema_version: e.schema_version() as i32,
            category: e.category().as_str().to_owned(),
            payload,
        });
    }
    let handled = Handled {
        command_id,
        version: version + new_events.len() as i64,
        event_ids: new_events.iter().map(|e| e.event_id).collect(),
        replayed: false,
    };
    let record = CommandRecord {
        command_name: A::command_name(command).to_owned(),
        request_hash: request_hash.to_vec(),
        response: serde_json::to_value(&handled).expect("a Handled serializes"),
    };
    Ok(Prepared {
        events: new_events,
        handled,
        record,
    })
}

/// True when a string or key of `value` contains NUL; cheap (no allocation), unlike [`find_nul`],
/// which builds the pointer of every key it passes.
fn contains_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// The JSON pointer of the first string (or key) containing NUL, if any.
pub fn find_nul(value: &serde_json::Value, at: String) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Some(if at.is_empty() { "/".into() } else { at }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_nul(v, format!("{at}/{i}"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
            if k.contains('\0') {
                Some(here)
            } else {
                find_nul(v, here)
            }
        }),
        _ => None,
    }
}

/// Handles `command` for `meta.tenant`'s stream of aggregate `aggregate_id` of type `A`, one
/// transaction per command (the [`crate::bus::CommandBus`] batches concurrent commands instead).
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
        let (state, version) = hydrate::<A>(store, &meta.tenant, aggregate_id, None, None).await?;
        if let Some(expected) = expected_version
            && expected != version
        {
            return Err(HandleError::Conflict {
                current_version: version,
            });
        }
        let events = state.decide(command)?;
        let prepared = prepare::<A>(command, &events, version, meta.command_id, request_hash)?;
        match store
            .append(
                A::TYPE,
                aggregate_id,
                version,
                &prepared.events,
                meta,
                &prepared.record,
            )
            .await
        {
            Ok(AppendOutcome::Appended { .. }) => return Ok(prepared.handled),
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

/// The first result of a repeated command id, or a mismatch when the request differs.
pub(crate) fn replay(
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
pub(crate) fn backoff(policy: RetryPolicy, attempt: u32) -> Duration {
    let cap = policy.base_delay.as_micros() as u64 * (1u64 << (attempt - 1).min(10));
    let random = Uuid::new_v4().as_u64_pair().0;
    Duration::from_micros(random % cap.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_nul_points_at_the_first_string_or_key_with_a_nul() {
        use serde_json::json;
        assert_eq!(
            find_nul(&json!({"a": ["x", "y\u{0}"]}), String::new()),
            Some("/a/1".into())
        );
        assert_eq!(
            find_nul(&json!({"a/b": {"k\u{0}": 1}}), String::new()),
            Some("/a~1b/k\u{0}".into())
        );
        assert_eq!(find_nul(&json!("\u{0}"), String::new()), Some("/".into()));
        assert_eq!(
            find_nul(&json!({"a": [1, "ok", null]}), String::new()),
            None
        );
    }

    #[test]
    fn contains_nul_agrees_with_find_nul() {
        use serde_json::json;
        for value in [
            json!({"a": ["x", "y\u{0}"]}),
            json!({"a/b": {"k\u{0}": 1}}),
            json!("\u{0}"),
            json!({"a": [1, "ok", null]}),
            json!({"a": {"b": "c"}}),
        ] {
            assert_eq!(
                contains_nul(&value),
                find_nul(&value, String::new()).is_some(),
                "{value}"
            );
        }
    }

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
