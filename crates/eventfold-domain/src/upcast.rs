//! Upcasters: bring a stored or consumed payload of schema version N to the latest version, one
//! version at a time (N → N+1 → … → latest). Stored events are never rewritten; every read path
//! (hydration, projection, replay) runs the same chain through [`crate::DomainEvent::from_stored`].
//!
//! An [`Upcaster`] is the step from one version to the next of one event type, made of small
//! operations on the JSON payload: rename a field, add a field with a default, derive a new field
//! from existing ones, split a field into several, change a field's type, widen an enum, or any
//! custom function. A version below the first step, a gap in the chain or a version newer than the
//! code knows is a typed [`UpcastError`], never a panic.
//!
//! A reader that knows which fields every payload of a version has (an Avro record's) compiles the
//! path once with [`Upcasters::prepare`]: renames then happen while the fields are read, and the
//! operations the shape already decides are dropped, with the same result as [`Upcasters::upcast`].

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
                if !p.contains_key(field) {
                    p.insert(field.clone(), value.clone());
                }
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
            Op::WidenEnum { field, old_symbols } => check_symbol(p.get(field), old_symbols),
            Op::Custom { f, .. } => f(p),
        }
    }
}

/// A widened enum's value must be absent, null or one of the old symbols.
fn check_symbol(v: Option<&Value>, old_symbols: &[String]) -> Result<(), String> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if old_symbols.iter().any(|o| o == s) => Ok(()),
        Some(other) => Err(format!(
            "{other} is not one of the old symbols {old_symbols:?}"
        )),
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

    /// Compiles the path of `event_type` from `version` to the latest for payloads that carry
    /// exactly `fields` (e.g. the fields of that version's Avro record); fails like
    /// [`Upcasters::upcast`] when there is no path.
    pub fn prepare(
        &self,
        event_type: &str,
        version: u32,
        fields: &[KnownField<'_>],
    ) -> Result<PreparedUpcast, UpcastError> {
        let path = self.path(event_type, version)?;
        let mut c = Compiler::new(fields);
        for step in path.iter().flatten() {
            for op in &step.ops {
                c.add(step.from_version, op);
            }
        }
        Ok(c.finish(event_type, version + path.len() as u32))
    }
}

/// A field that every payload of one shape carries, e.g. a field of an Avro record.
#[derive(Debug, Clone, Copy)]
pub struct KnownField<'a> {
    /// The field's name.
    pub name: &'a str,
    /// Every value the field can hold, when it is an enum (`None`: any value).
    pub symbols: Option<&'a [String]>,
}

/// An upcasting path compiled by [`Upcasters::prepare`] for payloads that carry exactly a known
/// set of fields.
///
/// A reader builds the payload with [`PreparedUpcast::names`] as its field names, so renames cost
/// nothing, then calls [`PreparedUpcast::finish`]; the result is what [`Upcasters::upcast`] gives
/// for the same payload. The operations whose outcome the shape decides are gone: a rename or a
/// check of an absent field, a default or a derivation of a present one, the check of an enum
/// whose symbols are all old ones.
#[derive(Clone)]
pub struct PreparedUpcast {
    event_type: String,
    latest: u32,
    names: Vec<String>,
    actions: Vec<Action>,
}

impl fmt::Debug for PreparedUpcast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actions: Vec<String> = self.actions.iter().map(Action::describe).collect();
        f.debug_struct("PreparedUpcast")
            .field("event_type", &self.event_type)
            .field("latest", &self.latest)
            .field("names", &self.names)
            .field("actions", &actions)
            .finish()
    }
}

impl PreparedUpcast {
    /// The name each known field gets while it is read, in the order of the fields given to
    /// [`Upcasters::prepare`].
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The version of the payload after [`PreparedUpcast::finish`] (the latest).
    pub fn latest(&self) -> u32 {
        self.latest
    }

    /// Runs the rest of the path on a payload read with [`PreparedUpcast::names`].
    pub fn finish(&self, payload: &mut Payload) -> Result<(), UpcastError> {
        for a in &self.actions {
            a.kind.run(payload).map_err(|message| UpcastError::Step {
                event_type: self.event_type.clone(),
                from_version: a.from_version,
                field: a.field.clone(),
                message,
            })?;
        }
        Ok(())
    }
}

