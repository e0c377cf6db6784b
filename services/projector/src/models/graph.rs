//! Read model `graph` (Neo4j): the seed 000 cross-reference graph, the seed 001 interview graph
//! and the causal lineage of every event. `{g}` follows every label and relationship type (the
//! generation suffix, see [`crate::apply::render`]). Nested maps (classifications, enrichments,
//! metadata) are stored as JSON text, since Neo4j properties cannot be maps.
//!
//! Every node and every `CROSS_REFERENCE` carries the event envelope's `tenant` and is keyed by
//! `(tenant, id)`: the same id in two tenants is two nodes, and every statement binds the
//! tenant of its row, so no relationship joins nodes of two tenants.
//!
//! - `(:Verse {tenant, id})-[:CROSS_REFERENCE {tenant, id, type, confidence, status, method,
//!   semantic_similarity, discovered_at, validated_at, validations, last_version,
//!   enrichment_<key>}]->(:Verse)`; `(:Verse)-[:TYPIFIES {cross_ref_id, layer, relation,
//!   fractal_depth, strength, identified_at, last_version}]->(:Verse)`; verse processing as
//!   `processing_*` properties of the `Verse` named by `verse_id`.
//! - The oracle findings of a `VerseOracle` (aggregate id = its verse):
//!   `(:Verse)-[:NECESSITATES {oracle_id, score, type, strength, semantic_gaps_filled,
//!   presuppositions, calculated_at, last_version}]->(:Verse)` from `source_verse` to
//!   `target_verse`, one per oracle and target (a recalculation updates it);
//!   `(:Verse)-[:HAS_LXX_DIVERGENCE]->(:LxxDivergence {tenant, id: "<oracle id>/<divergence_type>",
//!   verse_id, divergence_type, lxx_reading, mt_reading, christological_category, oldest_witness,
//!   manuscript_confidence, detected_at, last_version})`, one per divergence type;
//!   `(:Verse {id: <oracle id>})-[:HAS_PROPHETIC_PROOF]->(:PropheticProof {tenant, id: <oracle id>,
//!   prophecy_ids, compound_probability, log_probability, bayesian_posterior, prior_used,
//!   bayes_factor, interpretation, computed_at, last_version})`, the latest proof.
//! - `(:Project {tenant, id})-[:HAS_INTERVIEW]->(:Interview {tenant, id, title, source,
//!   language, status})-[:HAS_SENTENCE]->(:Sentence {tenant, id, index, text, speaker})
//!   -[:HAS_ANALYSIS]->(:Analysis {tenant, id, model, classification, keywords, topics,
//!   overridden})`; a user override is `(:Analysis)-[:OVERRIDDEN_BY]->(:Override {tenant, id,
//!   fields, note, at})`, removed when cleared: the effective classification is the override's
//!   fields over the machine's.
//! - Seed 003: `(:Workflow {tenant, id, name, graph_id, status, reason, last_version})`;
//!   `(:GraphModel {tenant, id, name, workflow_id})-[:HAS_NODE]->(:GraphNode {tenant,
//!   id: "<graph id>/<node id>", graph_id, node_id, label, metadata, coordinates, last_version})`
//!   and `(:GraphNode)-[:CONNECTS {edge_id}]->(:GraphNode)` (`GraphNodeAdded` v1 arrives upcast,
//!   with empty `metadata`).
//! - `(:Event {tenant, id, type, aggregate_type, aggregate_id, version, occurred_at,
//!   correlation_id})` for every event, and `(cause:Event)-[:CAUSED]->(effect:Event)` by causation
//!   id within the effect's tenant (the cause may be a command id or an event of another
//!   aggregate of that tenant).

use eventfold_reference::biblos::cross_reference::Event as XrefEvent;
use eventfold_reference::biblos::verse_oracle::Event as OracleEvent;
use eventfold_reference::biblos::verse_processing::Event as ProcessingEvent;
use eventfold_reference::cim::graph::Event as GraphEvent;
use eventfold_reference::cim::workflow::Event as WorkflowEvent;
use eventfold_reference::interview::interview::Event as InterviewEvent;
use eventfold_reference::interview::sentence::Event as SentenceEvent;
use serde_json::{Map, Value, json};

use crate::projection::{HandlerError, ProjectedEvent, Projection, Store, Write};

/// The Neo4j read model of the reference domains.
#[derive(Debug, Clone, Copy, Default)]
pub struct Graph;

const LABELS: &[&str] = &[
    "Verse",
    "Event",
    "Project",
    "Interview",
    "Sentence",
    "Analysis",
    "Override",
    "LxxDivergence",
    "PropheticProof",
    "Workflow",
    "GraphModel",
    "GraphNode",
];

const RELATIONSHIPS: &[&str] = &[
    "CROSS_REFERENCE",
    "TYPIFIES",
    "CAUSED",
    "HAS_INTERVIEW",
    "HAS_SENTENCE",
    "HAS_ANALYSIS",
    "OVERRIDDEN_BY",
    "NECESSITATES",
    "HAS_LXX_DIVERGENCE",
    "HAS_PROPHETIC_PROOF",
    "HAS_NODE",
    "CONNECTS",
];

