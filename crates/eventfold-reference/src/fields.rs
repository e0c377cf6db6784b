//! Field checks shared by the reference domains: length caps, NUL characters, number ranges.
//!
//! Every check returns a [`DomainError::Rule`] with a machine-readable code (HTTP 422) and a
//! message that names the field as a JSON pointer. PostgreSQL's jsonb refuses `\u0000`, so a NUL
//! anywhere in a command (strings, map keys, nested JSON) is refused here as `nul_in_string`
//! rather than failing at append time. The HTTP body limit bounds the total size; these caps bound
//! each field.

use eventfold_domain::DomainError;
use serde_json::{Map, Value};

/// Longest free text (reasons, verse text, sentence text, error messages), in characters.
pub const MAX_TEXT_CHARS: usize = 10_000;
/// Longest name-like field (references, ids, agent and model names, map keys), in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest stack trace, in characters.
pub const MAX_STACK_TRACE_CHARS: usize = 65_536;
/// Most entries in a list or map field.
pub const MAX_ITEMS: usize = 1_000;
/// Most components in a feature vector (large embedding models have 3,072).
pub const MAX_VECTOR_LEN: usize = 4_096;
/// Deepest nesting inside an open JSON field.
pub const MAX_JSON_DEPTH: usize = 16;
/// Largest integer accepted for durations and offsets: 2^53 - 1, exact in every JSON reader and
/// within an Avro `long`.
pub const MAX_SAFE_INTEGER: u64 = 9_007_199_254_740_991;

/// Every code a reference domain's rule answers with (HTTP 422), for the OpenAPI documents; a test
/// reads the sources so a new rule cannot be missing here.
pub const RULE_CODES: &[&str] = &[
    "approval_needed",
    "bayes_factor_out_of_range",
    "confidence_out_of_range",
    "coordinates_out_of_range",
    "duplicate_edge_id",
    "duplicate_node_id",
    "duplicate_prophecy_id",
    "empty_field",
    "empty_override",
    "empty_update",
    "fractal_depth_out_of_range",
    "invalid_email",
    "invalid_language_tag",
    "nesting_too_deep",
    "no_approval_needed",
    "no_nodes",
    "no_phase",
    "no_prophecies",
    "non_finite_number",
    "nul_in_string",
    "number_out_of_range",
    "phase_mismatch",
    "probability_out_of_range",
    "readings_identical",
    "reference_out_of_range",
    "self_reference",
    "similarity_out_of_range",
    "status_transition_not_allowed",
    "status_unchanged",
    "text_too_long",
    "text_unchanged",
    "time_range_inverted",
    "timeout_out_of_range",
    "too_many_items",
    "typology_refs_mismatch",
    "unknown_node",
    "verse_mismatch",
];

/// Refuses a NUL character or more than `max` characters.
pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<(), DomainError> {
    if value.contains('\0') {
        return Err(DomainError::rule(
            "nul_in_string",
            format!("{field} contains a NUL character"),
        ));
    }
    // Byte length bounds the character count from above; count only when it might be over.
    if value.len() > max && value.chars().count() > max {
        return Err(DomainError::rule(
            "text_too_long",
            format!("{field} is longer than {max} characters"),
        ));
    }
    Ok(())
}

/// Like [`text`], and refuses an empty or blank value.
pub(crate) fn required(field: &str, value: &str, max: usize) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        return Err(DomainError::rule(
            "empty_field",
            format!("{field} must not be empty"),
        ));
    }
    text(field, value, max)
}

/// [`text`] on an optional value.
pub(crate) fn optional(field: &str, value: Option<&str>, max: usize) -> Result<(), DomainError> {
    value.map_or(Ok(()), |v| text(field, v, max))
}

