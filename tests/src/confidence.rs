//! A small PostgreSQL read model written as a library user would: cross-references with their
//! confidence and a count of validations that is *not* idempotent, so only the engine's version
//! guard keeps a duplicate out. Tests use it to see double effects. Rows are keyed by (tenant, id),
//! as every read model's must be for a per-tenant audit.

use eventfold_reference::biblos::cross_reference::Event;
use projector::projection::{HandlerError, ProjectedEvent, Projection, Store, Write};
use serde_json::json;

/// Cross-references with their confidence and how many validations they had.
pub struct Confidence;

impl Projection for Confidence {
    fn name(&self) -> &'static str {
        "confidence"
    }
    fn store(&self) -> Store {
        Store::Postgres
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &["CrossReference"]
    }
    fn setup(&self) -> Vec<String> {
        vec![
            "CREATE TABLE IF NOT EXISTS {schema}.xrefs (tenant text NOT NULL, id text NOT NULL, \
             confidence float8 NOT NULL, validations int NOT NULL, last_version bigint NOT NULL, \
             PRIMARY KEY (tenant, id))"
                .into(),
        ]
    }
    fn reset(&self) -> Vec<String> {
        vec!["TRUNCATE {schema}.xrefs".into()]
    }
    fn statement(&self, key: &str) -> Option<&'static str> {
        match key {
            "discovered" => Some(
                "INSERT INTO {schema}.xrefs (tenant, id, confidence, validations, last_version) \
                 SELECT tenant, id, confidence, 0, version FROM jsonb_to_recordset($1) \
                   AS r(tenant text, id text, confidence float8, version bigint)",
            ),
            "validated" => Some(
                "UPDATE {schema}.xrefs x SET confidence = r.confidence, \
                   validations = x.validations + 1, last_version = r.version \
                 FROM jsonb_to_recordset($1) \
                   AS r(tenant text, id text, confidence float8, version bigint) \
                 WHERE x.tenant = r.tenant AND x.id = r.id",
            ),
            _ => None,
        }
    }
    fn writes(&self, e: &ProjectedEvent) -> Result<Vec<Write>, HandlerError> {
        let (tenant, id, version) = (
            &e.envelope.tenant,
            &e.envelope.aggregate_id,
            e.envelope.aggregate_version,
        );
        Ok(match e.domain::<Event>()? {
            Event::CrossReferenceDiscovered(d) => vec![Write::new(
                "discovered",
                json!({"tenant": tenant, "id": id, "confidence": d.initial_confidence,
                    "version": version}),
            )],
            // Not idempotent on purpose: only the version guard keeps a duplicate out.
            Event::CrossReferenceValidated(v) => vec![Write::new(
                "validated",
                json!({"tenant": tenant, "id": id, "confidence": v.confidence_after,
                    "version": version}),
            )],
            _ => vec![],
        })
    }
    fn dump(&self) -> Vec<&'static str> {
        vec!["SELECT x.tenant, row_to_json(x)::text AS row FROM {schema}.xrefs x"]
    }
}
