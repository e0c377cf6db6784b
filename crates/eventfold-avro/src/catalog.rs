//! The local Avro schemas: `schemas/<AggregateType>/<EventType>.v<N>.avsc`, one record per file,
//! each version of an event type a record of the same full name (so all versions are versions of
//! one registry subject). The files are embedded in the binary at build time
//! ([`Catalog::embedded`]) and can be read from a directory ([`Catalog::load_dir`], used by
//! `eventfold schemas check`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apache_avro::Schema;

use crate::plan::{Plan, PlanError};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_schemas.rs"));
}

/// One schema file: which event type and version it describes, and the schema itself.
#[derive(Debug, Clone)]
pub struct SchemaFile {
    /// Aggregate type (the directory name), e.g. `Opportunity`.
    pub aggregate_type: String,
    /// Event type (the record name), e.g. `OpportunityCreated`.
    pub event_type: String,
    /// Schema version (the `v<N>` of the file name).
    pub version: u32,
    /// Path relative to the schemas directory, e.g. `Opportunity/OpportunityCreated.v2.avsc`.
    pub path: String,
    /// The file's text, as registered.
    pub text: String,
    /// The parsed schema.
    pub schema: Schema,
    /// Full name of the record, e.g. `eventfold.opportunity.OpportunityCreated`.
    pub fullname: String,
    /// Parsing Canonical Form, to recognise the schema behind a registry id.
    pub canonical: String,
    /// The compiled reader and writer of JSON payloads.
    pub plan: Arc<Plan>,
}

/// A schema file or directory that is not usable.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file name is not `<EventType>.v<N>.avsc` inside an aggregate directory.
    #[error("{path}: expected <AggregateType>/<EventType>.v<N>.avsc with N >= 1")]
    FileName {
        /// The path.
        path: String,
    },
    /// The file is not valid JSON or not a valid Avro schema.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The path.
        path: String,
        /// 1-based line of the error (of the offending name when the JSON itself is valid).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The schema is valid Avro but does not describe an event payload.
    #[error("{path}: {message}")]
    Invalid {
        /// The path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An event type's versions do not run 1, 2, … without a gap.
    #[error("{event_type}: versions must run 1..=N without gaps, found {found:?}")]
    VersionGap {
        /// Event type.
        event_type: String,
        /// The versions found.
        found: Vec<u32>,
    },
}

/// Every local schema, by event type and version.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    files: Vec<SchemaFile>,
    by_event: HashMap<String, Vec<usize>>,
    by_canonical: HashMap<String, usize>,
}

impl Catalog {
    /// The schemas embedded at build time from the repository's `schemas/` directory.
    pub fn embedded() -> Result<Self, CatalogError> {
        Self::from_texts(
            embedded::FILES
                .iter()
                .map(|(p, t)| ((*p).to_owned(), (*t).to_owned())),
        )
    }