// Every statement below is written so that its plan does not grow with the graph (checked by
// `EXPLAIN` in tests/it/projector_plans.rs): rows are anchored by unique-constraint seeks on
// the composite `(tenant, id)` of nodes or of `CROSS_REFERENCE` (every MERGE and MATCH names
// both properties, so the seek is on the whole key), relationships without a unique key are
// merged between bound nodes (`Expand(Into)`), and no relationship MERGE carries a property
// that an index could serve (MERGE's locking re-check then iterates that index). Since both
// ends of every relationship are bound by the row's tenant, no relationship joins two tenants.
//
// Every statement is also idempotent per entity: the node or relationship keeps the aggregate
// version it last applied (`last_version`, `processing_last_version` on a verse) and a row
// changes it only when its version is newer, so an event applied twice (a replay racing the
// consumer) cannot count twice. Event nodes and `CAUSED` hold only what the event itself says.

const LINEAGE: &str = "UNWIND $rows AS r \
    MERGE (e:Event{g} {tenant: r.tenant, id: r.event_id}) \
    SET e.type = r.type, e.aggregate_type = r.aggregate_type, e.aggregate_id = r.id, \
        e.version = r.version, e.occurred_at = r.at, e.correlation_id = r.correlation_id \
    WITH e, r WHERE r.causation_id IS NOT NULL \
    MERGE (c:Event{g} {tenant: r.tenant, id: r.causation_id}) \
    MERGE (c)-[:CAUSED{g}]->(e)";

// A discovery is version 1 of its cross-reference: the relationship is created only when no
// relationship has its `(tenant, id)` (a unique seek), never merged on that key.
const XREF_DISCOVERED: &str = "UNWIND $rows AS r \
    OPTIONAL MATCH ()-[old:CROSS_REFERENCE{g} {tenant: r.tenant, id: r.id}]->() \
    WITH r, old WHERE old IS NULL \
    MERGE (s:Verse{g} {tenant: r.tenant, id: r.source}) \
    MERGE (t:Verse{g} {tenant: r.tenant, id: r.target}) \
    CREATE (s)-[x:CROSS_REFERENCE{g} {tenant: r.tenant, id: r.id}]->(t) \
    SET x.type = r.connection_type, x.confidence = r.confidence, x.status = 'discovered', \
        x.method = r.method, x.semantic_similarity = r.similarity, x.discovered_at = r.at, \
        x.validations = 0, x.last_version = r.version";

const XREF_VALIDATED: &str = "UNWIND $rows AS r \
    MATCH ()-[x:CROSS_REFERENCE{g} {tenant: r.tenant, id: r.id}]->() \
    WHERE x.last_version < r.version \
    SET x.confidence = r.confidence, x.status = r.status, x.validated_at = r.at, \
        x.validations = x.validations + 1, x.last_version = r.version";

const XREF_REFINED: &str = "UNWIND $rows AS r \
    MATCH ()-[x:CROSS_REFERENCE{g} {tenant: r.tenant, id: r.id}]->() \
    WHERE x.last_version < r.version \
    SET x += r.enrichments, x.confidence = r.confidence, x.refined_at = r.at, \
        x.last_version = r.version";

const XREF_TOUCHED: &str = "UNWIND $rows AS r \
    MATCH ()-[x:CROSS_REFERENCE{g} {tenant: r.tenant, id: r.id}]->() \
    WHERE x.last_version < r.version \
    SET x.last_version = r.version";

// `TYPIFIES` has no index on purpose: its MERGE between the two bound verses is an
// `Expand(Into)` over the few relationships between them.
const TYPOLOGY: &str = "UNWIND $rows AS r \
    MERGE (a:Verse{g} {tenant: r.tenant, id: r.type_ref}) \
    MERGE (b:Verse{g} {tenant: r.tenant, id: r.antitype_ref}) \
    MERGE (a)-[y:TYPIFIES{g} {cross_ref_id: r.id, layer: r.layer}]->(b) \
    ON CREATE SET y.last_version = 0 \
    WITH y, r WHERE y.last_version < r.version \
    SET y.relation = r.relation, y.fractal_depth = r.depth, y.strength = r.strength, \
        y.layer_strengths = r.layer_strengths, y.identified_at = r.at, y.last_version = r.version";

// A verse is shared by cross-references and processing aggregates: the guard compares versions
// of the processing aggregate that last wrote it only.
const PROCESSING: &str = "UNWIND $rows AS r \
    MERGE (v:Verse{g} {tenant: r.tenant, id: r.verse_id}) \
    WITH v, r WHERE v.processing_aggregate IS NULL OR v.processing_aggregate <> r.id \
        OR v.processing_last_version < r.version \
    SET v += r.props, v.processing_aggregate = r.id, v.processing_last_version = r.version";

// Like `TYPIFIES`, `NECESSITATES` is merged between the two bound verses on the oracle's id
// (no index), so each oracle owns its relationships and the guard compares its own versions.
const NECESSITY: &str = "UNWIND $rows AS r \
    MERGE (a:Verse{g} {tenant: r.tenant, id: r.source}) \
    MERGE (b:Verse{g} {tenant: r.tenant, id: r.target}) \
    MERGE (a)-[n:NECESSITATES{g} {oracle_id: r.id}]->(b) \
    ON CREATE SET n.last_version = 0 \
    WITH n, r WHERE n.last_version < r.version \
    SET n.score = r.score, n.type = r.necessity_type, n.strength = r.strength, \
        n.semantic_gaps_filled = r.gaps, n.presuppositions = r.presuppositions, \
        n.calculated_at = r.at, n.last_version = r.version";

