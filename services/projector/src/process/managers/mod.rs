//! The process managers of the reference domains.

pub mod discovery;

use std::sync::Arc;

use super::Process;

/// Every process manager of the reference domains.
pub fn all() -> Vec<Arc<dyn Process>> {
    vec![Arc::new(discovery::CrossReferenceDiscovery::default())]
}
