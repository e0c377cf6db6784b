//! Events in the Confluent wire format: magic byte `0`, the schema id as 4 big-endian bytes, then
//! the Avro body. The relay encodes stored JSON payloads ([`AvroCodec::encode`]); the projector
//! decodes records back to the JSON payload at the writer's version and upcasts it
//! ([`Decoded::into_event`]), or in one pass to the latest version ([`AvroCodec::decode_latest`],
//! [`AvroCodec::decode_event`]: the upcasting path is compiled once per schema id and renames
//! happen while the record is read).
//!
//! Subjects follow TopicRecordNameStrategy: `<topic>-<record full name>`, so every version of an
//! event type is a version of one subject. The codec never registers a schema: `eventfold schemas
//! register` does, before any service starts (`make up`, CI, the test kit, the Helm hook Job); the
//! codec only looks ids up (the registry's "is this schema under this subject" call when
//! encoding, the schema by id when decoding). Schema ids are cached for the life of the codec (ids
//! never change); registry calls go through `schema_registry_converter`.
//!
//! Errors fall in three kinds. A registry that cannot be reached or answers 5xx is
//! [`CodecError::RegistryUnavailable`], the only retryable error. A schema that is not registered
//! ([`CodecError::NotRegistered`]) or credentials the registry refuses
//! ([`CodecError::RegistryUnauthorized`]) are configuration errors
//! ([`CodecError::is_configuration`]): no record causes them, so they halt the work until an
//! operator fixes the setup. Neither kind is ever a reason to park a record or to drop it. Every
//! other error says what is wrong with the record (unknown magic byte, unknown schema id,
//! truncated body, schema unknown to this build, no upcaster path) and names the subject, schema
//! id and byte offset where known.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;
use eventfold_domain::{DomainEvent, PreparedUpcast, StoredEventError, UpcastError, Upcasters};
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_all_subjects, get_schema_by_id, perform_sr_call,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{RawError, SrCall};
use serde_json::Value;

use crate::catalog::{Catalog, SchemaFile};
use crate::plan::{BodyError, PayloadError, Plan};

/// The Confluent wire format's magic byte.
pub const MAGIC_BYTE: u8 = 0;

/// The topic of an aggregate type: `<prefix><AggregateType>`, e.g. `eventfold.Opportunity`.
pub fn topic_for(prefix: &str, aggregate_type: &str) -> String {
    format!("{prefix}{aggregate_type}")
}

/// The TopicRecordNameStrategy subject: `<topic>-<record full name>`.
pub fn subject_for(topic: &str, fullname: &str) -> String {
    let mut s = String::with_capacity(topic.len() + 1 + fullname.len());
    s.push_str(topic);
    s.push('-');
    s.push_str(fullname);
    s
}