const LXX_DIVERGENCE: &str = "UNWIND $rows AS r \
    MERGE (d:LxxDivergence{g} {tenant: r.tenant, id: r.divergence_id}) \
    WITH d, r WHERE coalesce(d.last_version, 0) < r.version \
    MERGE (v:Verse{g} {tenant: r.tenant, id: r.verse_id}) \
    MERGE (v)-[:HAS_LXX_DIVERGENCE{g}]->(d) \
    SET d.verse_id = r.verse_id, d.divergence_type = r.divergence_type, \
        d.lxx_reading = r.lxx_reading, d.mt_reading = r.mt_reading, \
        d.christological_category = r.christological_category, \
        d.oldest_witness = r.oldest_witness, d.manuscript_confidence = r.manuscript_confidence, \
        d.detected_at = r.at, d.last_version = r.version";

const PROPHETIC_PROOF: &str = "UNWIND $rows AS r \
    MERGE (p:PropheticProof{g} {tenant: r.tenant, id: r.id}) \
    WITH p, r WHERE coalesce(p.last_version, 0) < r.version \
    MERGE (v:Verse{g} {tenant: r.tenant, id: r.id}) \
    MERGE (v)-[:HAS_PROPHETIC_PROOF{g}]->(p) \
    SET p.prophecy_ids = r.prophecy_ids, p.compound_probability = r.compound_probability, \
        p.log_probability = r.log_probability, p.bayesian_posterior = r.bayesian_posterior, \
        p.prior_used = r.prior_used, p.bayes_factor = r.bayes_factor, \
        p.interpretation = r.interpretation, p.computed_at = r.at, p.last_version = r.version";

// A workflow's status follows its events, guarded by the workflow's version.
const WORKFLOW: &str = "UNWIND $rows AS r \
    MERGE (w:Workflow{g} {tenant: r.tenant, id: r.id}) \
    WITH w, r WHERE coalesce(w.last_version, 0) < r.version \
    SET w += r.props, w.updated_at = r.at, w.last_version = r.version";

const GRAPH_CREATED: &str = "UNWIND $rows AS r \
    MERGE (m:GraphModel{g} {tenant: r.tenant, id: r.id}) \
    SET m.name = r.name, m.workflow_id = r.workflow_id, m.created_at = r.at";

// A node is keyed by `<graph id>/<node id>`; its properties change with the graph's versions.
const GRAPH_NODE: &str = "UNWIND $rows AS r \
    MERGE (n:GraphNode{g} {tenant: r.tenant, id: r.node_key}) \
    WITH n, r WHERE coalesce(n.last_version, 0) < r.version \
    MERGE (m:GraphModel{g} {tenant: r.tenant, id: r.id}) \
    MERGE (m)-[:HAS_NODE{g}]->(n) \
    SET n += r.props, n.graph_id = r.id, n.last_version = r.version";

// An edge is merged between its two bound nodes on its id (no index), like `TYPIFIES`.
const GRAPH_EDGE: &str = "UNWIND $rows AS r \
    MERGE (a:GraphNode{g} {tenant: r.tenant, id: r.source}) \
    MERGE (b:GraphNode{g} {tenant: r.tenant, id: r.target}) \
    MERGE (a)-[c:CONNECTS{g} {edge_id: r.edge_id}]->(b) \
    SET c.graph_id = r.id, c.connected_at = r.at";

const INTERVIEW_CREATED: &str = "UNWIND $rows AS r \
    MERGE (i:Interview{g} {tenant: r.tenant, id: r.id}) \
    WITH i, r WHERE coalesce(i.last_version, 0) < r.version \
    MERGE (p:Project{g} {tenant: r.tenant, id: r.project_id}) \
    SET i.title = r.title, i.source = r.source, i.language = r.language, i.status = 'created', \
        i.metadata = r.metadata, i.created_at = r.at, \
        i.last_version = r.version \
    MERGE (p)-[:HAS_INTERVIEW{g}]->(i)";

const INTERVIEW_CHANGED: &str = "UNWIND $rows AS r \
    MATCH (i:Interview{g} {tenant: r.tenant, id: r.id}) \
    WHERE coalesce(i.last_version, 0) < r.version \
    SET i += r.props, i.updated_at = r.at, i.last_version = r.version";

const SENTENCE_CREATED: &str = "UNWIND $rows AS r \
    MERGE (s:Sentence{g} {tenant: r.tenant, id: r.id}) \
    WITH s, r WHERE coalesce(s.last_version, 0) < r.version \
    MERGE (i:Interview{g} {tenant: r.tenant, id: r.interview_id}) \
    SET s.index = r.index, s.text = r.text, s.speaker = r.speaker, s.start_ms = r.start_ms, \
        s.end_ms = r.end_ms, s.last_version = r.version \
    MERGE (i)-[:HAS_SENTENCE{g}]->(s)";

// The sentence's `last_version` guards its analysis and override too: they change only through
// the sentence aggregate's events.
const SENTENCE_EDITED: &str = "UNWIND $rows AS r \
    MATCH (s:Sentence{g} {tenant: r.tenant, id: r.id}) \
    WHERE coalesce(s.last_version, 0) < r.version \
    SET s.text = r.text, s.edited_by = r.editor, s.edited_at = r.at, s.last_version = r.version";

