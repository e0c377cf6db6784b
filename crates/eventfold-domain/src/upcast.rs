//! Upcasters: bring a stored or consumed payload of schema version N to the latest version, one
//! version at a time (N → N+1 → … → latest). Stored events are never rewritten; every read path
//! (hydration, projection, replay) runs the same chain through [`crate::DomainEvent::from_stored`].
//!
//! An [`Upcaster`] is the step from one version to the next of one event type, made of small
//! operations on the JSON payload: rename a field, add a field with a default, derive a new field
//! from existing ones, split a field into several, change a field's type, widen an enum, or any
//! custom function. A version below the first step, a gap in the chain or a version newer than the
//! code knows is a typed [`UpcastError`], never a panic.

use std::fmt;
use std::sync::Arc;

use serde_json::map::Entry;
use serde_json::{Map, Value};

/// A JSON payload being upcast (always an object).
pub type Payload = Map<String, Value>;

/// Why a payload could not be brought to the latest version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpcastError {
    /// No chain of upcasters leads from `version` to `latest` (version 0, or a missing step).
    #[error("{event_type} v{version}: no upcaster path to v{latest} (missing step v{missing}→v{})", missing + 1)]
    NoPath {
        /// Event type.
        event_type: String,
        /// The stored version.
        version: u32,
        /// The latest version this build knows.
        latest: u32,
        /// The first version without a step to the next one.
        missing: u32,
    },
    /// The payload was written by a newer build than this one.
    #[error("{event_type} v{version} is newer than the latest version v{latest} this build knows")]
    Newer {
        /// Event type.
        event_type: String,
        /// The stored version.
        version: u32,
        /// The latest version this build knows.
        latest: u32,
    },
    /// The payload is not a JSON object.
    #[error("{event_type} v{version}: payload is not a JSON object")]
    NotAnObject {
        /// Event type.
        event_type: String,
        /// The stored version.
        version: u32,
    },
    /// One operation of a step refused the payload (e.g. a value outside the old enum).
    #[error("{event_type} v{from_version}→v{}: field {field}: {message}", from_version + 1)]
    Step {
        /// Event type.
        event_type: String,
        /// Version the failing step starts from.
        from_version: u32,
        /// The field the operation works on.
        field: String,
        /// What is wrong.
        message: String,
    },
}

type DeriveFn = Arc<dyn Fn(&Payload) -> Result<Value, String> + Send + Sync>;
type ConvertFn = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;
type SplitFn = Arc<dyn Fn(Value) -> Result<Vec<(String, Value)>, String> + Send + Sync>;
type CustomFn = Arc<dyn Fn(&mut Payload) -> Result<(), String> + Send + Sync>;

/// One operation of an upcasting step.
#[derive(Clone)]
enum Op {
    Rename {
        from: String,
        to: String,
    },
    Default {
        field: String,
        value: Value,
    },
    Derive {
        field: String,
        f: DeriveFn,
    },
    Split {
        field: String,
        f: SplitFn,
    },
    Convert {
        field: String,
        f: ConvertFn,
    },
    WidenEnum {
        field: String,
        old_symbols: Vec<String>,
    },
    Custom {
        label: String,
        f: CustomFn,
    },
}

impl Op {
    fn field(&self) -> &str {
        match self {
            Op::Rename { from: field, .. }
            | Op::Default { field, .. }
            | Op::Derive { field, .. }
            | Op::Split { field, .. }
            | Op::Convert { field, .. }
            | Op::WidenEnum { field, .. }
            | Op::Custom { label: field, .. } => field,
        }
    }

    fn run(&self, p: &mut Payload) -> Result<(), String> {
        match self {
            Op::Rename { from, to } => {
                if let Some(v) = p.remove(from) {
                    match p.entry(to.clone()) {
                        Entry::Vacant(slot) => {
                            slot.insert(v);
                        }
                        Entry::Occupied(_) => {
                            return Err(format!("cannot rename to {to}: it is already present"));
                        }
                    }
                }
                Ok(())
            }
            Op::Default { field, value } => {
                p.entry(field.clone()).or_insert_with(|| value.clone());
                Ok(())
            }
            Op::Derive { field, f } => {
                if !p.contains_key(field) {
                    let v = f(p)?;
                    p.insert(field.clone(), v);
                }
                Ok(())
            }
            Op::Split { field, f } => {
                if let Some(v) = p.remove(field) {
                    for (k, v) in f(v)? {
                        p.insert(k, v);
                    }
                }
                Ok(())
            }
            Op::Convert { field, f } => {
                if let Some(v) = p.remove(field) {
                    p.insert(field.clone(), f(v)?);
                }
                Ok(())
            }
            Op::WidenEnum { field, old_symbols } => match p.get(field) {
                None | Some(Value::Null) => Ok(()),
                Some(Value::String(s)) if old_symbols.iter().any(|o| o == s) => Ok(()),
                Some(other) => Err(format!(
                    "{other} is not one of the old symbols {old_symbols:?}"
                )),
            },
            Op::Custom { f, .. } => f(p),
        }
    }
}

