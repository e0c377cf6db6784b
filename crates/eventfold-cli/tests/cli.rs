//! The `eventfold` binary as a user runs it: exit codes and messages, without a registry.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn eventfold(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventfold"))
        .args(args)
        .current_dir(repo())
        .env("SCHEMA_REGISTRY_URL", "http://127.0.0.1:1")
        .output()
        .expect("run eventfold")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_rejects_the_incompatible_fixture_naming_subject_versions_and_field() {
    let o = eventfold(&[
        "schemas",
        "check",
        "--offline",
        "--dir",
        "tests/fixtures/incompatible",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("eventfold.Opportunity-eventfold.fixture.OpportunityCreated: v1 -> v2")
            && err.contains("region"),
        "{err}"
    );
}

#[test]
fn check_names_the_file_and_line_of_a_schema_that_does_not_parse() {
    let o = eventfold(&[
        "schemas",
        "check",
        "--offline",
        "--dir",
        "tests/fixtures/unparseable",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Opportunity/OpportunityCreated.v1.avsc:7:"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_repository_schemas_pass_the_offline_check_and_the_golden_corpus() {
    let o = eventfold(&["schemas", "check", "--offline"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = eventfold(&["schemas", "golden"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("golden samples match"));
}

#[test]
fn bad_arguments_get_one_line_and_exit_code_2() {
    for args in [
        &["schemas", "frobnicate"][..],
        &["schemas", "check", "--nope"],
        &[],
        &["outbox", "parked", "list", "--aggregate", "no-slash"],
        &["outbox", "parked", "release"],
        &["outbox", "parked", "release", "--all", "--aggregate", "T/i"],
        &["outbox", "parked", "discard"],
        &["outbox", "parked", "discard", "--aggregate", "/id"],
        &["replay"],
        &["replay", "nope"],
        &["replay", "opportunities", "--batch", "0"],
        &["replay", "opportunities", "--from", "yesterday"],
        &["replay", "opportunities", "--to-version", "0"],
        &["replay", "opportunities", "--max-batches", "0"],
        &[
            "replay",
            "opportunities",
            "--types",
            "OpportunityCreated,NoSuchEvent",
        ],
        &["replay", "opportunities", "--tenant", "a b"],
        &["replay", "opportunities", "--checkpoint", "a/b"],
        &["replay", "opportunities", "--aggregate", ""],
        &[
            "replay",
            "opportunities",
            "--from",
            "2026-01-02T00:00:00Z",
            "--to",
            "2026-01-01T00:00:00Z",
        ],
    ] {
        let o = eventfold(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{}", stderr(&o));
    }
}

#[test]
fn a_bad_registry_url_is_a_one_line_usage_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_eventfold"))
        .args(["schemas", "register"])
        .current_dir(repo())
        .env("SCHEMA_REGISTRY_URL", "localhost:8081")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("SCHEMA_REGISTRY_URL"), "{}", stderr(&o));
}

#[test]
fn an_unreachable_registry_fails_the_online_check() {
    let o = eventfold(&["schemas", "check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("schema registry"), "{}", stderr(&o));
}
