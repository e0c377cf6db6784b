//! `Workflow` (seed 003, "Mealy State Machines for Transactional Control"): a workflow that
//! prepares a graph (its nodes, edges and conceptual points, applied to the `Graph` aggregate by
//! the `workflow_saga` process manager), then completes, or waits for an approval with a
//! deadline. The aggregate id is the workflow id.
//!
//! | state              | Start    | RequestApproval      | Approve     | Complete    | Fail     | TimeOut    |
//! |--------------------|----------|----------------------|-------------|-------------|----------|------------|
//! | `Initial`          | → Running| –                    | –           | –           | –        | –          |
//! | `Running`          | –        | → AwaitingApproval   | –           | → Completed | → Failed | –          |
//! | `AwaitingApproval` | –        | –                    | → Completed | –           | → Failed | → TimedOut |
//!
//! `Completed`, `Failed` and `TimedOut` are final. Rules: a name and a graph id (`empty_field`), at
//! least one node (`no_nodes`), node and edge ids unique (`duplicate_node_id`,
//! `duplicate_edge_id`), 1 to 16 finite coordinates per conceptual point
//! (`coordinates_out_of_range`), an approval timeout of 1 ms to 1 day (`timeout_out_of_range`).
//! Whether an edge names existing nodes is the graph's rule (`unknown_node`), not the workflow's:
//! a workflow whose edge the graph refuses is failed by the saga (its compensation).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use eventfold_domain::{Aggregate, DomainError, EventCategory, StateMachine};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fields::{self, MAX_ITEMS, MAX_NAME_CHARS, MAX_TEXT_CHARS};
use crate::registry::edge;

/// Longest approval timeout: one day.
pub const MAX_APPROVAL_TIMEOUT_MS: u64 = 86_400_000;
/// Most coordinates of a conceptual point.
pub const MAX_DIMENSIONS: usize = 16;

/// A node the workflow's graph must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Node id, unique in the graph.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub node_id: String,
    /// Label.
    #[schemars(length(max = crate::fields::MAX_TEXT_CHARS))]
    pub label: String,
    /// Open JSON metadata (`GraphNodeAdded` v2).
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// An edge the workflow's graph must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// Edge id, unique in the graph.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub edge_id: String,
    /// Source node id.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub source: String,
    /// Target node id.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub target: String,
}

/// A conceptual point the workflow maps onto a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConceptSpec {
    /// The node.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub node_id: String,
    /// Its position in conceptual space (1 to 16 finite numbers).
    #[schemars(length(min = 1, max = MAX_DIMENSIONS))]
    pub coordinates: Vec<f64>,
}

/// Where a workflow stands.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatus {
    /// Not started.
    #[default]
    Initial,
    /// Its graph is being prepared.
    Running,
    /// Prepared; waiting for an approval until its deadline.
    AwaitingApproval,
    /// Done.
    Completed,
    /// A step was refused.
    Failed,
    /// Nobody approved in time.
    TimedOut,
}

/// A workflow, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Workflow {
    /// Where it stands.
    pub status: WorkflowStatus,
    /// Name.
    pub name: String,
    /// The graph it prepares.
    pub graph_id: String,
    /// Nodes, edges and points to prepare.
    pub nodes: Vec<NodeSpec>,
    /// Edges to prepare.
    pub edges: Vec<EdgeSpec>,
    /// Conceptual points to map.
    pub concepts: Vec<ConceptSpec>,
    /// Approval deadline after preparation, if one is needed.
    pub approval_timeout_ms: Option<u64>,
    /// Who approved.
    pub approver: Option<String>,
    /// Why it failed: the step and the reason.
    pub failure: Option<(String, String)>,
}

/// Starts a workflow over graph `graph_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartWorkflow {
    /// Name.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub name: String,
    /// The graph to prepare (a new `Graph` aggregate id).
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub graph_id: String,
    /// Nodes (1 to 1,000).
    #[schemars(length(min = 1, max = crate::fields::MAX_ITEMS))]
    pub nodes: Vec<NodeSpec>,
    /// Edges (at most 1,000).
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_ITEMS))]
    pub edges: Vec<EdgeSpec>,
    /// Conceptual points (at most 1,000).
    #[serde(default)]
    #[schemars(length(max = crate::fields::MAX_ITEMS))]
    pub concepts: Vec<ConceptSpec>,
    /// When set, the prepared workflow waits this long for `ApproveWorkflow`.
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_APPROVAL_TIMEOUT_MS))]
    pub approval_timeout_ms: Option<u64>,
}

