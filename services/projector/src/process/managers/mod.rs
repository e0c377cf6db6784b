//! The process managers of the reference domains.

pub mod discovery;
pub mod workflows;

use std::sync::Arc;

use super::Process;

/// Every process manager of the reference domains.
pub fn all() -> Vec<Arc<dyn Process>> {
    vec![
        Arc::new(discovery::CrossReferenceDiscovery::default()),
        Arc::new(workflows::WorkflowSaga),
    ]
}