/// One operation left in a [`PreparedUpcast`], with the step and field it comes from (for errors).
#[derive(Clone)]
struct Action {
    from_version: u32,
    field: String,
    kind: Kind,
}

/// What an [`Action`] does to the payload.
#[derive(Clone)]
enum Kind {
    /// The operation as written (the shape does not decide it).
    Run(Op),
    /// A widened enum's check, on the field's name as read.
    Check {
        key: String,
        old_symbols: Vec<String>,
    },
    /// The default of a field the payload lacks.
    Insert { key: String, value: Value },
    /// The derivation of a field the payload lacks.
    Derive { key: String, f: DeriveFn },
}

impl Action {
    fn describe(&self) -> String {
        let what = match &self.kind {
            Kind::Run(_) => "run",
            Kind::Check { .. } => "check",
            Kind::Insert { .. } => "insert",
            Kind::Derive { .. } => "derive",
        };
        format!("v{} {what} {}", self.from_version, self.field)
    }
}

impl Kind {
    fn key_mut(&mut self) -> Option<&mut String> {
        match self {
            Kind::Run(_) => None,
            Kind::Check { key, .. } | Kind::Insert { key, .. } | Kind::Derive { key, .. } => {
                Some(key)
            }
        }
    }

    fn run(&self, p: &mut Payload) -> Result<(), String> {
        match self {
            Kind::Run(op) => op.run(p),
            Kind::Check { key, old_symbols } => check_symbol(p.get(key), old_symbols),
            Kind::Insert { key, value } => {
                p.insert(key.clone(), value.clone());
                Ok(())
            }
            Kind::Derive { key, f } => {
                let v = f(p)?;
                p.insert(key.clone(), v);
                Ok(())
            }
        }
    }
}

/// A field every payload has at one point of the path, while compiling a [`PreparedUpcast`].
struct Slot {
    name: String,
    symbols: Option<Vec<String>>,
}

/// Walks a path's operations over the payload's shape, building a [`PreparedUpcast`].
///
/// Renames move into the names the fields are read with until the first operation that reads
/// the payload as a whole (derive, convert, split, custom) or a rename that is bound to fail:
/// moving a rename past such an operation would change what it sees. The checks and defaults
/// before that point work on one field each, so they keep their place and take the field's name
/// as read.
struct Compiler {
    /// The fields every payload has here; the first `inputs` are the known fields.
    slots: Vec<Slot>,
    inputs: usize,
    /// False once an operation may add or remove fields nobody can name (split, custom).
    known: bool,
    /// The known fields' names as read, fixed at the first operation that reads the payload.
    names: Option<Vec<String>>,
    /// The actions, each with the slot whose name as read becomes its key (until `names` is fixed).
    actions: Vec<(Action, Option<usize>)>,
}

impl Compiler {
    fn new(fields: &[KnownField<'_>]) -> Self {
        Self {
            slots: fields
                .iter()
                .map(|f| Slot {
                    name: f.name.to_owned(),
                    symbols: f.symbols.map(<[String]>::to_vec),
                })
                .collect(),
            inputs: fields.len(),
            known: true,
            names: None,
            actions: Vec::new(),
        }
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.name == name)
    }

    /// From here on renames happen at run time: fixes the names fields are read with and the
    /// keys of the actions so far.
    fn freeze(&mut self) {
        if self.names.is_some() {
            return;
        }
        for (action, slot) in &mut self.actions {
            if let (Some(i), Some(key)) = (slot.take(), action.kind.key_mut()) {
                key.clone_from(&self.slots[i].name);
            }
        }
        self.names = Some(
            self.slots[..self.inputs]
                .iter()
                .map(|s| s.name.clone())
                .collect(),
        );
    }

    fn push(&mut self, from_version: u32, op: &Op, kind: Kind, slot: Option<usize>) {
        let slot = slot.filter(|_| self.names.is_none());
        let field = op.field().to_owned();
        self.actions.push((
            Action {
                from_version,
                field,
                kind,
            },
            slot,
        ));
    }

