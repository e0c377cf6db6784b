-- A stream belongs to one tenant: the tenant of its first event. The command service refuses (as a
-- missing aggregate) every command and read of another tenant. Before, the tenant was a label each
-- command could set, so a stream may hold events labelled with other tenants: they are relabelled to
-- the stream's owner, the only change ever made to stored events, with a NOTICE saying how many.
DO $$
DECLARE
    relabelled bigint;
BEGIN
    SELECT count(*) INTO relabelled
    FROM events e
    JOIN events f ON f.aggregate_type = e.aggregate_type AND f.aggregate_id = e.aggregate_id
        AND f.version = 1
    WHERE e.tenant <> f.tenant;
    IF relabelled > 0 THEN
        RAISE NOTICE 'relabelling % events to the tenant of their stream''s first event', relabelled;
        ALTER TABLE events DISABLE TRIGGER events_no_update_delete;
        UPDATE events e SET tenant = f.tenant
        FROM events f
        WHERE f.aggregate_type = e.aggregate_type AND f.aggregate_id = e.aggregate_id
            AND f.version = 1 AND e.tenant <> f.tenant;
        ALTER TABLE events ENABLE TRIGGER events_no_update_delete;
    END IF;
END
$$;
