//! `eventfold audit` tenant by tenant, against the real stack: two tenants' events through Kafka
//! to both read models (PostgreSQL `opportunities`, Neo4j `graph`); the audit reports each tenant
//! clean; after one row of tenant B is tampered with in each store, it names tenant B unclean
//! and tenant A clean, and `--tenant` audits one tenant alone.

use std::time::Duration;

use eventfold_auth::scope;
use eventfold_cli::cli::{Cli, Command, Outcome};
use eventfold_runtime::Env;
use eventfold_tests::pipeline::Pipeline;
use eventfold_tests::xref::discover_body;
use eventfold_tests::{Stack, auth};
use projector::rebuild::AuditReport;
use serde_json::{Value, json};

const A: &str = "tenant-a";
const B: &str = "tenant-b";

/// Sends `command` to `aggregate_type/id` as `tenant`; panics unless it is applied.
async fn send(url: &str, tenant: &str, aggregate_type: &str, id: &str, command: &str, body: Value) {
    let r = auth::client(tenant, &[scope::COMMANDS_WRITE])
        .post(format!("{url}/v1/{aggregate_type}/{id}/commands/{command}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(status, 200, "{command}: {}", r.text().await.unwrap());
}

/// `eventfold audit <read_model> [--tenant <tenant>]` in-process, as the projector's role.
async fn cli(p: &Pipeline, read_model: &str, tenant: Option<&str>) -> Result<Outcome, String> {
    let command = Command::Audit {
        read_model: read_model.into(),
        tenant: tenant.map(str::to_owned),
        wait_secs: 30,
    };
    eventfold_cli::cli::run(Cli { command }, &Env::from_pairs(p.projector_env(&[])))
        .await
        .map_err(|e| e.to_string())
}

#[track_caller]
fn assert_tenant(report: &AuditReport, tenant: &str, clean: bool) {
    let t = report
        .tenant(tenant)
        .unwrap_or_else(|| panic!("no {tenant} in {report:#?}"));
    assert_eq!(t.clean, clean, "{tenant}: {report:#?}");
    assert!(t.events > 0 && t.expected_rows > 0, "{tenant}: {report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_names_the_one_tenant_whose_rows_were_tampered_with_in_each_read_model() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let api = p.command_service().await;
    let relay = p.relay("r1");
    let projector = p.projector("p1", &[]);
    for (tenant, opportunities) in [(A, 3), (B, 2)] {
        for i in 0..opportunities {
            let id = format!("opp-{i}");
            let body = json!({"opportunity_id": id, "title": format!("{tenant} {i}"),
                "ai_solution_type": "nlp", "market_size_estimate": 1000});
            send(
                &api.url,
                tenant,
                "Opportunity",
                &id,
                "CreateOpportunity",
                body,
            )
            .await;
        }
        let body = json!({"user_id": "user-1", "email": "u@example.org"});
        send(&api.url, tenant, "User", "user-1", "RegisterUser", body).await;
        let xref = "GEN.1.1:JHN.1.1";
        send(
            &api.url,
            tenant,
            "CrossReference",
            xref,
            "DiscoverCrossReference",
            discover_body(),
        )
        .await;
        let body = json!({"project_id": "proj-1", "title": tenant, "source": "upload"});
        send(
            &api.url,
            tenant,
            "Interview",
            "int-1",
            "CreateInterview",
            body,
        )
        .await;
    }
    p.caught_up("opportunities", Duration::from_secs(90)).await;
    p.caught_up("graph", Duration::from_secs(90)).await;
    let (opportunities, graph) = (Pipeline::model("opportunities"), Pipeline::model("graph"));

    for model in [&opportunities, &graph] {
        let report = p.audit_with(model).await;
        assert!(report.is_clean(), "{report:#?}");
        let tenants: Vec<&str> = report.tenants.iter().map(|t| t.tenant.as_str()).collect();
        assert_eq!(tenants, [A, B], "{report:#?}");
        assert_tenant(&report, A, true);
        assert_tenant(&report, B, true);
        let events: usize = report.tenants.iter().map(|t| t.events).sum();
        assert_eq!(events, report.events, "{report:#?}");
    }
    // Opportunities: 3 + user for A, 2 + user for B.
    let report = p.audit_with(&opportunities).await;
    let rows = |t: &str| {
        report
            .tenant(t)
            .map(|a| (a.events, a.live_rows, a.expected_rows))
    };
    assert_eq!((rows(A), rows(B)), (Some((4, 4, 4)), Some((3, 3, 3))));

    // Tenant B's copy of a row both tenants have is changed in PostgreSQL, its interview is
    // deleted from Neo4j.
    let changed = sqlx::query(
        "UPDATE rm_opportunities_g1.opportunities SET title = 'tampered' \
         WHERE tenant = $1 AND aggregate_id = 'opp-0'",
    )
    .bind(B)
    .execute(&p.db.admin)
    .await
    .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    let deleted = p
        .graph_count(&format!(
            "MATCH (i:Interview{{g}} {{tenant: '{B}', id: 'int-1'}}) DETACH DELETE i \
             RETURN count(*) AS n"
        ))
        .await;
    assert_eq!(deleted, 1);

    // PostgreSQL: the row as replayed is missing, the changed one unexpected. Neo4j: the
    // interview node and its HAS_INTERVIEW from the project are missing.
    for (model, missing, unexpected) in [(&opportunities, 1, 1), (&graph, 2, 0)] {
        let report = p.audit_with(model).await;
        assert!(!report.is_clean(), "{report:#?}");
        assert_tenant(&report, A, true);
        assert_tenant(&report, B, false);
        let b = report.tenant(B).unwrap();
        assert_eq!(
            (
                b.missing_count,
                b.unexpected_count,
                b.version_mismatch_count
            ),
            (missing, unexpected, 0),
            "{report:#?}"
        );
        assert_eq!(
            (report.missing_count, report.unexpected_count),
            (missing, unexpected)
        );

        // One tenant alone: its events replayed, its rows compared, nothing of the other.
        let only_a = p.audit_of(model, Some(A)).await;
        assert!(only_a.is_clean(), "{only_a:#?}");
        assert_eq!(only_a.tenants.len(), 1, "{only_a:#?}");
        assert_eq!(only_a.tenant(A), report.tenant(A), "{only_a:#?}");
        assert_eq!(only_a.events, report.tenant(A).unwrap().events);
        let only_b = p.audit_of(model, Some(B)).await;
        assert!(!only_b.is_clean(), "{only_b:#?}");
        assert_eq!(only_b.tenant(B), report.tenant(B), "{only_b:#?}");
    }

    // The command line: a line per tenant and the total; exit 0 (ok) only when all are clean.
    let all = cli(&p, "opportunities", None).await.unwrap();
    assert!(!all.ok, "{all:?}");
    assert_eq!(all.out.len(), 3, "{all:?}");
    assert!(
        all.out[0].starts_with("tenant tenant-a: clean, 4 events"),
        "{all:?}"
    );
    assert!(
        all.out[1].starts_with("tenant tenant-b: NOT CLEAN, 3 events"),
        "{all:?}"
    );
    assert!(
        all.out[2].starts_with("total: NOT CLEAN, 7 events"),
        "{all:?}"
    );
    assert!(all.err.iter().any(|l| l.contains("tampered")), "{all:?}");
    let a = cli(&p, "graph", Some(A)).await.unwrap();
    assert!(a.ok, "{a:?}");
    assert_eq!(a.out.len(), 2, "{a:?}");
    assert!(a.out[0].starts_with("tenant tenant-a: clean"), "{a:?}");
    assert!(a.out[1].starts_with("total: clean"), "{a:?}");
    let b = cli(&p, "graph", Some(B)).await.unwrap();
    assert!(!b.ok, "{b:?}");
    // Bad arguments are usage errors (exit 2), with one line.
    for (tenant, says) in [
        ("tenant a", "expected 1-64 characters"),
        ("tenant-z", "no events, rows or versions of this tenant"),
    ] {
        let e = cli(&p, "opportunities", Some(tenant)).await.unwrap_err();
        assert!(e.contains(says) && !e.contains('\n'), "{tenant}: {e}");
    }

    projector.stop().await;
    relay.stop().await;
    api.shutdown.trigger();
    p.drop_all().await;
}
