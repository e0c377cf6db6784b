//! The Avro binary body of one record, read and written straight from and to the event's JSON
//! payload, driven by a [`Plan`] compiled once per schema.
//!
//! Mapping between Avro and the JSON payload (the shape `serde_json::to_value(event)` gives):
//! `null`, `boolean`, `int`/`long` (JSON integers), `float`/`double` (JSON numbers), `string`,
//! `array`, `map` (JSON object), `enum` (the symbol as a JSON string), `record` (JSON object with
//! exactly the record's fields), unions (the first branch whose kind fits the JSON value). A record
//! field marked `"eventfold.json": true` is a `string` carrying open JSON (enrichments, metadata…)
//! as JSON text: the payload's value is written as text and read back as JSON. `bytes`, `fixed`
//! and logical types other than the underlying primitive are not used by event schemas and are
//! refused when the plan is compiled.
//!
//! Reading never panics and never allocates more than the input can hold: a length or count
//! beyond the remaining bytes is a truncated body.

use std::collections::HashMap;

use apache_avro::Schema;
use eventfold_domain::KnownField;
use serde_json::{Map, Number, Value};

/// The field attribute that marks a `string` field as JSON text.
pub const JSON_ATTRIBUTE: &str = "eventfold.json";

/// A schema compiled for reading and writing JSON payloads.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The top-level record's fields.
    fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    Json,
    Array(Box<Node>),
    Map(Box<Node>),
    Enum(Vec<String>),
    Union(Vec<Node>),
    Record(Vec<Field>),
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    node: Node,
    default: Option<Value>,
}

/// The schema uses something event payloads cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported schema: {0}")]
pub struct PlanError(pub String);

/// A body that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset} of the body")]
pub struct BodyError {
    /// What is wrong.
    pub kind: BodyErrorKind,
    /// Byte offset in the Avro body (after the 5-byte header).
    pub offset: usize,
}

/// The ways a body can be malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyErrorKind {
    /// The body ends before the value does.
    #[error("truncated body")]
    Truncated,
    /// A variable-length integer is longer than 10 bytes.
    #[error("malformed variable-length integer")]
    BadVarint,
    /// A negative length, or an `int` out of range.
    #[error("invalid length or integer {0}")]
    BadNumber(i64),
    /// A union branch or enum index the schema does not have.
    #[error("index {0} out of range")]
    BadIndex(i64),
    /// A string that is not UTF-8.
    #[error("string is not UTF-8")]
    BadUtf8,
    /// A JSON-text field that does not hold JSON.
    #[error("JSON text field does not parse: {0}")]
    BadJson(String),
    /// A float that JSON cannot hold (NaN or infinite).
    #[error("non-finite number")]
    NonFinite,
    /// Bytes left after the record.
    #[error("{0} trailing bytes after the record")]
    Trailing(usize),
}

/// A payload that does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at {pointer}: {message}")]
pub struct PayloadError {
    /// JSON pointer of the offending value (`""` = the whole payload).
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

impl PayloadError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            pointer: String::new(),
            message: message.into(),
        }
    }

    fn under(mut self, segment: &str) -> Self {
        let escaped = segment.replace('~', "~0").replace('/', "~1");
        self.pointer = format!("/{escaped}{}", self.pointer);
        self
    }
}

impl Plan {
    /// Compiles `schema` (a record) for JSON payloads.
    pub fn compile(schema: &Schema) -> Result<Self, PlanError> {
        let mut named = HashMap::new();
        match compile(schema, &mut named)? {
            Node::Record(fields) => Ok(Self { fields }),
            _ => Err(PlanError("the top level must be a record".into())),
        }
    }

    /// The record's field names, in schema order.
    pub fn field_names(&self) -> Vec<&str> {
        self.fields.iter().map(|f| f.name.as_str()).collect()
    }