    fn add(&mut self, v: u32, op: &Op) {
        if !self.known {
            self.push(v, op, Kind::Run(op.clone()), None);
            return;
        }
        match op {
            Op::Rename { from, to } => {
                let Some(i) = self.find(from) else { return };
                let taken = self
                    .slots
                    .iter()
                    .enumerate()
                    .any(|(j, s)| j != i && s.name == *to);
                if taken {
                    // Refused for every payload of this shape: run it for its error.
                    self.freeze();
                    self.push(v, op, Kind::Run(op.clone()), None);
                    self.known = false;
                    return;
                }
                if self.names.is_some() {
                    self.push(v, op, Kind::Run(op.clone()), None);
                }
                self.slots[i].name.clone_from(to);
            }
            Op::Default { field, value } => {
                if self.find(field).is_none() {
                    let kind = Kind::Insert {
                        key: field.clone(),
                        value: value.clone(),
                    };
                    self.push(v, op, kind, Some(self.slots.len()));
                    self.slots.push(Slot {
                        name: field.clone(),
                        symbols: None,
                    });
                }
            }
            Op::WidenEnum { field, old_symbols } => {
                let Some(i) = self.find(field) else { return };
                let all_old = self.slots[i]
                    .symbols
                    .as_ref()
                    .is_some_and(|s| s.iter().all(|x| old_symbols.contains(x)));
                if !all_old {
                    let kind = Kind::Check {
                        key: field.clone(),
                        old_symbols: old_symbols.clone(),
                    };
                    self.push(v, op, kind, Some(i));
                }
            }
            Op::Derive { field, f } => {
                self.freeze();
                if self.find(field).is_none() {
                    let kind = Kind::Derive {
                        key: field.clone(),
                        f: f.clone(),
                    };
                    self.push(v, op, kind, None);
                    self.slots.push(Slot {
                        name: field.clone(),
                        symbols: None,
                    });
                }
            }
            Op::Convert { field, .. } => {
                self.freeze();
                self.push(v, op, Kind::Run(op.clone()), None);
                if let Some(i) = self.find(field) {
                    self.slots[i].symbols = None;
                }
            }
            Op::Split { .. } | Op::Custom { .. } => {
                self.freeze();
                self.push(v, op, Kind::Run(op.clone()), None);
                self.known = false;
            }
        }
    }

