//! `eventfold schemas check`: every local version must be compatible with the one before it (at
//! the registry's level, BACKWARD by default), and every version not yet registered must be
//! accepted by the registry as the subject's next version.

use std::collections::BTreeMap;
use std::fmt;

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use eventfold_avro::{Catalog, Compatibility, RegistryClient, RegistryError, SchemaFile};

use crate::subject_of;

/// One incompatibility: the subject, the versions compared and what is wrong (naming the field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The subject.
    pub subject: String,
    /// The older version (`None`: the subject's latest registered version).
    pub from: Option<u32>,
    /// The newer version.
    pub to: u32,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.from {
            Some(from) => write!(
                f,
                "{}: v{from} -> v{}: {}",
                self.subject, self.to, self.message
            ),
            None => write!(
                f,
                "{}: registry latest -> v{}: {}",
                self.subject, self.to, self.message
            ),
        }
    }
}

/// The versions of every event type, oldest first, grouped by event type (sorted).
pub(crate) fn chains(catalog: &Catalog) -> Vec<Vec<&SchemaFile>> {
    let mut by: BTreeMap<(&str, &str), Vec<&SchemaFile>> = BTreeMap::new();
    for f in catalog.files() {
        by.entry((f.aggregate_type.as_str(), f.event_type.as_str()))
            .or_default()
            .push(f);
    }
    by.into_values()
        .map(|mut v| {
            v.sort_by_key(|f| f.version);
            v
        })
        .collect()
}

/// Checks consecutive local versions against each other at `level` (transitive levels against
/// every earlier version).
pub fn check_local(catalog: &Catalog, level: Compatibility, topic_prefix: &str) -> Vec<Finding> {
    use Compatibility::*;
    let (backward, forward, transitive) = match level {
        Backward => (true, false, false),
        BackwardTransitive => (true, false, true),
        Forward => (false, true, false),
        ForwardTransitive => (false, true, true),
        Full => (true, true, false),
        FullTransitive => (true, true, true),
        None => (false, false, false),
    };
    let mut findings = Vec::new();
    for chain in chains(catalog) {
        for (i, new) in chain.iter().enumerate() {
            let olds = if transitive {
                &chain[..i]
            } else {
                &chain[i.saturating_sub(1)..i]
            };
            for old in olds {
                let mut problems = Vec::new();
                if backward {
                    problems.extend(can_read(&old.schema, &new.schema).err());
                }
                if forward {
                    problems.extend(can_read(&new.schema, &old.schema).err());
                }
                for message in problems {
                    findings.push(Finding {
                        subject: subject_of(topic_prefix, new),
                        from: Some(old.version),
                        to: new.version,
                        message,
                    });
                }
            }
        }
    }
    findings
}

/// Whether a reader with `reader` can read everything written with `writer`, or why not.
pub fn can_read(writer: &Schema, reader: &Schema) -> Result<(), String> {
    if let Err(e) = SchemaCompatibility::can_read(writer, reader) {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        return Err(message);
    }
    // apache-avro accepts an enum that lost symbols as long as one is shared; a record written
    // with a dropped symbol would then fail to read. Refuse it unless the reader has a default.
    let mut writer_enums = BTreeMap::new();
    enums(writer, &mut writer_enums);
    let mut reader_enums = BTreeMap::new();
    enums(reader, &mut reader_enums);
    for (name, (symbols, _)) in &writer_enums {
        if let Some((reader_symbols, default)) = reader_enums.get(name) {
            let dropped: Vec<&String> = symbols
                .iter()
                .filter(|s| !reader_symbols.contains(s))
                .collect();
            if !dropped.is_empty() && !default {
                return Err(format!(
                    "enum {name} drops symbols {dropped:?} and has no default"
                ));
            }
        }
    }
    Ok(())
}

type EnumIndex = BTreeMap<String, (Vec<String>, bool)>;

