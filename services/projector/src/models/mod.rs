//! The read models of the reference domains, and the inboxes of their process managers.

pub mod graph;
pub mod opportunities;

/// Every read model of the reference domains, the process managers' inboxes included.
pub fn registry() -> crate::projection::Registry {
    let mut registry = crate::projection::Registry::new()
        .with(opportunities::Opportunities)
        .with(graph::Graph);
    for process in crate::process::managers::all() {
        registry = registry.with(crate::process::inbox::Inbox::new(process));
    }
    registry
}
