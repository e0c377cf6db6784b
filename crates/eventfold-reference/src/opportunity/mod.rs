//! The AI Opportunity Browser (seed 002): opportunities and users, the domain whose events prove
//! schema evolution. Both aggregates write their latest schema version and read every older one
//! through their upcasters ([`opportunity::upcasters`], [`user::upcasters`]).
//!
//! Versions: the seed numbers event versions `"1.0"`, `"1.1"`, `"2.0"`; eventfold stores an integer
//! `schema_version` that counts schema changes of one event type. The mapping is:
//!
//! | event type | seed version | `schema_version` |
//! |---|---|---|
//! | `OpportunityCreated`, `OpportunityUpdated` | 1.0 / 2.0 | 1 / 2 |
//! | `UserRegistered`, `UserProfileUpdated` | 1.0 / 1.1 | 1 / 2 |
//! | `OpportunityValidated`, `OpportunityArchived`, `UserDeactivated` | 1.0 | 1 |

#[allow(clippy::module_inception)]
// `opportunity::opportunity` names the aggregate inside its domain.
pub mod opportunity;
pub mod user;