fn enums(schema: &Schema, out: &mut EnumIndex) {
    match schema {
        Schema::Enum(e) => {
            out.insert(
                e.name.fullname(None),
                (e.symbols.clone(), e.default.is_some()),
            );
        }
        Schema::Record(r) => r.fields.iter().for_each(|f| enums(&f.schema, out)),
        Schema::Array(a) => enums(&a.items, out),
        Schema::Map(m) => enums(&m.types, out),
        Schema::Union(u) => u.variants().iter().for_each(|v| enums(v, out)),
        _ => {}
    }
}

/// What the registry says about each local version: already registered (with its id) or,
/// when not, whether it would be accepted as the subject's next version.
pub async fn check_registry(
    catalog: &Catalog,
    client: &RegistryClient,
    topic_prefix: &str,
) -> Result<(Vec<String>, Vec<Finding>), RegistryError> {
    let mut notes = Vec::new();
    let mut findings = Vec::new();
    for chain in chains(catalog) {
        for file in chain {
            let subject = subject_of(topic_prefix, file);
            if let Some(found) = client.lookup(&subject, &file.text).await? {
                notes.push(format!(
                    "{subject}: v{} registered (id {}, subject version {})",
                    file.version, found.id, found.version
                ));
                continue;
            }
            let report = client.check_compatibility(&subject, &file.text).await?;
            if report.is_compatible {
                notes.push(format!(
                    "{subject}: v{} not registered yet, compatible",
                    file.version
                ));
            } else {
                findings.push(Finding {
                    subject,
                    from: None,
                    to: file.version,
                    message: report.messages.join("; "),
                });
            }
        }
    }
    Ok((notes, findings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(v2_fields: &str) -> Catalog {
        let v1 = r#"{"type":"record","name":"ThingHappened","namespace":"t","fields":[
            {"name":"a","type":"string"},
            {"name":"k","type":{"type":"enum","name":"K","symbols":["x","y"]}}]}"#;
        let v2 = format!(
            r#"{{"type":"record","name":"ThingHappened","namespace":"t","fields":[{v2_fields}]}}"#
        );
        Catalog::from_texts([
            ("Agg/ThingHappened.v1.avsc".into(), v1.into()),
            ("Agg/ThingHappened.v2.avsc".into(), v2),
        ])
        .unwrap()
    }

    const K: &str = r#"{"name":"k","type":{"type":"enum","name":"K","symbols":["x","y","z"]}}"#;

    #[test]
    fn accepts_a_new_field_with_a_default_and_a_widened_enum() {
        let c = catalog(&format!(
            r#"{{"name":"a","type":"string"}},{K},{{"name":"b","type":"long","default":0}}"#
        ));
        assert_eq!(check_local(&c, Compatibility::Backward, "p."), vec![]);
    }

    #[test]
    fn names_the_subject_versions_and_field_without_default() {
        let c = catalog(&format!(
            r#"{{"name":"a","type":"string"}},{K},{{"name":"region","type":"string"}}"#
        ));
        let findings = check_local(&c, Compatibility::Backward, "p.");
        assert_eq!(findings.len(), 1, "{findings:?}");
        let text = findings[0].to_string();
        assert!(
            text.starts_with("p.Agg-t.ThingHappened: v1 -> v2:") && text.contains("region"),
            "{text}"
        );
    }

    #[test]
    fn refuses_an_enum_that_drops_a_symbol() {
        let c = catalog(
            r#"{"name":"a","type":"string"},{"name":"k","type":{"type":"enum","name":"K","symbols":["x"]}}"#,
        );
        let findings = check_local(&c, Compatibility::Backward, "p.");
        assert!(
            findings[0].message.contains("drops symbols"),
            "{findings:?}"
        );
    }

    #[test]
    fn a_forward_level_refuses_a_removed_field_without_default() {
        let c = catalog(K);
        assert_eq!(check_local(&c, Compatibility::Backward, "p."), vec![]);
        let findings = check_local(&c, Compatibility::Forward, "p.");
        assert!(findings[0].message.contains('a'), "{findings:?}");
        assert!(check_local(&c, Compatibility::None, "p.").is_empty());
    }

    #[test]
    fn every_repository_schema_reads_all_its_earlier_versions() {
        let c = Catalog::embedded().unwrap();
        assert_eq!(
            check_local(&c, Compatibility::BackwardTransitive, "p."),
            vec![]
        );
    }
}
