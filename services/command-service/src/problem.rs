//! RFC 9457 problem details (`application/problem+json`) with a machine-readable `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use eventfold_domain::{CommandError, DomainError};
use eventfold_postgres::HandleError;
use serde_json::{Value, json};

/// An error answer: status, stable code, human detail and extra members.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    detail: String,
    extra: serde_json::Map<String, Value>,
}

impl Problem {
    /// A problem with `status`, machine-readable `code` and `detail`.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            extra: serde_json::Map::new(),
        }
    }

    /// Adds an extension member (e.g. `current_version`).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// A field error: 400 naming the field by JSON pointer (also in `errors[]`).
    pub fn field(code: &'static str, pointer: &str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let errors = json!([{ "pointer": pointer, "detail": detail }]);
        Self::new(StatusCode::BAD_REQUEST, code, detail)
            .with("pointer", pointer)
            .with("errors", errors)
    }

    /// 404 for something that does not exist.
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    /// 400 for a bad header or query parameter.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert(
            "type".into(),
            format!(
                "https://eventfold.dev/problems/{}",
                self.code.replace('_', "-")
            )
            .into(),
        );
        body.insert(
            "title".into(),
            self.status
                .canonical_reason()
                .unwrap_or("Error")
                .to_owned()
                .into(),
        );
        body.insert("status".into(), self.status.as_u16().into());
        body.insert("detail".into(), self.detail.into());
        body.insert("code".into(), self.code.into());
        body.extend(self.extra);
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<CommandError> for Problem {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::UnknownCommand { .. } => {
                Self::not_found("unknown_command", e.to_string())
            }
            CommandError::InvalidBody { pointer, message } => {
                Self::field("invalid_field", &pointer, message)
            }
        }
    }
}

impl From<HandleError> for Problem {
    fn from(e: HandleError) -> Self {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        match e {
            HandleError::Domain(DomainError::InvalidTransition { state, command }) => Self::new(
                unprocessable,
                "invalid_transition",
                format!("{command} is not allowed in state {state}"),
            )
            .with("state", state)
            .with("command", command),
            HandleError::Domain(DomainError::Rule { code, message }) => {
                Self::new(unprocessable, code, message)
            }
            HandleError::Invalid { code, message } => Self::new(unprocessable, code, message),
            HandleError::Conflict { current_version } => Self::new(
                StatusCode::CONFLICT,
                "version_conflict",
                format!("the aggregate is at version {current_version}"),
            )
            .with("current_version", current_version),
            HandleError::IdempotencyMismatch(id) => Self::new(
                unprocessable,
                "idempotency_key_reused",
                format!("command id {id} was already used for a different request"),
            ),
            HandleError::CorruptEvent { .. } => {
                tracing::error!(error = %e, "stored event cannot be read");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "corrupt_event",
                    e.to_string(),
                )
            }
            HandleError::Database(ref db) => {
                tracing::warn!(error = %db, "event store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the event store is unavailable; retry with the same Idempotency-Key",
                )
            }
        }
    }
}

impl From<sqlx::Error> for Problem {
    fn from(e: sqlx::Error) -> Self {
        HandleError::Database(e).into()
    }
}
