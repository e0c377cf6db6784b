//! Process plumbing shared by the three eventfold services: environment settings, `tracing` setup,
//! the SIGTERM/SIGINT shutdown signal and the ops HTTP endpoints (`/healthz`, `/readyz`, `/metrics`).
//!
//! It knows nothing of PostgreSQL, Kafka or Neo4j: services register their own readiness checks.
#![deny(missing_docs)]

pub mod limits;
pub mod ops;
pub mod problem;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use limits::RequestLimits;
pub use ops::Server;
pub use ops::{Ops, ReadinessCheck};
pub use problem::problem;
pub use settings::{Env, ServiceSettings, SettingsError};
pub use shutdown::Shutdown;
