//! ValidateCrossReference: a validator agent (or person) judges a cross-reference; the confidence
//! moves by the seed's arithmetic and approval or rejection sets the status.

use std::collections::BTreeMap;

use eventfold_domain::DomainError;
use serde::{Deserialize, Serialize};

use super::{CrossReference, CrossReferenceStatus, Event};
use crate::fields::{self, MAX_NAME_CHARS, MAX_TEXT_CHARS};

/// A validator's verdict (the seed's `validation_result` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValidationResult {
    /// Accepted: +0.1 and status `validated`.
    Approved,
    /// Refused: −0.2 and status `rejected`.
    Rejected,
    /// Accepted with changes: confidence and status unchanged (apart from the checks' bonus).
    Modified,
    /// Passed to a higher reviewer: +0.05, status unchanged.
    Escalated,
}

impl ValidationResult {
    /// The seed's base delta for this result.
    pub fn base_delta(self) -> f64 {
        match self {
            Self::Approved => 0.1,
            Self::Rejected => -0.2,
            Self::Modified => 0.0,
            Self::Escalated => 0.05,
        }
    }
}

/// The seed's `_calculate_validation_delta`: base delta plus `(passed / total − 0.5) × 0.1` when
/// there are theological checks (so all passed adds 0.05, none passed subtracts 0.05).
pub fn validation_delta(result: ValidationResult, checks: &BTreeMap<String, bool>) -> f64 {
    let check_bonus = if checks.is_empty() {
        0.0
    } else {
        let passed = checks.values().filter(|ok| **ok).count();
        (passed as f64 / checks.len() as f64 - 0.5) * 0.1
    };
    result.base_delta() + check_bonus
}

/// The confidence after a validation: `before + delta`, clamped to `0..=1` (same operation order
/// as the seed, so the numbers match its Python bit for bit).
pub fn confidence_after(
    before: f64,
    result: ValidationResult,
    checks: &BTreeMap<String, bool>,
) -> f64 {
    (before + validation_delta(result, checks)).clamp(0.0, 1.0)
}

/// Records a validator's verdict on the cross-reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateCrossReference {
    /// Who validated, e.g. `theological_validator`.
    #[schemars(length(min = 1, max = crate::fields::MAX_NAME_CHARS))]
    pub validator_agent: String,
    /// The verdict.
    pub validation_result: ValidationResult,
    /// Why (may be empty, at most 10,000 characters).
    #[schemars(length(max = crate::fields::MAX_TEXT_CHARS))]
    pub reasoning: String,
    /// Named theological checks and whether each passed (at most 1,000).
    #[serde(default)]
    #[schemars(extend("maxProperties" = crate::fields::MAX_ITEMS, "propertyNames" = {"minLength": 1, "maxLength": crate::fields::MAX_NAME_CHARS}))]
    pub theological_checks: BTreeMap<String, bool>,
}

/// A cross-reference was validated (seed `CrossReferenceValidatedEvent`; category validation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CrossReferenceValidated {
    /// The seed's id of the cross-reference, `"{source_ref}:{target_ref}"`.
    pub cross_ref_id: String,
    /// Who validated.
    pub validator_agent: String,
    /// The verdict.
    pub validation_result: ValidationResult,
    /// Confidence before this validation.
    pub confidence_before: f64,
    /// Confidence after it (see [`confidence_after`]).
    pub confidence_after: f64,
    /// Why.
    pub reasoning: String,
    /// Named theological checks and whether each passed.
    pub theological_checks: BTreeMap<String, bool>,
    /// Status after this validation (not in the seed; what projectors store as the status).
    pub status: CrossReferenceStatus,
}

/// One entry of [`CrossReference::validation_history`] (the seed's `validation_history`; the time
/// is the event's `occurred_at`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ValidationRecord {
    /// Who validated.
    pub validator: String,
    /// The verdict.
    pub result: ValidationResult,
    /// Confidence before.
    pub confidence_before: f64,
    /// Confidence after.
    pub confidence_after: f64,
}

