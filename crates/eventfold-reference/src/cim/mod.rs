//! Seed 003 (CIM): transactional behaviour in Mealy state machine aggregates.
//!
//! - [`workflow::Workflow`]: a workflow over one graph, from its start through the graph's
//!   preparation (by the `workflow_saga` process manager) to completion, approval, failure or a
//!   timed-out approval.
//! - [`graph::Graph`]: the seed's `GraphEvent`s — a graph created, nodes added (`GraphNodeAdded`
//!   v1 → v2, the seed's versioning example: v2 adds `metadata`), edges connected and conceptual
//!   points mapped onto nodes. The seed lists `ConceptualPointMapped` among the graph's events,
//!   so the concept mapping lives in the graph aggregate rather than in one of its own.

pub mod graph;
pub mod workflow;
