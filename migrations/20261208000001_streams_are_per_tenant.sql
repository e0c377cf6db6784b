-- A stream is (tenant, aggregate_type, aggregate_id): the same aggregate id in two tenants is two
-- independent streams, each with its own versions from 1. Until now a stream belonged to the tenant
-- of its first event and every event of a stream carries that tenant (see the previous migration),
-- so every stored stream stays one stream and every stored row keeps its meaning.
--
-- The key's columns run (aggregate_type, aggregate_id, tenant, version): every read gives all
-- three, and a lookup by type and id alone (tooling, the upgrade below) can still use the index.
ALTER TABLE events DROP CONSTRAINT events_aggregate_version;
ALTER TABLE events ADD CONSTRAINT events_stream_version
    UNIQUE (aggregate_type, aggregate_id, tenant, version);

-- Snapshots belong to one stream too: the tenant joins their key. Existing snapshots take the
-- tenant of their stream (the tenant of its events).
ALTER TABLE snapshots ADD COLUMN tenant text NOT NULL DEFAULT 'default';
UPDATE snapshots s SET tenant = e.tenant
FROM events e
WHERE e.aggregate_type = s.aggregate_type AND e.aggregate_id = s.aggregate_id AND e.version = 1
    AND e.tenant <> s.tenant;
ALTER TABLE snapshots DROP CONSTRAINT snapshots_pkey;
ALTER TABLE snapshots ADD PRIMARY KEY (aggregate_type, aggregate_id, tenant, version);

-- The outbox, its parked rows and dead-letter copies stay keyed by (aggregate_type, aggregate_id):
-- the relay orders and holds back rows per type and id, so two tenants' streams with the same id
-- share one order (a parked row of one also holds back the other). That is more order than needed,
-- never less.

-- The projector parks events per stream: the tenant joins the keys of its parked events. Rows
-- parked before take the tenant of their stream.
ALTER TABLE parked_events ADD COLUMN tenant text NOT NULL DEFAULT 'default';
UPDATE parked_events p SET tenant = e.tenant
FROM events e
WHERE e.aggregate_type = p.aggregate_type AND e.aggregate_id = p.aggregate_id AND e.version = 1
    AND e.tenant <> p.tenant;
DROP INDEX parked_events_event;
CREATE UNIQUE INDEX parked_events_event
    ON parked_events (read_model, aggregate_type, aggregate_id, tenant, version)
    WHERE topic IS NULL;
DROP INDEX parked_events_aggregate;
CREATE INDEX parked_events_aggregate
    ON parked_events (read_model, aggregate_type, aggregate_id, tenant, version);