    /// The schemas of directory `dir` (`<dir>/<AggregateType>/<EventType>.v<N>.avsc`); other
    /// files and subdirectories deeper than one level are ignored.
    pub fn load_dir(dir: &Path) -> Result<Self, CatalogError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| CatalogError::Io { path, source }
        };
        let mut texts = Vec::new();
        let mut aggregates: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        aggregates.sort();
        for agg in aggregates {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&agg)
                .map_err(io(&agg))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "avsc"))
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f).map_err(io(&f))?;
                let rel = f.strip_prefix(dir).unwrap_or(&f).display().to_string();
                texts.push((rel, text));
            }
        }
        Self::from_texts(texts)
    }

    /// A catalog of `(relative path, text)` pairs.
    pub fn from_texts(
        texts: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, CatalogError> {
        let mut catalog = Catalog::default();
        for (path, text) in texts {
            let file = parse_file(&path, text)?;
            let i = catalog.files.len();
            catalog
                .by_event
                .entry(file.event_type.clone())
                .or_default()
                .push(i);
            if let Some(j) = catalog.by_canonical.insert(file.canonical.clone(), i) {
                return Err(CatalogError::Invalid {
                    path: file.path,
                    message: format!(
                        "same Parsing Canonical Form as {}: a new version must change the shape",
                        catalog.files[j].path
                    ),
                });
            }
            catalog.files.push(file);
        }
        for (event_type, indices) in &mut catalog.by_event {
            indices.sort_by_key(|i| catalog.files[*i].version);
            let found: Vec<u32> = indices.iter().map(|i| catalog.files[*i].version).collect();
            if found.iter().enumerate().any(|(k, v)| *v as usize != k + 1) {
                return Err(CatalogError::VersionGap {
                    event_type: event_type.clone(),
                    found,
                });
            }
            let names: Vec<&str> = indices
                .iter()
                .map(|i| catalog.files[*i].fullname.as_str())
                .collect();
            if names.windows(2).any(|w| w[0] != w[1]) {
                return Err(CatalogError::Invalid {
                    path: catalog.files[indices[0]].path.clone(),
                    message: format!(
                        "every version of {event_type} must keep the full name, found {names:?}"
                    ),
                });
            }
        }
        Ok(catalog)
    }

    /// Every schema file, in load order.
    pub fn files(&self) -> &[SchemaFile] {
        &self.files
    }

    /// The schema of `event_type` at `version`.
    pub fn get(&self, event_type: &str, version: u32) -> Option<&SchemaFile> {
        let indices = self.by_event.get(event_type)?;
        let i = indices.get(usize::try_from(version).ok()?.checked_sub(1)?)?;
        Some(&self.files[*i])
    }

    /// Every version of `event_type`, oldest first.
    pub fn versions(&self, event_type: &str) -> Vec<&SchemaFile> {
        self.by_event
            .get(event_type)
            .map(|v| v.iter().map(|i| &self.files[*i]).collect())
            .unwrap_or_default()
    }

    /// The latest version of `event_type`.
    pub fn latest(&self, event_type: &str) -> Option<&SchemaFile> {
        self.versions(event_type).last().copied()
    }

    /// Every event type, sorted.
    pub fn event_types(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_event.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The local schema whose Parsing Canonical Form is `canonical`.
    pub fn by_canonical_form(&self, canonical: &str) -> Option<&SchemaFile> {
        self.by_canonical.get(canonical).map(|i| &self.files[*i])
    }
}

/// Reads `<AggregateType>/<EventType>.v<N>.avsc`.
fn parse_name(path: &str) -> Option<(String, String, u32)> {
    let path = path.replace('\\', "/");
    let (dir, file) = path.rsplit_once('/')?;
    let aggregate = dir.rsplit('/').next()?;
    let stem = file.strip_suffix(".avsc")?;
    let (event, version) = stem.rsplit_once(".v")?;
    let version: u32 = version.parse().ok().filter(|v| *v >= 1)?;
    if aggregate.is_empty() || event.is_empty() {
        return None;
    }
    Some((aggregate.to_owned(), event.to_owned(), version))
}

/// The 1-based line of the name an apache-avro error message points at: a quoted token, or the
/// word after the last colon (namespace dropped), looked up as a JSON string; 1 when not found.
fn offending_line(text: &str, message: &str) -> usize {
    let quoted = message
        .split(['"', '\'', '`'])
        .nth(1)
        .filter(|s| !s.is_empty());
    let last = message
        .rsplit(':')
        .next()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    for token in quoted.into_iter().chain(last) {
        let short = token.rsplit('.').next().unwrap_or(token);
        for needle in [token, short] {
            let quoted = format!("\"{needle}\"");
            if let Some(i) = text.lines().position(|l| l.contains(&quoted)) {
                return i + 1;
            }
        }
    }
    1
}

fn parse_file(path: &str, text: String) -> Result<SchemaFile, CatalogError> {
    let Some((aggregate_type, event_type, version)) = parse_name(path) else {
        return Err(CatalogError::FileName { path: path.into() });
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| CatalogError::Parse {
        path: path.into(),
        line: e.line(),
        message: e.to_string(),
    })?;
    let schema = Schema::parse(&json).map_err(|e| {
        let message = e.to_string();
        CatalogError::Parse {
            path: path.into(),
            line: offending_line(&text, &message),
            message,
        }
    })?;
    let invalid = |message: String| CatalogError::Invalid {
        path: path.into(),
        message,
    };
    let Schema::Record(record) = &schema else {
        return Err(invalid("the top level must be a record".into()));
    };
    if record.name.name() != event_type {
        return Err(invalid(format!(
            "the record is named {}, the file says {event_type}",
            record.name.name()
        )));
    }
    if record.name.namespace().is_none_or(str::is_empty) {
        return Err(invalid("the record needs a namespace".into()));
    }
    let plan = Plan::compile(&schema).map_err(|PlanError(m)| invalid(m))?;
    Ok(SchemaFile {
        aggregate_type,
        fullname: record.name.fullname(None),
        canonical: schema.canonical_form(),
        event_type,
        version,
        path: path.into(),
        text,
        schema,
        plan: Arc::new(plan),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"type": "record", "name": "ThingHappened", "namespace": "t",
        "fields": [{"name": "a", "type": "string"}]}"#;

    fn one(path: &str, text: &str) -> Result<Catalog, CatalogError> {
        Catalog::from_texts([(path.to_owned(), text.to_owned())])
    }

    #[test]
    fn embeds_every_schema_of_the_repository() {
        let c = Catalog::embedded().unwrap();
        assert!(c.files().len() >= 26, "{}", c.files().len());
        let v2 = c.get("OpportunityCreated", 2).unwrap();
        assert_eq!(v2.fullname, "eventfold.opportunity.OpportunityCreated");
        assert_eq!(v2.aggregate_type, "Opportunity");
        assert_eq!(c.latest("UserRegistered").unwrap().version, 2);
        assert!(c.get("OpportunityCreated", 3).is_none());
        assert!(c.get("OpportunityCreated", 0).is_none());
    }

    #[test]
    fn reads_the_event_type_and_version_from_the_path() {
        let c = one("Agg/ThingHappened.v1.avsc", OK).unwrap();
        let f = &c.files()[0];
        assert_eq!(
            (f.aggregate_type.as_str(), f.event_type.as_str(), f.version),
            ("Agg", "ThingHappened", 1)
        );
        assert!(matches!(
            one("Agg/ThingHappened.avsc", OK),
            Err(CatalogError::FileName { .. })
        ));
        assert!(matches!(
            one("Agg/ThingHappened.v0.avsc", OK),
            Err(CatalogError::FileName { .. })
        ));
    }

    #[test]
    fn names_the_file_and_line_of_a_json_error() {
        let text = "{\n  \"type\": \"record\",\n  \"name\": \"ThingHappened\",,\n}";
        match one("Agg/ThingHappened.v1.avsc", text) {
            Err(e @ CatalogError::Parse { line: 3, .. }) => {
                assert!(
                    e.to_string().starts_with("Agg/ThingHappened.v1.avsc:3:"),
                    "{e}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_the_line_of_an_unknown_type() {
        let text = "{\"type\": \"record\", \"name\": \"ThingHappened\", \"namespace\": \"t\",\n \"fields\": [\n  {\"name\": \"a\", \"type\": \"strng\"}\n]}";
        match one("Agg/ThingHappened.v1.avsc", text) {
            Err(CatalogError::Parse { line, message, .. }) => {
                assert_eq!(line, 3, "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_two_versions_of_the_same_shape() {
        let c = Catalog::from_texts([
            ("Agg/ThingHappened.v1.avsc".to_owned(), OK.to_owned()),
            ("Agg/ThingHappened.v2.avsc".to_owned(), OK.to_owned()),
        ]);
        assert!(matches!(c, Err(CatalogError::Invalid { .. })));
    }

    #[test]
    fn refuses_a_record_named_otherwise_or_without_namespace() {
        assert!(matches!(
            one("Agg/Other.v1.avsc", OK),
            Err(CatalogError::Invalid { .. })
        ));
        let no_ns = r#"{"type": "record", "name": "ThingHappened", "fields": []}"#;
        assert!(matches!(
            one("Agg/ThingHappened.v1.avsc", no_ns),
            Err(CatalogError::Invalid { .. })
        ));
    }

    #[test]
    fn refuses_a_gap_in_the_versions() {
        let c = Catalog::from_texts([
            ("Agg/ThingHappened.v1.avsc".to_owned(), OK.to_owned()),
            (
                "Agg/ThingHappened.v3.avsc".to_owned(),
                OK.replace("\"a\"", "\"b\""),
            ),
        ]);
        assert!(matches!(c, Err(CatalogError::VersionGap { .. })));
    }
}
