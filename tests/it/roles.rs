//! Least privilege in PostgreSQL: each service's group role is refused (42501) what that service
//! never does, on the stack's event store database (migrated by `make up`), and each PostgreSQL
//! read model's generations belong to that read model's role.

use eventfold_tests::pipeline::Pipeline;
use eventfold_tests::{Stack, login_role};
use projector::apply::ApplyError;
use projector::models::opportunities::Opportunities;
use projector::target::{Target, pg_schema, read_model_role};
use sqlx::PgPool;

/// A pool logged in as a fresh login role of `group`.
async fn pool_of(stack: &Stack, login: &str, group: &str) -> PgPool {
    let admin = stack.admin_pool().await;
    login_role(&admin, login, group).await;
    PgPool::connect(&stack.role_url(login, None))
        .await
        .expect("connect as the role")
}

/// Asserts every statement is refused for lack of privilege; runs each in a rolled-back
/// transaction so that nothing a test statement could do survives.
async fn refused(pool: &PgPool, role: &str, statements: &[&str]) {
    for sql in statements {
        let mut tx = pool.begin().await.unwrap();
        let err = sqlx::query(sql)
            .execute(&mut *tx)
            .await
            .expect_err(&format!("{role} was allowed: {sql}"));
        let code = err.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("42501"), "{role}: {sql}: {err}");
        tx.rollback().await.unwrap();
    }
}

#[tokio::test]
async fn each_service_role_is_refused_what_its_service_never_does() {
    let stack = Stack::from_env().await;
    let writer = pool_of(&stack, "ef_test_roles_writer", "eventfold_writer").await;
    refused(
        &writer,
        "writer",
        &[
            "DELETE FROM outbox WHERE false",
            "UPDATE outbox SET version = version WHERE false",
            "SELECT 1 FROM relay_shards",
            "SELECT 1 FROM outbox_parked",
            "SELECT 1 FROM parked_events",
            "SELECT 1 FROM projector_read_models",
            "UPDATE commands SET response = response WHERE false",
            "DELETE FROM commands WHERE false",
            "DELETE FROM event_stats WHERE false",
            "DELETE FROM event_stats_watermark WHERE false",
            "CREATE TABLE ef_test_writer_table (x int)",
        ],
    )
    .await;
    let relay = pool_of(&stack, "ef_test_roles_relay", "eventfold_relay").await;
    refused(
        &relay,
        "relay",
        &[
            "UPDATE outbox SET version = version WHERE false",
            "INSERT INTO events (event_id, event_type, schema_version, category, aggregate_type, \
             aggregate_id, version, occurred_at, correlation_id, actor_kind, actor_id, tenant, \
             payload) VALUES (gen_random_uuid(), 'x', 1, 'c', 'T', 'i', 1, now(), \
             gen_random_uuid(), 'user', 'u', 't', '{}')",
            "SELECT 1 FROM commands",
            "SELECT 1 FROM snapshots",
            "SELECT 1 FROM parked_events",
            "SELECT 1 FROM projector_read_models",
            "SELECT 1 FROM event_stats",
            "CREATE TABLE ef_test_relay_table (x int)",
        ],
    )
    .await;
    let projector = pool_of(&stack, "ef_test_roles_projector", "eventfold_projector").await;
    refused(
        &projector,
        "projector",
        &[
            "SELECT 1 FROM outbox",
            "SELECT 1 FROM outbox_parked",
            "SELECT 1 FROM relay_shards",
            "SELECT 1 FROM commands",
            "SELECT 1 FROM snapshots",
            "SELECT 1 FROM event_stats_minutes",
            "INSERT INTO events (event_id, event_type, schema_version, category, aggregate_type, \
             aggregate_id, version, occurred_at, correlation_id, actor_kind, actor_id, tenant, \
             payload) VALUES (gen_random_uuid(), 'x', 1, 'c', 'T', 'i', 1, now(), \
             gen_random_uuid(), 'user', 'u', 't', '{}')",
            // No CREATE on the database: generation schemas come from the migrator's function,
            // and only for a login that holds the read model's role (this one holds none).
            "CREATE SCHEMA ef_test_projector_schema",
            "SELECT eventfold_create_read_model_schema('opportunities', 'rm_opportunities_g900')",
            "SELECT eventfold_declare_read_model('ef_test_model')",
            "SELECT eventfold_grant_read_models('ef_test_roles_projector')",
        ],
    )
    .await;
}

