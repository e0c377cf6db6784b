//! The schemas, the Rust event types, the upcasters and the golden corpus agree, for every event
//! type of every aggregate and every version.

use std::collections::BTreeSet;
use std::path::PathBuf;

use eventfold_avro::Catalog;
use eventfold_cli::golden;
use eventfold_reference::{AGGREGATE_TYPES, event_types, read_stored, upcasters};
use serde_json::Value;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn catalog() -> Catalog {
    Catalog::load_dir(&schemas_dir()).expect("the repository's schemas load")
}

fn sample(aggregate: &str, event_type: &str, version: u32) -> Value {
    let path = schemas_dir()
        .join("golden")
        .join(aggregate)
        .join(format!("{event_type}.v{version}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .expect("a payload is an object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn the_embedded_schemas_are_the_files_on_disk() {
    let embedded = Catalog::embedded().unwrap();
    let on_disk = catalog();
    let texts = |c: &Catalog| {
        let mut v: Vec<(String, String)> = c
            .files()
            .iter()
            .map(|f| (f.path.clone(), f.text.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(texts(&embedded), texts(&on_disk));
}

#[test]
fn every_event_type_has_a_schema_for_each_version_up_to_its_latest_and_no_more() {
    let catalog = catalog();
    let mut declared = BTreeSet::new();
    for aggregate in AGGREGATE_TYPES {
        let steps = upcasters(aggregate).unwrap();
        for event_type in event_types(aggregate).unwrap() {
            declared.insert(*event_type);
            let versions = catalog.versions(event_type);
            let latest = steps.latest(event_type);
            assert_eq!(
                versions.iter().map(|f| f.version).collect::<Vec<_>>(),
                (1..=latest).collect::<Vec<_>>(),
                "{aggregate}/{event_type}: schema versions vs upcasters"
            );
            for f in versions {
                assert_eq!(f.aggregate_type, *aggregate, "{}", f.path);
                steps
                    .check_path(event_type, f.version)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.path));
            }
        }
    }
    let schemas: BTreeSet<&str> = catalog.event_types().into_iter().collect();
    assert_eq!(
        schemas, declared,
        "schemas without an event type, or the reverse"
    );
}

#[test]
fn the_rust_event_types_and_their_latest_schemas_do_not_drift() {
    let catalog = catalog();
    for aggregate in AGGREGATE_TYPES {
        for event_type in event_types(aggregate).unwrap() {
            let file = catalog.latest(event_type).unwrap();
            let payload = sample(aggregate, event_type, file.version);
            // The Rust type reads the sample and writes it back unchanged: same fields, same values.
            let through_rust = read_stored(aggregate, event_type, file.version, payload.clone())
                .unwrap()
                .unwrap_or_else(|e| panic!("{event_type}: {e}"));
            assert_eq!(through_rust, payload, "{event_type}: Rust type vs sample");
            // The schema has exactly the Rust type's fields, and the payload survives Avro.
            let fields: BTreeSet<&str> = file.plan.field_names().into_iter().collect();
            assert_eq!(
                fields,
                keys(&payload),
                "{event_type}: schema vs Rust fields"
            );
            let mut body = Vec::new();
            file.plan
                .encode(&through_rust, &mut body)
                .unwrap_or_else(|e| panic!("{event_type}: {e}"));
            assert_eq!(
                file.plan.decode(&body).unwrap(),
                through_rust,
                "{event_type}"
            );
        }
    }
}

#[test]
fn every_older_schema_version_matches_its_sample_field_for_field() {
    let catalog = catalog();
    for f in catalog.files() {
        let payload = sample(&f.aggregate_type, &f.event_type, f.version);
        let fields: BTreeSet<&str> = f.plan.field_names().into_iter().collect();
        assert_eq!(fields, keys(&payload), "{}", f.path);
    }
}

#[test]
fn the_golden_corpus_matches_for_every_version() {
    let catalog = catalog();
    let checked = golden::check(&catalog, &schemas_dir().join("golden"))
        .unwrap_or_else(|problems| panic!("{}", problems.join("\n")));
    assert_eq!(checked, catalog.files().len());
}

#[test]
fn a_new_schema_version_without_golden_samples_fails_the_corpus() {
    let mut texts: Vec<(String, String)> = catalog()
        .files()
        .iter()
        .map(|f| (f.path.clone(), f.text.clone()))
        .collect();
    let v2 = catalog()
        .get("OpportunityArchived", 1)
        .unwrap()
        .text
        .clone();
    let v2 = v2.replace(
        r#""fields": ["#,
        r#""fields": [{"name": "archived_by", "type": ["null", "string"], "default": null},"#,
    );
    texts.push(("Opportunity/OpportunityArchived.v2.avsc".into(), v2));
    let with_v2 = Catalog::from_texts(texts).unwrap();
    let problems = golden::check(&with_v2, &schemas_dir().join("golden")).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("no golden sample for OpportunityArchived v2"),
        "{problems:?}"
    );
}

#[test]
fn a_changed_expected_value_fails_the_corpus() {
    let dir = std::env::temp_dir().join(format!("eventfold-golden-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&schemas_dir().join("golden"), &dir);
    let expected = dir.join("User/UserRegistered.v1.expected.json");
    let text = std::fs::read_to_string(&expected).unwrap();
    std::fs::write(
        &expected,
        text.replace("machine learning", "machine-learning"),
    )
    .unwrap();
    let problems = golden::check(&catalog(), &dir).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("UserRegistered v1 upcasts to"),
        "{problems:?}"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