impl CrossReference {
    pub(super) fn validate(&self, c: &ValidateCrossReference) -> Result<Vec<Event>, DomainError> {
        fields::required("/validator_agent", &c.validator_agent, MAX_NAME_CHARS)?;
        fields::text("/reasoning", &c.reasoning, MAX_TEXT_CHARS)?;
        fields::keys("/theological_checks", c.theological_checks.keys())?;
        let status = match c.validation_result {
            ValidationResult::Approved => CrossReferenceStatus::Validated,
            ValidationResult::Rejected => CrossReferenceStatus::Rejected,
            ValidationResult::Modified | ValidationResult::Escalated => self.status,
        };
        Ok(vec![Event::CrossReferenceValidated(
            CrossReferenceValidated {
                cross_ref_id: self.cross_ref_id(),
                validator_agent: c.validator_agent.clone(),
                validation_result: c.validation_result,
                confidence_before: self.confidence,
                confidence_after: confidence_after(
                    self.confidence,
                    c.validation_result,
                    &c.theological_checks,
                ),
                reasoning: c.reasoning.clone(),
                theological_checks: c.theological_checks.clone(),
                status,
            },
        )])
    }

    pub(super) fn on_validated(mut self, e: &CrossReferenceValidated) -> Self {
        self.confidence = e.confidence_after;
        self.status = e.status;
        self.validation_history.push(ValidationRecord {
            validator: e.validator_agent.clone(),
            result: e.validation_result,
            confidence_before: e.confidence_before,
            confidence_after: e.confidence_after,
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use eventfold_domain::testing::given;
    use eventfold_domain::{Aggregate, DomainError};

    use super::super::fixtures::*;
    use super::*;
    use crate::biblos::cross_reference::Command;

    fn checks(values: &[bool]) -> BTreeMap<String, bool> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("check_{i}"), *v))
            .collect()
    }

