//! The axum side: the authentication middleware, the scope check and the `Principal` extractor,
//! answering RFC 9457 problems with RFC 6750 `WWW-Authenticate` challenges.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use eventfold_runtime::problem;

use crate::authenticator::Authenticator;
use crate::error::AuthError;
use crate::principal::Principal;

/// The realm named in every challenge.
pub const REALM: &str = "eventfold";

/// axum middleware: reads `Authorization: Bearer <jwt>`, verifies it and puts the [`Principal`]
/// in the request extensions; refuses with 401 (503 when the key set is unreachable). Disabled
/// mode inserts [`Principal::anonymous`] and never refuses.
///
/// Wire it with `axum::middleware::from_fn_with_state(authenticator, authenticate)`.
pub async fn authenticate(
    State(auth): State<Authenticator>,
    mut req: Request,
    next: Next,
) -> Response {
    let principal = if auth.disabled() {
        Principal::anonymous()
    } else {
        let verified = match bearer_token(req.headers()) {
            Ok(token) => auth.verify(token).await,
            Err(e) => Err(e),
        };
        match verified {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(code = e.code(), error = %e, "request refused");
                return e.into_response();
            }
        }
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// `Ok` when `principal` holds `scope`, else a 403 `insufficient_scope` problem naming it.
// The signature the handlers want (`require(&p, scope)?` in a handler returning `Response`).
#[allow(clippy::result_large_err)]
pub fn require(principal: &Principal, scope: &str) -> Result<(), Response> {
    if principal.has(scope) {
        return Ok(());
    }
    let mut response = problem(
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        format!("this request needs the scope {scope}"),
    );
    let challenge = format!(
        "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"",
        quotable(scope)
    );
    set_challenge(&mut response, &challenge);
    Err(response)
}

/// axum middleware after [`authenticate`]: refuses with 403 unless the caller holds the scope
/// given as state. Wire it on a route with
/// `.route_layer(axum::middleware::from_fn_with_state(scope::ADMIN, require_scope))`.
pub async fn require_scope(
    State(scope): State<&'static str>,
    req: Request,
    next: Next,
) -> Response {
    let Some(principal) = req.extensions().get::<Principal>() else {
        return AuthError::MissingToken.into_response();
    };
    match require(principal, scope) {
        Ok(()) => next.run(req).await,
        Err(refused) => refused,
    }
}

/// `router` with every route behind [`authenticate`] and [`require_scope`] (`scope`); unknown
/// routes keep answering 404 without a token.
pub fn protect(router: axum::Router, auth: Authenticator, scope: &'static str) -> axum::Router {
    router
        .route_layer(axum::middleware::from_fn_with_state(scope, require_scope))
        .route_layer(axum::middleware::from_fn_with_state(auth, authenticate))
}

/// The token of an `Authorization: Bearer` header (scheme case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthError::MissingToken);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("Authorization header is not ASCII".into()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => match token.trim() {
            "" => Err(AuthError::Malformed("empty bearer token".into())),
            token => Ok(token),
        },
        _ if value.eq_ignore_ascii_case("bearer") => {
            Err(AuthError::Malformed("empty bearer token".into()))
        }
        _ => Err(AuthError::MissingToken),
    }
}

impl IntoResponse for AuthError {
    /// The problem+json answer for a refused request, with its challenge.
    fn into_response(self) -> Response {
        let detail = match &self {
            // The cause (a path, a URL, a network error) is logged, never echoed.
            Self::JwksUnavailable(_) | Self::IssuerKey(_) => {
                tracing::warn!(error = %self, "cannot verify tokens");
                "the token cannot be verified now; try again later".to_owned()
            }
            _ => self.to_string(),
        };
        let mut response = problem(self.status(), self.code(), detail.clone());
        match self {
            Self::MissingToken => {
                set_challenge(&mut response, &format!("Bearer realm=\"{REALM}\""))
            }
            _ if self.status() == StatusCode::UNAUTHORIZED => set_challenge(
                &mut response,
                &format!(
                    "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                    quotable(&detail)
                ),
            ),
            _ => {}
        }
        response
    }
}

/// Handlers take `principal: Principal`; it is refused with 401 when [`authenticate`] did not run.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| AuthError::MissingToken.into_response())
    }
}

fn set_challenge(response: &mut Response, challenge: &str) {
    if let Ok(value) = HeaderValue::from_str(challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
}

/// `text` made safe inside a quoted-string: visible ASCII without `"` and `\`.
fn quotable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}