/// Refuses NaN and infinities (JSON cannot carry them; a Rust caller could).
pub(crate) fn finite(field: &str, value: f64) -> Result<(), DomainError> {
    if !value.is_finite() {
        return Err(DomainError::rule(
            "non_finite_number",
            format!("{field} must be a finite number"),
        ));
    }
    Ok(())
}

/// Refuses a non-finite number or one outside `lo..=hi`, with `code`.
pub(crate) fn in_range(
    field: &str,
    value: f64,
    lo: f64,
    hi: f64,
    code: &'static str,
) -> Result<(), DomainError> {
    finite(field, value)?;
    if !(lo..=hi).contains(&value) {
        return Err(DomainError::rule(
            code,
            format!("{field} must be between {lo} and {hi}"),
        ));
    }
    Ok(())
}

/// A confidence, score or strength: finite and within `0..=1`.
pub(crate) fn unit_interval(field: &str, value: f64) -> Result<(), DomainError> {
    in_range(field, value, 0.0, 1.0, "confidence_out_of_range")
}

/// Refuses more than `max` items.
pub(crate) fn count(field: &str, len: usize, max: usize) -> Result<(), DomainError> {
    if len > max {
        return Err(DomainError::rule(
            "too_many_items",
            format!("{field} has more than {max} items"),
        ));
    }
    Ok(())
}

/// An integer that must stay exact in JSON readers and Avro (`<= 2^53 - 1`).
pub(crate) fn safe_integer(field: &str, value: u64) -> Result<(), DomainError> {
    if value > MAX_SAFE_INTEGER {
        return Err(DomainError::rule(
            "number_out_of_range",
            format!("{field} must be at most {MAX_SAFE_INTEGER}"),
        ));
    }
    Ok(())
}

/// A list of names: at most [`MAX_ITEMS`], each non-empty and at most [`MAX_NAME_CHARS`].
pub(crate) fn names(field: &str, values: &[String]) -> Result<(), DomainError> {
    count(field, values.len(), MAX_ITEMS)?;
    for (i, v) in values.iter().enumerate() {
        required(&format!("{field}/{i}"), v, MAX_NAME_CHARS)?;
    }
    Ok(())
}

/// The keys of a map: at most [`MAX_ITEMS`], each a non-empty name.
pub(crate) fn keys<'a>(
    field: &str,
    keys: impl ExactSizeIterator<Item = &'a String>,
) -> Result<(), DomainError> {
    count(field, keys.len(), MAX_ITEMS)?;
    for k in keys {
        if k.contains('\0') {
            return Err(DomainError::rule(
                "nul_in_string",
                format!("{field} has a key containing a NUL character"),
            ));
        }
        required(&child(field, k), k, MAX_NAME_CHARS)?;
    }
    Ok(())
}

/// An open JSON object: keys as in [`keys`], nested strings at most [`MAX_TEXT_CHARS`] and free of
/// NUL, arrays at most [`MAX_ITEMS`], nesting at most [`MAX_JSON_DEPTH`].
pub(crate) fn json_object(field: &str, object: &Map<String, Value>) -> Result<(), DomainError> {
    object_at(field, object, 1)
}

