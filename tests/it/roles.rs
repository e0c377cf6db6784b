//! Least privilege in PostgreSQL: each service's group role is refused (42501) what that service
//! never does, on the stack's event store database (migrated by `make up`).

use eventfold_tests::{Stack, login_role};
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
            "INSERT INTO events (event_id, event_type, schema_version, category, aggregate_type, \
             aggregate_id, version, occurred_at, correlation_id, actor_kind, actor_id, tenant, \
             payload) VALUES (gen_random_uuid(), 'x', 1, 'c', 'T', 'i', 1, now(), \
             gen_random_uuid(), 'user', 'u', 't', '{}')",
        ],
    )
    .await;
}

/// The login roles `make up` gives the command service and the relay carry server-side bounds: a
/// runaway statement or a transaction a stuck client left open ends on its own.
#[tokio::test]
async fn the_stacks_service_roles_have_statement_and_idle_transaction_timeouts() {
    let stack = Stack::from_env().await;
    for role in ["ef_command_service", "ef_outbox_relay"] {
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
