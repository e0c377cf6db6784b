//! Process plumbing shared by the three eventfold services: environment settings, `tracing` setup,
//! the SIGTERM/SIGINT shutdown signal, the ops HTTP endpoints (`/healthz`, `/readyz`, `/metrics`)
//! and the server that runs a service's public and admin listeners.
//!
//! It knows nothing of PostgreSQL, Kafka or Neo4j: services register their own readiness checks.
#![deny(missing_docs)]

pub mod limits;
pub mod openapi;
pub mod ops;
pub mod problem;
mod serve;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use limits::RequestLimits;
pub use ops::{Ops, ReadinessCheck, Routes, Server};
pub use problem::problem;
pub use settings::{Env, ServiceSettings, SettingsError};
pub use shutdown::Shutdown;
