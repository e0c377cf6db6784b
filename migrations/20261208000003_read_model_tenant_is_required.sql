-- The tenant a read-model query runs for, as the read API names it per transaction in
-- `eventfold.tenant`. A session that never named one, or whose earlier transaction named one
-- locally (the setting then reads as an empty string), gets an error, never every row or none:
-- the row-level security policies of the PostgreSQL read models compare against this.
CREATE OR REPLACE FUNCTION eventfold_request_tenant() RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t text := current_setting('eventfold.tenant', true);
BEGIN
    IF t IS NULL OR t = '' THEN
        RAISE EXCEPTION 'no tenant named for this read-model query'
            USING ERRCODE = '42501', HINT = 'set eventfold.tenant in the transaction';
    END IF;
    RETURN t;
END
$$;
GRANT EXECUTE ON FUNCTION eventfold_request_tenant() TO eventfold_reader;
