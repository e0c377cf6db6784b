//! Seed 003's `WorkflowSaga` as the `workflows` process manager: when a workflow starts, it
//! prepares the workflow's graph on the `Graph` aggregate (create it, add the nodes, connect the
//! edges, map the conceptual points, in that order); once every step was applied it completes
//! the workflow, or asks for its approval and schedules a `TimeOutWorkflow` deadline that the
//! approval cancels. A step the graph refuses (e.g. an edge to an unknown node) fails the
//! workflow: the compensation is `FailWorkflow` with the step and the refusal.
//!
//! One instance per workflow (its aggregate id); every command keeps the start's correlation id
//! and names the `WorkflowStarted` event as its cause, so the lineage shows the whole workflow.

use std::collections::BTreeSet;
use std::time::Duration;

use eventfold_reference::cim::graph::{AddNode, ConnectNodes, CreateGraph, MapConceptualPoint};
use eventfold_reference::cim::workflow::{
    CompleteWorkflow, Event as WorkflowEvent, FailWorkflow, RequestWorkflowApproval,
    TimeOutWorkflow,
};
use serde::{Deserialize, Serialize};

use crate::process::{Action, ProcessEvent, ProcessManager, Reaction, Step, StepDone, StepFailure};
use crate::projection::HandlerError;

/// The `workflows` process manager.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkflowSaga;

/// Where one workflow's saga stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SagaState {
    /// The workflow.
    pub workflow_id: String,
    /// The graph being prepared.
    pub graph_id: String,
    /// Graph steps not applied yet.
    pub pending: BTreeSet<String>,
    /// The approval timeout, when the workflow needs an approval.
    pub approval_timeout_ms: Option<u64>,
    /// True once a step was refused (the workflow is being failed).
    pub failed: bool,
    /// True once the graph is prepared and the next stage was asked for.
    pub prepared: bool,
}

const WORKFLOW: &str = "Workflow";
const GRAPH: &str = "Graph";
/// The deadline of an approval.
pub const APPROVAL_DEADLINE: &str = "approval";

fn graph_step(
    key: String,
    graph_id: &str,
    command: &str,
    body: &impl Serialize,
) -> Result<Step, HandlerError> {
    Step::new(key, GRAPH, graph_id, command, body)
}

impl ProcessManager for WorkflowSaga {
    type State = SagaState;

