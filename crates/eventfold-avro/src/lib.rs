//! Avro and the schema registry: where events become bytes on their way to Kafka and back.
//!
//! It speaks the Confluent REST API through `SCHEMA_REGISTRY_URL` only, so any registry with that API
//! serves. Domain code never depends on this crate.
#![deny(missing_docs)]

pub mod registry;

pub use registry::{Compatibility, RegistryClient, RegistryError, RegistrySettings};