const ANALYSIS_GENERATED: &str = "UNWIND $rows AS r \
    MATCH (s:Sentence{g} {tenant: r.tenant, id: r.id}) \
    WHERE coalesce(s.last_version, 0) < r.version \
    MERGE (a:Analysis{g} {tenant: r.tenant, id: r.id}) \
    MERGE (s)-[:HAS_ANALYSIS{g}]->(a) \
    SET a.model = r.model, a.model_version = r.model_version, \
        a.classification = r.classification, a.keywords = r.keywords, a.topics = r.topics, \
        a.domain_keywords = r.domain_keywords, a.confidence = r.confidence, \
        a.generated_at = r.at, a.overridden = EXISTS { (a)-[:OVERRIDDEN_BY{g}]->() }, \
        a.last_version = r.version, s.last_version = r.version";

const ANALYSIS_OVERRIDDEN: &str = "UNWIND $rows AS r \
    MATCH (s:Sentence{g} {tenant: r.tenant, id: r.id}) \
    WHERE coalesce(s.last_version, 0) < r.version \
    MERGE (a:Analysis{g} {tenant: r.tenant, id: r.id}) \
    MERGE (s)-[:HAS_ANALYSIS{g}]->(a) \
    MERGE (o:Override{g} {tenant: r.tenant, id: r.id}) \
    MERGE (a)-[:OVERRIDDEN_BY{g}]->(o) \
    SET o.fields = r.fields, o.note = r.note, o.at = r.at, a.overridden = true, \
        a.last_version = r.version, s.last_version = r.version";

const ANALYSIS_CLEARED: &str = "UNWIND $rows AS r \
    MATCH (s:Sentence{g} {tenant: r.tenant, id: r.id}) \
    WHERE coalesce(s.last_version, 0) < r.version \
    OPTIONAL MATCH (s)-[:HAS_ANALYSIS{g}]->(a:Analysis{g}) \
    OPTIONAL MATCH (a)-[:OVERRIDDEN_BY{g}]->(o:Override{g}) \
    DETACH DELETE o \
    SET a.overridden = false, a.cleared_at = r.at, a.last_version = r.version, \
        s.last_version = r.version";

fn json_text(v: &impl serde::Serialize) -> Value {
    Value::String(serde_json::to_string(v).unwrap_or_default())
}

/// The envelope fields every row carries, plus `fields`.
fn row(e: &ProjectedEvent, fields: Value) -> Value {
    let env = &e.envelope;
    let mut m = Map::new();
    m.insert("id".into(), json!(env.aggregate_id));
    m.insert("tenant".into(), json!(env.tenant));
    m.insert("at".into(), json!(env.occurred_at));
    m.insert("version".into(), json!(env.aggregate_version));
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    Value::Object(m)
}

/// Map entries as properties `<prefix><key>`, each value as JSON text.
fn prefixed(prefix: &str, map: &Map<String, Value>) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, v)| (format!("{prefix}{k}"), json_text(v)))
            .collect(),
    )
}

fn cross_reference(e: &ProjectedEvent, event: XrefEvent) -> Write {
    match event {
        XrefEvent::CrossReferenceDiscovered(d) => Write::new(
            "xref_discovered",
            row(
                e,
                json!({
                    "source": d.source_ref, "target": d.target_ref,
                    "connection_type": d.connection_type, "confidence": d.initial_confidence,
                    "method": d.discovery_method, "similarity": d.semantic_similarity,
                }),
            ),
        ),
        XrefEvent::CrossReferenceValidated(v) => Write::new(
            "xref_validated",
            row(
                e,
                json!({"confidence": v.confidence_after, "status": v.status}),
            ),
        ),
        XrefEvent::CrossReferenceRefined(r) => Write::new(
            "xref_refined",
            row(
                e,
                json!({"confidence": r.new_confidence,
                "enrichments": prefixed("enrichment_", &r.enrichments)}),
            ),
        ),
        XrefEvent::TypologicalConnectionIdentified(t) => Write::new(
            "typology",
            row(
                e,
                json!({
                    "type_ref": t.type_ref, "antitype_ref": t.antitype_ref,
                    "layer": t.typology_layer, "relation": t.relation_type,
                    "depth": t.fractal_depth, "strength": t.composite_strength,
                    "layer_strengths": json_text(&t.layer_strengths),
                }),
            ),
        ),
    }
}

fn workflow(e: &ProjectedEvent, event: WorkflowEvent) -> Write {
    let props = match event {
        WorkflowEvent::WorkflowStarted(s) => json!({"name": s.name, "graph_id": s.graph_id,
            "status": "running", "nodes": s.nodes.len(), "edges": s.edges.len()}),
        WorkflowEvent::WorkflowApprovalRequested(_) => json!({"status": "awaiting_approval"}),
        WorkflowEvent::WorkflowApproved(a) => {
            json!({"status": "completed", "approver": a.approver})
        }
        WorkflowEvent::WorkflowCompleted(_) => json!({"status": "completed"}),
        WorkflowEvent::WorkflowFailed(f) => json!({"status": "failed", "failed_step": f.step,
            "reason": f.reason}),
        WorkflowEvent::WorkflowTimedOut(_) => json!({"status": "timed_out"}),
    };
    Write::new("workflow", row(e, json!({ "props": props })))
}