/// A workflow started (category processing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkflowStarted {
    /// Name.
    pub name: String,
    /// The graph to prepare.
    pub graph_id: String,
    /// Nodes.
    pub nodes: Vec<NodeSpec>,
    /// Edges.
    pub edges: Vec<EdgeSpec>,
    /// Conceptual points.
    pub concepts: Vec<ConceptSpec>,
    /// Approval deadline, if any.
    pub approval_timeout_ms: Option<u64>,
}

/// Asks for an approval of the prepared workflow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestWorkflowApproval {}

/// The prepared workflow waits for an approval (category processing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkflowApprovalRequested {
    /// How long it waits.
    pub timeout_ms: u64,
}

/// Approves the prepared workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveWorkflow {
    /// Who approves.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub approver: String,
}

/// The workflow was approved, and is complete (category validation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkflowApproved {
    /// Who approved.
    pub approver: String,
}

/// Completes a prepared workflow that needs no approval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteWorkflow {}

/// The workflow completed (category processing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkflowCompleted {
    /// Its graph.
    pub graph_id: String,
}

/// Fails the workflow (a step was refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailWorkflow {
    /// The refused step.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub step: String,
    /// Why.
    #[schemars(length(max = crate::fields::MAX_TEXT_CHARS))]
    pub reason: String,
}

/// The workflow failed (category processing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkflowFailed {
    /// The refused step.
    pub step: String,
    /// Why.
    pub reason: String,
}

/// Ends a workflow whose approval did not come in time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeOutWorkflow {}

/// Nobody approved in time (category processing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkflowTimedOut {
    /// The timeout that passed.
    pub timeout_ms: u64,
}

/// A command to a workflow; the variant name is the command name in the URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Command {
    /// See [`StartWorkflow`].
    StartWorkflow(StartWorkflow),
    /// See [`RequestWorkflowApproval`].
    RequestWorkflowApproval(RequestWorkflowApproval),
    /// See [`ApproveWorkflow`].
    ApproveWorkflow(ApproveWorkflow),
    /// See [`CompleteWorkflow`].
    CompleteWorkflow(CompleteWorkflow),
    /// See [`FailWorkflow`].
    FailWorkflow(FailWorkflow),
    /// See [`TimeOutWorkflow`].
    TimeOutWorkflow(TimeOutWorkflow),
}

impl Command {
    /// The command names, in declaration order.
    pub const NAMES: &'static [&'static str] = &[
        "StartWorkflow",
        "RequestWorkflowApproval",
        "ApproveWorkflow",
        "CompleteWorkflow",
        "FailWorkflow",
        "TimeOutWorkflow",
    ];
}

eventfold_domain::domain_events! {
    /// An event of a workflow; it serializes to its payload only.
    pub enum Event for "Workflow" {
        /// See [`WorkflowStarted`].
        WorkflowStarted,
        /// See [`WorkflowApprovalRequested`].
        WorkflowApprovalRequested,
        /// See [`WorkflowApproved`].
        WorkflowApproved,
        /// See [`WorkflowCompleted`].
        WorkflowCompleted,
        /// See [`WorkflowFailed`].
        WorkflowFailed,
        /// See [`WorkflowTimedOut`].
        WorkflowTimedOut,
    }
    category: |e| match e {
        Event::WorkflowApproved(_) => EventCategory::Validation,
        _ => EventCategory::Processing,
    }
}

const STARTED: &[&str] = &["WorkflowStarted"];
const REQUESTED: &[&str] = &["WorkflowApprovalRequested"];
const APPROVED: &[&str] = &["WorkflowApproved"];
const COMPLETED: &[&str] = &["WorkflowCompleted"];
const FAILED: &[&str] = &["WorkflowFailed"];
const TIMED_OUT: &[&str] = &["WorkflowTimedOut"];

/// The transition table; `decide` consults it before anything else.
static MACHINE: LazyLock<StateMachine> = LazyLock::new(|| StateMachine {
    aggregate_type: Workflow::TYPE,
    initial: "Initial",
    transitions: vec![
        edge("Initial", "StartWorkflow", STARTED, "Running"),
        edge(
            "Running",
            "RequestWorkflowApproval",
            REQUESTED,
            "AwaitingApproval",
        ),
        edge("Running", "CompleteWorkflow", COMPLETED, "Completed"),
        edge("Running", "FailWorkflow", FAILED, "Failed"),
        edge("AwaitingApproval", "ApproveWorkflow", APPROVED, "Completed"),
        edge("AwaitingApproval", "FailWorkflow", FAILED, "Failed"),
        edge("AwaitingApproval", "TimeOutWorkflow", TIMED_OUT, "TimedOut"),
    ],
});