/// The step from version `from_version` to `from_version + 1` of one event type.
#[derive(Clone)]
pub struct Upcaster {
    event_type: String,
    from_version: u32,
    ops: Vec<Op>,
}

impl fmt::Debug for Upcaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops: Vec<&str> = self.ops.iter().map(Op::field).collect();
        f.debug_struct("Upcaster")
            .field("event_type", &self.event_type)
            .field("from_version", &self.from_version)
            .field("fields", &ops)
            .finish()
    }
}

impl Upcaster {
    /// A step of `event_type` from `from_version` to `from_version + 1`, with no operation yet.
    pub fn new(event_type: impl Into<String>, from_version: u32) -> Self {
        Self {
            event_type: event_type.into(),
            from_version,
            ops: Vec::new(),
        }
    }

    /// The event type this step upcasts.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The version this step starts from.
    pub fn from_version(&self) -> u32 {
        self.from_version
    }

    /// Renames field `from` to `to` (absent: nothing to do; `to` already present: error).
    pub fn rename(mut self, from: &str, to: &str) -> Self {
        self.ops.push(Op::Rename {
            from: from.into(),
            to: to.into(),
        });
        self
    }

    /// Adds `field` with `value` when the payload lacks it (a new field with a default).
    pub fn default_value(mut self, field: &str, value: Value) -> Self {
        self.ops.push(Op::Default {
            field: field.into(),
            value,
        });
        self
    }