    /// The record's fields as upcasters see them ([`eventfold_domain::Upcasters::prepare`]):
    /// every decoded payload has each of them, and an enum field holds one of its symbols.
    pub fn known_fields(&self) -> Vec<KnownField<'_>> {
        self.fields
            .iter()
            .map(|f| KnownField {
                name: &f.name,
                symbols: match &f.node {
                    Node::Enum(symbols) => Some(symbols.as_slice()),
                    _ => None,
                },
            })
            .collect()
    }

    /// Writes `payload` as an Avro body onto `out`.
    pub fn encode(&self, payload: &Value, out: &mut Vec<u8>) -> Result<(), PayloadError> {
        encode_record(&self.fields, payload, out)
    }

    /// Reads a whole Avro body as a JSON payload; bytes left over are an error.
    pub fn decode(&self, body: &[u8]) -> Result<Value, BodyError> {
        self.decode_as(body, &[]).map(Value::Object)
    }

    /// Reads a whole Avro body like [`Plan::decode`], but names the record's fields `names` (in
    /// schema order, e.g. [`eventfold_domain::PreparedUpcast::names`]) instead of the schema's
    /// names; a field past the end of `names` keeps its own.
    pub fn decode_as(
        &self,
        body: &[u8],
        names: &[String],
    ) -> Result<Map<String, Value>, BodyError> {
        let mut r = Reader { buf: body, pos: 0 };
        let obj = decode_record(&self.fields, names, &mut r)?;
        if r.pos != body.len() {
            return Err(r.error(BodyErrorKind::Trailing(body.len() - r.pos)));
        }
        Ok(obj)
    }
}

fn compile(schema: &Schema, named: &mut HashMap<String, Node>) -> Result<Node, PlanError> {
    Ok(match schema {
        Schema::Null => Node::Null,
        Schema::Boolean => Node::Boolean,
        Schema::Int => Node::Int,
        Schema::Long => Node::Long,
        Schema::Float => Node::Float,
        Schema::Double => Node::Double,
        Schema::String => Node::String,
        Schema::Array(a) => Node::Array(Box::new(compile(&a.items, named)?)),
        Schema::Map(m) => Node::Map(Box::new(compile(&m.types, named)?)),
        Schema::Union(u) => Node::Union(
            u.variants()
                .iter()
                .map(|v| compile(v, named))
                .collect::<Result<_, _>>()?,
        ),
        Schema::Enum(e) => {
            let node = Node::Enum(e.symbols.clone());
            named.insert(e.name.fullname(None), node.clone());
            node
        }
        Schema::Record(r) => {
            let mut fields = Vec::with_capacity(r.fields.len());
            for f in &r.fields {
                let mut node = compile(&f.schema, named)?;
                if f.custom_attributes.get(JSON_ATTRIBUTE) == Some(&Value::Bool(true)) {
                    node = as_json(node).map_err(|()| {
                        PlanError(format!(
                            "field {} is marked {JSON_ATTRIBUTE} but is not a string",
                            f.name
                        ))
                    })?;
                }
                fields.push(Field {
                    name: f.name.clone(),
                    node,
                    default: f.default.clone(),
                });
            }
            let node = Node::Record(fields);
            named.insert(r.name.fullname(None), node.clone());
            node
        }
        Schema::Ref { name } => named
            .get(&name.fullname(None))
            .cloned()
            .ok_or_else(|| PlanError(format!("unknown or recursive type {}", name)))?,
        other => {
            return Err(PlanError(format!(
                "type {:?} is not used in event payloads",
                apache_avro::schema::SchemaKind::from(other)
            )));
        }
    })
}

/// The node for a field marked as JSON text: `string` or a union with `string`.
fn as_json(node: Node) -> Result<Node, ()> {
    match node {
        Node::String => Ok(Node::Json),
        Node::Union(branches) if branches.contains(&Node::String) => Ok(Node::Union(
            branches
                .into_iter()
                .map(|b| if b == Node::String { Node::Json } else { b })
                .collect(),
        )),
        _ => Err(()),
    }
}

fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    write_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected(what: &str, v: &Value) -> PayloadError {
    PayloadError::new(format!("expected {what}, found {}", kind(v)))
}