fn unique<'a>(
    field: &str,
    ids: impl Iterator<Item = &'a str>,
    code: &'static str,
) -> Result<(), DomainError> {
    let mut seen = BTreeSet::new();
    for id in ids {
        fields::required(field, id, MAX_NAME_CHARS)?;
        if !seen.insert(id) {
            return Err(DomainError::rule(
                code,
                format!("{field}: `{id}` appears twice"),
            ));
        }
    }
    Ok(())
}

/// Checks the coordinates of a conceptual point (shared with the graph's `MapConceptualPoint`).
pub(crate) fn check_coordinates(field: &str, coordinates: &[f64]) -> Result<(), DomainError> {
    if coordinates.is_empty() || coordinates.len() > MAX_DIMENSIONS {
        return Err(DomainError::rule(
            "coordinates_out_of_range",
            format!("{field} has 1 to {MAX_DIMENSIONS} numbers"),
        ));
    }
    for (i, x) in coordinates.iter().enumerate() {
        fields::finite(&format!("{field}/{i}"), *x)?;
    }
    Ok(())
}

impl Workflow {
    fn start(&self, c: &StartWorkflow) -> Result<Vec<Event>, DomainError> {
        fields::required("/name", &c.name, MAX_NAME_CHARS)?;
        fields::required("/graph_id", &c.graph_id, MAX_NAME_CHARS)?;
        if c.nodes.is_empty() {
            return Err(DomainError::rule(
                "no_nodes",
                "a workflow prepares at least one node",
            ));
        }
        fields::count("/nodes", c.nodes.len(), MAX_ITEMS)?;
        fields::count("/edges", c.edges.len(), MAX_ITEMS)?;
        fields::count("/concepts", c.concepts.len(), MAX_ITEMS)?;
        unique(
            "/nodes/node_id",
            c.nodes.iter().map(|n| n.node_id.as_str()),
            "duplicate_node_id",
        )?;
        unique(
            "/edges/edge_id",
            c.edges.iter().map(|e| e.edge_id.as_str()),
            "duplicate_edge_id",
        )?;
        for (i, n) in c.nodes.iter().enumerate() {
            fields::text(&format!("/nodes/{i}/label"), &n.label, MAX_TEXT_CHARS)?;
            fields::json_object(&format!("/nodes/{i}/metadata"), &n.metadata)?;
        }
        for (i, e) in c.edges.iter().enumerate() {
            fields::required(&format!("/edges/{i}/source"), &e.source, MAX_NAME_CHARS)?;
            fields::required(&format!("/edges/{i}/target"), &e.target, MAX_NAME_CHARS)?;
        }
        for (i, p) in c.concepts.iter().enumerate() {
            fields::required(
                &format!("/concepts/{i}/node_id"),
                &p.node_id,
                MAX_NAME_CHARS,
            )?;
            check_coordinates(&format!("/concepts/{i}/coordinates"), &p.coordinates)?;
        }
        if let Some(t) = c.approval_timeout_ms
            && !(1..=MAX_APPROVAL_TIMEOUT_MS).contains(&t)
        {
            return Err(DomainError::rule(
                "timeout_out_of_range",
                format!("/approval_timeout_ms is 1 to {MAX_APPROVAL_TIMEOUT_MS}"),
            ));
        }
        Ok(vec![Event::WorkflowStarted(WorkflowStarted {
            name: c.name.clone(),
            graph_id: c.graph_id.clone(),
            nodes: c.nodes.clone(),
            edges: c.edges.clone(),
            concepts: c.concepts.clone(),
            approval_timeout_ms: c.approval_timeout_ms,
        })])
    }

    fn request_approval(&self) -> Result<Vec<Event>, DomainError> {
        let Some(timeout_ms) = self.approval_timeout_ms else {
            return Err(DomainError::rule(
                "no_approval_needed",
                "this workflow was started without an approval timeout",
            ));
        };
        Ok(vec![Event::WorkflowApprovalRequested(
            WorkflowApprovalRequested { timeout_ms },
        )])
    }

    fn complete(&self) -> Result<Vec<Event>, DomainError> {
        if self.approval_timeout_ms.is_some() {
            return Err(DomainError::rule(
                "approval_needed",
                "this workflow completes by ApproveWorkflow",
            ));
        }
        Ok(vec![Event::WorkflowCompleted(WorkflowCompleted {
            graph_id: self.graph_id.clone(),
        })])
    }
}

impl Aggregate for Workflow {
    const TYPE: &'static str = "Workflow";
    type Command = Command;
    type Event = Event;

