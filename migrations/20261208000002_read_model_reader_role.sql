-- The projector's read API reads the PostgreSQL read models as `eventfold_reader`, to which
-- row-level security applies (one tenant's rows, set per request); the projectors' writes run as
-- the tables' owner and are not filtered. Projectors may take the reader role for their read API.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'eventfold_reader') THEN
        CREATE ROLE eventfold_reader NOLOGIN;
    END IF;
END
$$;
GRANT eventfold_reader TO eventfold_projector;