fn encode(node: &Node, v: &Value, out: &mut Vec<u8>) -> Result<(), PayloadError> {
    match (node, v) {
        (Node::Null, Value::Null) => {}
        (Node::Boolean, Value::Bool(b)) => out.push(u8::from(*b)),
        (Node::Int, Value::Number(n)) => {
            let i = n
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(|| PayloadError::new(format!("{n} is not a 32-bit integer")))?;
            write_long(out, i64::from(i));
        }
        (Node::Long, Value::Number(n)) => {
            let i = n
                .as_i64()
                .ok_or_else(|| PayloadError::new(format!("{n} is not a 64-bit integer")))?;
            write_long(out, i);
        }
        (Node::Float, Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(f64::NAN) as f32;
            out.extend_from_slice(&f.to_le_bytes());
        }
        (Node::Double, Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            out.extend_from_slice(&f.to_le_bytes());
        }
        (Node::String, Value::String(s)) => write_str(out, s),
        (Node::Json, v) if !v.is_null() => write_str(out, &v.to_string()),
        (Node::Enum(symbols), Value::String(s)) => {
            let i = symbols.iter().position(|x| x == s).ok_or_else(|| {
                PayloadError::new(format!("{s:?} is not one of the symbols {symbols:?}"))
            })?;
            write_long(out, i as i64);
        }
        (Node::Array(item), Value::Array(items)) => {
            if !items.is_empty() {
                write_long(out, items.len() as i64);
                for (i, x) in items.iter().enumerate() {
                    encode(item, x, out).map_err(|e| e.under(&i.to_string()))?;
                }
            }
            out.push(0);
        }
        (Node::Map(value), Value::Object(entries)) => {
            if !entries.is_empty() {
                write_long(out, entries.len() as i64);
                for (k, x) in entries {
                    write_str(out, k);
                    encode(value, x, out).map_err(|e| e.under(k))?;
                }
            }
            out.push(0);
        }
        (Node::Record(fields), v @ Value::Object(_)) => encode_record(fields, v, out)?,
        (Node::Union(branches), v) => {
            let i = branches
                .iter()
                .position(|b| fits(b, v))
                .ok_or_else(|| expected("a value of one of the union's branches", v))?;
            write_long(out, i as i64);
            encode(&branches[i], v, out)?;
        }
        (node, v) => return Err(expected(node_name(node), v)),
    }
    Ok(())
}

fn encode_record(fields: &[Field], v: &Value, out: &mut Vec<u8>) -> Result<(), PayloadError> {
    match v {
        Value::Object(obj) => {
            let mut seen = 0;
            for f in fields {
                match obj.get(&f.name) {
                    Some(x) => {
                        seen += 1;
                        encode(&f.node, x, out)
                    }
                    None => match &f.default {
                        Some(d) => encode(&f.node, d, out),
                        None => encode(&f.node, &Value::Null, out)
                            .map_err(|_| PayloadError::new("missing field")),
                    },
                }
                .map_err(|e| e.under(&f.name))?;
            }
            if seen != obj.len() {
                let unknown = obj
                    .keys()
                    .find(|k| !fields.iter().any(|f| &f.name == *k))
                    .map_or("", String::as_str);
                return Err(PayloadError::new("field is not in the schema").under(unknown));
            }
            Ok(())
        }
        v => Err(expected("an object", v)),
    }
}

fn node_name(node: &Node) -> &'static str {
    match node {
        Node::Null => "null",
        Node::Boolean => "a boolean",
        Node::Int | Node::Long => "an integer",
        Node::Float | Node::Double => "a number",
        Node::String | Node::Enum(_) => "a string",
        Node::Json => "a JSON value",
        Node::Array(_) => "an array",
        Node::Map(_) | Node::Record(_) => "an object",
        Node::Union(_) => "a union value",
    }
}