    fn rule(c: ValidateCrossReference) -> &'static str {
        given::<CrossReference>([discovered()])
            .when(Command::ValidateCrossReference(c))
            .outcome()
            .expect_err("expected a rule error")
            .code()
    }

    #[test]
    fn approving_a_discovered_cross_reference_adds_a_tenth_and_validates_it() {
        let state = given::<CrossReference>([discovered()])
            .when(Command::ValidateCrossReference(validate(
                ValidationResult::Approved,
            )))
            .then([validated_event(
                0.5,
                0.6,
                ValidationResult::Approved,
                CrossReferenceStatus::Validated,
            )]);
        assert_eq!(state.state_name(), "Validated");
        assert_eq!(state.confidence, 0.6);
        assert_eq!(state.validation_history.len(), 1);
    }

    #[test]
    fn rejecting_subtracts_a_fifth_and_rejects_it() {
        let state = given::<CrossReference>([discovered()])
            .when(Command::ValidateCrossReference(validate(
                ValidationResult::Rejected,
            )))
            .then([validated_event(
                0.5,
                0.5 + -0.2,
                ValidationResult::Rejected,
                CrossReferenceStatus::Rejected,
            )]);
        assert_eq!(state.state_name(), "Rejected");
    }

    #[test]
    fn a_modified_verdict_keeps_status_and_confidence() {
        let state = given::<CrossReference>([discovered()])
            .when(Command::ValidateCrossReference(validate(
                ValidationResult::Modified,
            )))
            .then([validated_event(
                0.5,
                0.5,
                ValidationResult::Modified,
                CrossReferenceStatus::Discovered,
            )]);
        assert_eq!(state.state_name(), "Discovered");
    }

    #[test]
    fn an_escalation_adds_a_twentieth_and_keeps_the_status() {
        given::<CrossReference>([discovered(), validated(ValidationResult::Approved)])
            .when(Command::ValidateCrossReference(validate(
                ValidationResult::Escalated,
            )))
            .then([validated_event(
                0.6,
                0.6 + 0.05,
                ValidationResult::Escalated,
                CrossReferenceStatus::Validated,
            )]);
    }

    #[test]
    fn matches_the_seeds_python_arithmetic_with_theological_checks() {
        // Expected values printed by the seed's own formula in Python.
        use ValidationResult::*;
        let cases = [
            (0.5, Approved, checks(&[]), 0.6),
            (0.5, Approved, checks(&[true, true]), 0.65),
            (
                0.7,
                Escalated,
                checks(&[true, false, false]),
                0.7333333333333333,
            ),
            (0.35, Rejected, checks(&[false]), 0.09999999999999998),
            (0.7, Modified, checks(&[true, true, true, false]), 0.725),
        ];
        for (before, result, checks, expected) in cases {
            assert_eq!(
                confidence_after(before, result, &checks),
                expected,
                "{before} {result:?} {checks:?}"
            );
        }
    }

    #[test]
    fn clamps_the_confidence_to_zero_and_one() {
        use ValidationResult::*;
        assert_eq!(confidence_after(0.95, Approved, &checks(&[true])), 1.0);
        assert_eq!(confidence_after(0.1, Rejected, &checks(&[])), 0.0);
    }

    #[test]
    fn carries_the_theological_checks_and_their_bonus_in_the_event() {
        let mut c = validate(ValidationResult::Approved);
        c.theological_checks = checks(&[true, true]);
        let events = given::<CrossReference>([discovered()])
            .when(Command::ValidateCrossReference(c))
            .outcome()
            .unwrap();
        let Event::CrossReferenceValidated(e) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(e.confidence_after, 0.65);
        assert_eq!(e.theological_checks, checks(&[true, true]));
        assert_eq!(e.cross_ref_id, "GEN.1.1:JHN.1.1");
    }

    #[test]
    fn a_validated_cross_reference_can_be_validated_again_and_rejected() {
        let state = given::<CrossReference>([discovered(), validated(ValidationResult::Approved)])
            .when(Command::ValidateCrossReference(validate(
                ValidationResult::Rejected,
            )))
            .then([validated_event(
                0.6,
                0.6 + -0.2,
                ValidationResult::Rejected,
                CrossReferenceStatus::Rejected,
            )]);
        assert_eq!(state.validation_history.len(), 2);
    }

    #[test]
    fn a_rejected_cross_reference_can_be_approved_by_a_later_review() {
        let state = given::<CrossReference>([discovered(), validated(ValidationResult::Rejected)])
            .when(Command::ValidateCrossReference(validate(
                ValidationResult::Approved,
            )))
            .then([validated_event(
                0.5 + -0.2,
                0.5 + -0.2 + 0.1,
                ValidationResult::Approved,
                CrossReferenceStatus::Validated,
            )]);
        assert_eq!(state.state_name(), "Validated");
    }

    #[test]
    fn refuses_to_validate_before_discovery() {
        given::<CrossReference>([])
            .when(Command::ValidateCrossReference(validate(
                ValidationResult::Approved,
            )))
            .then_error(DomainError::InvalidTransition {
                state: "Initial",
                command: "ValidateCrossReference",
            });
    }

    #[test]
    fn refuses_an_empty_validator() {
        let c = ValidateCrossReference {
            validator_agent: String::new(),
            ..validate(ValidationResult::Approved)
        };
        assert_eq!(rule(c), "empty_field");
    }

    #[test]
    fn refuses_a_nul_in_the_reasoning() {
        let c = ValidateCrossReference {
            reasoning: "\u{0}".into(),
            ..validate(ValidationResult::Approved)
        };
        assert_eq!(rule(c), "nul_in_string");
    }

    #[test]
    fn refuses_reasoning_over_ten_thousand_characters() {
        let c = ValidateCrossReference {
            reasoning: "λ".repeat(MAX_TEXT_CHARS + 1),
            ..validate(ValidationResult::Approved)
        };
        assert_eq!(rule(c), "text_too_long");
    }

    #[test]
    fn accepts_empty_reasoning() {
        let c = ValidateCrossReference {
            reasoning: String::new(),
            ..validate(ValidationResult::Approved)
        };
        assert!(
            given::<CrossReference>([discovered()])
                .when(Command::ValidateCrossReference(c))
                .outcome()
                .is_ok()
        );
    }

    #[test]
    fn refuses_a_nul_in_a_theological_check_name() {
        let c = ValidateCrossReference {
            theological_checks: BTreeMap::from([("pat\u{0}ristic".to_owned(), true)]),
            ..validate(ValidationResult::Approved)
        };
        assert_eq!(rule(c), "nul_in_string");
    }

    #[test]
    fn refuses_more_than_a_thousand_theological_checks() {
        let c = ValidateCrossReference {
            theological_checks: checks(&[true; 1001]),
            ..validate(ValidationResult::Approved)
        };
        assert_eq!(rule(c), "too_many_items");
    }
}