/// Why a record could not be encoded or decoded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CodecError {
    /// The registry could not be reached or failed (5xx, timeout, 429): retry later, never park.
    #[error("schema registry unavailable ({context}): {message}")]
    RegistryUnavailable {
        /// The subject or schema id being resolved.
        context: String,
        /// The transport or status error.
        message: String,
    },
    /// The registry refused the credentials (401, 403): a configuration error (wrong or missing
    /// `SCHEMA_REGISTRY_USERNAME` / `SCHEMA_REGISTRY_PASSWORD`, or an account without read access
    /// to the subject). Halt until fixed, never park.
    #[error(
        "schema registry refused the credentials with {status} ({context}): check \
         SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD and the account's read access; \
         registry said: {message}"
    )]
    RegistryUnauthorized {
        /// The subject or schema id being resolved.
        context: String,
        /// 401 or 403.
        status: u16,
        /// The registry's message.
        message: String,
    },
    /// The schema of an event is not registered under its subject: a configuration error (the
    /// deployment skipped `eventfold schemas register`, or registered another topic prefix).
    /// Halt until registered, never park.
    #[error(
        "schema {fullname} v{version} is not registered under subject {subject}: run \
         `eventfold schemas register` (EVENTFOLD_TOPIC_PREFIX = the services' KAFKA_TOPIC_PREFIX); \
         registry said: {message}"
    )]
    NotRegistered {
        /// The subject looked up.
        subject: String,
        /// The record's full name.
        fullname: String,
        /// The local version of the schema.
        version: u32,
        /// The registry's answer (error code 40401 subject not found, 40403 schema not found).
        message: String,
    },
    /// The registry refused the schema itself (e.g. incompatible with the subject's versions).
    #[error("schema registry refused {context}: {message}")]
    RegistryRefused {
        /// The subject or schema id.
        context: String,
        /// The registry's message.
        message: String,
    },
    /// The record does not start with the Confluent magic byte and a schema id.
    #[error(
        "record of {len} bytes does not start with magic byte 0 and a schema id (first byte {first:?})"
    )]
    BadHeader {
        /// Record length.
        len: usize,
        /// First byte, if any.
        first: Option<u8>,
    },
    /// The registry has no schema with this id.
    #[error("unknown schema id {schema_id}")]
    UnknownSchemaId {
        /// The id.
        schema_id: u32,
    },
    /// The writer's schema is not one of this build's schemas (e.g. a newer version).
    #[error("schema id {schema_id} ({fullname}) matches none of this build's schemas")]
    UnknownWriterSchema {
        /// The id.
        schema_id: u32,
        /// The record's full name.
        fullname: String,
    },
    /// The registry returned a schema that does not parse or is not a record.
    #[error("schema id {schema_id} is not a usable Avro record: {message}")]
    BadWriterSchema {
        /// The id.
        schema_id: u32,
        /// What is wrong.
        message: String,
    },
    /// The Avro body is malformed (truncated, bad index, trailing bytes…).
    #[error("subject {subject}, schema id {schema_id}: {source}")]
    Body {
        /// The subject.
        subject: String,
        /// The id.
        schema_id: u32,
        /// What is wrong, with its byte offset.
        source: BodyError,
    },
    /// This build has no schema for the event type and version to encode.
    #[error("no local schema for {event_type} v{version}")]
    NoLocalSchema {
        /// Event type.
        event_type: String,
        /// Version.
        version: u32,
    },
    /// The JSON payload does not fit its schema (drift between the event type and its schema).
    #[error("{event_type} v{version} payload does not fit its schema {source}")]
    Payload {
        /// Event type.
        event_type: String,
        /// Version.
        version: u32,
        /// The offending field.
        source: PayloadError,
    },
    /// The decoded payload has no upcaster path to the latest version, or does not fit the event.
    #[error("subject {subject}, schema id {schema_id}: {message}")]
    Upcast {
        /// The subject.
        subject: String,
        /// The id.
        schema_id: u32,
        /// The upcasting or deserialization error.
        message: String,
    },
}

impl CodecError {
    /// True when the same call may succeed later (the registry is down); such a record must be
    /// retried, never parked or dropped.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RegistryUnavailable { .. })
    }

    /// True for a configuration error (a schema not registered, credentials refused): no record
    /// causes it, so the work halts (logged, `/readyz`, a metric) and is retried until an operator
    /// fixes the setup; the record is never parked or dropped.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::NotRegistered { .. } | Self::RegistryUnauthorized { .. }
        )
    }
}

/// A decoded record: the JSON payload as the writer wrote it, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The schema id of the record.
    pub schema_id: u32,
    /// The subject (`<topic>-<full name>`).
    pub subject: String,
    /// Event type.
    pub event_type: Arc<str>,
    /// The version of `payload`: the writer's schema version from [`AvroCodec::decode`] (upcast
    /// with [`Decoded::into_event`]), the latest from [`AvroCodec::decode_latest`].
    pub schema_version: u32,
    /// The JSON payload at `schema_version`.
    pub payload: Value,
}

impl Decoded {
    /// The domain event at the latest version, through [`DomainEvent::from_stored`].
    pub fn into_event<E: DomainEvent>(self) -> Result<E, CodecError> {
        E::from_stored(&self.event_type, self.schema_version, self.payload).map_err(
            |e: StoredEventError| CodecError::Upcast {
                subject: self.subject,
                schema_id: self.schema_id,
                message: e.to_string(),
            },
        )
    }
}