/// The owners of `schema` and of every table in it.
async fn owners(pool: &PgPool, schema: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1 \
         UNION ALL SELECT tableowner::text FROM pg_tables WHERE schemaname = $1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A generation set up by an operator's role (as `eventfold rebuild` may run) belongs to the read
/// model's role, so the projector that holds the role uses and drops it; a projector login that
/// does not hold the role can neither set up a generation (it halts with the GRANT to run) nor
/// touch the tables.
#[tokio::test]
async fn a_read_models_generations_belong_to_its_role_whoever_sets_them_up() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let role = read_model_role("opportunities");
    let by_operator = pg_schema("opportunities", 7);
    Target::Postgres {
        pool: p.db.admin.clone(),
        schema: by_operator.clone(),
    }
    .setup(&Opportunities)
    .await
    .expect("set up as the migration role");
    let owned = owners(&p.db.admin, &by_operator).await;
    assert!(owned.len() > 3, "{owned:?}");
    assert!(owned.iter().all(|o| *o == role), "{owned:?}");

    let projector = PgPool::connect(&p.projector_url).await.unwrap();
    let by_projector = pg_schema("opportunities", 8);
    let target = Target::Postgres {
        pool: projector.clone(),
        schema: by_projector.clone(),
    };
    target
        .setup(&Opportunities)
        .await
        .expect("set up as the projector");
    let owned = owners(&p.db.admin, &by_projector).await;
    assert!(owned.iter().all(|o| *o == role), "{owned:?}");
    for table in ["opportunities", "_versions"] {
        sqlx::query(&format!("DELETE FROM {by_operator}.{table} WHERE false"))
            .execute(&projector)
            .await
            .expect("the projector writes a generation an operator set up");
    }

    // Another projector's login (say, the graph's): in the projectors' group, without the role.
    login_role(
        &p.db.admin,
        "ef_test_graph_projector",
        "eventfold_projector",
    )
    .await;
    let other = PgPool::connect(&stack.role_url("ef_test_graph_projector", Some(&p.db.name)))
        .await
        .unwrap();
    refused(
        &other,
        "a projector without the read model's role",
        &[
            &format!("DELETE FROM {by_projector}.opportunities WHERE false"),
            &format!("SELECT 1 FROM {by_projector}._versions"),
            &format!("DROP SCHEMA {by_projector} CASCADE"),
        ],
    )
    .await;
    let err = Target::Postgres {
        pool: other.clone(),
        schema: pg_schema("opportunities", 9),
    }
    .setup(&Opportunities)
    .await
    .expect_err("set up without the role");
    match &err {
        ApplyError::Halted { code, reason } => {
            assert_eq!(code, "42501");
            assert!(
                reason.contains("GRANT eventfold_rm_opportunities TO ef_test_graph_projector"),
                "{reason}"
            );
        }
        e => panic!("not a halt: {e}"),
    }

    target
        .drop_all(&Opportunities)
        .await
        .expect("drop as the projector");
    Target::Postgres {
        pool: projector.clone(),
        schema: by_operator,
    }
    .drop_all(&Opportunities)
    .await
    .expect("drop an operator's generation as the projector");
    other.close().await;
    projector.close().await;
    p.drop_all().await;
}

/// The login roles `make up` gives the services carry server-side bounds: a runaway statement or
/// a transaction a stuck client left open ends on its own.
#[tokio::test]
async fn the_stacks_service_roles_have_statement_and_idle_transaction_timeouts() {
    let stack = Stack::from_env().await;
    for role in ["ef_command_service", "ef_outbox_relay", "ef_projector"] {
        let pool = PgPool::connect(&stack.role_url(role, None))
            .await
            .unwrap_or_else(|e| panic!("connect as {role} (started by make up): {e}"));
        let statement: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(&pool)
            .await
            .unwrap();
        let idle: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            (statement.as_str(), idle.as_str()),
            ("30s", "1min"),
            "{role}"
        );
    }
}