    fn finish(mut self, event_type: &str, latest: u32) -> PreparedUpcast {
        self.freeze();
        PreparedUpcast {
            event_type: event_type.to_owned(),
            latest,
            names: self.names.take().unwrap_or_default(),
            actions: self.actions.into_iter().map(|(a, _)| a).collect(),
        }
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

    /// What a reader of payloads with `fields` gets through [`Upcasters::prepare`]: `payload`'s
    /// fields read under the prepared names, then the rest of the path.
    fn through_prepared(
        u: &Upcasters,
        event_type: &str,
        version: u32,
        fields: &[KnownField<'_>],
        payload: &Value,
    ) -> Result<Value, UpcastError> {
        let prepared = u.prepare(event_type, version, fields)?;
        let mut read = Payload::new();
        for (f, name) in fields.iter().zip(prepared.names()) {
            read.insert(name.clone(), payload[f.name].clone());
        }
        prepared.finish(&mut read)?;
        Ok(Value::Object(read))
    }

    #[track_caller]
    fn assert_same_as_upcast(
        u: &Upcasters,
        event_type: &str,
        version: u32,
        fields: &[KnownField<'_>],
        payloads: &[Value],
    ) {
        for p in payloads {
            assert_eq!(
                through_prepared(u, event_type, version, fields, p),
                u.upcast(event_type, version, p.clone()),
                "{event_type} v{version} {p}"
            );
        }
    }

    fn field<'a>(name: &'a str, symbols: Option<&'a [String]>) -> KnownField<'a> {
        KnownField { name, symbols }
    }

    #[test]
    fn a_prepared_path_gives_what_upcast_gives() {
        let old: Vec<String> = vec!["a".into(), "b".into()];
        let wider: Vec<String> = vec!["a".into(), "z".into()];
        for symbols in [Some(old.as_slice()), Some(wider.as_slice()), None] {
            let v1 = [
                field("size", None),
                field("kind", symbols),
                field("name", None),
            ];
            let payloads = [
                json!({"size": 10, "kind": "a", "name": "Ada Lovelace"}),
                json!({"size": 10, "kind": "z", "name": "Ada"}),
                json!({"size": "x", "kind": "b", "name": "Ada"}),
                json!({"size": 1, "kind": null, "name": 5}),
            ];
            // Only payloads of the shape: an enum field holds one of its symbols.
            let fitting: Vec<Value> = payloads
                .into_iter()
                .filter(|p| symbols.is_none_or(|s| s.iter().any(|x| p["kind"] == x.as_str())))
                .collect();
            assert_same_as_upcast(&chain(), "Thing", 1, &v1, &fitting);
            let v1_with_confidence = [
                field("size", None),
                field("kind", symbols),
                field("name", None),
                field("confidence", None),
            ];
            assert_same_as_upcast(
                &chain(),
                "Thing",
                1,
                &v1_with_confidence,
                &[json!({"size": 1, "kind": "b", "name": "X", "confidence": 0.1})],
            );
        }
        let v2 = [
            field("size_estimate", None),
            field("kind", None),
            field("name", None),
        ];
        assert_same_as_upcast(
            &chain(),
            "Thing",
            2,
            &v2,
            &[json!({"size_estimate": 3, "kind": "c", "name": "A B"})],
        );
    }

    #[test]
    fn renames_while_reading_and_drops_what_the_shape_decides() {
        let old: Vec<String> = vec!["a".into()];
        let fields = [field("size", None), field("kind", Some(&old))];
        let u = Upcasters::default().with(
            Upcaster::new("T", 1)
                .widen_enum("kind", &["a", "b"])
                .rename("size", "size_estimate")
                .default_value("kind", json!("b"))
                .default_value("confidence", json!(0.7))
                .rename("missing", "anything"),
        );
        let p = u.prepare("T", 1, &fields).unwrap();
        assert_eq!(p.names(), ["size_estimate", "kind"]);
        assert_eq!(p.latest(), 2);
        let text = format!("{p:?}");
        assert!(
            text.contains(r#"actions: ["v1 insert confidence"]"#),
            "{text}"
        );
    }

    #[test]
    fn keeps_renames_after_an_operation_that_reads_the_payload_in_place() {
        let u = Upcasters::default().with(
            Upcaster::new("T", 1)
                .widen_enum("k", &["a"])
                .rename("k", "kind")
                .default_value("d", json!(1))
                .rename("d", "dflt")
                .derive("label", |p| Ok(json!(format!("{}-{}", p["n"], p["dflt"]))))
                .rename("n", "name")
                .convert("kind", |v| Ok(json!([v])))
                .widen_enum("name", &["x"])
                .rename("name", "label"),
        );
        let fields = [field("k", None), field("n", None)];
        let p = u.prepare("T", 1, &fields).unwrap();
        assert_eq!(p.names(), ["kind", "n"]);
        assert_same_as_upcast(
            &u,
            "T",
            1,
            &fields,
            &[
                json!({"k": "a", "n": "x"}),
                json!({"k": "b", "n": "x"}),
                json!({"k": "a", "n": "y"}),
            ],
        );
    }

    #[test]
    fn runs_everything_after_a_split_or_custom_step_as_written() {
        let u = Upcasters::default()
            .with(Upcaster::new("T", 1).custom("x", |p| {
                if let Some(v) = p.remove("a") {
                    p.insert("b".into(), v);
                }
                Ok(())
            }))
            .with(
                Upcaster::new("T", 2)
                    .rename("b", "c")
                    .default_value("a", json!(0))
                    .widen_enum("c", &["q"]),
            );
        let fields = [field("a", None)];
        assert_same_as_upcast(&u, "T", 1, &fields, &[json!({"a": "q"}), json!({"a": "r"})]);
    }

    #[test]
    fn a_prepared_rename_onto_a_present_field_fails_like_upcast() {
        let fields = [
            field("size", None),
            field("size_estimate", None),
            field("kind", None),
            field("name", None),
        ];
        assert_same_as_upcast(
            &chain(),
            "Thing",
            1,
            &fields,
            &[json!({"size": 1, "size_estimate": 2, "kind": "a", "name": "X"})],
        );
    }

    #[test]
    fn preparing_without_a_path_fails_like_upcast() {
        let err = chain().prepare("Thing", 4, &[]).unwrap_err();
        assert!(matches!(err, UpcastError::Newer { latest: 3, .. }), "{err}");
        let p = chain().prepare("Other", 1, &[field("x", None)]).unwrap();
        assert_eq!((p.names(), p.latest()), (&["x".to_owned()][..], 1));
    }
}