/// A writer schema known by id.
#[derive(Debug)]
struct Writer {
    fullname: String,
    event_type: Arc<str>,
    version: u32,
    plan: Arc<Plan>,
}

/// A writer schema with one chain's upcasting path compiled for its fields.
#[derive(Debug)]
struct LatestWriter {
    writer: Arc<Writer>,
    path: Result<PreparedUpcast, UpcastError>,
}

/// Encoder and decoder of event records, with the schema-id caches.
#[derive(Debug)]
pub struct AvroCodec {
    settings: SrSettings,
    catalog: Arc<Catalog>,
    ids: RwLock<HashMap<(String, u32), u32>>,
    writers: RwLock<HashMap<u32, Arc<Writer>>>,
    /// By schema id and the address of a `'static` chain (never freed, so never another's).
    latest: RwLock<HashMap<(u32, usize), Arc<LatestWriter>>>,
}

impl AvroCodec {
    /// A codec for `catalog`'s schemas against the registry of `settings`.
    pub fn new(settings: SrSettings, catalog: Arc<Catalog>) -> Self {
        Self {
            settings,
            catalog,
            ids: RwLock::default(),
            writers: RwLock::default(),
            latest: RwLock::default(),
        }
    }

    /// The local schemas.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Encodes `payload` of `event_type` at `version` for `topic`: looks the schema's id up under
    /// its subject on first use ([`AvroCodec::schema_id`]) and caches it.
    pub async fn encode(
        &self,
        topic: &str,
        event_type: &str,
        version: u32,
        payload: &Value,
    ) -> Result<Vec<u8>, CodecError> {
        let file = self.local(event_type, version)?;
        let id = self.schema_id(topic, file).await?;
        let mut out = Vec::with_capacity(256);
        encode_with(id, file, payload, &mut out)?;
        Ok(out)
    }

    /// The registry id of `event_type` at `version` under `topic`'s subject, as
    /// [`AvroCodec::encode`] would use it (e.g. to check a whole batch before sending any of it).
    pub async fn lookup(
        &self,
        topic: &str,
        event_type: &str,
        version: u32,
    ) -> Result<u32, CodecError> {
        let file = self.local(event_type, version)?;
        self.schema_id(topic, file).await
    }

    fn local(&self, event_type: &str, version: u32) -> Result<&SchemaFile, CodecError> {
        self.catalog
            .get(event_type, version)
            .ok_or_else(|| CodecError::NoLocalSchema {
                event_type: event_type.into(),
                version,
            })
    }

    /// The registry id of `file` under `topic`'s subject, cached. It is looked up with the
    /// registry's "is this schema registered under this subject" call (`POST
    /// /subjects/{subject}`), never registered: a schema that is not there is
    /// [`CodecError::NotRegistered`].
    pub async fn schema_id(&self, topic: &str, file: &SchemaFile) -> Result<u32, CodecError> {
        let subject = subject_for(topic, &file.fullname);
        let key = (subject, file.version);
        if let Some(id) = self.ids.read().ok().and_then(|m| m.get(&key).copied()) {
            return Ok(id);
        }
        let body = serde_json::json!({ "schemaType": "AVRO", "schema": file.text }).to_string();
        let found = perform_sr_call(&self.settings, SrCall::PostForVersion(&key.0, &body))
            .await
            .map_err(|e| classify_lookup(e, &key.0, file))?;
        let id = found.id.ok_or_else(|| CodecError::RegistryRefused {
            context: key.0.clone(),
            message: "the lookup answer carries no schema id".into(),
        })?;
        if let Ok(mut m) = self.ids.write() {
            m.insert(key, id);
        }
        self.remember(id, file);
        Ok(id)
    }

    /// Seeds the caches with a known id of `file` under `topic` (e.g. from `eventfold schemas
    /// register`), so that encoding and decoding it need no registry call.
    pub fn preload(&self, topic: &str, file: &SchemaFile, id: u32) {
        if let Ok(mut m) = self.ids.write() {
            m.insert((subject_for(topic, &file.fullname), file.version), id);
        }
        self.remember(id, file);
    }

