-- The event store: append-only events, the transactional outbox, snapshots, command idempotency and
-- projection checkpoints. Run by the migration role, which owns every table; services log in with roles
-- that are members of the group roles granted below (owners bypass grants, so no service owns a table).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'eventfold_writer') THEN
        CREATE ROLE eventfold_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'eventfold_relay') THEN
        CREATE ROLE eventfold_relay NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'eventfold_projector') THEN
        CREATE ROLE eventfold_projector NOLOGIN;
    END IF;
END
$$;

CREATE TABLE events (
    -- Global position for catch-up readers. Positions are allocated before commit, so a reader must
    -- also use tx_id: only rows whose transaction is below the snapshot's xmin are final.
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version > 0),
    category        text        NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    version         bigint      NOT NULL CHECK (version > 0),
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    correlation_id  uuid        NOT NULL,
    causation_id    uuid,
    actor_kind      text        NOT NULL CHECK (actor_kind IN ('user', 'system', 'agent')),
    actor_id        text        NOT NULL,
    tenant          text        NOT NULL,
    command_id      uuid,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    payload         jsonb       NOT NULL,
    CONSTRAINT events_aggregate_version UNIQUE (aggregate_type, aggregate_id, version)
);
CREATE INDEX events_tx_position ON events (tx_id, position);
CREATE INDEX events_correlation ON events (correlation_id, position);
CREATE INDEX events_type_position ON events (event_type, position);
CREATE INDEX events_aggregate_recorded ON events (aggregate_type, aggregate_id, recorded_at);

-- Append-only, for every role including the owner: rows cannot change or disappear.
CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    -- Stable hash of the aggregate id; the relay takes shard_key % shards.
    shard_key       integer     NOT NULL CHECK (shard_key >= 0),
    event_position  bigint      NOT NULL REFERENCES events (position),
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    version         bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX outbox_tx_id ON outbox (tx_id, id);

CREATE TABLE snapshots (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    version         bigint      NOT NULL,
    state_version   integer     NOT NULL,
    state           jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (aggregate_type, aggregate_id, version)
);

CREATE TABLE commands (
    command_id      uuid PRIMARY KEY,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    command_name    text        NOT NULL,
    -- SHA-256 of the canonical request; the same id with another request is refused.
    request_hash    bytea       NOT NULL,
    response        jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE projection_checkpoints (
    projection      text        NOT NULL,
    -- Kafka partition, or -1 for a catch-up reader of the events table.
    partition       integer     NOT NULL,
    "offset"        bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (projection, partition)
);

GRANT SELECT, INSERT ON events, outbox, commands TO eventfold_writer;
GRANT SELECT, INSERT, DELETE ON snapshots TO eventfold_writer;
GRANT SELECT ON events TO eventfold_relay;
GRANT SELECT, UPDATE, DELETE ON outbox TO eventfold_relay;
GRANT SELECT ON events TO eventfold_projector;
GRANT SELECT, INSERT, UPDATE, DELETE ON projection_checkpoints TO eventfold_projector;
REVOKE UPDATE, DELETE, TRUNCATE ON events FROM PUBLIC;
