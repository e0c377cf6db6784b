//! Seed 003's workflow saga against the real stack: a workflow whose graph is prepared and that
//! completes, one whose graph refuses an edge and that the saga fails (compensation), one
//! approved in time (its deadline cancelled), and one whose approval deadline, recorded before
//! the saga's process was SIGKILLed, fires after the restart; the graph and the lineage in Neo4j.

use std::time::Duration;

use eventfold_tests::pipeline::Pipeline;
use eventfold_tests::relay::RelayProcess;
use eventfold_tests::{Stack, eventually, send_command};
use serde_json::{Value, json};
use sqlx::Row;
use uuid::Uuid;

const SAGA: &str = "workflows";
const COMMANDS: &str = "rm_workflows_g1.commands";

fn start(graph: &str, extra_edge: Option<(&str, &str)>, approval: Option<u64>) -> Value {
    let mut edges = vec![
        json!({"edge_id": "e1", "source": "word", "target": "light"}),
        json!({"edge_id": "e2", "source": "light", "target": "life"}),
    ];
    if let Some((s, t)) = extra_edge {
        edges.push(json!({"edge_id": "e-bad", "source": s, "target": t}));
    }
    json!({
        "name": "prologue", "graph_id": graph,
        "nodes": [
            {"node_id": "word", "label": "Word", "metadata": {"ref": "JHN.1.1"}},
            {"node_id": "light", "label": "Light"},
            {"node_id": "life", "label": "Life", "metadata": {}}
        ],
        "edges": edges,
        "concepts": [{"node_id": "word", "coordinates": [0.9, 0.1, 0.3]}],
        "approval_timeout_ms": approval
    })
}

/// The saga alone in a projector process of the pipeline.
fn saga(p: &Pipeline, id: &str, api: &str) -> RelayProcess {
    let key = eventfold_tests::auth::settings()
        .key_file
        .display()
        .to_string();
    p.projector(
        id,
        &[
            ("PROJECTOR_READ_MODELS", SAGA),
            ("PROCESS_COMMAND_URL", api),
            ("PROCESS_SIGNING_KEY_FILE", key.as_str()),
            ("PROCESS_POLL_MS", "50"),
        ],
    )
}

/// The event types of a stream, in order.
async fn history(p: &Pipeline, t: &str, id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY version",
    )
    .bind(t)
    .bind(id)
    .fetch_all(&p.db.admin)
    .await
    .expect("history")
}

/// Waits until workflow `id`'s last event is `event_type`.
async fn ends_with(p: &Pipeline, id: &str, event_type: &'static str) -> Vec<String> {
    eventually(event_type, Duration::from_secs(60), || async {
        let h = history(p, "Workflow", id).await;
        (h.last().map(String::as_str) == Some(event_type)).then_some(h)
    })
    .await
}

