//! The read models of the reference domains.

/// Every read model of the reference domains.
pub fn registry() -> crate::projection::Registry {
    crate::projection::Registry::new()
}
