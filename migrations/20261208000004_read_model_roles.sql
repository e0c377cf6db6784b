-- One role per PostgreSQL read model. `eventfold_rm_<name>` (NOLOGIN) owns every generation
-- schema of read model <name> and the tables in it, whoever created them (a projector, or
-- `eventfold rebuild` run as an operator's role), so no rebuild can lock a projector out. A
-- projector's login role is granted the roles of the read models it runs, and only those: the
-- projector of one read model cannot write another's tables. Projectors no longer hold CREATE on
-- the database: a generation schema is created by `eventfold_create_read_model_schema`, which
-- runs as the migration role and gives the schema to the read model's role.

-- Declares read model `read_model`: creates its role. A domain with a PostgreSQL read model calls
-- this in one of its migrations; the projector refuses to set up a read model without its role.
CREATE OR REPLACE FUNCTION eventfold_declare_read_model(read_model text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r text := 'eventfold_rm_' || read_model;
BEGIN
    IF read_model !~ '^[a-z][a-z0-9_]{0,40}$' THEN
        RAISE EXCEPTION 'not a read model name: %', read_model USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
        EXECUTE format('CREATE ROLE %I NOLOGIN', r);
    END IF;
    -- The migration role creates schemas owned by it (PostgreSQL requires membership).
    IF NOT pg_has_role(current_user, r, 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', r, current_user);
    END IF;
END
$$;

-- Grants `login` the role of every declared read model (the local stack's and the tests'
-- projectors run them all; a deployment that splits read models over projectors grants each
-- login only its own with `GRANT eventfold_rm_<name> TO <login>`).
CREATE OR REPLACE FUNCTION eventfold_grant_read_models(login text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'eventfold\_rm\_%' LOOP
        IF NOT pg_has_role(login, r, 'MEMBER') THEN
            EXECUTE format('GRANT %I TO %I', r, login);
        END IF;
    END LOOP;
END
$$;

-- Creates generation schema `schema_name` of `read_model`, owned by the read model's role. Runs
-- as the migration role; callable only by a session whose login holds the read model's role.
CREATE OR REPLACE FUNCTION eventfold_create_read_model_schema(read_model text, schema_name text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    owner_role text := 'eventfold_rm_' || read_model;
BEGIN
    -- A generation (`rm_<name>_g<n>`) or an audit's scratch copy (`rm_<name>_audit<hex>`).
    IF read_model !~ '^[a-z][a-z0-9_]{0,40}$'
        OR left(schema_name, length(read_model) + 4) <> 'rm_' || read_model || '_'
        OR substr(schema_name, length(read_model) + 5) !~ '^(g[0-9]{1,9}|audit[0-9a-f]{8})$' THEN
        RAISE EXCEPTION 'not a schema of read model %: %', read_model, schema_name
            USING ERRCODE = '42501';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = owner_role) THEN
        RAISE EXCEPTION 'read model % has no role %: declare it in a migration with SELECT eventfold_declare_read_model(''%'')',
            read_model, owner_role, read_model USING ERRCODE = '42501';
    END IF;
    IF NOT pg_has_role(session_user, owner_role, 'MEMBER') THEN
        RAISE EXCEPTION 'login role % does not hold %: GRANT % TO %', session_user, owner_role,
            owner_role, session_user USING ERRCODE = '42501';
    END IF;
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', schema_name, owner_role);
END
$$;
REVOKE ALL ON FUNCTION eventfold_create_read_model_schema(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventfold_create_read_model_schema(text, text) TO eventfold_projector;
REVOKE ALL ON FUNCTION eventfold_declare_read_model(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventfold_grant_read_models(text) FROM PUBLIC;

-- The reference domain's PostgreSQL read model.
SELECT eventfold_declare_read_model('opportunities');

-- Read models set up before: declare them, and give their schemas and tables to their roles.
DO $$
DECLARE
    m record;
    s record;
    t record;
BEGIN
    FOR m IN SELECT name FROM projector_read_models WHERE store = 'postgres' LOOP
        PERFORM eventfold_declare_read_model(m.name);
        FOR s IN SELECT nspname FROM pg_namespace
                 WHERE left(nspname, length(m.name) + 4) = 'rm_' || m.name || '_'
                   AND substr(nspname, length(m.name) + 5) ~ '^g[0-9]{1,9}$' LOOP
            EXECUTE format('ALTER SCHEMA %I OWNER TO %I', s.nspname, 'eventfold_rm_' || m.name);
            FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = s.nspname LOOP
                EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', s.nspname, t.tablename,
                               'eventfold_rm_' || m.name);
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;

-- Projectors create no schema of their own any more.
DO $$
BEGIN
    EXECUTE format('REVOKE CREATE ON DATABASE %I FROM eventfold_projector', current_database());
END
$$;
