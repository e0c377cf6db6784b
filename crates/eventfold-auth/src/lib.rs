//! Bearer-JWT authentication for eventfold's HTTP APIs: who is calling ([`Principal`]), from a
//! token verified against a JSON Web Key Set (RS256 or EdDSA only), by an axum middleware
//! ([`authenticate`]) and a scope check ([`require`]); plus the local Ed25519 issuer ([`LocalIssuer`])
//! that `make up` and the tests use in place of an identity provider.
//!
//! It sits in front of every service's router. It knows nothing of PostgreSQL, Kafka or Neo4j and
//! must not depend on a service.
#![deny(missing_docs)]

mod authenticator;
mod error;
mod http;
mod issuer;
mod jwks;
mod principal;
mod settings;

pub use authenticator::Authenticator;
pub use error::AuthError;
pub use http::{REALM, authenticate, bearer_token, protect, require, require_scope};
pub use issuer::{
    IssuerAlgorithm, IssuerSettings, JWKS_FILE_NAME, KEY_FILE_NAME, LocalIssuer, TokenRequest,
    default_dir, unix_now,
};
pub use principal::{ACTOR_KINDS, Principal, scope, valid_tenant};
pub use settings::{AuthMode, AuthSettings, JwksSource, JwtSettings};
