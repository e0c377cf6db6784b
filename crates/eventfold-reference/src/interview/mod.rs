//! The interview analyzer (seed 001): interviews, their sentences, machine analyses and the user
//! corrections that win over them.

#[allow(clippy::module_inception)] // `interview::interview` names the aggregate inside its domain.
pub mod interview;
pub mod sentence;
