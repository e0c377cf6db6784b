//! Avro and the schema registry: where events become bytes on their way to Kafka and back.
//!
//! - [`catalog`]: the local schemas (`schemas/<AggregateType>/<EventType>.v<N>.avsc`), embedded at
//!   build time.
//! - [`plan`]: the Avro body of a record read and written straight from and to the event's JSON
//!   payload (open JSON fields travel as JSON text).
//! - [`codec`]: the Confluent wire format (magic byte, schema id, body), TopicRecordNameStrategy
//!   subjects, schema ids looked up (never registered) and cached, typed errors (a registry outage
//!   is the only retryable one; a schema not registered and refused credentials are configuration
//!   errors).
//! - [`registry`]: registry settings and the REST calls beyond encoding (registration for
//!   `eventfold schemas register`, compatibility, probes).
//!
//! It speaks the Confluent REST API through `SCHEMA_REGISTRY_URL` only, so any registry with that API
//! serves. Domain code never depends on this crate; this crate depends on `eventfold-domain` only
//! for upcasting ([`eventfold_domain::DomainEvent::from_stored`], and
//! [`eventfold_domain::Upcasters::prepare`] to upcast while reading).
#![deny(missing_docs)]

pub mod catalog;
pub mod codec;
pub mod plan;
pub mod registry;

pub use catalog::{Catalog, CatalogError, SchemaFile};
pub use codec::{AvroCodec, CodecError, Decoded, subject_for, topic_for};
pub use registry::{
    Compatibility, CompatibilityReport, RegistryClient, RegistryError, RegistrySettings,
    SubjectSchema,
};
