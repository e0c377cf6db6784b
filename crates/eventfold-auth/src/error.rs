//! Why a token (or the issuer's key) was refused, each reason with a stable problem `code`.

use axum::http::StatusCode;

/// A refused token, an unreachable key set or an unusable issuer key.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The request has no `Authorization: Bearer` credentials.
    #[error("no bearer token")]
    MissingToken,
    /// The token is not a well-formed JWS compact serialization with JSON header and claims.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The signature does not verify with the selected key.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// The header's `alg` is not RS256/EdDSA, or differs from the key's algorithm.
    #[error("algorithm {0:?} refused")]
    AlgorithmRefused(String),
    /// No key of the set matches the token's `kid` (or, without a kid, no single key fits).
    #[error("unknown signing key {0:?}")]
    UnknownKey(String),
    /// A registered claim the token must carry is absent (`exp`, `iss`, `aud`, `sub`).
    #[error("missing claim {0:?}")]
    MissingClaim(String),
    /// The `sub` claim is not 1-128 characters.
    #[error("invalid subject")]
    BadSubject,
    /// The tenant claim is absent.
    #[error("no tenant claim")]
    NoTenant,
    /// The tenant claim is not 1-64 characters of `A-Z a-z 0-9 - _ .`.
    #[error("invalid tenant")]
    BadTenant,
    /// The actor-kind claim is not `user`, `agent` or `system`.
    #[error("invalid actor kind")]
    BadActorKind,
    /// A claim has the wrong JSON type (e.g. a scope claim that is a number).
    #[error("invalid claim {0:?}")]
    BadClaim(String),
    /// The key set could not be read or fetched (a server-side problem, not the caller's).
    #[error("key set unavailable: {0}")]
    JwksUnavailable(String),
    /// The local issuer's key pair cannot be created, read or used.
    #[error("issuer key: {0}")]
    IssuerKey(String),
}

impl AuthError {
    /// The machine-readable `code` of the problem+json answer.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::Malformed(_) => "malformed_token",
            Self::BadSignature => "bad_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::AlgorithmRefused(_) => "algorithm_refused",
            Self::UnknownKey(_) => "unknown_key",
            Self::MissingClaim(_) => "missing_claim",
            Self::BadSubject => "invalid_subject",
            Self::NoTenant => "missing_tenant",
            Self::BadTenant => "invalid_tenant",
            Self::BadActorKind => "invalid_actor_kind",
            Self::BadClaim(_) => "invalid_claim",
            Self::JwksUnavailable(_) => "jwks_unavailable",
            Self::IssuerKey(_) => "issuer_key",
        }
    }

    /// The HTTP status of the answer: 401 for the caller's credentials, 503 when the key set is
    /// unreachable (the token may be fine), 500 for an issuer-side fault.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::JwksUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::IssuerKey(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature => Self::BadSignature,
            K::ExpiredSignature => Self::Expired,
            K::ImmatureSignature => Self::NotYetValid,
            K::InvalidIssuer => Self::WrongIssuer,
            K::InvalidAudience => Self::WrongAudience,
            K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
                Self::AlgorithmRefused("unsupported".into())
            }
            K::MissingRequiredClaim(c) => Self::MissingClaim(c.clone()),
            K::InvalidClaimFormat(c) => Self::BadClaim(c.clone()),
            _ => Self::Malformed(e.to_string()),
        }
    }
}