fn object_at(field: &str, object: &Map<String, Value>, depth: usize) -> Result<(), DomainError> {
    if depth > MAX_JSON_DEPTH {
        return Err(DomainError::rule(
            "nesting_too_deep",
            format!("{field} is nested deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    keys(field, object.keys())?;
    for (k, v) in object {
        value_at(&child(field, k), v, depth + 1)?;
    }
    Ok(())
}

fn value_at(field: &str, value: &Value, depth: usize) -> Result<(), DomainError> {
    match value {
        Value::String(s) => text(field, s, MAX_TEXT_CHARS),
        Value::Object(o) => object_at(field, o, depth),
        Value::Array(items) => {
            if depth > MAX_JSON_DEPTH {
                return Err(DomainError::rule(
                    "nesting_too_deep",
                    format!("{field} is nested deeper than {MAX_JSON_DEPTH} levels"),
                ));
            }
            count(field, items.len(), MAX_ITEMS)?;
            for (i, item) in items.iter().enumerate() {
                value_at(&format!("{field}/{i}"), item, depth + 1)?;
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// The JSON pointer of `key` below `parent` (RFC 6901 escaping).
fn child(parent: &str, key: &str) -> String {
    format!("{parent}/{}", key.replace('~', "~0").replace('/', "~1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The string literal that starts at or after `at` in `text`.
    fn literal_after(text: &str, at: usize) -> Option<&str> {
        let start = at + text[at..].find('"')? + 1;
        let end = start + text[start..].find('"')?;
        Some(&text[start..end])
    }

    fn sources(dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(std::fs::read_to_string(&path).unwrap());
            }
        }
    }

    #[test]
    fn rule_codes_name_every_rule_in_the_sources() {
        let mut texts = Vec::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut texts,
        );
        let mut found = std::collections::BTreeSet::new();
        for text in &texts {
            for (at, _) in text.match_indices("DomainError::rule(") {
                found.insert(literal_after(text, at).unwrap().to_owned());
            }
            for (at, _) in text.match_indices("_out_of_range\"") {
                let start = text[..at].rfind('"').unwrap() + 1;
                found.insert(text[start..at + "_out_of_range".len()].to_owned());
            }
        }
        found.retain(|c| {
            !c.starts_with('_') && c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_')
        });
        let listed: std::collections::BTreeSet<String> =
            RULE_CODES.iter().map(|c| c.to_string()).collect();
        assert_eq!(found, listed);
    }

    fn code(r: Result<(), DomainError>) -> &'static str {
        r.expect_err("expected a rule error").code()
    }

    #[test]
    fn refuses_a_nul_character_anywhere_in_text() {
        assert_eq!(code(text("/t", "a\u{0}b", 10)), "nul_in_string");
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(text("/t", "ééééé", 5).is_ok());
        assert_eq!(code(text("/t", "éééééé", 5)), "text_too_long");
    }

    #[test]
    fn refuses_blank_required_text() {
        assert_eq!(code(required("/t", "  ", 5)), "empty_field");
    }

    #[test]
    fn refuses_numbers_outside_the_unit_interval_and_non_finite_ones() {
        assert!(unit_interval("/c", 0.0).is_ok());
        assert!(unit_interval("/c", 1.0).is_ok());
        assert_eq!(code(unit_interval("/c", 1.01)), "confidence_out_of_range");
        assert_eq!(code(unit_interval("/c", f64::NAN)), "non_finite_number");
    }

    #[test]
    fn finds_a_nul_deep_inside_open_json_and_names_the_pointer() {
        let o = json!({"a": {"b/c": [1, "x\u{0}"]}});
        let err = json_object("/e", o.as_object().unwrap()).unwrap_err();
        assert_eq!(err.code(), "nul_in_string");
        assert!(err.to_string().contains("/e/a/b~1c/1"), "{err}");
    }

    #[test]
    fn finds_a_nul_in_a_key_of_open_json() {
        let o = json!({"ok": {"k\u{0}": 1}});
        assert_eq!(
            code(json_object("/e", o.as_object().unwrap())),
            "nul_in_string"
        );
    }

    #[test]
    fn refuses_json_nested_too_deep() {
        let mut v = json!(1);
        for _ in 0..MAX_JSON_DEPTH + 1 {
            v = json!({ "k": v });
        }
        assert_eq!(
            code(json_object("/e", v.as_object().unwrap())),
            "nesting_too_deep"
        );
    }

    #[test]
    fn refuses_integers_that_json_readers_cannot_hold_exactly() {
        assert!(safe_integer("/n", MAX_SAFE_INTEGER).is_ok());
        assert_eq!(
            code(safe_integer("/n", MAX_SAFE_INTEGER + 1)),
            "number_out_of_range"
        );
    }
}
