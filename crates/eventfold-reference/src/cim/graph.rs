//! `Graph` (seed 003, `GraphEvent` and "Event Versioning"): a graph and its nodes, edges and
//! conceptual points. The aggregate id is the graph id.
//!
//! | state     | CreateGraph | AddNode | ConnectNodes | MapConceptualPoint |
//! |-----------|-------------|---------|--------------|--------------------|
//! | `Initial` | → `Active`  | –       | –            | –                  |
//! | `Active`  | –           | stays   | stays        | stays              |
//!
//! `GraphNodeAdded` is the seed's versioning example: v1 has `graph_id`, `node_id`, `label`; v2
//! adds `metadata` (an open JSON object), and the upcaster gives a v1 payload `{}`. Rules: node
//! and edge ids unique (`duplicate_node_id`, `duplicate_edge_id`), an edge or a point names
//! existing nodes (`unknown_node`), 1 to 16 finite coordinates (`coordinates_out_of_range`).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use eventfold_domain::{Aggregate, DomainError, EventCategory, StateMachine, Upcaster, Upcasters};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::workflow::check_coordinates;
use crate::fields::{self, MAX_NAME_CHARS, MAX_TEXT_CHARS};
use crate::registry::edge;

/// A graph, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Graph {
    /// Its id, once created.
    pub graph_id: Option<String>,
    /// Name.
    pub name: String,
    /// The workflow that prepares it, if any.
    pub workflow_id: Option<String>,
    /// Node ids.
    pub nodes: BTreeSet<String>,
    /// Edge ids.
    pub edges: BTreeSet<String>,
    /// Nodes with a conceptual point.
    pub mapped: BTreeSet<String>,
}

/// Creates graph `graph_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGraph {
    /// The graph's id (the aggregate id).
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub graph_id: String,
    /// Name.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub name: String,
    /// The workflow that prepares it, if any.
    #[serde(default)]
    pub workflow_id: Option<String>,
}

/// A graph was created (seed `GraphEvent::Created`; category domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GraphCreated {
    /// Id.
    pub graph_id: String,
    /// Name.
    pub name: String,
    /// The workflow that prepares it, if any.
    pub workflow_id: Option<String>,
}

/// Adds a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNode {
    /// Node id, unique in the graph.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub node_id: String,
    /// Label.
    #[schemars(length(max = crate::fields::MAX_TEXT_CHARS))]
    pub label: String,
    /// Open JSON metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// A node was added (seed `GraphNodeAdded`, schema v2; category domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GraphNodeAdded {
    /// The graph.
    pub graph_id: String,
    /// Node id.
    pub node_id: String,
    /// Label.
    pub label: String,
    /// Open JSON metadata (added in v2; `{}` for a v1 event).
    pub metadata: Map<String, Value>,
}

/// Connects two nodes of the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectNodes {
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

/// Two nodes were connected (seed `GraphEvent::EdgeConnected`; category domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GraphEdgeConnected {
    /// The graph.
    pub graph_id: String,
    /// Edge id.
    pub edge_id: String,
    /// Source node id.
    pub source: String,
    /// Target node id.
    pub target: String,
}

/// Places a node in conceptual space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapConceptualPoint {
    /// The node.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub node_id: String,
    /// Its coordinates (1 to 16 finite numbers).
    #[schemars(length(min = 1, max = super::workflow::MAX_DIMENSIONS))]
    pub coordinates: Vec<f64>,
}

/// A node was placed in conceptual space (seed `GraphEvent::ConceptualPointMapped`; category
/// domain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConceptualPointMapped {
    /// The graph.
    pub graph_id: String,
    /// The node.
    pub node_id: String,
    /// Its coordinates.
    pub coordinates: Vec<f64>,
}

/// A command to a graph; the variant name is the command name in the URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Command {
    /// See [`CreateGraph`].
    CreateGraph(CreateGraph),
    /// See [`AddNode`].
    AddNode(AddNode),
    /// See [`ConnectNodes`].
    ConnectNodes(ConnectNodes),
    /// See [`MapConceptualPoint`].
    MapConceptualPoint(MapConceptualPoint),
}

impl Command {
    /// The command names, in declaration order.
    pub const NAMES: &'static [&'static str] = &[
        "CreateGraph",
        "AddNode",
        "ConnectNodes",
        "MapConceptualPoint",
    ];
}

eventfold_domain::domain_events! {
    /// An event of a graph; it serializes to its payload only.
    pub enum Event for "Graph" {
        /// See [`GraphCreated`].
        GraphCreated,
        /// See [`GraphNodeAdded`].
        GraphNodeAdded,
        /// See [`GraphEdgeConnected`].
        GraphEdgeConnected,
        /// See [`ConceptualPointMapped`].
        ConceptualPointMapped,
    }
    category: |_| EventCategory::Domain,
    upcasters: upcasters(),
}