    fn command_names() -> &'static [&'static str] {
        Command::NAMES
    }

    fn command_name(command: &Command) -> &'static str {
        match command {
            Command::StartWorkflow(_) => "StartWorkflow",
            Command::RequestWorkflowApproval(_) => "RequestWorkflowApproval",
            Command::ApproveWorkflow(_) => "ApproveWorkflow",
            Command::CompleteWorkflow(_) => "CompleteWorkflow",
            Command::FailWorkflow(_) => "FailWorkflow",
            Command::TimeOutWorkflow(_) => "TimeOutWorkflow",
        }
    }

    fn state_name(&self) -> &'static str {
        match self.status {
            WorkflowStatus::Initial => "Initial",
            WorkflowStatus::Running => "Running",
            WorkflowStatus::AwaitingApproval => "AwaitingApproval",
            WorkflowStatus::Completed => "Completed",
            WorkflowStatus::Failed => "Failed",
            WorkflowStatus::TimedOut => "TimedOut",
        }
    }

    fn decide(&self, command: &Command) -> Result<Vec<Event>, DomainError> {
        if !MACHINE.allows(self.state_name(), Self::command_name(command)) {
            return Err(self.invalid(command));
        }
        match command {
            Command::StartWorkflow(c) => self.start(c),
            Command::RequestWorkflowApproval(_) => self.request_approval(),
            Command::ApproveWorkflow(c) => {
                fields::required("/approver", &c.approver, MAX_NAME_CHARS)?;
                Ok(vec![Event::WorkflowApproved(WorkflowApproved {
                    approver: c.approver.clone(),
                })])
            }
            Command::CompleteWorkflow(_) => self.complete(),
            Command::FailWorkflow(c) => {
                fields::required("/step", &c.step, MAX_NAME_CHARS)?;
                fields::text("/reason", &c.reason, MAX_TEXT_CHARS)?;
                Ok(vec![Event::WorkflowFailed(WorkflowFailed {
                    step: c.step.clone(),
                    reason: c.reason.clone(),
                })])
            }
            Command::TimeOutWorkflow(_) => Ok(vec![Event::WorkflowTimedOut(WorkflowTimedOut {
                timeout_ms: self.approval_timeout_ms.unwrap_or_default(),
            })]),
        }
    }

    fn apply(mut self, event: &Event) -> Self {
        match event {
            Event::WorkflowStarted(e) => {
                self.status = WorkflowStatus::Running;
                self.name = e.name.clone();
                self.graph_id = e.graph_id.clone();
                self.nodes = e.nodes.clone();
                self.edges = e.edges.clone();
                self.concepts = e.concepts.clone();
                self.approval_timeout_ms = e.approval_timeout_ms;
            }
            Event::WorkflowApprovalRequested(_) => self.status = WorkflowStatus::AwaitingApproval,
            Event::WorkflowApproved(e) => {
                self.status = WorkflowStatus::Completed;
                self.approver = Some(e.approver.clone());
            }
            Event::WorkflowCompleted(_) => self.status = WorkflowStatus::Completed,
            Event::WorkflowFailed(e) => {
                self.status = WorkflowStatus::Failed;
                self.failure = Some((e.step.clone(), e.reason.clone()));
            }
            Event::WorkflowTimedOut(_) => self.status = WorkflowStatus::TimedOut,
        }
        self
    }

    fn state_machine() -> StateMachine {
        MACHINE.clone()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use eventfold_domain::testing::given;
    use serde_json::json;

    pub(crate) fn start(approval: Option<u64>) -> StartWorkflow {
        StartWorkflow {
            name: "map the prologue".into(),
            graph_id: "g-1".into(),
            nodes: vec![
                NodeSpec {
                    node_id: "n1".into(),
                    label: "Word".into(),
                    metadata: Map::new(),
                },
                NodeSpec {
                    node_id: "n2".into(),
                    label: "Light".into(),
                    metadata: json!({"source": "JHN.1.4"}).as_object().cloned().unwrap(),
                },
            ],
            edges: vec![EdgeSpec {
                edge_id: "e1".into(),
                source: "n1".into(),
                target: "n2".into(),
            }],
            concepts: vec![ConceptSpec {
                node_id: "n1".into(),
                coordinates: vec![0.1, 0.9],
            }],
            approval_timeout_ms: approval,
        }
    }

    fn started(approval: Option<u64>) -> Event {
        let c = start(approval);
        Event::WorkflowStarted(WorkflowStarted {
            name: c.name,
            graph_id: c.graph_id,
            nodes: c.nodes,
            edges: c.edges,
            concepts: c.concepts,
            approval_timeout_ms: c.approval_timeout_ms,
        })
    }

    fn rule(given_events: Vec<Event>, c: Command) -> &'static str {
        given::<Workflow>(given_events)
            .when(c)
            .outcome()
            .expect_err("a rule error")
            .code()
    }

    fn samples() -> Vec<Command> {
        vec![
            Command::StartWorkflow(start(Some(1000))),
            Command::StartWorkflow(start(None)),
            Command::RequestWorkflowApproval(RequestWorkflowApproval {}),
            Command::ApproveWorkflow(ApproveWorkflow {
                approver: "ada".into(),
            }),
            Command::CompleteWorkflow(CompleteWorkflow {}),
            Command::FailWorkflow(FailWorkflow {
                step: "s".into(),
                reason: "r".into(),
            }),
            Command::TimeOutWorkflow(TimeOutWorkflow {}),
        ]
    }

    #[test]
    fn the_state_machine_agrees_with_decide_in_every_reachable_state() {
        crate::conformance::assert_state_machine_agrees_with_decide::<Workflow>(&samples(), 4);
    }

    #[test]
    fn given_nothing_when_started_then_running() {
        let s = given::<Workflow>([])
            .when(Command::StartWorkflow(start(None)))
            .then([started(None)]);
        assert_eq!(s.state_name(), "Running");
        assert_eq!(s.nodes.len(), 2);
    }

    #[test]
    fn given_a_running_workflow_without_approval_when_completed_then_completed() {
        let s = given::<Workflow>([started(None)])
            .when(Command::CompleteWorkflow(CompleteWorkflow {}))
            .then([Event::WorkflowCompleted(WorkflowCompleted {
                graph_id: "g-1".into(),
            })]);
        assert_eq!(s.state_name(), "Completed");
        assert_eq!(
            rule(
                vec![started(None)],
                Command::RequestWorkflowApproval(RequestWorkflowApproval {})
            ),
            "no_approval_needed"
        );
    }

    #[test]
    fn given_an_approval_timeout_when_prepared_then_it_waits_and_times_out_or_is_approved() {
        let requested =
            Event::WorkflowApprovalRequested(WorkflowApprovalRequested { timeout_ms: 2000 });
        let s = given::<Workflow>([started(Some(2000))])
            .when(Command::RequestWorkflowApproval(RequestWorkflowApproval {}))
            .then([requested.clone()]);
        assert_eq!(s.state_name(), "AwaitingApproval");
        let s = given::<Workflow>([started(Some(2000)), requested.clone()])
            .when(Command::TimeOutWorkflow(TimeOutWorkflow {}))
            .then([Event::WorkflowTimedOut(WorkflowTimedOut {
                timeout_ms: 2000,
            })]);
        assert_eq!(s.state_name(), "TimedOut");
        let s = given::<Workflow>([started(Some(2000)), requested.clone()])
            .when(Command::ApproveWorkflow(ApproveWorkflow {
                approver: "ada".into(),
            }))
            .then([Event::WorkflowApproved(WorkflowApproved {
                approver: "ada".into(),
            })]);
        assert_eq!(
            (s.state_name(), s.approver.as_deref()),
            ("Completed", Some("ada"))
        );
        assert_eq!(
            rule(
                vec![started(Some(2000))],
                Command::CompleteWorkflow(CompleteWorkflow {})
            ),
            "approval_needed"
        );
    }

    #[test]
    fn given_a_running_workflow_when_failed_then_failed_with_the_step() {
        let s = given::<Workflow>([started(None)])
            .when(Command::FailWorkflow(FailWorkflow {
                step: "connect:e1".into(),
                reason: "unknown_node".into(),
            }))
            .then([Event::WorkflowFailed(WorkflowFailed {
                step: "connect:e1".into(),
                reason: "unknown_node".into(),
            })]);
        assert_eq!(s.state_name(), "Failed");
    }

    #[test]
    fn refuses_bad_starts_with_their_codes() {
        let bad = |f: fn(&mut StartWorkflow)| {
            let mut c = start(None);
            f(&mut c);
            rule(vec![], Command::StartWorkflow(c))
        };
        assert_eq!(bad(|c| c.nodes.clear()), "no_nodes");
        assert_eq!(
            bad(|c| c.nodes[1].node_id = "n1".into()),
            "duplicate_node_id"
        );
        assert_eq!(
            bad(|c| c.edges.push(c.edges[0].clone())),
            "duplicate_edge_id"
        );
        assert_eq!(
            bad(|c| c.concepts[0].coordinates.clear()),
            "coordinates_out_of_range"
        );
        assert_eq!(
            bad(|c| c.approval_timeout_ms = Some(0)),
            "timeout_out_of_range"
        );
        assert_eq!(bad(|c| c.name.clear()), "empty_field");
    }
}