fn graph_model(e: &ProjectedEvent, event: GraphEvent) -> Write {
    let graph = &e.envelope.aggregate_id;
    match event {
        GraphEvent::GraphCreated(c) => Write::new(
            "graph_created",
            row(e, json!({"name": c.name, "workflow_id": c.workflow_id})),
        ),
        GraphEvent::GraphNodeAdded(n) => Write::new(
            "graph_node",
            row(
                e,
                json!({"node_key": format!("{graph}/{}", n.node_id),
                "props": {"node_id": n.node_id, "label": n.label,
                    "metadata": Value::Object(n.metadata).to_string()}}),
            ),
        ),
        GraphEvent::ConceptualPointMapped(p) => Write::new(
            "graph_node",
            row(
                e,
                json!({"node_key": format!("{graph}/{}", p.node_id),
                "props": {"node_id": p.node_id, "coordinates": p.coordinates}}),
            ),
        ),
        GraphEvent::GraphEdgeConnected(c) => Write::new(
            "graph_edge",
            row(
                e,
                json!({"edge_id": c.edge_id, "source": format!("{graph}/{}", c.source),
                "target": format!("{graph}/{}", c.target)}),
            ),
        ),
    }
}

fn processing(e: &ProjectedEvent, event: ProcessingEvent) -> Write {
    let (verse_id, props) = match event {
        ProcessingEvent::VerseProcessingStarted(s) => (
            s.verse_id,
            json!({"book": s.book, "chapter": s.chapter, "verse": s.verse,
                "text": s.text_content, "processing_status": "started",
                "processing_phase": s.phase, "processing_attempt": s.attempt}),
        ),
        ProcessingEvent::VerseProcessingCompleted(c) => (
            c.verse_id,
            json!({"processing_status": "completed", "processing_phase": c.phase,
                "processing_quality_score": c.quality_score,
                "processing_duration_ms": c.duration_ms}),
        ),
        ProcessingEvent::VerseProcessingFailed(f) => (
            f.verse_id,
            json!({"processing_status": "failed", "processing_phase": f.phase,
                "processing_error": f.error_message, "processing_will_retry": f.will_retry}),
        ),
    };
    Write::new(
        "processing",
        row(e, json!({"verse_id": verse_id, "props": props})),
    )
}

fn oracle(e: &ProjectedEvent, event: OracleEvent) -> Write {
    match event {
        OracleEvent::NecessityCalculated(n) => Write::new(
            "necessity",
            row(
                e,
                json!({"source": n.source_verse, "target": n.target_verse,
                "score": n.necessity_score, "necessity_type": n.necessity_type,
                "strength": n.necessity_strength, "gaps": n.semantic_gaps_filled,
                "presuppositions": n.presuppositions_detected}),
            ),
        ),
        OracleEvent::LXXDivergenceDetected(d) => Write::new(
            "lxx_divergence",
            row(
                e,
                json!({"divergence_id": format!("{}/{}", e.envelope.aggregate_id, d.divergence_type),
                "verse_id": d.verse_id, "divergence_type": d.divergence_type,
                "lxx_reading": d.lxx_reading, "mt_reading": d.mt_reading,
                "christological_category": d.christological_category,
                "oldest_witness": d.oldest_witness,
                "manuscript_confidence": d.manuscript_confidence}),
            ),
        ),
        OracleEvent::PropheticProofComputed(p) => Write::new(
            "prophetic_proof",
            row(
                e,
                json!({"prophecy_ids": p.prophecy_ids,
                "compound_probability": p.compound_probability,
                "log_probability": p.log_probability,
                "bayesian_posterior": p.bayesian_posterior, "prior_used": p.prior_used,
                "bayes_factor": p.bayes_factor, "interpretation": p.interpretation}),
            ),
        ),
    }
}

fn interview(e: &ProjectedEvent, event: InterviewEvent) -> Write {
    match event {
        InterviewEvent::InterviewCreated(c) => Write::new(
            "interview_created",
            row(
                e,
                json!({"project_id": c.project_id, "title": c.title, "source": c.source,
                "language": c.language, "metadata": json_text(&c.metadata)}),
            ),
        ),
        InterviewEvent::InterviewStatusChanged(s) => Write::new(
            "interview_changed",
            row(e, json!({"props": {"status": s.to_status}})),
        ),
        InterviewEvent::InterviewMetadataUpdated(m) => {
            let mut props = prefixed("metadata_", &m.metadata_diff);
            if let Value::Object(p) = &mut props {
                if let Some(t) = m.title {
                    p.insert("title".into(), json!(t));
                }
                if let Some(l) = m.language {
                    p.insert("language".into(), json!(l));
                }
            }
            Write::new("interview_changed", row(e, json!({"props": props})))
        }
    }
}

