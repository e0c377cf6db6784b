//! The read models of the reference domains.

pub mod graph;
pub mod opportunities;

/// Every read model of the reference domains.
pub fn registry() -> crate::projection::Registry {
    crate::projection::Registry::new()
        .with(opportunities::Opportunities)
        .with(graph::Graph)
}
