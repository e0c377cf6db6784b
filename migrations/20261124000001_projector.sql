-- The projector's shared state: which generation of each read model is live, and the events it
-- parked. A read model's rows, applied versions and consumer offsets live with the read model
-- itself (PostgreSQL: in the generation's schema; Neo4j: as nodes in the graph), so that they
-- change in the same transaction.

-- One row per read model: the live generation (PostgreSQL schema `rm_<name>_g<generation>`), and
-- whether a rebuild is running (projectors of that model report not ready meanwhile).
CREATE TABLE projector_read_models (
    name            text        PRIMARY KEY,
    store           text        NOT NULL CHECK (store IN ('postgres', 'neo4j')),
    generation      integer     NOT NULL DEFAULT 1 CHECK (generation >= 1),
    rebuilding      boolean     NOT NULL DEFAULT false,
    rebuilt_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Events a read model could not apply (refused by its handler or store after the retries, or not
-- decodable), and every later event of the same aggregate, parked behind the first so that the
-- aggregate's order is kept. Also written to the dead-letter topic with the original bytes.
CREATE TABLE parked_events (
    id              bigserial   PRIMARY KEY,
    read_model      text        NOT NULL,
    -- Where it was consumed from; NULL topic for an event read from the event store (rebuild).
    topic           text,
    "partition"     integer,
    "offset"        bigint,
    -- Envelope fields, when the record carried them.
    event_id        text,
    event_type      text,
    aggregate_type  text,
    aggregate_id    text,
    version         bigint,
    reason          text        NOT NULL,
    error           text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 1,
    -- The parked event this one waits behind; NULL for the event that failed itself.
    blocked_by      bigint      REFERENCES parked_events (id) ON DELETE SET NULL,
    record_key      bytea,
    record_value    bytea,
    record_headers  jsonb,
    parked_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX parked_events_record ON parked_events (read_model, topic, "partition", "offset")
    WHERE topic IS NOT NULL;
CREATE UNIQUE INDEX parked_events_event ON parked_events (read_model, aggregate_type, aggregate_id, version)
    WHERE topic IS NULL;
CREATE INDEX parked_events_aggregate ON parked_events (read_model, aggregate_type, aggregate_id, version);

GRANT SELECT, INSERT, UPDATE ON projector_read_models TO eventfold_projector;
GRANT SELECT, INSERT, UPDATE, DELETE ON parked_events TO eventfold_projector;
GRANT USAGE ON SEQUENCE parked_events_id_seq TO eventfold_projector;

-- PostgreSQL read models live in schemas the projector creates (one per generation).
DO $$
BEGIN
    EXECUTE format('GRANT CREATE ON DATABASE %I TO eventfold_projector', current_database());
END
$$;