    fn remember(&self, id: u32, file: &SchemaFile) -> Arc<Writer> {
        let w = Arc::new(Writer {
            fullname: file.fullname.clone(),
            event_type: file.event_type.as_str().into(),
            version: file.version,
            plan: file.plan.clone(),
        });
        if let Ok(mut m) = self.writers.write() {
            m.entry(id).or_insert_with(|| w.clone());
        }
        w
    }

    /// Decodes a record consumed from `topic` to its JSON payload at the writer's version.
    pub async fn decode(&self, topic: &str, record: &[u8]) -> Result<Decoded, CodecError> {
        let (id, body) = split_header(record)?;
        let writer = self.writer(id).await?;
        decode_with(id, &writer, topic, body)
    }

    /// Decodes a record consumed from `topic` to its JSON payload at the latest version of its
    /// event type through `upcasters` (the topic's aggregate's chain, e.g. `E::upcasters()`):
    /// the result of [`AvroCodec::decode`] then [`Upcasters::upcast`], errors included, in one
    /// pass. The path is compiled for the writer's fields once per schema id
    /// ([`Upcasters::prepare`]), so renames happen while the record is read.
    pub async fn decode_latest(
        &self,
        topic: &str,
        record: &[u8],
        upcasters: &'static Upcasters,
    ) -> Result<Decoded, CodecError> {
        let (id, body) = split_header(record)?;
        let key = (id, std::ptr::from_ref(upcasters) as usize);
        let cached = self.latest.read().ok().and_then(|m| m.get(&key).cloned());
        let latest = match cached {
            Some(l) => l,
            None => {
                let writer = self.writer(id).await?;
                let fields = writer.plan.known_fields();
                let path = upcasters.prepare(&writer.event_type, writer.version, &fields);
                let l = Arc::new(LatestWriter { writer, path });
                if let Ok(mut m) = self.latest.write() {
                    m.entry(key).or_insert_with(|| l.clone());
                }
                l
            }
        };
        decode_latest_with(id, &latest, topic, body)
    }

    /// Decodes a record consumed from `topic` to the domain event at the latest version:
    /// [`AvroCodec::decode_latest`] with `E`'s upcasters, then [`Decoded::into_event`].
    pub async fn decode_event<E: DomainEvent>(
        &self,
        topic: &str,
        record: &[u8],
    ) -> Result<E, CodecError> {
        self.decode_latest(topic, record, E::upcasters())
            .await?
            .into_event()
    }

    /// The writer schema of `id`, from the cache or the registry.
    async fn writer(&self, id: u32) -> Result<Arc<Writer>, CodecError> {
        let cached = self.writers.read().ok().and_then(|m| m.get(&id).cloned());
        match cached {
            Some(w) => Ok(w),
            None => self.fetch_writer(id).await,
        }
    }

    async fn fetch_writer(&self, id: u32) -> Result<Arc<Writer>, CodecError> {
        let registered = match get_schema_by_id(id, &self.settings).await {
            Ok(r) => r,
            Err(e) => {
                return Err(match classify(e, &format!("schema id {id}"), Some(id)) {
                    CodecError::UnknownSchemaId { schema_id } => {
                        self.confirm_unknown(schema_id).await
                    }
                    other => other,
                });
            }
        };
        let schema =
            Schema::parse_str(&registered.schema).map_err(|e| CodecError::BadWriterSchema {
                schema_id: id,
                message: e.to_string(),
            })?;
        let Schema::Record(record) = &schema else {
            return Err(CodecError::BadWriterSchema {
                schema_id: id,
                message: "not a record".into(),
            });
        };
        let fullname = record.name.fullname(None);
        match self.catalog.by_canonical_form(&schema.canonical_form()) {
            Some(file) if file.fullname == fullname => Ok(self.remember(id, file)),
            _ => Err(CodecError::UnknownWriterSchema {
                schema_id: id,
                fullname,
            }),
        }
    }
}

