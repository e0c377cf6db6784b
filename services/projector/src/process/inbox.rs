//! A process manager's inbox: the read model that records, exactly once and in each aggregate's
//! order, every event the process manager reacts to, with its instance; and the tables of its
//! instances and commands in the same schema.

use std::sync::Arc;

use serde_json::json;

use super::{Process, ProcessEvent};
use crate::projection::{HandlerError, ProjectedEvent, Projection, Store, Write};

/// The inbox read model of one process manager.
#[derive(Clone)]
pub struct Inbox {
    process: Arc<dyn Process>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("process", &self.process.name())
            .finish()
    }
}

impl Inbox {
    /// The inbox of `process`.
    pub fn new(process: Arc<dyn Process>) -> Self {
        Self { process }
    }

    /// The process manager it feeds.
    pub fn process(&self) -> &Arc<dyn Process> {
        &self.process
    }
}

/// Tables of a process manager's generation schema.
const SETUP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS {schema}.inbox (
        seq             bigserial PRIMARY KEY,
        tenant          text NOT NULL,
        instance_key    text NOT NULL,
        event_id        text NOT NULL UNIQUE,
        event_type      text NOT NULL,
        aggregate_type  text NOT NULL,
        aggregate_id    text NOT NULL,
        version         bigint NOT NULL,
        correlation_id  text NOT NULL,
        causation_id    text,
        occurred_at     text NOT NULL,
        payload         jsonb NOT NULL,
        received_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
        handled_at      timestamptz,
        handled_rank    bigint,
        parked_reason   text
    )",
    "ALTER TABLE {schema}.inbox ADD COLUMN IF NOT EXISTS handled_rank bigint",
    "CREATE INDEX IF NOT EXISTS inbox_pending ON {schema}.inbox (seq) \
     WHERE handled_at IS NULL AND parked_reason IS NULL",
    "CREATE INDEX IF NOT EXISTS inbox_instance ON {schema}.inbox (tenant, instance_key, seq)",
    "CREATE TABLE IF NOT EXISTS {schema}.instances (
        tenant        text NOT NULL,
        instance_key  text NOT NULL,
        state         jsonb NOT NULL,
        finished      boolean NOT NULL DEFAULT false,
        reactions     bigint NOT NULL DEFAULT 0,
        updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (tenant, instance_key)
    )",
    "CREATE TABLE IF NOT EXISTS {schema}.commands (
        command_id      uuid PRIMARY KEY,
        seq             bigserial NOT NULL,
        tenant          text NOT NULL,
        instance_key    text NOT NULL,
        step            text NOT NULL,
        trigger         text NOT NULL,
        aggregate_type  text NOT NULL,
        aggregate_id    text NOT NULL,
        command         text NOT NULL,
        body            jsonb NOT NULL,
        correlation_id  text NOT NULL,
        causation_id    text,
        deadline        text,
        due_at          timestamptz NOT NULL,
        status          text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'done', 'failed', 'cancelled')),
        attempts        integer NOT NULL DEFAULT 0,
        http_status     integer,
        outcome         jsonb,
        created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
        finished_at     timestamptz
    )",
    "CREATE INDEX IF NOT EXISTS commands_due ON {schema}.commands (due_at, seq) \
     WHERE status = 'pending'",
    "CREATE INDEX IF NOT EXISTS commands_instance ON {schema}.commands (tenant, instance_key)",
];

const INBOX: &str = "INSERT INTO {schema}.inbox (tenant, instance_key, event_id, event_type, \
     aggregate_type, aggregate_id, version, correlation_id, causation_id, occurred_at, payload) \
     SELECT r->>'tenant', r->>'instance_key', r->>'event_id', r->>'event_type', \
       r->>'aggregate_type', r->>'aggregate_id', (r->>'version')::bigint, r->>'correlation_id', \
       r->>'causation_id', r->>'occurred_at', r->'payload' \
     FROM jsonb_array_elements($1) WITH ORDINALITY AS e(r, n) ORDER BY n \
     ON CONFLICT (event_id) DO NOTHING";

const DUMP: &str = "SELECT json_build_object('instance_key', instance_key, 'event_id', event_id, \
     'event_type', event_type, 'aggregate_type', aggregate_type, 'aggregate_id', aggregate_id, \
     'version', version)::text AS row, tenant FROM {schema}.inbox";

/// The event as the process manager sees it.
pub fn process_event(e: &ProjectedEvent) -> ProcessEvent {
    let env = &e.envelope;
    ProcessEvent {
        event_id: env.event_id.clone(),
        event_type: env.event_type.clone(),
        aggregate_type: env.aggregate_type.clone(),
        aggregate_id: env.aggregate_id.clone(),
        version: env.aggregate_version,
        tenant: env.tenant.clone(),
        correlation_id: env.correlation_id.clone(),
        causation_id: env.causation_id.clone(),
        occurred_at: env.occurred_at.clone(),
        payload: e.payload.clone(),
    }
}

impl Projection for Inbox {
    fn name(&self) -> &'static str {
        self.process.name()
    }

    fn store(&self) -> Store {
        Store::Postgres
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        self.process.aggregate_types()
    }

    fn setup(&self) -> Vec<String> {
        SETUP.iter().map(|s| (*s).to_owned()).collect()
    }

    fn reset(&self) -> Vec<String> {
        Vec::new()
    }

    fn statement(&self, key: &str) -> Option<&'static str> {
        (key == "inbox").then_some(INBOX)
    }

    fn writes(&self, event: &ProjectedEvent) -> Result<Vec<Write>, HandlerError> {
        let e = process_event(event);
        let Some(instance) = self.process.instance(&e) else {
            return Ok(Vec::new());
        };
        Ok(vec![Write::new(
            "inbox",
            json!({
                "tenant": e.tenant,
                "instance_key": instance,
                "event_id": e.event_id,
                "event_type": e.event_type,
                "aggregate_type": e.aggregate_type,
                "aggregate_id": e.aggregate_id,
                "version": e.version,
                "correlation_id": e.correlation_id,
                "causation_id": e.causation_id,
                "occurred_at": e.occurred_at,
                "payload": e.payload,
            }),
        )])
    }

    fn dump(&self) -> Vec<&'static str> {
        vec![DUMP]
    }
}
