//! Process managers (sagas): a process manager reacts to events of several aggregates, keeps a
//! state per instance (one workflow, keyed by what correlates its events) and emits commands.
//!
//! The runtime splits the work in three steps, each atomic on its own (see `docs/adr/0002`):
//! 1. **Inbox** ([`inbox::Inbox`]): the process manager is a PostgreSQL read model of its own
//!    (own consumer group, offsets stored with the rows, version guard, parking): every event it
//!    reacts to becomes an inbox row of its instance.
//! 2. **React** ([`runtime`]): inbox rows are handed, in order, to the pure
//!    [`ProcessManager::react`]; the new state, the commands to send (with their deterministic
//!    ids) and the handled mark are written in one transaction.
//! 3. **Dispatch** ([`runtime`]): due commands are sent to the command service with their id as
//!    `Idempotency-Key`; a command sent twice (a crash after sending, before marking it sent) is
//!    answered from the store and changes nothing. A refused step (4xx) goes back to the process
//!    manager as a [`StepFailure`] (compensation); a transient failure (409, 429, 5xx, no
//!    connection) is retried with back-off.

pub mod inbox;
pub mod managers;
pub mod runtime;

use std::time::Duration;

use eventfold_domain::DomainEvent;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::projection::HandlerError;

/// One event as a process manager sees it: its envelope fields and its payload upcast to the
/// latest version.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessEvent {
    /// Event id.
    pub event_id: String,
    /// Event type, e.g. `VerseProcessingCompleted`.
    pub event_type: String,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Version of the aggregate after the event.
    pub version: i64,
    /// Tenant of the stream.
    pub tenant: String,
    /// Correlation id (kept by every command the process manager sends for it).
    pub correlation_id: String,
    /// The event that caused it, if any.
    pub causation_id: Option<String>,
    /// Business time, RFC 3339.
    pub occurred_at: String,
    /// Payload at the latest schema version.
    pub payload: Value,
}

impl ProcessEvent {
    /// The payload as the typed domain event `E`.
    pub fn domain<E: DomainEvent>(&self) -> Result<E, HandlerError> {
        E::from_payload(&self.event_type, self.payload.clone())
            .map_err(|e| HandlerError::new(format!("{}: {e}", self.event_type)))
    }
}

/// A command a process manager wants sent: `POST /v1/{aggregate_type}/{aggregate_id}/commands/{command}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Names the step within its trigger (an event or a failed step), so that its command id is
    /// the same however often the trigger is handled.
    pub key: String,
    /// Target aggregate type.
    pub aggregate_type: String,
    /// Target aggregate id.
    pub aggregate_id: String,
    /// Command name, e.g. `DiscoverCrossReference`.
    pub command: String,
    /// Command body.
    pub body: Value,
}

impl Step {
    /// A step sending `command` with `body` to `aggregate_type`/`aggregate_id`.
    pub fn new(
        key: impl Into<String>,
        aggregate_type: &str,
        aggregate_id: impl Into<String>,
        command: &str,
        body: &impl Serialize,
    ) -> Result<Self, HandlerError> {
        Ok(Self {
            key: key.into(),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.into(),
            command: command.to_owned(),
            body: serde_json::to_value(body)
                .map_err(|e| HandlerError::new(format!("command body: {e}")))?,
        })
    }
}

/// What a process manager asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a command now.
    Send(Step),
    /// Send a command after `after` unless the deadline `name` of this instance is cancelled
    /// first; persisted, so it fires after a restart too. A newer deadline of the same name
    /// replaces a pending one.
    Schedule {
        /// Deadline name within the instance.
        name: String,
        /// Delay from now.
        after: Duration,
        /// The command to send when it fires.
        step: Step,
    },
    /// Cancel the pending deadline `name` of this instance (nothing if none is pending).
    Cancel {
        /// Deadline name within the instance.
        name: String,
    },
}

/// A process manager's answer to an event or a failed step: its next state and its actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Reaction<S> {
    /// The instance's state afterwards.
    pub state: S,
    /// Commands to send or schedule, deadlines to cancel, in order.
    pub actions: Vec<Action>,
    /// True when the instance is done (kept for audit; later events still reach it).
    pub finished: bool,
}

impl<S> Reaction<S> {
    /// `state` unchanged in meaning, nothing to do.
    pub fn keep(state: S) -> Self {
        Self {
            state,
            actions: Vec::new(),
            finished: false,
        }
    }

