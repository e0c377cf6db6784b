//! The `eventfold` admin command, as a library so tests drive it without a process: schema
//! registration, compatibility checks, the golden corpus and local bearer tokens. Each subcommand
//! group is a module; later groups (migrate, rebuild, audit, parked) join the same [`cli::Command`] enum.
#![deny(missing_docs)]

pub mod check;
pub mod cli;
pub mod golden;
pub mod outbox;
pub mod projections;
pub mod register;
pub mod stats;
pub mod token;

use eventfold_avro::{SchemaFile, subject_for, topic_for};

/// The subject of `file` for the topic of its aggregate type.
pub fn subject_of(topic_prefix: &str, file: &SchemaFile) -> String {
    subject_for(
        &topic_for(topic_prefix, &file.aggregate_type),
        &file.fullname,
    )
}