fn sentence(e: &ProjectedEvent, event: SentenceEvent) -> Write {
    match event {
        SentenceEvent::SentenceCreated(c) => Write::new(
            "sentence_created",
            row(
                e,
                json!({"interview_id": c.interview_id, "index": c.index, "text": c.text,
                "speaker": c.speaker, "start_ms": c.start_ms, "end_ms": c.end_ms}),
            ),
        ),
        SentenceEvent::SentenceEdited(s) => Write::new(
            "sentence_edited",
            row(e, json!({"text": s.new_text, "editor": s.editor_type})),
        ),
        SentenceEvent::AnalysisGenerated(a) => Write::new(
            "analysis_generated",
            row(
                e,
                json!({"model": a.model, "model_version": a.model_version,
                "classification": json_text(&a.classification), "keywords": a.keywords,
                "topics": a.topics, "domain_keywords": a.domain_keywords,
                "confidence": a.confidence}),
            ),
        ),
        SentenceEvent::AnalysisOverridden(o) => Write::new(
            "analysis_overridden",
            row(
                e,
                json!({"fields": json_text(&o.fields_overridden), "note": o.note}),
            ),
        ),
        SentenceEvent::AnalysisCleared(_) => Write::new("analysis_cleared", row(e, json!({}))),
    }
}

