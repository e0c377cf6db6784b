-- Event store statistics, maintained beside the events rather than counted from them: counts per
-- (tenant, aggregate type, event type, category) with the first and last recording time, and
-- per-tenant counts per minute for recent activity. Appends never touch these tables (a counter
-- updated by every append would serialize all writers on one row lock); a maintainer folds new
-- events in, in bounded batches, under an advisory lock, reading events in the commit-safe order
-- of the global feed: (tx_id, position) after the watermark, tx_id below every running transaction.

CREATE TABLE event_stats (
    tenant          text        NOT NULL,
    aggregate_type  text        NOT NULL,
    event_type      text        NOT NULL,
    category        text        NOT NULL,
    count           bigint      NOT NULL CHECK (count > 0),
    first_at        timestamptz NOT NULL,
    last_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant, aggregate_type, event_type, category)
);

CREATE TABLE event_stats_minutes (
    tenant          text        NOT NULL,
    minute          timestamptz NOT NULL,
    count           bigint      NOT NULL CHECK (count > 0),
    PRIMARY KEY (tenant, minute)
);
CREATE INDEX event_stats_minutes_minute ON event_stats_minutes (minute);

-- One row: the last event folded in, as a feed cursor.
CREATE TABLE event_stats_watermark (
    singleton       boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    tx_id           xid8        NOT NULL DEFAULT '0'::xid8,
    position        bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO event_stats_watermark DEFAULT VALUES;

-- The command service maintains and reads the statistics.
GRANT SELECT, INSERT, UPDATE ON event_stats TO eventfold_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON event_stats_minutes TO eventfold_writer;
GRANT SELECT, UPDATE ON event_stats_watermark TO eventfold_writer;