    fn name(&self) -> &'static str {
        "workflows"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[WORKFLOW]
    }

    fn instance(&self, event: &ProcessEvent) -> Option<String> {
        (event.aggregate_type == WORKFLOW).then(|| event.aggregate_id.clone())
    }

    fn tracks_steps(&self) -> bool {
        true
    }

    fn react(
        &self,
        mut state: SagaState,
        event: &ProcessEvent,
    ) -> Result<Reaction<SagaState>, HandlerError> {
        let workflow = &event.aggregate_id;
        match event.domain::<WorkflowEvent>()? {
            WorkflowEvent::WorkflowStarted(e) => {
                let g = e.graph_id.as_str();
                let mut steps = vec![graph_step(
                    "create".into(),
                    g,
                    "CreateGraph",
                    &CreateGraph {
                        graph_id: g.into(),
                        name: e.name.clone(),
                        workflow_id: Some(workflow.clone()),
                    },
                )?];
                for n in &e.nodes {
                    let body = AddNode {
                        node_id: n.node_id.clone(),
                        label: n.label.clone(),
                        metadata: n.metadata.clone(),
                    };
                    steps.push(graph_step(
                        format!("node:{}", n.node_id),
                        g,
                        "AddNode",
                        &body,
                    )?);
                }
                for x in &e.edges {
                    let body = ConnectNodes {
                        edge_id: x.edge_id.clone(),
                        source: x.source.clone(),
                        target: x.target.clone(),
                    };
                    steps.push(graph_step(
                        format!("edge:{}", x.edge_id),
                        g,
                        "ConnectNodes",
                        &body,
                    )?);
                }
                for p in &e.concepts {
                    let body = MapConceptualPoint {
                        node_id: p.node_id.clone(),
                        coordinates: p.coordinates.clone(),
                    };
                    steps.push(graph_step(
                        format!("point:{}", p.node_id),
                        g,
                        "MapConceptualPoint",
                        &body,
                    )?);
                }
                state.workflow_id = workflow.clone();
                state.graph_id = e.graph_id;
                state.approval_timeout_ms = e.approval_timeout_ms;
                state.pending = steps.iter().map(|s| s.key.clone()).collect();
                Ok(Reaction::with(
                    state,
                    steps.into_iter().map(Action::Send).collect(),
                ))
            }
            WorkflowEvent::WorkflowApprovalRequested(e) => {
                let step = Step::new(
                    "timeout",
                    WORKFLOW,
                    workflow.clone(),
                    "TimeOutWorkflow",
                    &TimeOutWorkflow {},
                )?;
                let after = Duration::from_millis(e.timeout_ms);
                Ok(Reaction::with(
                    state,
                    vec![Action::Schedule {
                        name: APPROVAL_DEADLINE.into(),
                        after,
                        step,
                    }],
                ))
            }
            WorkflowEvent::WorkflowApproved(_)
            | WorkflowEvent::WorkflowCompleted(_)
            | WorkflowEvent::WorkflowFailed(_)
            | WorkflowEvent::WorkflowTimedOut(_) => Ok(Reaction::with(
                state,
                vec![Action::Cancel {
                    name: APPROVAL_DEADLINE.into(),
                }],
            )
            .finish()),
        }
    }

    fn on_done(
        &self,
        mut state: SagaState,
        done: &StepDone,
    ) -> Result<Reaction<SagaState>, HandlerError> {
        if done.aggregate_type != GRAPH || !state.pending.remove(&done.step) {
            return Ok(Reaction::keep(state));
        }
        if !state.pending.is_empty() || state.failed || state.prepared {
            return Ok(Reaction::keep(state));
        }
        state.prepared = true;
        let workflow = state.workflow_id.clone();
        let step = match state.approval_timeout_ms {
            Some(_) => Step::new(
                "request-approval",
                WORKFLOW,
                workflow,
                "RequestWorkflowApproval",
                &RequestWorkflowApproval {},
            )?,
            None => Step::new(
                "complete",
                WORKFLOW,
                workflow,
                "CompleteWorkflow",
                &CompleteWorkflow {},
            )?,
        };
        Ok(Reaction::with(state, vec![Action::Send(step)]))
    }

    fn on_failure(
        &self,
        mut state: SagaState,
        failure: &StepFailure,
    ) -> Result<Reaction<SagaState>, HandlerError> {
        if failure.aggregate_type != GRAPH || state.failed {
            // A workflow command refused (e.g. a deadline that fired after the approval): the
            // workflow is already past it; nothing to compensate.
            return Ok(Reaction::keep(state));
        }
        state.failed = true;
        state.pending.remove(&failure.step);
        let workflow = state.workflow_id.clone();
        let step = Step::new(
            "fail",
            WORKFLOW,
            workflow,
            "FailWorkflow",
            &FailWorkflow {
                step: failure.step.clone(),
                reason: format!("{}: {}", failure.code, failure.detail),
            },
        )?;
        Ok(Reaction::with(state, vec![Action::Send(step)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::given_when;
    use serde_json::json;

    fn event(event_type: &str, version: i64, payload: serde_json::Value) -> ProcessEvent {
        crate::process::test_event(WORKFLOW, "w-1", event_type, version, payload)
    }

    fn started(approval: Option<u64>) -> ProcessEvent {
        event(
            "WorkflowStarted",
            1,
            json!({"name": "n", "graph_id": "g-1",
                   "nodes": [{"node_id": "a", "label": "A", "metadata": {}},
                             {"node_id": "b", "label": "B", "metadata": {}}],
                   "edges": [{"edge_id": "e1", "source": "a", "target": "b"}],
                   "concepts": [{"node_id": "a", "coordinates": [0.5]}],
                   "approval_timeout_ms": approval}),
        )
    }

    fn done(step: &str) -> StepDone {
        StepDone {
            step: step.into(),
            command_id: uuid::Uuid::nil(),
            aggregate_type: GRAPH.into(),
            aggregate_id: "g-1".into(),
            command: "X".into(),
            version: 1,
        }
    }

    fn keys(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Send(s) => format!("send {} {}", s.key, s.command),
                Action::Schedule { name, step, .. } => format!("schedule {name} {}", step.command),
                Action::Cancel { name } => format!("cancel {name}"),
            })
            .collect()
    }

    #[test]
    fn given_nothing_when_a_workflow_starts_then_its_graph_is_prepared_in_order() {
        let r = given_when(&WorkflowSaga, &[], &started(None)).unwrap();
        assert_eq!(
            keys(&r.actions),
            [
                "send create CreateGraph",
                "send node:a AddNode",
                "send node:b AddNode",
                "send edge:e1 ConnectNodes",
                "send point:a MapConceptualPoint"
            ]
        );
        assert_eq!(r.state.pending.len(), 5);
    }

    #[test]
    fn when_the_last_graph_step_is_applied_then_the_workflow_completes_or_asks_for_approval() {
        for (approval, next) in [
            (None, "send complete CompleteWorkflow"),
            (Some(1000), "send request-approval RequestWorkflowApproval"),
        ] {
            let mut state = given_when(&WorkflowSaga, &[], &started(approval))
                .unwrap()
                .state;
            for step in ["create", "node:a", "node:b", "edge:e1"] {
                let r = WorkflowSaga.on_done(state, &done(step)).unwrap();
                assert!(r.actions.is_empty(), "{step}: {:?}", r.actions);
                state = r.state;
            }
            let r = WorkflowSaga.on_done(state, &done("point:a")).unwrap();
            assert_eq!(keys(&r.actions), [next]);
        }
    }

    #[test]
    fn when_a_graph_step_is_refused_then_the_workflow_is_failed_once() {
        let state = given_when(&WorkflowSaga, &[], &started(None))
            .unwrap()
            .state;
        let failure = StepFailure {
            step: "edge:e1".into(),
            command_id: uuid::Uuid::nil(),
            aggregate_type: GRAPH.into(),
            aggregate_id: "g-1".into(),
            command: "ConnectNodes".into(),
            status: 422,
            code: "unknown_node".into(),
            detail: "no node".into(),
        };
        let r = WorkflowSaga.on_failure(state, &failure).unwrap();
        assert_eq!(keys(&r.actions), ["send fail FailWorkflow"]);
        let Action::Send(step) = &r.actions[0] else {
            unreachable!()
        };
        assert_eq!(step.aggregate_id, "w-1");
        assert_eq!(step.body["step"], "edge:e1");
        let again = WorkflowSaga.on_failure(r.state, &failure).unwrap();
        assert!(again.actions.is_empty());
    }

    #[test]
    fn an_approval_request_schedules_the_timeout_and_the_end_cancels_it() {
        let requested = event("WorkflowApprovalRequested", 2, json!({"timeout_ms": 1500}));
        let r = given_when(&WorkflowSaga, &[started(Some(1500))], &requested).unwrap();
        assert_eq!(keys(&r.actions), ["schedule approval TimeOutWorkflow"]);
        let Action::Schedule { after, .. } = &r.actions[0] else {
            unreachable!()
        };
        assert_eq!(*after, Duration::from_millis(1500));
        let approved = event("WorkflowApproved", 3, json!({"approver": "ada"}));
        let r = given_when(&WorkflowSaga, &[started(Some(1500)), requested], &approved).unwrap();
        assert_eq!(keys(&r.actions), ["cancel approval"]);
        assert!(r.finished);
    }
}