impl Projection for Graph {
    fn name(&self) -> &'static str {
        "graph"
    }

    fn store(&self) -> Store {
        Store::Neo4j
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        eventfold_reference::AGGREGATE_TYPES
    }

    fn setup(&self) -> Vec<String> {
        LABELS
            .iter()
            .flat_map(|l| {
                let name = l.to_lowercase();
                [
                    // Until this version `id` alone was unique: two tenants' nodes with the
                    // same id could not coexist.
                    format!("DROP CONSTRAINT {name}_id{{g}} IF EXISTS"),
                    // Nodes written before the tenant was part of their key answer for the
                    // default tenant (a label scan per start, in bounded transactions; nothing
                    // matches once done). See the README, "Identity and tenants".
                    format!(
                        "MATCH (n:{l}{{g}}) WHERE n.tenant IS NULL \
                         CALL {{ WITH n SET n.tenant = 'default' }} IN TRANSACTIONS OF 10000 ROWS"
                    ),
                    format!(
                        "CREATE CONSTRAINT {name}_tenant_id{{g}} IF NOT EXISTS \
                         FOR (n:{l}{{g}}) REQUIRE (n.tenant, n.id) IS UNIQUE"
                    ),
                ]
            })
            .chain([
                // Until then a plain index, and later `id` alone, served `CROSS_REFERENCE.id`;
                // a uniqueness constraint cannot be created over the index, and the unique seek
                // on `(tenant, id)` is what anchors the cross-reference statements. Its
                // relationships always carried `tenant`.
                "DROP INDEX cross_reference_id{g} IF EXISTS".to_owned(),
                "DROP CONSTRAINT cross_reference_id_unique{g} IF EXISTS".to_owned(),
                "CREATE CONSTRAINT cross_reference_tenant_id{g} IF NOT EXISTS \
                 FOR ()-[x:CROSS_REFERENCE{g}]-() REQUIRE (x.tenant, x.id) IS UNIQUE"
                    .to_owned(),
            ])
            .collect()
    }

    fn reset(&self) -> Vec<String> {
        LABELS
            .iter()
            .map(|l| {
                format!("MATCH (n:{l}{{g}}) WITH n LIMIT 5000 DETACH DELETE n RETURN count(*) AS c")
            })
            .collect()
    }

    fn statement(&self, key: &str) -> Option<&'static str> {
        Some(match key {
            "lineage" => LINEAGE,
            "xref_discovered" => XREF_DISCOVERED,
            "xref_validated" => XREF_VALIDATED,
            "xref_refined" => XREF_REFINED,
            "xref_touched" => XREF_TOUCHED,
            "typology" => TYPOLOGY,
            "processing" => PROCESSING,
            "necessity" => NECESSITY,
            "lxx_divergence" => LXX_DIVERGENCE,
            "prophetic_proof" => PROPHETIC_PROOF,
            "workflow" => WORKFLOW,
            "graph_created" => GRAPH_CREATED,
            "graph_node" => GRAPH_NODE,
            "graph_edge" => GRAPH_EDGE,
            "interview_created" => INTERVIEW_CREATED,
            "interview_changed" => INTERVIEW_CHANGED,
            "sentence_created" => SENTENCE_CREATED,
            "sentence_edited" => SENTENCE_EDITED,
            "analysis_generated" => ANALYSIS_GENERATED,
            "analysis_overridden" => ANALYSIS_OVERRIDDEN,
            "analysis_cleared" => ANALYSIS_CLEARED,
            _ => return None,
        })
    }

    fn writes(&self, e: &ProjectedEvent) -> Result<Vec<Write>, HandlerError> {
        let env = &e.envelope;
        let mut out = Vec::with_capacity(3);
        match env.aggregate_type.as_str() {
            "CrossReference" => {
                let event = e.domain::<XrefEvent>()?;
                let typology = matches!(event, XrefEvent::TypologicalConnectionIdentified(_));
                out.push(cross_reference(e, event));
                if typology {
                    out.push(Write::new("xref_touched", row(e, json!({}))));
                }
            }
            "VerseProcessing" => out.push(processing(e, e.domain::<ProcessingEvent>()?)),
            "VerseOracle" => out.push(oracle(e, e.domain::<OracleEvent>()?)),
            "Interview" => out.push(interview(e, e.domain::<InterviewEvent>()?)),
            "Sentence" => out.push(sentence(e, e.domain::<SentenceEvent>()?)),
            "Workflow" => out.push(workflow(e, e.domain::<WorkflowEvent>()?)),
            "Graph" => out.push(graph_model(e, e.domain::<GraphEvent>()?)),
            _ => {}
        }
        out.push(Write::new(
            "lineage",
            row(
                e,
                json!({
                    "event_id": env.event_id, "type": env.event_type,
                    "aggregate_type": env.aggregate_type, "correlation_id": env.correlation_id,
                    "causation_id": env.causation_id,
                }),
            ),
        ));
        Ok(out)
    }

    fn dump(&self) -> Vec<&'static str> {
        vec![
            "MATCH (n:Verse{g}) RETURN n.tenant AS tenant, {label: 'Verse', props: properties(n)} AS row",
            "MATCH (n:Event{g}) RETURN n.tenant AS tenant, {label: 'Event', props: properties(n)} AS row",
            "MATCH (n:Project{g}) RETURN n.tenant AS tenant, {label: 'Project', props: properties(n)} AS row",
            "MATCH (n:Interview{g}) RETURN n.tenant AS tenant, {label: 'Interview', props: properties(n)} AS row",
            "MATCH (n:Sentence{g}) RETURN n.tenant AS tenant, {label: 'Sentence', props: properties(n)} AS row",
            "MATCH (n:Analysis{g}) RETURN n.tenant AS tenant, {label: 'Analysis', props: properties(n)} AS row",
            "MATCH (n:Override{g}) RETURN n.tenant AS tenant, {label: 'Override', props: properties(n)} AS row",
            "MATCH (n:LxxDivergence{g}) RETURN n.tenant AS tenant, {label: 'LxxDivergence', props: properties(n)} AS row",
            "MATCH (n:PropheticProof{g}) RETURN n.tenant AS tenant, {label: 'PropheticProof', props: properties(n)} AS row",
            "MATCH (n:Workflow{g}) RETURN n.tenant AS tenant, {label: 'Workflow', props: properties(n)} AS row",
            "MATCH (n:GraphModel{g}) RETURN n.tenant AS tenant, {label: 'GraphModel', props: properties(n)} AS row",
            "MATCH (n:GraphNode{g}) RETURN n.tenant AS tenant, {label: 'GraphNode', props: properties(n)} AS row",
            "MATCH (a)-[r:HAS_NODE{g}]->(b) RETURN a.tenant AS tenant, {type: 'HAS_NODE', from: [a.tenant, a.id], to: [b.tenant, b.id]} AS row",
            "MATCH (a)-[r:CONNECTS{g}]->(b) RETURN a.tenant AS tenant, {type: 'CONNECTS', from: [a.tenant, a.id], to: [b.tenant, b.id], props: properties(r)} AS row",
            "MATCH (a)-[r:CROSS_REFERENCE{g}]->(b) RETURN a.tenant AS tenant, {type: 'CROSS_REFERENCE', from: [a.tenant, a.id], to: [b.tenant, b.id], props: properties(r)} AS row",
            "MATCH (a)-[r:TYPIFIES{g}]->(b) RETURN a.tenant AS tenant, {type: 'TYPIFIES', from: [a.tenant, a.id], to: [b.tenant, b.id], props: properties(r)} AS row",
            "MATCH (a)-[r:CAUSED{g}]->(b) RETURN a.tenant AS tenant, {type: 'CAUSED', from: [a.tenant, a.id], to: [b.tenant, b.id]} AS row",
            "MATCH (a)-[r:HAS_INTERVIEW{g}]->(b) RETURN a.tenant AS tenant, {type: 'HAS_INTERVIEW', from: [a.tenant, a.id], to: [b.tenant, b.id]} AS row",
            "MATCH (a)-[r:HAS_SENTENCE{g}]->(b) RETURN a.tenant AS tenant, {type: 'HAS_SENTENCE', from: [a.tenant, a.id], to: [b.tenant, b.id]} AS row",
            "MATCH (a)-[r:HAS_ANALYSIS{g}]->(b) RETURN a.tenant AS tenant, {type: 'HAS_ANALYSIS', from: [a.tenant, a.id], to: [b.tenant, b.id]} AS row",
            "MATCH (a)-[r:OVERRIDDEN_BY{g}]->(b) RETURN a.tenant AS tenant, {type: 'OVERRIDDEN_BY', from: [a.tenant, a.id], to: [b.tenant, b.id]} AS row",
            "MATCH (a)-[r:NECESSITATES{g}]->(b) RETURN a.tenant AS tenant, {type: 'NECESSITATES', from: [a.tenant, a.id], to: [b.tenant, b.id], props: properties(r)} AS row",
            "MATCH (a)-[r:HAS_LXX_DIVERGENCE{g}]->(b) RETURN a.tenant AS tenant, {type: 'HAS_LXX_DIVERGENCE', from: [a.tenant, a.id], to: [b.tenant, b.id]} AS row",
            "MATCH (a)-[r:HAS_PROPHETIC_PROOF{g}]->(b) RETURN a.tenant AS tenant, {type: 'HAS_PROPHETIC_PROOF', from: [a.tenant, a.id], to: [b.tenant, b.id]} AS row",
        ]
    }
}