    /// `state` with `actions`.
    pub fn with(state: S, actions: Vec<Action>) -> Self {
        Self {
            state,
            actions,
            finished: false,
        }
    }

    /// Marks the instance finished.
    pub fn finish(mut self) -> Self {
        self.finished = true;
        self
    }
}

/// A step the command service refused for good (a 4xx other than 409/429), handed back to the
/// process manager that sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepFailure {
    /// The step's key.
    pub step: String,
    /// Its command id.
    pub command_id: Uuid,
    /// Target aggregate type.
    pub aggregate_type: String,
    /// Target aggregate id.
    pub aggregate_id: String,
    /// Command name.
    pub command: String,
    /// HTTP status.
    pub status: u16,
    /// The problem's `code` (e.g. `self_reference`), or `http_<status>` without one.
    pub code: String,
    /// The problem's `detail`.
    pub detail: String,
}

/// A step the command service applied (or had applied: `replayed`), handed back to a process
/// manager that [`ProcessManager::tracks_steps`].
#[derive(Debug, Clone, PartialEq)]
pub struct StepDone {
    /// The step's key.
    pub step: String,
    /// Its command id.
    pub command_id: Uuid,
    /// Target aggregate type.
    pub aggregate_type: String,
    /// Target aggregate id.
    pub aggregate_id: String,
    /// Command name.
    pub command: String,
    /// The aggregate's version after it.
    pub version: i64,
}

/// A process manager: which events it reacts to, how they map to instances, and what it does.
/// `react` and `on_failure` are pure: no I/O, no clock, no randomness, so that handling an
/// event twice (after a crash) decides the same thing.
pub trait ProcessManager: Send + Sync + 'static {
    /// The state of one instance (JSON in the `instances` table).
    type State: Serialize + DeserializeOwned + Default + Send;
    /// Name: consumer group suffix, read model name of its inbox, `system:<name>` actor.
    fn name(&self) -> &'static str;
    /// The aggregate types whose topics it consumes.
    fn aggregate_types(&self) -> &'static [&'static str];
    /// The instance `event` belongs to; `None` for an event it ignores.
    fn instance(&self, event: &ProcessEvent) -> Option<String>;
    /// True when `event` must not be handled before its cause (its causation event, which must
    /// be one this process manager receives too): it waits for the cause, bounded, then is
    /// parked with reason `cause_missing`.
    fn needs_cause(&self, _event: &ProcessEvent) -> bool {
        false
    }
    /// The reaction of an instance in `state` to `event`.
    fn react(
        &self,
        state: Self::State,
        event: &ProcessEvent,
    ) -> Result<Reaction<Self::State>, HandlerError>;
    /// The reaction of an instance in `state` to a refused step (compensation); by default it
    /// records nothing and does nothing.
    fn on_failure(
        &self,
        state: Self::State,
        _failure: &StepFailure,
    ) -> Result<Reaction<Self::State>, HandlerError> {
        Ok(Reaction::keep(state))
    }
    /// True when the process manager follows its steps' successes ([`ProcessManager::on_done`]),
    /// e.g. to move on once every step of a stage was applied; false (the default) spares the
    /// runtime a transaction per command.
    fn tracks_steps(&self) -> bool {
        false
    }
    /// The reaction of an instance in `state` to an applied step (only when
    /// [`ProcessManager::tracks_steps`]).
    fn on_done(
        &self,
        state: Self::State,
        _done: &StepDone,
    ) -> Result<Reaction<Self::State>, HandlerError> {
        Ok(Reaction::keep(state))
    }
}

/// A process manager with its state as JSON, as the runtime drives it.
pub trait Process: Send + Sync + 'static {
    /// See [`ProcessManager::name`].
    fn name(&self) -> &'static str;
    /// See [`ProcessManager::aggregate_types`].
    fn aggregate_types(&self) -> &'static [&'static str];
    /// See [`ProcessManager::instance`].
    fn instance(&self, event: &ProcessEvent) -> Option<String>;
    /// See [`ProcessManager::needs_cause`].
    fn needs_cause(&self, event: &ProcessEvent) -> bool;
    /// [`ProcessManager::react`] on a JSON state (`None` for a new instance).
    fn react_json(
        &self,
        state: Option<Value>,
        event: &ProcessEvent,
    ) -> Result<Reaction<Value>, HandlerError>;
    /// [`ProcessManager::on_failure`] on a JSON state.
    fn on_failure_json(
        &self,
        state: Option<Value>,
        failure: &StepFailure,
    ) -> Result<Reaction<Value>, HandlerError>;
    /// See [`ProcessManager::tracks_steps`].
    fn tracks_steps(&self) -> bool;
    /// [`ProcessManager::on_done`] on a JSON state.
    fn on_done_json(
        &self,
        state: Option<Value>,
        done: &StepDone,
    ) -> Result<Reaction<Value>, HandlerError>;
}