impl AvroCodec {
    /// A 404 for a schema id is only believed when the registry demonstrably serves: a registry
    /// whose own storage is down can answer 404 for every id (seen with a registry on the stack's
    /// PostgreSQL during a database restart), and parking records for that would be wrong. It
    /// serves when an id this codec already resolved resolves again, or, before any, when it
    /// lists at least one subject (records exist, so a registry without subjects is broken).
    async fn confirm_unknown(&self, schema_id: u32) -> CodecError {
        let known = self
            .writers
            .read()
            .ok()
            .and_then(|m| m.keys().copied().find(|k| *k != schema_id));
        let serving = match known {
            Some(k) => get_schema_by_id(k, &self.settings).await.is_ok(),
            None => get_all_subjects(&self.settings)
                .await
                .is_ok_and(|s| !s.is_empty()),
        };
        if serving {
            CodecError::UnknownSchemaId { schema_id }
        } else {
            CodecError::RegistryUnavailable {
                context: format!("schema id {schema_id}"),
                message: "the registry answered not found, but does not serve known schemas either"
                    .into(),
            }
        }
    }
}

/// Reads the 5-byte header: magic byte 0 and the big-endian schema id.
pub fn split_header(record: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    match record {
        [MAGIC_BYTE, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        _ => Err(CodecError::BadHeader {
            len: record.len(),
            first: record.first().copied(),
        }),
    }
}

fn encode_with(
    id: u32,
    file: &SchemaFile,
    payload: &Value,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&id.to_be_bytes());
    file.plan
        .encode(payload, out)
        .map_err(|source| CodecError::Payload {
            event_type: file.event_type.clone(),
            version: file.version,
            source,
        })
}

fn decode_with(id: u32, w: &Writer, topic: &str, body: &[u8]) -> Result<Decoded, CodecError> {
    let subject = subject_for(topic, &w.fullname);
    let payload = match w.plan.decode(body) {
        Ok(p) => p,
        Err(source) => {
            return Err(CodecError::Body {
                subject,
                schema_id: id,
                source,
            });
        }
    };
    Ok(Decoded {
        schema_id: id,
        subject,
        event_type: w.event_type.clone(),
        schema_version: w.version,
        payload,
    })
}

/// Decodes with the fields named as the path wants them, then runs the rest of the path. A body
/// that does not read is reported before a missing path, as [`AvroCodec::decode`] then
/// [`Decoded::into_event`] would.
fn decode_latest_with(
    id: u32,
    l: &LatestWriter,
    topic: &str,
    body: &[u8],
) -> Result<Decoded, CodecError> {
    let w = &l.writer;
    let subject = subject_for(topic, &w.fullname);
    let names = l.path.as_ref().map_or(&[][..], PreparedUpcast::names);
    let mut payload = match w.plan.decode_as(body, names) {
        Ok(p) => p,
        Err(source) => {
            return Err(CodecError::Body {
                subject,
                schema_id: id,
                source,
            });
        }
    };
    let upcast = match &l.path {
        Ok(path) => path.finish(&mut payload).map(|()| path.latest()),
        Err(e) => Err(e.clone()),
    };
    match upcast {
        Ok(version) => Ok(Decoded {
            schema_id: id,
            subject,
            event_type: w.event_type.clone(),
            schema_version: version,
            payload: Value::Object(payload),
        }),
        Err(e) => Err(CodecError::Upcast {
            subject,
            schema_id: id,
            message: e.to_string(),
        }),
    }
}

/// The HTTP status of a registry error response, if it was one.
fn status_of(e: &SRCError) -> Option<u16> {
    let (_, rest) = e.error.rsplit_once("status ")?;
    rest.get(..3)?.parse().ok()
}

/// The error in one line: what failed and the registry's own code and message, if any.
fn describe(e: &SRCError) -> String {
    match &e.cause {
        Some(cause) => format!("{}: {cause}", e.error),
        None => e.error.clone(),
    }
}