/// Every relationship type the graph read model writes (for docs and checks).
pub fn relationship_types() -> &'static [&'static str] {
    RELATIONSHIPS
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventfold_kafka::Envelope;

    fn event(t: &str, event_type: &str, id: &str, payload: Value) -> ProjectedEvent {
        ProjectedEvent {
            envelope: Envelope {
                event_id: "e-1".into(),
                event_type: event_type.into(),
                aggregate_type: t.into(),
                aggregate_id: id.into(),
                aggregate_version: 2,
                causation_id: Some("c-1".into()),
                occurred_at: "2026-11-24T00:00:00+00:00".into(),
                ..Envelope::default()
            },
            payload,
        }
    }

    #[test]
    fn a_validation_names_its_relationship_and_adds_lineage() {
        let e = event(
            "CrossReference",
            "CrossReferenceValidated",
            "GEN.1.1:JHN.1.1",
            json!({"cross_ref_id": "GEN.1.1:JHN.1.1", "validator_agent": "a",
                "validation_result": "approved", "confidence_before": 0.5,
                "confidence_after": 0.6, "reasoning": "r", "theological_checks": {},
                "status": "validated"}),
        );
        let w = Graph.writes(&e).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].statement, "xref_validated");
        assert_eq!(w[0].row["status"], "validated");
        assert_eq!(w[1].statement, "lineage");
        assert_eq!(w[1].row["causation_id"], "c-1");
        for x in &w {
            assert!(Graph.statement(x.statement).is_some(), "{}", x.statement);
        }
    }

    #[test]
    fn an_override_keeps_its_fields_as_json_text_and_unknown_types_get_lineage_only() {
        let e = event(
            "Sentence",
            "AnalysisOverridden",
            "s-1",
            json!({"fields_overridden": {"intent": "complaint"}, "note": null}),
        );
        let w = Graph.writes(&e).unwrap();
        assert_eq!(w[0].statement, "analysis_overridden");
        assert_eq!(w[0].row["fields"], "{\"intent\":\"complaint\"}");
        let other = event(
            "Opportunity",
            "OpportunityArchived",
            "o-1",
            json!({"reason": "x"}),
        );
        let w = Graph.writes(&other).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].statement, "lineage");
    }

    #[test]
    fn oracle_events_name_their_statements_and_key_a_divergence_by_oracle_and_type() {
        let e = event(
            "VerseOracle",
            "LXXDivergenceDetected",
            "ISA.7.14",
            json!({"verse_id": "ISA.7.14", "divergence_type": "lexical",
                "lxx_reading": "a", "mt_reading": "b", "christological_category": null,
                "oldest_witness": "w", "manuscript_confidence": 0.9}),
        );
        let w = Graph.writes(&e).unwrap();
        assert_eq!(w[0].statement, "lxx_divergence");
        assert_eq!(w[0].row["divergence_id"], "ISA.7.14/lexical");
        assert_eq!(w[1].statement, "lineage");
        let e = event(
            "VerseOracle",
            "NecessityCalculated",
            "ISA.7.14",
            json!({"source_verse": "ISA.7.14", "target_verse": "MAT.1.23",
                "necessity_score": 0.8, "necessity_type": "t", "necessity_strength": "s",
                "semantic_gaps_filled": 2, "presuppositions_detected": ["p"]}),
        );
        let w = Graph.writes(&e).unwrap();
        assert_eq!(w[0].statement, "necessity");
        assert_eq!(w[0].row["target"], "MAT.1.23");
        assert_eq!(w[0].row["version"], 2);
    }

    #[test]
    fn every_node_and_cross_reference_is_bound_by_the_rows_tenant_and_id() {
        for key in STATEMENT_KEYS {
            let s = Graph.statement(key).unwrap();
            for l in LABELS.iter().chain(&["CROSS_REFERENCE"]) {
                for (i, _) in s.match_indices(&format!(":{l}{{g}} {{")) {
                    let rest = &s[i + l.len() + 6..];
                    assert!(
                        rest.starts_with("tenant: r.tenant, id: "),
                        "{key}: `{l}` not keyed by (tenant, id): {rest}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_dump_query_names_the_tenant_of_its_row() {
        for q in Graph.dump() {
            let owner = if q.contains(")-[r:") { "a" } else { "n" };
            assert!(
                q.contains(&format!("RETURN {owner}.tenant AS tenant, ")),
                "{q}"
            );
        }
    }

    #[test]
    fn the_dump_names_relationship_ends_by_tenant_and_id() {
        for q in Graph.dump().into_iter().filter(|q| q.contains(")-[r:")) {
            assert!(
                q.contains("from: [a.tenant, a.id], to: [b.tenant, b.id]"),
                "{q}"
            );
        }
    }

    const STATEMENT_KEYS: [&str; 17] = [
        "lineage",
        "xref_discovered",
        "xref_validated",
        "xref_refined",
        "xref_touched",
        "typology",
        "processing",
        "necessity",
        "lxx_divergence",
        "prophetic_proof",
        "interview_created",
        "interview_changed",
        "sentence_created",
        "sentence_edited",
        "analysis_generated",
        "analysis_overridden",
        "analysis_cleared",
    ];

    #[test]
    fn every_statement_names_its_labels_with_the_generation_suffix() {
        for key in STATEMENT_KEYS {
            let s = Graph.statement(key).unwrap();
            for l in LABELS.iter().chain(RELATIONSHIPS) {
                for (i, _) in s.match_indices(&format!(":{l}")) {
                    let rest = &s[i + l.len() + 1..];
                    assert!(rest.starts_with("{g}"), "{key}: `{l}` without {{g}}");
                }
            }
        }
    }
}