static UPCASTERS: LazyLock<Upcasters> = LazyLock::new(|| {
    Upcasters::default()
        .with(Upcaster::new("GraphNodeAdded", 1).default_value("metadata", json!({})))
});

/// The steps that bring older graph events to the latest schema version.
pub fn upcasters() -> &'static Upcasters {
    &UPCASTERS
}

const CREATED: &[&str] = &["GraphCreated"];
const ADDED: &[&str] = &["GraphNodeAdded"];
const CONNECTED: &[&str] = &["GraphEdgeConnected"];
const MAPPED: &[&str] = &["ConceptualPointMapped"];

/// The transition table; `decide` consults it before anything else.
static MACHINE: LazyLock<StateMachine> = LazyLock::new(|| StateMachine {
    aggregate_type: Graph::TYPE,
    initial: "Initial",
    transitions: vec![
        edge("Initial", "CreateGraph", CREATED, "Active"),
        edge("Active", "AddNode", ADDED, "Active"),
        edge("Active", "ConnectNodes", CONNECTED, "Active"),
        edge("Active", "MapConceptualPoint", MAPPED, "Active"),
    ],
});

impl Graph {
    fn id(&self) -> String {
        self.graph_id.clone().unwrap_or_default()
    }

    fn known(&self, field: &str, node: &str) -> Result<(), DomainError> {
        if self.nodes.contains(node) {
            Ok(())
        } else {
            Err(DomainError::rule(
                "unknown_node",
                format!("{field}: no node `{node}` in this graph"),
            ))
        }
    }
}

impl Aggregate for Graph {
    const TYPE: &'static str = "Graph";
    type Command = Command;
    type Event = Event;