async fn event_id(p: &Pipeline, t: &str, id: &str, event_type: &str) -> Uuid {
    sqlx::query_scalar(
        "SELECT event_id FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_type = $3",
    )
    .bind(t)
    .bind(id)
    .bind(event_type)
    .fetch_one(&p.db.admin)
    .await
    .expect("event id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_workflow_saga_completes_compensates_and_fires_its_deadline_after_a_restart() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let api = p.command_service().await;
    let relay = p.relay("r1");
    let graph = p.projector("graph", &[("PROJECTOR_READ_MODELS", "graph")]);
    let http = eventfold_tests::auth::operator();
    let base = api.url.as_str();
    let saga1 = saga(&p, "saga1", base);

    // Completed: the graph prepared in order, then CompleteWorkflow.
    send_command(
        &http,
        base,
        "Workflow",
        "w-ok",
        "StartWorkflow",
        start("g-ok", None, None),
    )
    .await;
    let h = ends_with(&p, "w-ok", "WorkflowCompleted").await;
    assert_eq!(h, ["WorkflowStarted", "WorkflowCompleted"]);
    let g = history(&p, "Graph", "g-ok").await;
    assert_eq!(
        g,
        [
            "GraphCreated",
            "GraphNodeAdded",
            "GraphNodeAdded",
            "GraphNodeAdded",
            "GraphEdgeConnected",
            "GraphEdgeConnected",
            "ConceptualPointMapped"
        ]
    );
    let started = event_id(&p, "Workflow", "w-ok", "WorkflowStarted").await;
    let caused: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE causation_id = $1 AND actor_kind = 'system' AND actor_id = $2",
    )
    .bind(started)
    .bind(SAGA)
    .fetch_one(&p.db.admin)
    .await
    .unwrap();
    assert_eq!(
        caused, 8,
        "7 graph events and the completion, each caused by the start"
    );

    // Compensated: the graph refuses an edge to an unknown node; the saga fails the workflow.
    send_command(
        &http,
        base,
        "Workflow",
        "w-fail",
        "StartWorkflow",
        start("g-fail", Some(("life", "nowhere")), None),
    )
    .await;
    ends_with(&p, "w-fail", "WorkflowFailed").await;
    let failed: Value = sqlx::query_scalar(
        "SELECT payload FROM events WHERE aggregate_id = 'w-fail' AND event_type = 'WorkflowFailed'",
    )
    .fetch_one(&p.db.admin)
    .await
    .unwrap();
    assert_eq!(failed["step"], "edge:e-bad");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .starts_with("unknown_node"),
        "{failed}"
    );
    let refused: (String, Option<i32>) = sqlx::query(&format!(
        "SELECT status, http_status FROM {COMMANDS} WHERE instance_key = 'w-fail' AND step = 'edge:e-bad'"
    ))
    .fetch_one(&p.db.admin)
    .await
    .map(|r| (r.get(0), r.get(1)))
    .unwrap();
    assert_eq!(refused, ("failed".into(), Some(422)));

    // Approved in time: the approval deadline is cancelled.
    send_command(
        &http,
        base,
        "Workflow",
        "w-approve",
        "StartWorkflow",
        start("g-approve", None, Some(60_000)),
    )
    .await;
    ends_with(&p, "w-approve", "WorkflowApprovalRequested").await;
    send_command(
        &http,
        base,
        "Workflow",
        "w-approve",
        "ApproveWorkflow",
        json!({"approver": "ada"}),
    )
    .await;
    ends_with(&p, "w-approve", "WorkflowApproved").await;
    let pool = p.db.admin.clone();
    eventually("the approval deadline cancelled", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            let status: Option<String> = sqlx::query_scalar(&format!(
                "SELECT status FROM {COMMANDS} WHERE instance_key = 'w-approve' AND step = 'timeout'"
            ))
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten();
            (status.as_deref() == Some("cancelled")).then_some(())
        }
    })
    .await;

    // Timed out: the deadline is recorded, the saga is killed, nothing fires while it is down,
    // and the deadline fires after the restart.
    send_command(
        &http,
        base,
        "Workflow",
        "w-late",
        "StartWorkflow",
        start("g-late", None, Some(3000)),
    )
    .await;
    eventually(
        "the approval deadline recorded",
        Duration::from_secs(60),
        || {
            let pool = pool.clone();
            async move {
                let status: Option<String> = sqlx::query_scalar(&format!(
                "SELECT status FROM {COMMANDS} WHERE instance_key = 'w-late' AND step = 'timeout'"
            ))
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten();
                (status.as_deref() == Some("pending")).then_some(())
            }
        },
    )
    .await;
    saga1.signal("KILL");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        history(&p, "Workflow", "w-late")
            .await
            .last()
            .map(String::as_str),
        Some("WorkflowApprovalRequested"),
        "nothing fires while the saga is down"
    );
    let saga2 = saga(&p, "saga2", base);
    ends_with(&p, "w-late", "WorkflowTimedOut").await;
    let requested = event_id(&p, "Workflow", "w-late", "WorkflowApprovalRequested").await;
    let timed_out: (Option<Uuid>, String) = sqlx::query(
        "SELECT causation_id, actor_id FROM events WHERE aggregate_id = 'w-late' AND event_type = 'WorkflowTimedOut'",
    )
    .fetch_one(&p.db.admin)
    .await
    .map(|r| (r.get(0), r.get(1)))
    .unwrap();
    assert_eq!(timed_out, (Some(requested), SAGA.to_owned()));

    // Neo4j: the prepared graph, the workflow's status and the lineage from the start.
    p.caught_up("graph", Duration::from_secs(90)).await;
    let nodes = p
        .graph_count("MATCH (:GraphModel{g} {id: 'g-ok'})-[:HAS_NODE{g}]->(n:GraphNode{g}) RETURN count(n) AS n")
        .await;
    assert_eq!(nodes, 3);
    let edges = p
        .graph_count("MATCH (a:GraphNode{g})-[c:CONNECTS{g}]->(b:GraphNode{g}) WHERE c.graph_id = 'g-ok' RETURN count(c) AS n")
        .await;
    assert_eq!(edges, 2);
    let mapped = p
        .graph_count("MATCH (n:GraphNode{g} {id: 'g-ok/word'}) WHERE size(n.coordinates) = 3 AND n.metadata CONTAINS 'JHN.1.1' RETURN count(n) AS n")
        .await;
    assert_eq!(mapped, 1);
    let statuses = p
        .graph_count("MATCH (w:Workflow{g}) WHERE (w.id = 'w-ok' AND w.status = 'completed') OR (w.id = 'w-fail' AND w.status = 'failed') OR (w.id = 'w-late' AND w.status = 'timed_out') RETURN count(w) AS n")
        .await;
    assert_eq!(statuses, 3);
    let lineage = p
        .graph_count(&format!(
            "MATCH (s:Event{{g}} {{id: '{started}'}})-[:CAUSED{{g}}]->(e:Event{{g}}) RETURN count(e) AS n"
        ))
        .await;
    assert_eq!(lineage, 8);

    saga2.stop().await;
    graph.stop().await;
    relay.stop().await;
    api.stop().await;
    p.drop_all().await;
}
