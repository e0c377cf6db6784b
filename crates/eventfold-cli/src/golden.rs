//! The golden corpus: for every schema version a committed sample payload
//! (`schemas/golden/<AggregateType>/<EventType>.v<N>.json`), its Avro body (`.avro`, no wire
//! header: schema ids differ between registries) and the event it reads as at the latest version
//! (`.expected.json`, through the upcasters).
//!
//! [`check`] compares and never writes: the Avro body must decode to the sample and the sample
//! must encode to the same bytes, the upcast result must equal the expected file, and every schema
//! version must have a sample. [`write`] regenerates `.avro` and `.expected.json` from the
//! hand-written `.json` samples (`eventfold schemas golden --write`); review the diff.

use std::path::{Path, PathBuf};

use eventfold_avro::{Catalog, SchemaFile};
use serde_json::Value;

/// The three files of one schema version's sample.
struct Paths {
    sample: PathBuf,
    avro: PathBuf,
    expected: PathBuf,
}

fn paths(dir: &Path, f: &SchemaFile) -> Paths {
    let base = dir
        .join(&f.aggregate_type)
        .join(format!("{}.v{}", f.event_type, f.version));
    let with = |ext: &str| PathBuf::from(format!("{}.{ext}", base.display()));
    Paths {
        sample: with("json"),
        avro: with("avro"),
        expected: with("expected.json"),
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The sample's payload read as the aggregate's event at the latest version.
fn upcast(f: &SchemaFile, payload: Value) -> Result<Value, String> {
    eventfold_reference::read_stored(&f.aggregate_type, &f.event_type, f.version, payload)
        .ok_or_else(|| format!("unknown aggregate type {}", f.aggregate_type))?
        .map_err(|e| format!("{} v{}: {e}", f.event_type, f.version))
}

fn encode(f: &SchemaFile, payload: &Value) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    f.plan.encode(payload, &mut out).map_err(|e| {
        format!(
            "{} v{} sample does not fit its schema {e}",
            f.event_type, f.version
        )
    })?;
    Ok(out)
}

/// Checks every schema version's sample; returns how many were checked, or every problem.
pub fn check(catalog: &Catalog, dir: &Path) -> Result<usize, Vec<String>> {
    let mut problems = Vec::new();
    let mut checked = 0;
    for f in catalog.files() {
        let p = paths(dir, f);
        if !p.sample.exists() {
            problems.push(format!(
                "{}: no golden sample for {} v{} (write one, then run `eventfold schemas golden --write`)",
                p.sample.display(),
                f.event_type,
                f.version
            ));
            continue;
        }
        match check_one(f, &p) {
            Ok(()) => checked += 1,
            Err(e) => problems.push(e),
        }
    }
    problems.extend(orphans(catalog, dir));
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(problems)
    }
}

fn check_one(f: &SchemaFile, p: &Paths) -> Result<(), String> {
    let sample = read_json(&p.sample)?;
    let body = std::fs::read(&p.avro).map_err(|e| {
        format!(
            "{}: {e} (run `eventfold schemas golden --write`)",
            p.avro.display()
        )
    })?;
    let decoded = f
        .plan
        .decode(&body)
        .map_err(|e| format!("{}: {e}", p.avro.display()))?;
    if decoded != sample {
        return Err(format!(
            "{} decodes to {decoded}, not to the sample {}",
            p.avro.display(),
            p.sample.display()
        ));
    }
    if encode(f, &sample)? != body {
        return Err(format!(
            "{} encodes to other bytes than {}",
            p.sample.display(),
            p.avro.display()
        ));
    }
    let expected = read_json(&p.expected)?;
    let actual = upcast(f, decoded)?;
    if actual != expected {
        return Err(format!(
            "{} v{} upcasts to {actual}, expected {} ({})",
            f.event_type,
            f.version,
            expected,
            p.expected.display()
        ));
    }
    Ok(())
}

/// Samples whose schema version does not exist.
fn orphans(catalog: &Catalog, dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let Ok(aggregates) = std::fs::read_dir(dir) else {
        return problems;
    };
    for agg in aggregates.flatten().map(|e| e.path()) {
        for file in std::fs::read_dir(&agg).into_iter().flatten().flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let Some(stem) = name
                .strip_suffix(".expected.json")
                .or_else(|| name.strip_suffix(".json"))
                .or_else(|| name.strip_suffix(".avro"))
            else {
                continue;
            };
            let known = stem.rsplit_once(".v").is_some_and(|(event, v)| {
                v.parse()
                    .ok()
                    .and_then(|v| catalog.get(event, v))
                    .is_some_and(|f| agg.ends_with(&f.aggregate_type))
            });
            if !known {
                problems.push(format!(
                    "{}: no schema for this sample",
                    file.path().display()
                ));
            }
        }
    }
    problems
}

/// Rewrites `.avro` and `.expected.json` from every `.json` sample; returns how many were written.
pub fn write(catalog: &Catalog, dir: &Path) -> Result<usize, Vec<String>> {
    let mut problems = Vec::new();
    let mut written = 0;
    for f in catalog.files() {
        let p = paths(dir, f);
        let result = read_json(&p.sample).and_then(|sample| {
            let body = encode(f, &sample)?;
            let expected = upcast(f, sample)?;
            let text = serde_json::to_string_pretty(&expected).map_err(|e| e.to_string())? + "\n";
            std::fs::write(&p.avro, body).map_err(|e| format!("{}: {e}", p.avro.display()))?;
            std::fs::write(&p.expected, text).map_err(|e| format!("{}: {e}", p.expected.display()))
        });
        match result {
            Ok(()) => written += 1,
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok(written)
    } else {
        Err(problems)
    }
}