/// Sorts a `schema_registry_converter` error into retryable (the registry is failing),
/// configuration (credentials refused) and the record's own (everything else).
fn classify(e: SRCError, context: &str, id: Option<u32>) -> CodecError {
    use std::error::Error as _;
    let raw = e.source().and_then(|s| s.downcast_ref::<RawError>());
    let transport = e
        .source()
        .is_some_and(|s| s.downcast_ref::<reqwest::Error>().is_some());
    let status = status_of(&e);
    let message = describe(&e);
    if let Some(status @ (401 | 403)) = status {
        // Not the record's fault and not transient: wrong or missing credentials, or an account
        // without access to this subject. Retrying silently would hide it for ever.
        return CodecError::RegistryUnauthorized {
            context: context.into(),
            status,
            message,
        };
    }
    if let (Some(schema_id), Some(raw)) = (id, raw)
        && raw.error_code == 40403
    {
        return CodecError::UnknownSchemaId { schema_id };
    }
    // Not the record's fault either: the registry is failing or overloaded.
    let server_error = status.is_some_and(|s| s >= 500 || matches!(s, 408 | 429));
    if e.retriable || transport || server_error {
        return CodecError::RegistryUnavailable {
            context: context.into(),
            message,
        };
    }
    CodecError::RegistryRefused {
        context: context.into(),
        message,
    }
}

/// Sorts the error of a lookup of `file` under `subject`: a 404 (error code 40401, subject not
/// found, or 40403, schema not found) is [`CodecError::NotRegistered`]; the rest as [`classify`].
fn classify_lookup(e: SRCError, subject: &str, file: &SchemaFile) -> CodecError {
    if status_of(&e) == Some(404) {
        return CodecError::NotRegistered {
            subject: subject.into(),
            fullname: file.fullname.clone(),
            version: file.version,
            message: describe(&e),
        };
    }
    classify(e, subject, None)
}

/// Encoding and decoding with a schema id already known, without the registry (tests, benches,
/// golden corpus).
pub mod offline {
    use super::*;