fn load<S: DeserializeOwned + Default>(state: Option<Value>) -> Result<S, HandlerError> {
    match state {
        None => Ok(S::default()),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| HandlerError::new(format!("stored instance state: {e}"))),
    }
}

fn store<S: Serialize>(r: Reaction<S>) -> Result<Reaction<Value>, HandlerError> {
    Ok(Reaction {
        state: serde_json::to_value(&r.state)
            .map_err(|e| HandlerError::new(format!("instance state: {e}")))?,
        actions: r.actions,
        finished: r.finished,
    })
}

impl<P: ProcessManager> Process for P {
    fn name(&self) -> &'static str {
        ProcessManager::name(self)
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        ProcessManager::aggregate_types(self)
    }
    fn instance(&self, event: &ProcessEvent) -> Option<String> {
        ProcessManager::instance(self, event)
    }
    fn needs_cause(&self, event: &ProcessEvent) -> bool {
        ProcessManager::needs_cause(self, event)
    }
    fn react_json(
        &self,
        state: Option<Value>,
        event: &ProcessEvent,
    ) -> Result<Reaction<Value>, HandlerError> {
        store(self.react(load(state)?, event)?)
    }
    fn on_failure_json(
        &self,
        state: Option<Value>,
        failure: &StepFailure,
    ) -> Result<Reaction<Value>, HandlerError> {
        store(self.on_failure(load(state)?, failure)?)
    }
    fn tracks_steps(&self) -> bool {
        ProcessManager::tracks_steps(self)
    }
    fn on_done_json(
        &self,
        state: Option<Value>,
        done: &StepDone,
    ) -> Result<Reaction<Value>, HandlerError> {
        store(self.on_done(load(state)?, done)?)
    }
}

/// The namespace of process managers' command ids (UUID v5).
const COMMAND_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6576_656e_7466_6f6c_642d_706d_2d63_6d64);

/// The command id of `step` sent by process manager `name` for `trigger` (an event id, or the
/// command id of a failed step): the same inputs always give the same id, so a resent command is
/// recognised by the command service's idempotency.
pub fn command_id(name: &str, trigger: &str, step: &str) -> Uuid {
    Uuid::new_v5(
        &COMMAND_ID_NAMESPACE,
        format!("{name}\u{0}{trigger}\u{0}{step}").as_bytes(),
    )
}

/// An event of `aggregate_type`/`aggregate_id` at `version` for given-when-then tests: event id
/// `e<version>`, tenant `default`, correlation `c`, no cause.
pub fn test_event(
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
    version: i64,
    payload: Value,
) -> ProcessEvent {
    ProcessEvent {
        event_id: format!("e{version}"),
        event_type: event_type.into(),
        aggregate_type: aggregate_type.into(),
        aggregate_id: aggregate_id.into(),
        version,
        tenant: "default".into(),
        correlation_id: "c".into(),
        causation_id: None,
        occurred_at: "2026-12-08T00:00:00Z".into(),
        payload,
    }
}

/// Given-when-then for process managers: given earlier events of an instance, when `event`
/// arrives, then these actions (and this state).
pub fn given_when<P: ProcessManager>(
    pm: &P,
    given: &[ProcessEvent],
    when: &ProcessEvent,
) -> Result<Reaction<P::State>, HandlerError> {
    let mut state = P::State::default();
    for e in given {
        state = pm.react(state, e)?.state;
    }
    pm.react(state, when)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_ids_depend_on_the_manager_the_trigger_and_the_step_only() {
        let a = command_id("pm", "e1", "s");
        assert_eq!(a, command_id("pm", "e1", "s"));
        assert_ne!(a, command_id("pm", "e1", "t"));
        assert_ne!(a, command_id("pm", "e2", "s"));
        assert_ne!(a, command_id("other", "e1", "s"));
        assert_eq!(a.get_version_num(), 5);
    }
}