    /// Adds `field` computed from the payload when the payload lacks it.
    pub fn derive(
        mut self,
        field: &str,
        f: impl Fn(&Payload) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Self {
        self.ops.push(Op::Derive {
            field: field.into(),
            f: Arc::new(f),
        });
        self
    }

    /// Replaces `field` by the fields `f` makes of its value (absent: nothing to do).
    pub fn split(
        mut self,
        field: &str,
        f: impl Fn(Value) -> Result<Vec<(String, Value)>, String> + Send + Sync + 'static,
    ) -> Self {
        self.ops.push(Op::Split {
            field: field.into(),
            f: Arc::new(f),
        });
        self
    }

    /// Changes the type of `field` with `f` (absent: nothing to do).
    pub fn convert(
        mut self,
        field: &str,
        f: impl Fn(Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Self {
        self.ops.push(Op::Convert {
            field: field.into(),
            f: Arc::new(f),
        });
        self
    }

    /// Declares that the enum in `field` gained symbols: every old value stays valid as is, and a
    /// value outside `old_symbols` is refused (the stored payload is not what v`from` allowed).
    pub fn widen_enum(mut self, field: &str, old_symbols: &[&str]) -> Self {
        self.ops.push(Op::WidenEnum {
            field: field.into(),
            old_symbols: old_symbols.iter().map(|s| (*s).to_owned()).collect(),
        });
        self
    }

    /// Any other change, labelled `label` in errors.
    pub fn custom(
        mut self,
        label: &str,
        f: impl Fn(&mut Payload) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.ops.push(Op::Custom {
            label: label.into(),
            f: Arc::new(f),
        });
        self
    }

    /// Runs the step on `payload`.
    pub fn apply(&self, payload: &mut Payload) -> Result<(), UpcastError> {
        for op in &self.ops {
            op.run(payload).map_err(|message| UpcastError::Step {
                event_type: self.event_type.clone(),
                from_version: self.from_version,
                field: op.field().to_owned(),
                message,
            })?;
        }
        Ok(())
    }
}

/// Every upcasting step of one aggregate's events; an event type without steps has version 1.
#[derive(Debug, Clone, Default)]
pub struct Upcasters {
    chains: Vec<Chain>,
}

/// The steps of one event type, indexed by `from_version - 1` (`None`: a missing step).
#[derive(Debug, Clone)]
struct Chain {
    event_type: String,
    steps: Vec<Option<Upcaster>>,
}

static EMPTY: Upcasters = Upcasters { chains: Vec::new() };

impl Upcasters {
    /// No steps: every event type is at version 1.
    pub fn empty() -> &'static Upcasters {
        &EMPTY
    }

    /// Adds a step; the latest version of its event type becomes at least `from_version + 1`.
    /// A step from version 0 is ignored (versions start at 1).
    pub fn with(mut self, step: Upcaster) -> Self {
        let Some(index) = (step.from_version as usize).checked_sub(1) else {
            return self;
        };
        let chain = match self
            .chains
            .iter_mut()
            .position(|c| c.event_type == step.event_type)
        {
            Some(i) => &mut self.chains[i],
            None => {
                self.chains.push(Chain {
                    event_type: step.event_type.clone(),
                    steps: Vec::new(),
                });
                self.chains.last_mut().expect("just pushed")
            }
        };
        if chain.steps.len() <= index {
            chain.steps.resize(index + 1, None);
        }
        chain.steps[index] = Some(step);
        self
    }

    fn chain(&self, event_type: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.event_type == event_type)
    }

    /// The latest schema version of `event_type` (1 when it has no step).
    pub fn latest(&self, event_type: &str) -> u32 {
        self.chain(event_type)
            .map_or(1, |c| c.steps.len() as u32 + 1)
    }

    /// Every step, by event type then version.
    pub fn steps(&self) -> impl Iterator<Item = &Upcaster> {
        self.chains.iter().flat_map(|c| c.steps.iter().flatten())
    }

    /// The steps from `version` to the latest, or why there is no such path.
    fn path(&self, event_type: &str, version: u32) -> Result<&[Option<Upcaster>], UpcastError> {
        let chain = self.chain(event_type);
        let steps = chain.map_or(&[][..], |c| c.steps.as_slice());
        let latest = steps.len() as u32 + 1;
        if version > latest {
            return Err(UpcastError::Newer {
                event_type: event_type.to_owned(),
                version,
                latest,
            });
        }
        let no_path = |missing| UpcastError::NoPath {
            event_type: event_type.to_owned(),
            version,
            latest,
            missing,
        };
        let Some(first) = (version as usize).checked_sub(1) else {
            return Err(no_path(0));
        };
        let path = &steps[first..];
        match path.iter().position(Option::is_none) {
            Some(i) => Err(no_path(version + i as u32)),
            None => Ok(path),
        }
    }

    /// Brings `payload` of `event_type` at `version` to the latest version.
    pub fn upcast(
        &self,
        event_type: &str,
        version: u32,
        payload: Value,
    ) -> Result<Value, UpcastError> {
        let path = self.path(event_type, version)?;
        if path.is_empty() {
            return Ok(payload);
        }
        let Value::Object(mut map) = payload else {
            return Err(UpcastError::NotAnObject {
                event_type: event_type.to_owned(),
                version,
            });
        };
        for step in path.iter().flatten() {
            step.apply(&mut map)?;
        }
        Ok(Value::Object(map))
    }

    /// Succeeds when a chain of steps leads from `version` to the latest version.
    pub fn check_path(&self, event_type: &str, version: u32) -> Result<(), UpcastError> {
        self.path(event_type, version).map(drop)
    }
}

/// A stored or consumed event that could not be turned into a domain event.
#[derive(Debug, thiserror::Error)]
pub enum StoredEventError {
    /// No upcaster path, or a step refused the payload.
    #[error(transparent)]
    Upcast(#[from] UpcastError),
    /// The upcast payload does not fit the event type.
    #[error("{event_type} (stored as v{version}): {source}")]
    Payload {
        /// Event type.
        event_type: String,
        /// The stored version.
        version: u32,
        /// The deserialization error.
        source: serde_json::Error,
    },
}

impl From<StoredEventError> for serde_json::Error {
    fn from(e: StoredEventError) -> Self {
        match e {
            StoredEventError::Payload { source, .. } => source,
            other => <serde_json::Error as serde::de::Error>::custom(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chain() -> Upcasters {
        Upcasters::default()
            .with(
                Upcaster::new("Thing", 1)
                    .rename("size", "size_estimate")
                    .default_value("confidence", json!(0.7))
                    .widen_enum("kind", &["a", "b"]),
            )
            .with(
                Upcaster::new("Thing", 2)
                    .split("name", |v| {
                        let s = v.as_str().ok_or("expected a string")?.to_owned();
                        let (first, last) = s.split_once(' ').unwrap_or((&s, ""));
                        Ok(vec![
                            ("first_name".into(), json!(first)),
                            ("last_name".into(), json!(last)),
                        ])
                    })
                    .convert("size_estimate", |v| {
                        v.as_i64()
                            .map(|n| json!(n.to_string()))
                            .ok_or_else(|| format!("{v} is not an integer"))
                    })
                    .derive("kind_label", |p| {
                        Ok(json!(format!("kind {}", p["kind"].as_str().unwrap_or("?"))))
                    }),
            )
    }

    #[test]
    fn brings_version_one_to_the_latest_through_every_step() {
        let out = chain()
            .upcast(
                "Thing",
                1,
                json!({"size": 10, "kind": "a", "name": "Ada Lovelace"}),
            )
            .unwrap();
        assert_eq!(
            out,
            json!({
                "size_estimate": "10", "confidence": 0.7, "kind": "a",
                "first_name": "Ada", "last_name": "Lovelace", "kind_label": "kind a"
            })
        );
    }

    #[test]
    fn keeps_a_present_value_instead_of_the_default() {
        let out = chain()
            .upcast(
                "Thing",
                1,
                json!({"size": 1, "kind": "b", "name": "X", "confidence": 0.1}),
            )
            .unwrap();
        assert_eq!(out["confidence"], 0.1);
    }

    #[test]
    fn leaves_the_latest_version_untouched() {
        let v = json!({"anything": true});
        assert_eq!(chain().upcast("Thing", 3, v.clone()).unwrap(), v);
        assert_eq!(chain().upcast("Other", 1, v.clone()).unwrap(), v);
    }

    #[test]
    fn names_the_event_versions_and_field_of_a_refused_step() {
        let err = chain()
            .upcast("Thing", 1, json!({"size": 1, "kind": "z", "name": "X"}))
            .unwrap_err();
        assert_eq!(
            err,
            UpcastError::Step {
                event_type: "Thing".into(),
                from_version: 1,
                field: "kind".into(),
                message: "\"z\" is not one of the old symbols [\"a\", \"b\"]".into(),
            }
        );
        let err = chain()
            .upcast("Thing", 2, json!({"size_estimate": "x", "name": "X"}))
            .unwrap_err();
        assert!(
            err.to_string().contains("v2→v3: field size_estimate"),
            "{err}"
        );
    }

    #[test]
    fn refuses_version_zero_a_gap_and_a_newer_version() {
        assert!(matches!(
            chain().upcast("Thing", 0, json!({})),
            Err(UpcastError::NoPath { missing: 0, .. })
        ));
        let gap = Upcasters::default().with(Upcaster::new("Gap", 2));
        assert_eq!(gap.latest("Gap"), 3);
        let err = gap.upcast("Gap", 1, json!({})).unwrap_err();
        assert_eq!(
            err,
            UpcastError::NoPath {
                event_type: "Gap".into(),
                version: 1,
                latest: 3,
                missing: 1
            }
        );
        assert!(matches!(
            chain().upcast("Thing", 4, json!({})),
            Err(UpcastError::Newer { latest: 3, .. })
        ));
    }

    #[test]
    fn refuses_a_payload_that_is_not_an_object() {
        assert!(matches!(
            chain().upcast("Thing", 1, json!([1])),
            Err(UpcastError::NotAnObject { .. })
        ));
    }

    #[test]
    fn refuses_a_rename_onto_a_present_field() {
        let err = chain()
            .upcast(
                "Thing",
                1,
                json!({"size": 1, "size_estimate": 2, "kind": "a", "name": "X"}),
            )
            .unwrap_err();
        assert!(err.to_string().contains("field size"), "{err}");
    }

    #[test]
    fn runs_a_custom_step() {
        let c = Upcasters::default().with(Upcaster::new("C", 1).custom("tags", |p| {
            p.insert("tags".into(), json!([]));
            Ok(())
        }));
        assert_eq!(c.upcast("C", 1, json!({})).unwrap(), json!({"tags": []}));
    }
}