    /// Encodes `payload` with `file`'s schema under schema id `id`.
    pub fn encode(id: u32, file: &SchemaFile, payload: &Value) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(256);
        encode_with(id, file, payload, &mut out)?;
        Ok(out)
    }

    /// Decodes a whole record written with `file`'s schema (any schema id).
    pub fn decode(topic: &str, file: &SchemaFile, record: &[u8]) -> Result<Decoded, CodecError> {
        let (id, body) = split_header(record)?;
        let w = Writer {
            fullname: file.fullname.clone(),
            event_type: file.event_type.as_str().into(),
            version: file.version,
            plan: file.plan.clone(),
        };
        decode_with(id, &w, topic, body)
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use serde_json::json;

    use super::*;

    fn catalog() -> Catalog {
        Catalog::embedded().unwrap()
    }

    #[test]
    fn writes_the_magic_byte_and_the_big_endian_id() {
        let c = catalog();
        let file = c.get("OpportunityArchived", 1).unwrap();
        let bytes = offline::encode(0x0102_0304, file, &json!({"reason": "x"})).unwrap();
        assert_eq!(&bytes[..5], &[0, 1, 2, 3, 4]);
        let d = offline::decode("t", file, &bytes).unwrap();
        assert_eq!(d.payload, json!({"reason": "x"}));
        assert_eq!(d.subject, "t-eventfold.opportunity.OpportunityArchived");
        assert_eq!(d.schema_id, 0x0102_0304);
    }

    #[test]
    fn refuses_an_unknown_magic_byte_and_a_short_header() {
        for bad in [&[1u8, 0, 0, 0, 1, 2][..], &[0, 0, 0], &[]] {
            assert!(matches!(
                split_header(bad),
                Err(CodecError::BadHeader { .. })
            ));
        }
    }

    #[test]
    fn names_subject_id_and_offset_of_a_truncated_body() {
        let c = catalog();
        let file = c.get("OpportunityArchived", 1).unwrap();
        let bytes = offline::encode(9, file, &json!({"reason": "long enough"})).unwrap();
        let err = offline::decode("t", file, &bytes[..8]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("t-eventfold.opportunity.OpportunityArchived")
                && text.contains("schema id 9")
                && text.contains("byte"),
            "{text}"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn a_payload_that_drifted_from_its_schema_names_the_field() {
        let c = catalog();
        let file = c.get("OpportunityArchived", 1).unwrap();
        let err = offline::encode(1, file, &json!({"reason": "x", "why": 1})).unwrap_err();
        assert!(err.to_string().contains("/why"), "{err}");
    }

    #[test]
    fn an_upcast_failure_names_the_subject_and_id() {
        let d = Decoded {
            schema_id: 5,
            subject: "t-x".into(),
            event_type: "E".into(),
            schema_version: 0,
            payload: json!({}),
        };
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        struct E;
        impl DomainEvent for E {
            fn event_type(&self) -> &'static str {
                "E"
            }
            fn category(&self) -> eventfold_domain::EventCategory {
                eventfold_domain::EventCategory::System
            }
            fn from_payload(_: &str, p: Value) -> Result<Self, serde_json::Error> {
                serde_json::from_value(p)
            }
        }
        let err = d.into_event::<E>().unwrap_err();
        assert!(
            matches!(err, CodecError::Upcast { schema_id: 5, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("no upcaster path"), "{err}");
    }

    #[test]
    fn sorts_registry_failures_into_retryable_configuration_and_the_records_own() {
        let status = |code: u16| {
            SRCError::new(
                &format!("HTTP request to schema registry failed with status {code}"),
                None,
                false,
            )
        };
        for code in [500, 502, 503, 408, 429] {
            let e = classify(status(code), "s", None);
            assert!(e.is_retryable() && !e.is_configuration(), "{code}: {e}");
        }
        // Refused credentials are the operator's to fix: never retried silently, never parked.
        for code in [401, 403] {
            let e = classify(status(code), "s", None);
            assert!(
                matches!(e, CodecError::RegistryUnauthorized { status, .. } if status == code),
                "{code}: {e}"
            );
            assert!(e.is_configuration() && !e.is_retryable(), "{code}");
            assert!(e.to_string().contains("SCHEMA_REGISTRY_USERNAME"), "{e}");
        }
        for code in [409, 422] {
            let e = classify(status(code), "s", None);
            assert!(
                matches!(e, CodecError::RegistryRefused { .. }),
                "{code}: {e}"
            );
            assert!(!e.is_retryable() && !e.is_configuration(), "{code}");
        }
        let raw = |code: u32, message: &str| -> RawError {
            serde_json::from_value(json!({"error_code": code, "message": message})).unwrap()
        };
        let not_found = |code: u32, message: &str| {
            SRCError::non_retryable_with_cause(
                raw(code, message),
                "HTTP request to schema registry failed with status 404 Not Found",
            )
        };
        assert!(matches!(
            classify(not_found(40403, "Schema not found"), "id 7", Some(7)),
            CodecError::UnknownSchemaId { schema_id: 7 }
        ));
        // A lookup by subject that finds nothing: the schema is not registered (a configuration
        // error naming the subject and the command to run), whether the subject is missing
        // (40401) or only this version (40403).
        let c = catalog();
        let file = c.get("OpportunityArchived", 1).unwrap();
        for (code, message) in [(40401, "Subject not found"), (40403, "Schema not found")] {
            let e = classify_lookup(not_found(code, message), "t-x", file);
            assert!(
                matches!(&e, CodecError::NotRegistered { subject, version: 1, .. } if subject == "t-x"),
                "{e}"
            );
            assert!(e.is_configuration() && !e.is_retryable());
            let text = e.to_string();
            assert!(
                text.contains("t-x")
                    && text.contains("eventfold schemas register")
                    && text.contains(&code.to_string()),
                "{text}"
            );
        }
        assert!(matches!(
            classify_lookup(status(401), "t-x", file),
            CodecError::RegistryUnauthorized { status: 401, .. }
        ));
        assert!(classify_lookup(status(503), "t-x", file).is_retryable());
    }

    /// A codec that knows every catalog schema under topic `t` (ids from 1000, in catalog order)
    /// and never reaches a registry.
    fn offline_codec() -> (Arc<Catalog>, AvroCodec) {
        let catalog = Arc::new(catalog());
        let codec = AvroCodec::new(
            SrSettings::new("http://127.0.0.1:1".into()),
            catalog.clone(),
        );
        for (i, file) in catalog.files().iter().enumerate() {
            codec.preload("t", file, 1000 + i as u32);
        }
        (catalog, codec)
    }

    /// The golden sample of `file` as a whole record under the id [`offline_codec`] gave it.
    fn golden_record(catalog: &Catalog, file: &SchemaFile) -> Vec<u8> {
        let i = catalog
            .files()
            .iter()
            .position(|f| f.path == file.path)
            .unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../schemas/golden")
            .join(&file.aggregate_type)
            .join(format!("{}.v{}.avro", file.event_type, file.version));
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        [&[MAGIC_BYTE][..], &(1000 + i as u32).to_be_bytes(), &body].concat()
    }

    #[test]
    fn decoding_to_the_latest_version_gives_what_decode_then_upcast_gives_for_every_golden_sample()
    {
        let (catalog, codec) = offline_codec();
        for file in catalog.files() {
            let record = golden_record(&catalog, file);
            let upcasters = eventfold_reference::upcasters(&file.aggregate_type).unwrap();
            let d = block_on(codec.decode("t", &record)).unwrap();
            let expected = upcasters
                .upcast(&d.event_type, d.schema_version, d.payload)
                .unwrap();
            for _ in 0..2 {
                let latest = block_on(codec.decode_latest("t", &record, upcasters)).unwrap();
                assert_eq!(latest.payload, expected, "{}", file.path);
                assert_eq!(
                    latest.schema_version,
                    upcasters.latest(&file.event_type),
                    "{}",
                    file.path
                );
            }
        }
    }

    #[test]
    fn decodes_an_old_record_straight_to_the_latest_domain_event() {
        use eventfold_reference::opportunity::opportunity::Event;
        let (catalog, codec) = offline_codec();
        let record = golden_record(&catalog, catalog.get("OpportunityCreated", 1).unwrap());
        let direct: Event = block_on(codec.decode_event("t", &record)).unwrap();
        let stepwise: Event = block_on(codec.decode("t", &record))
            .unwrap()
            .into_event()
            .unwrap();
        assert_eq!(
            serde_json::to_value(direct).unwrap(),
            serde_json::to_value(stepwise).unwrap()
        );
    }

    #[test]
    fn decoding_to_the_latest_version_fails_like_decode_then_upcast() {
        let (catalog, codec) = offline_codec();
        let record = golden_record(&catalog, catalog.get("OpportunityCreated", 2).unwrap());
        let d = block_on(codec.decode("t", &record)).unwrap();
        // A chain that knows only v1: the record is newer.
        let expected = Upcasters::empty()
            .upcast(&d.event_type, d.schema_version, d.payload)
            .unwrap_err();
        match block_on(codec.decode_latest("t", &record, Upcasters::empty())) {
            Err(CodecError::Upcast {
                schema_id, message, ..
            }) => assert_eq!((schema_id, message), (d.schema_id, expected.to_string())),
            other => panic!("{other:?}"),
        }
        let upcasters = eventfold_reference::upcasters("Opportunity").unwrap();
        let truncated = &record[..record.len() - 3];
        assert!(matches!(
            block_on(codec.decode_latest("t", truncated, upcasters)),
            Err(CodecError::Body { .. })
        ));
        assert!(matches!(
            block_on(codec.decode_latest("t", truncated, Upcasters::empty())),
            Err(CodecError::Body { .. })
        ));
    }

    #[test]
    fn names_topics_and_subjects_by_the_record_strategy() {
        assert_eq!(topic_for("eventfold.", "User"), "eventfold.User");
        assert_eq!(
            subject_for("eventfold.User", "eventfold.opportunity.UserRegistered"),
            "eventfold.User-eventfold.opportunity.UserRegistered"
        );
    }
}