    fn command_names() -> &'static [&'static str] {
        Command::NAMES
    }

    fn command_name(command: &Command) -> &'static str {
        match command {
            Command::CreateGraph(_) => "CreateGraph",
            Command::AddNode(_) => "AddNode",
            Command::ConnectNodes(_) => "ConnectNodes",
            Command::MapConceptualPoint(_) => "MapConceptualPoint",
        }
    }

    fn state_name(&self) -> &'static str {
        if self.graph_id.is_some() {
            "Active"
        } else {
            "Initial"
        }
    }

    fn decide(&self, command: &Command) -> Result<Vec<Event>, DomainError> {
        if !MACHINE.allows(self.state_name(), Self::command_name(command)) {
            return Err(self.invalid(command));
        }
        match command {
            Command::CreateGraph(c) => {
                fields::required("/graph_id", &c.graph_id, MAX_NAME_CHARS)?;
                fields::required("/name", &c.name, MAX_NAME_CHARS)?;
                fields::optional("/workflow_id", c.workflow_id.as_deref(), MAX_NAME_CHARS)?;
                Ok(vec![Event::GraphCreated(GraphCreated {
                    graph_id: c.graph_id.clone(),
                    name: c.name.clone(),
                    workflow_id: c.workflow_id.clone(),
                })])
            }
            Command::AddNode(c) => {
                fields::required("/node_id", &c.node_id, MAX_NAME_CHARS)?;
                fields::text("/label", &c.label, MAX_TEXT_CHARS)?;
                fields::json_object("/metadata", &c.metadata)?;
                if self.nodes.contains(&c.node_id) {
                    return Err(DomainError::rule(
                        "duplicate_node_id",
                        format!("node `{}` exists", c.node_id),
                    ));
                }
                Ok(vec![Event::GraphNodeAdded(GraphNodeAdded {
                    graph_id: self.id(),
                    node_id: c.node_id.clone(),
                    label: c.label.clone(),
                    metadata: c.metadata.clone(),
                })])
            }
            Command::ConnectNodes(c) => {
                fields::required("/edge_id", &c.edge_id, MAX_NAME_CHARS)?;
                if self.edges.contains(&c.edge_id) {
                    return Err(DomainError::rule(
                        "duplicate_edge_id",
                        format!("edge `{}` exists", c.edge_id),
                    ));
                }
                self.known("/source", &c.source)?;
                self.known("/target", &c.target)?;
                Ok(vec![Event::GraphEdgeConnected(GraphEdgeConnected {
                    graph_id: self.id(),
                    edge_id: c.edge_id.clone(),
                    source: c.source.clone(),
                    target: c.target.clone(),
                })])
            }
            Command::MapConceptualPoint(c) => {
                self.known("/node_id", &c.node_id)?;
                check_coordinates("/coordinates", &c.coordinates)?;
                Ok(vec![Event::ConceptualPointMapped(ConceptualPointMapped {
                    graph_id: self.id(),
                    node_id: c.node_id.clone(),
                    coordinates: c.coordinates.clone(),
                })])
            }
        }
    }

    fn apply(mut self, event: &Event) -> Self {
        match event {
            Event::GraphCreated(e) => {
                self.graph_id = Some(e.graph_id.clone());
                self.name = e.name.clone();
                self.workflow_id = e.workflow_id.clone();
            }
            Event::GraphNodeAdded(e) => {
                self.nodes.insert(e.node_id.clone());
            }
            Event::GraphEdgeConnected(e) => {
                self.edges.insert(e.edge_id.clone());
            }
            Event::ConceptualPointMapped(e) => {
                self.mapped.insert(e.node_id.clone());
            }
        }
        self
    }

    fn state_machine() -> StateMachine {
        MACHINE.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventfold_domain::DomainEvent;
    use eventfold_domain::testing::given;

    fn created() -> Event {
        Event::GraphCreated(GraphCreated {
            graph_id: "g-1".into(),
            name: "prologue".into(),
            workflow_id: Some("w-1".into()),
        })
    }

    fn added(node: &str) -> Event {
        Event::GraphNodeAdded(GraphNodeAdded {
            graph_id: "g-1".into(),
            node_id: node.into(),
            label: node.to_uppercase(),
            metadata: Map::new(),
        })
    }

    fn rule(given_events: Vec<Event>, c: Command) -> &'static str {
        given::<Graph>(given_events)
            .when(c)
            .outcome()
            .expect_err("a rule error")
            .code()
    }

    fn samples() -> Vec<Command> {
        vec![
            Command::CreateGraph(CreateGraph {
                graph_id: "g-1".into(),
                name: "n".into(),
                workflow_id: None,
            }),
            Command::AddNode(AddNode {
                node_id: "a".into(),
                label: "A".into(),
                metadata: Map::new(),
            }),
            Command::ConnectNodes(ConnectNodes {
                edge_id: "e".into(),
                source: "a".into(),
                target: "a".into(),
            }),
            Command::MapConceptualPoint(MapConceptualPoint {
                node_id: "a".into(),
                coordinates: vec![1.0],
            }),
        ]
    }

    #[test]
    fn the_state_machine_agrees_with_decide_in_every_reachable_state() {
        crate::conformance::assert_state_machine_agrees_with_decide::<Graph>(&samples(), 3);
    }

    #[test]
    fn given_a_graph_when_nodes_are_added_connected_and_mapped_then_their_events() {
        let s = given::<Graph>([created(), added("a"), added("b")])
            .when(Command::ConnectNodes(ConnectNodes {
                edge_id: "e1".into(),
                source: "a".into(),
                target: "b".into(),
            }))
            .then([Event::GraphEdgeConnected(GraphEdgeConnected {
                graph_id: "g-1".into(),
                edge_id: "e1".into(),
                source: "a".into(),
                target: "b".into(),
            })]);
        assert!(s.edges.contains("e1"));
        let s = given::<Graph>([created(), added("a")])
            .when(Command::MapConceptualPoint(MapConceptualPoint {
                node_id: "a".into(),
                coordinates: vec![0.5, 0.5],
            }))
            .then([Event::ConceptualPointMapped(ConceptualPointMapped {
                graph_id: "g-1".into(),
                node_id: "a".into(),
                coordinates: vec![0.5, 0.5],
            })]);
        assert!(s.mapped.contains("a"));
    }

    #[test]
    fn refuses_an_edge_or_point_on_an_unknown_node_and_duplicate_ids() {
        let connect = |s: &str, t: &str| {
            Command::ConnectNodes(ConnectNodes {
                edge_id: "e".into(),
                source: s.into(),
                target: t.into(),
            })
        };
        assert_eq!(
            rule(vec![created(), added("a")], connect("a", "zz")),
            "unknown_node"
        );
        assert_eq!(
            rule(vec![created(), added("a")], connect("zz", "a")),
            "unknown_node"
        );
        let map = Command::MapConceptualPoint(MapConceptualPoint {
            node_id: "zz".into(),
            coordinates: vec![1.0],
        });
        assert_eq!(rule(vec![created()], map), "unknown_node");
        let add = Command::AddNode(AddNode {
            node_id: "a".into(),
            label: "A".into(),
            metadata: Map::new(),
        });
        assert_eq!(rule(vec![created(), added("a")], add), "duplicate_node_id");
        let map = Command::MapConceptualPoint(MapConceptualPoint {
            node_id: "a".into(),
            coordinates: vec![],
        });
        assert_eq!(
            rule(vec![created(), added("a")], map),
            "coordinates_out_of_range"
        );
    }

    #[test]
    fn a_v1_node_added_reads_as_v2_with_empty_metadata() {
        let v1 = json!({"graph_id": "g-1", "node_id": "a", "label": "A"});
        let e = Event::from_stored("GraphNodeAdded", 1, v1).expect("upcast");
        assert_eq!(e, added("a").clone().map_label("A"));
        assert_eq!(upcasters().latest("GraphNodeAdded"), 2);
    }

    trait Label {
        fn map_label(self, label: &str) -> Self;
    }

    impl Label for Event {
        fn map_label(self, label: &str) -> Self {
            match self {
                Event::GraphNodeAdded(mut e) => {
                    e.label = label.into();
                    Event::GraphNodeAdded(e)
                }
                other => other,
            }
        }
    }
}
