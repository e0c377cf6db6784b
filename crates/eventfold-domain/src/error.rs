//! Errors of the pure domain layer.

/// Why an aggregate refused a command. Every variant maps to HTTP 422 with its [`DomainError::code`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    /// The command is not allowed in the aggregate's current state.
    #[error("command {command} is not allowed in state {state}")]
    InvalidTransition {
        /// The state the aggregate is in.
        state: &'static str,
        /// The refused command.
        command: &'static str,
    },
    /// A business rule refused the command (e.g. a confidence outside 0..=1).
    #[error("{message}")]
    Rule {
        /// Machine-readable code, e.g. `confidence_out_of_range`.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
}

impl DomainError {
    /// A rule violation with a machine-readable code.
    pub fn rule(code: &'static str, message: impl Into<String>) -> Self {
        Self::Rule {
            code,
            message: message.into(),
        }
    }

    /// The machine-readable code used in problem+json responses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidTransition { .. } => "invalid_transition",
            Self::Rule { code, .. } => code,
        }
    }
}

/// A command that could not be read from its name and JSON body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The aggregate has no command of that name (HTTP 404).
    #[error("aggregate type {aggregate_type} has no command {command}")]
    UnknownCommand {
        /// The aggregate type.
        aggregate_type: &'static str,
        /// The name asked for.
        command: String,
    },
    /// The body does not fit the command's fields (HTTP 400, `pointer` names the field).
    #[error("invalid field {pointer}: {message}")]
    InvalidBody {
        /// JSON pointer of the offending field (`""` for the whole body).
        pointer: String,
        /// What is wrong with it.
        message: String,
    },
}