/// Whether `v` has the kind of JSON value `node` holds (the union branch choice).
fn fits(node: &Node, v: &Value) -> bool {
    match (node, v) {
        (Node::Null, Value::Null) | (Node::Boolean, Value::Bool(_)) => true,
        (Node::Int | Node::Long, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (Node::Float | Node::Double, Value::Number(_)) => true,
        (Node::String, Value::String(_)) => true,
        (Node::Enum(symbols), Value::String(s)) => symbols.iter().any(|x| x == s),
        (Node::Json, v) => !v.is_null(),
        (Node::Array(_), Value::Array(_)) => true,
        (Node::Map(_) | Node::Record(_), Value::Object(_)) => true,
        _ => false,
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, kind: BodyErrorKind) -> BodyError {
        BodyError {
            kind,
            offset: self.pos,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, BodyError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.error(BodyErrorKind::Truncated))?;
        self.pos += 1;
        Ok(b)
    }

    fn long(&mut self) -> Result<i64, BodyError> {
        let start = self.pos;
        let mut z: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(BodyError {
            kind: BodyErrorKind::BadVarint,
            offset: start,
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BodyError> {
        if n > self.remaining() {
            return Err(self.error(BodyErrorKind::Truncated));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A length or count: not negative, and not more than the bytes left (every item of a
    /// non-empty collection takes at least one byte in event schemas).
    fn len(&mut self) -> Result<usize, BodyError> {
        let at = self.pos;
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| BodyError {
            kind: BodyErrorKind::BadNumber(n),
            offset: at,
        })?;
        if n > self.remaining() {
            return Err(self.error(BodyErrorKind::Truncated));
        }
        Ok(n)
    }

    fn str(&mut self) -> Result<&'a str, BodyError> {
        let n = self.len()?;
        let at = self.pos;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map_err(|_| BodyError {
            kind: BodyErrorKind::BadUtf8,
            offset: at,
        })
    }

    /// The item count of the next block (0 = end); a negative count is followed by a byte size.
    fn block(&mut self) -> Result<usize, BodyError> {
        let at = self.pos;
        let n = self.long()?;
        if n < 0 {
            self.long()?;
            let n = n.checked_neg().ok_or(BodyError {
                kind: BodyErrorKind::BadNumber(n),
                offset: at,
            })?;
            return usize::try_from(n)
                .ok()
                .filter(|n| *n <= self.remaining())
                .ok_or_else(|| self.error(BodyErrorKind::Truncated));
        }
        let n = n as usize;
        if n > self.remaining() {
            return Err(self.error(BodyErrorKind::Truncated));
        }
        Ok(n)
    }

    fn float(&mut self, v: f64) -> Result<Value, BodyError> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| self.error(BodyErrorKind::NonFinite))
    }
}

fn decode(node: &Node, r: &mut Reader<'_>) -> Result<Value, BodyError> {
    Ok(match node {
        Node::Null => Value::Null,
        Node::Boolean => match r.byte()? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => {
                r.pos -= 1;
                return Err(r.error(BodyErrorKind::BadNumber(i64::from(b))));
            }
        },
        Node::Int => {
            let at = r.pos;
            let n = r.long()?;
            let n = i32::try_from(n).map_err(|_| BodyError {
                kind: BodyErrorKind::BadNumber(n),
                offset: at,
            })?;
            Value::from(n)
        }
        Node::Long => Value::from(r.long()?),
        Node::Float => {
            let b = r.take(4)?;
            let f = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            r.float(f64::from(f))?
        }
        Node::Double => {
            let b = r.take(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            r.float(f64::from_le_bytes(a))?
        }
        Node::String => Value::String(r.str()?.to_owned()),
        Node::Json => {
            let at = r.pos;
            let s = r.str()?;
            serde_json::from_str(s).map_err(|e| BodyError {
                kind: BodyErrorKind::BadJson(e.to_string()),
                offset: at,
            })?
        }
        Node::Enum(symbols) => {
            let at = r.pos;
            let i = r.long()?;
            let s = usize::try_from(i)
                .ok()
                .and_then(|i| symbols.get(i))
                .ok_or(BodyError {
                    kind: BodyErrorKind::BadIndex(i),
                    offset: at,
                })?;
            Value::String(s.clone())
        }
        Node::Union(branches) => {
            let at = r.pos;
            let i = r.long()?;
            let b = usize::try_from(i)
                .ok()
                .and_then(|i| branches.get(i))
                .ok_or(BodyError {
                    kind: BodyErrorKind::BadIndex(i),
                    offset: at,
                })?;
            decode(b, r)?
        }
        Node::Array(item) => {
            let mut items = Vec::new();
            loop {
                let n = r.block()?;
                if n == 0 {
                    break;
                }
                items.reserve(n);
                for _ in 0..n {
                    items.push(decode(item, r)?);
                }
            }
            Value::Array(items)
        }
        Node::Map(value) => {
            let mut entries = Map::new();
            loop {
                let n = r.block()?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    let k = r.str()?.to_owned();
                    entries.insert(k, decode(value, r)?);
                }
            }
            Value::Object(entries)
        }
        Node::Record(fields) => Value::Object(decode_record(fields, &[], r)?),
    })
}

/// A record's fields, named `names` where given (see [`Plan::decode_as`]).
fn decode_record(
    fields: &[Field],
    names: &[String],
    r: &mut Reader<'_>,
) -> Result<Map<String, Value>, BodyError> {
    let mut obj = Map::new();
    for (i, f) in fields.iter().enumerate() {
        let name = names.get(i).unwrap_or(&f.name);
        obj.insert(name.clone(), decode(&f.node, r)?);
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use apache_avro::reader::datum::GenericDatumReader;
    use serde_json::json;

    use super::*;

    const SCHEMA: &str = r#"{"type": "record", "name": "T", "namespace": "ns", "fields": [
        {"name": "s", "type": "string"},
        {"name": "n", "type": "long"},
        {"name": "i", "type": "int"},
        {"name": "d", "type": "double"},
        {"name": "b", "type": "boolean"},
        {"name": "o", "type": ["null", "string"], "default": null},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["x", "y"]}},
        {"name": "e2", "type": "ns.E"},
        {"name": "a", "type": {"type": "array", "items": "double"}},
        {"name": "m", "type": {"type": "map", "values": "boolean"}},
        {"name": "j", "type": "string", "eventfold.json": true},
        {"name": "u", "type": [{"type": "array", "items": "string"}, "string"]},
        {"name": "r", "type": {"type": "record", "name": "R", "fields": [{"name": "on", "type": "boolean"}]},
         "default": {"on": true}}
    ]}"#;

    fn plan() -> (Schema, Plan) {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let plan = Plan::compile(&schema).unwrap();
        (schema, plan)
    }

    fn sample() -> Value {
        json!({"s": "héllo 🙂", "n": -9_007_199_254_740_991i64, "i": 7, "d": 0.25, "b": true,
               "o": null, "e": "y", "e2": "x", "a": [1.5, -2.0], "m": {"k": false, "z": true},
               "j": {"nested": [1, "two", null]}, "u": ["p", "q"], "r": {"on": false}})
    }

    #[test]
    fn round_trips_every_kind_of_field() {
        let (_, plan) = plan();
        let mut out = Vec::new();
        plan.encode(&sample(), &mut out).unwrap();
        assert_eq!(plan.decode(&out).unwrap(), sample());
    }

    #[test]
    fn writes_what_apache_avro_reads() {
        let (schema, plan) = plan();
        let mut out = Vec::new();
        plan.encode(&sample(), &mut out).unwrap();
        let value = GenericDatumReader::builder(&schema)
            .build()
            .unwrap()
            .read_value(&mut out.as_slice())
            .unwrap();
        let apache_avro::types::Value::Record(fields) = value else {
            panic!("{value:?}")
        };
        assert_eq!(
            fields[0],
            (
                "s".into(),
                apache_avro::types::Value::String("héllo 🙂".into())
            )
        );
        assert_eq!(
            fields[10].1,
            apache_avro::types::Value::String(r#"{"nested":[1,"two",null]}"#.into())
        );
    }

    #[test]
    fn fills_a_missing_field_from_its_default_or_null() {
        let (_, plan) = plan();
        let mut v = sample();
        let obj = v.as_object_mut().unwrap();
        obj.remove("o");
        obj.remove("r");
        let mut out = Vec::new();
        plan.encode(&v, &mut out).unwrap();
        let back = plan.decode(&out).unwrap();
        assert_eq!(back["o"], Value::Null);
        assert_eq!(back["r"], json!({"on": true}));
    }

    #[test]
    fn names_the_field_of_a_payload_that_does_not_fit() {
        let (_, plan) = plan();
        let cases = [
            ("/e", json!("z")),
            ("/a/1", json!("x")),
            ("/m/k", json!(1)),
            ("/i", json!(1u64 << 40)),
        ];
        for (pointer, bad) in cases {
            let mut v = sample();
            let segments: Vec<&str> = pointer.split('/').skip(1).collect();
            let mut at = &mut v;
            for s in &segments {
                at = match at {
                    Value::Array(a) => &mut a[s.parse::<usize>().unwrap()],
                    other => &mut other[*s],
                };
            }
            *at = bad;
            let err = plan.encode(&v, &mut Vec::new()).unwrap_err();
            assert_eq!(err.pointer, pointer, "{err}");
        }
        let mut v = sample();
        v["extra"] = json!(1);
        assert_eq!(
            plan.encode(&v, &mut Vec::new()).unwrap_err().pointer,
            "/extra"
        );
        let mut v = sample();
        v.as_object_mut().unwrap().remove("s");
        let err = plan.encode(&v, &mut Vec::new()).unwrap_err();
        assert_eq!(
            (err.pointer.as_str(), err.message.as_str()),
            ("/s", "missing field")
        );
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let (_, plan) = plan();
        let mut out = Vec::new();
        plan.encode(&sample(), &mut out).unwrap();
        for n in 0..out.len() {
            let err = plan.decode(&out[..n]).unwrap_err();
            assert!(err.offset <= n, "{err}");
        }
        let mut longer = out.clone();
        longer.push(0);
        assert_eq!(
            plan.decode(&longer).unwrap_err().kind,
            BodyErrorKind::Trailing(1)
        );
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let (_, plan) = plan();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = plan.decode(&bytes);
        }
        // A huge declared length is refused before anything is allocated.
        let mut huge = Vec::new();
        write_long(&mut huge, i64::MAX);
        assert_eq!(
            plan.decode(&huge).unwrap_err().kind,
            BodyErrorKind::Truncated
        );
    }

    #[test]
    fn refuses_a_json_marker_on_a_number() {
        let s = Schema::parse_str(
            r#"{"type":"record","name":"X","fields":[{"name":"j","type":"long","eventfold.json":true}]}"#,
        )
        .unwrap();
        assert!(Plan::compile(&s).is_err());
    }
}
