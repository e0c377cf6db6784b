//! The verified caller, and the scopes it may hold.

use std::collections::BTreeSet;

/// The scopes eventfold's APIs check.
pub mod scope {
    /// Send commands to the command service.
    pub const COMMANDS_WRITE: &str = "commands:write";
    /// Read aggregates' state, history and event chains.
    pub const EVENTS_READ: &str = "events:read";
    /// Query the read models.
    pub const READ_MODELS_READ: &str = "read-models:read";
    /// Operator endpoints (parked events, rebuilds, outbox).
    pub const ADMIN: &str = "admin";
    /// Act on behalf of another actor (e.g. a system forwarding a user's command).
    pub const IMPERSONATE: &str = "impersonate";
    /// Every scope, in a stable order.
    pub const ALL: [&str; 5] = [
        COMMANDS_WRITE,
        EVENTS_READ,
        READ_MODELS_READ,
        ADMIN,
        IMPERSONATE,
    ];
}

/// Who is calling, from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`.
    pub subject: String,
    /// `user`, `agent` or `system`.
    pub actor_kind: String,
    /// The tenant the caller acts in.
    pub tenant: String,
    /// The scopes granted.
    pub scopes: BTreeSet<String>,
}

/// The actor kinds a token may name.
pub const ACTOR_KINDS: [&str; 3] = ["user", "agent", "system"];

impl Principal {
    /// True when the principal was granted `scope`.
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// The principal `AUTH_MODE=disabled` gives every request: a user of tenant `default` holding
    /// every scope except `impersonate`.
    pub fn anonymous() -> Self {
        Self {
            subject: "anonymous".into(),
            actor_kind: "user".into(),
            tenant: "default".into(),
            scopes: scope::ALL
                .iter()
                .filter(|s| **s != scope::IMPERSONATE)
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

/// True for a tenant id of 1-64 characters of `A-Z a-z 0-9 - _ .`.
pub fn valid_tenant(tenant: &str) -> bool {
    (1..=64).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// True for a subject of 1-128 characters.
pub fn valid_subject(subject: &str) -> bool {
    (1..=128).contains(&subject.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_anonymous_principal_holds_every_scope_but_impersonate() {
        let p = Principal::anonymous();
        assert_eq!(
            (p.subject.as_str(), p.tenant.as_str()),
            ("anonymous", "default")
        );
        assert_eq!(p.actor_kind, "user");
        for s in [
            scope::COMMANDS_WRITE,
            scope::EVENTS_READ,
            scope::READ_MODELS_READ,
            scope::ADMIN,
        ] {
            assert!(p.has(s), "{s}");
        }
        assert!(!p.has(scope::IMPERSONATE));
    }

    #[test]
    fn tenants_are_short_and_of_a_safe_alphabet() {
        assert!(valid_tenant("acme-01_eu.west"));
        assert!(valid_tenant(&"t".repeat(64)));
        assert!(!valid_tenant(""));
        assert!(!valid_tenant(&"t".repeat(65)));
        assert!(!valid_tenant("acme/eu"));
        assert!(!valid_tenant("acme eu"));
        assert!(!valid_tenant("ácme"));
    }

    #[test]
    fn subjects_are_one_to_128_characters() {
        assert!(valid_subject("a"));
        assert!(valid_subject(&"é".repeat(128)));
        assert!(!valid_subject(""));
        assert!(!valid_subject(&"a".repeat(129)));
    }
}
