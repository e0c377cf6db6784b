//! The graph read model's Cypher against the real Neo4j: every statement the projection runs, and
//! every statement the engine itself runs in each transaction (epoch, offset and version locks,
//! saving versions and offsets, the epoch moves and deletes), has a plan whose cost does not grow
//! with the graph (`EXPLAIN` of each, walked operator by operator; the reset deletes scan their
//! labels only in pieces bounded by a `LIMIT`), and every statement is idempotent per entity, so
//! an event applied twice (a replay racing the consumer) changes nothing.
//!
//! neo4rs does not expose the plan of an `EXPLAIN` (its result summary keeps it private), so the
//! plans are read with a minimal Bolt 4.4 client written here: RUN + PULL, and the plan from the
//! PULL's SUCCESS metadata.

use std::collections::BTreeSet;

use eventfold_kafka::Envelope;
use eventfold_tests::Stack;
use neo4rs::query;
use projector::apply::{apply_neo4j, render};
use projector::models::graph::Graph;
use projector::projection::{ProjectedEvent, Projection, Write};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Packstream encoding of the JSON values a statement's parameters use.
fn pack(v: &Value, out: &mut Vec<u8>) {
    fn size(out: &mut Vec<u8>, n: usize, tiny: u8, markers: [u8; 3]) {
        if n < 16 {
            out.push(tiny + n as u8);
        } else if n < 256 {
            out.extend([markers[0], n as u8]);
        } else if n < 65_536 {
            out.push(markers[1]);
            out.extend((n as u16).to_be_bytes());
        } else {
            out.push(markers[2]);
            out.extend((n as u32).to_be_bytes());
        }
    }
    match v {
        Value::Null => out.push(0xC0),
        Value::Bool(b) => out.push(if *b { 0xC3 } else { 0xC2 }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => {
                out.push(0xCB);
                out.extend(i.to_be_bytes());
            }
            None => {
                out.push(0xC1);
                out.extend(n.as_f64().unwrap_or_default().to_be_bytes());
            }
        },
        Value::String(s) => {
            size(out, s.len(), 0x80, [0xD0, 0xD1, 0xD2]);
            out.extend(s.as_bytes());
        }
        Value::Array(a) => {
            size(out, a.len(), 0x90, [0xD4, 0xD5, 0xD6]);
            a.iter().for_each(|x| pack(x, out));
        }
        Value::Object(m) => {
            size(out, m.len(), 0xA0, [0xD8, 0xD9, 0xDA]);
            for (k, x) in m {
                pack(&Value::String(k.clone()), out);
                pack(x, out);
            }
        }
    }
}

/// Packstream decoding; a structure becomes `{"tag": .., "fields": [..]}`.
fn unpack(b: &[u8], i: &mut usize) -> Value {
    let m = b[*i];
    *i += 1;
    let mut take = |n: usize| {
        let s = &b[*i..*i + n];
        *i += n;
        s
    };
    let len = |s: &[u8]| s.iter().fold(0usize, |a, x| a << 8 | *x as usize);
    match m {
        0x00..=0x7F => json!(m),
        0xF0..=0xFF => json!(m as i8),
        0x80..=0x8F => json!(String::from_utf8_lossy(take((m - 0x80) as usize))),
        0xD0..=0xD2 => {
            let n = len(take(1 << (m - 0xD0)));
            json!(String::from_utf8_lossy(take(n)))
        }
        0x90..=0x9F | 0xD4..=0xD6 => {
            let n = if m < 0xA0 {
                (m - 0x90) as usize
            } else {
                len(take(1 << (m - 0xD4)))
            };
            Value::Array((0..n).map(|_| unpack(b, i)).collect())
        }
        0xA0..=0xAF | 0xD8..=0xDA => {
            let n = if m < 0xB0 {
                (m - 0xA0) as usize
            } else {
                len(take(1 << (m - 0xD8)))
            };
            let mut map = Map::new();
            for _ in 0..n {
                let k = unpack(b, i);
                map.insert(k.as_str().unwrap_or_default().to_owned(), unpack(b, i));
            }
            Value::Object(map)
        }
        0xB0..=0xBF => {
            let tag = take(1)[0];
            let fields = (0..(m - 0xB0)).map(|_| unpack(b, i)).collect::<Vec<_>>();
            json!({"tag": tag, "fields": fields})
        }
        0xC0 => Value::Null,
        0xC1 => json!(f64::from_be_bytes(take(8).try_into().unwrap())),
        0xC2 => json!(false),
        0xC3 => json!(true),
        0xC8 => json!(take(1)[0] as i8),
        0xC9 => json!(i16::from_be_bytes(take(2).try_into().unwrap())),
        0xCA => json!(i32::from_be_bytes(take(4).try_into().unwrap())),
        0xCB => json!(i64::from_be_bytes(take(8).try_into().unwrap())),
        other => panic!("packstream marker {other:#x} not expected in a plan"),
    }
}

/// One Bolt 4.4 connection (the stack's Neo4j runs without auth).
struct Bolt(TcpStream);

impl Bolt {
    async fn connect(uri: &str) -> Self {
        let addr = uri
            .trim_start_matches("bolt://")
            .trim_start_matches("neo4j://");
        let mut s = TcpStream::connect(addr).await.expect("bolt connection");
        s.write_all(&[
            0x60, 0x60, 0xB0, 0x17, 0, 0, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ])
        .await
        .unwrap();
        let mut version = [0u8; 4];
        s.read_exact(&mut version).await.unwrap();
        assert_eq!(version, [0, 0, 4, 4], "Neo4j did not accept Bolt 4.4");
        let mut b = Self(s);
        let hello = json!({"user_agent": "eventfold-plans/1", "scheme": "basic",
            "principal": "neo4j", "credentials": "eventfold"});
        b.request(0x01, &[hello]).await.expect("HELLO");
        b
    }

    async fn send(&mut self, tag: u8, fields: &[Value]) {
        let mut body = vec![0xB0 + fields.len() as u8, tag];
        fields.iter().for_each(|f| pack(f, &mut body));
        let mut out = Vec::new();
        for c in body.chunks(65_535) {
            out.extend((c.len() as u16).to_be_bytes());
            out.extend(c);
        }
        out.extend([0, 0]);
        self.0.write_all(&out).await.unwrap();
    }

    async fn message(&mut self) -> (u8, Vec<Value>) {
        let mut body = Vec::new();
        loop {
            let n = self.0.read_u16().await.unwrap() as usize;
            if n == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + n, 0);
            self.0.read_exact(&mut body[start..]).await.unwrap();
        }
        let v = unpack(&body, &mut 0);
        let tag = v["tag"].as_u64().unwrap() as u8;
        let fields = v["fields"].as_array().cloned().unwrap_or_default();
        (tag, fields)
    }

    /// Sends a request and returns its SUCCESS metadata (records are skipped), or the FAILURE.
    async fn request(&mut self, tag: u8, fields: &[Value]) -> Result<Value, Value> {
        self.send(tag, fields).await;
        loop {
            match self.message().await {
                (0x71, _) => continue,
                (0x70, f) => return Ok(f.into_iter().next().unwrap_or(Value::Null)),
                (0x7F, f) => {
                    // RESET clears the failure so that the connection can be used again.
                    self.send(0x0F, &[]).await;
                    while self.message().await.0 != 0x70 {}
                    return Err(f.into_iter().next().unwrap_or(Value::Null));
                }
                (t, _) => panic!("unexpected Bolt message {t:#x}"),
            }
        }
    }

    /// The plan of `EXPLAIN <cypher>` with `params`.
    async fn explain(&mut self, cypher: &str, params: Value) -> Value {
        let run = format!("EXPLAIN {cypher}");
        if let Err(e) = self.request(0x10, &[json!(run), params, json!({})]).await {
            panic!("EXPLAIN failed: {e}\n{cypher}");
        }
        let meta = self
            .request(0x3F, &[json!({"n": -1})])
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN failed: {e}\n{cypher}"));
        meta["plan"].clone()
    }
}

/// A plan as indented lines `Operator  details`.
fn describe(plan: &Value, depth: usize, out: &mut Vec<String>) {
    let op = plan["operatorType"].as_str().unwrap_or("?");
    let details = plan["args"]["Details"].as_str().unwrap_or("");
    out.push(format!("{}{}  {details}", "  ".repeat(depth), op));
    for c in plan["children"].as_array().into_iter().flatten() {
        describe(c, depth + 1, out);
    }
}

/// What makes a plan's cost grow with the graph, one line per offending operator:
/// - any scan (`AllNodesScan`, `NodeByLabelScan`, `*RelationshipTypeScan`, `*IndexScan`, ...),
///   which also covers a `CartesianProduct` over scans;
/// - an index seek that is not unique (it may return any number of rows), where a seek on a
///   unique node or relationship is meant;
/// - a relationship index seek inside a MERGE: MERGE re-checks its pattern under locks, and
///   that re-check iterates the relationship index (the stall seen in the 1M-event bench).
fn offences(plan: &Value, in_merge: bool, out: &mut Vec<String>) {
    let op = plan["operatorType"].as_str().unwrap_or("?");
    let name = op.split('@').next().unwrap_or(op);
    let details = plan["args"]["Details"].as_str().unwrap_or("");
    if name.contains("Scan") {
        out.push(format!("scan {name} ({details})"));
    }
    if name.contains("IndexSeek") && !name.contains("Unique") {
        out.push(format!("non-unique seek {name} ({details})"));
    }
    if in_merge
        && (name.contains("RelationshipIndexSeek") || name.contains("RelationshipUniqueIndexSeek"))
    {
        out.push(format!(
            "relationship index seek under MERGE {name} ({details})"
        ));
    }
    let merge = in_merge || name.contains("Merge");
    for c in plan["children"].as_array().into_iter().flatten() {
        offences(c, merge, out);
    }
}

fn event(
    aggregate_type: &str,
    id: &str,
    version: i64,
    event_type: &str,
    payload: Value,
) -> ProjectedEvent {
    ProjectedEvent {
        envelope: Envelope {
            event_id: format!("{id}/{version}"),
            event_type: event_type.into(),
            aggregate_type: aggregate_type.into(),
            aggregate_id: id.into(),
            aggregate_version: version,
            causation_id: Some(format!("cmd-{id}-{version}")),
            correlation_id: format!("corr-{id}"),
            tenant: "t1".into(),
            occurred_at: format!("2026-12-01T00:00:{version:02}+00:00"),
            recorded_at: format!("2026-12-01T00:00:{version:02}+00:00"),
            ..Envelope::default()
        },
        payload,
    }
}

/// One chain per aggregate type the graph handles, using every event type (so every statement).
fn events() -> Vec<ProjectedEvent> {
    let x = |v, t, p| event("CrossReference", "GEN.1.1:JHN.1.1", v, t, p);
    let validated = |before: f64, after: f64| {
        json!({"cross_ref_id": "GEN.1.1:JHN.1.1", "validator_agent": "theology",
            "validation_result": "approved", "confidence_before": before,
            "confidence_after": after, "reasoning": "r", "theological_checks": {"a": true},
            "status": "validated"})
    };
    let vp = |v, t, p| event("VerseProcessing", "vp-1", v, t, p);
    let o = |v, t, p| event("VerseOracle", "ISA.7.14", v, t, p);
    let i = |v, t, p| event("Interview", "i-1", v, t, p);
    let s = |v, t, p| event("Sentence", "s-1", v, t, p);
    let w = |v, t, p| event("Workflow", "w-1", v, t, p);
    let gr = |v, t, p| event("Graph", "g-1", v, t, p);
    let overridden = json!({"fields_overridden": {"function_type": "interrogative"},
        "note": "asked"});
    vec![
        x(
            1,
            "CrossReferenceDiscovered",
            json!({"source_ref": "GEN.1.1", "target_ref": "JHN.1.1",
            "connection_type": "thematic", "initial_confidence": 0.62,
            "discovery_method": "embedding", "feature_vector": [0.1, 0.4],
            "semantic_similarity": 0.81}),
        ),
        x(2, "CrossReferenceValidated", validated(0.62, 0.72)),
        x(
            3,
            "CrossReferenceRefined",
            json!({"cross_ref_id": "GEN.1.1:JHN.1.1",
            "refinement_type": "typology", "refinement_source": "agent", "old_confidence": 0.72,
            "new_confidence": 0.75, "enrichments": {"note": {"k": 1}}}),
        ),
        x(
            4,
            "TypologicalConnectionIdentified",
            json!({"type_ref": "GEN.1.1",
            "antitype_ref": "JHN.1.1", "typology_layer": "christological",
            "relation_type": "prefiguration", "fractal_depth": 2, "composite_strength": 0.7,
            "layer_strengths": {"christological": 0.7}}),
        ),
        x(5, "CrossReferenceValidated", validated(0.75, 0.82)),
        vp(
            1,
            "VerseProcessingStarted",
            json!({"verse_id": "GEN.1.1", "book": "GEN",
            "chapter": 1, "verse": 1, "text_content": "In the beginning",
            "phase": "linguistic", "attempt": 1}),
        ),
        vp(
            2,
            "VerseProcessingFailed",
            json!({"verse_id": "GEN.1.1", "phase": "linguistic",
            "error_type": "timeout", "error_message": "slow", "stack_trace": null,
            "retry_count": 0, "will_retry": true}),
        ),
        vp(
            3,
            "VerseProcessingCompleted",
            json!({"verse_id": "GEN.1.1", "phase": "linguistic",
            "duration_ms": 120, "agent_results": {}, "quality_score": 0.9}),
        ),
        o(
            1,
            "NecessityCalculated",
            json!({"source_verse": "ISA.7.14", "target_verse": "MAT.1.23",
            "necessity_score": 0.87, "necessity_type": "presuppositional",
            "necessity_strength": "strong", "semantic_gaps_filled": 3,
            "presuppositions_detected": ["virgin_birth"]}),
        ),
        o(
            2,
            "LXXDivergenceDetected",
            json!({"verse_id": "ISA.7.14", "divergence_type": "lexical",
            "lxx_reading": "parthenos", "mt_reading": "almah",
            "christological_category": "virgin_birth", "oldest_witness": "Vaticanus",
            "manuscript_confidence": 0.95}),
        ),
        o(
            3,
            "PropheticProofComputed",
            json!({"prophecy_ids": ["ISA.7.14", "MIC.5.2"], "compound_probability": 1e-6,
            "log_probability": -13.8, "bayesian_posterior": 0.999, "prior_used": 0.01,
            "bayes_factor": 98901.0, "interpretation": "far beyond chance"}),
        ),
        i(
            1,
            "InterviewCreated",
            json!({"project_id": "p-1", "title": "T", "source": "upload",
            "language": "en", "started_at": null, "metadata": {"k": "v"}}),
        ),
        i(
            2,
            "InterviewStatusChanged",
            json!({"from_status": "created",
            "to_status": "processing", "reason": null}),
        ),
        i(
            3,
            "InterviewMetadataUpdated",
            json!({"title": "T2", "language": null,
            "metadata_diff": {"k": "w"}}),
        ),
        s(
            1,
            "SentenceCreated",
            json!({"interview_id": "i-1", "index": 3, "text": "We shipped.",
            "speaker": "S1", "start_ms": 12000, "end_ms": 14500}),
        ),
        s(
            2,
            "SentenceEdited",
            json!({"old_text": "We shipped.", "new_text": "We shipped it.",
            "editor_type": "human"}),
        ),
        s(
            3,
            "AnalysisGenerated",
            json!({"model": "m", "model_version": "1",
            "classification": {"function_type": "declarative"}, "keywords": ["ship"],
            "topics": ["release"], "domain_keywords": [], "confidence": 0.87,
            "raw_ref": null}),
        ),
        s(4, "AnalysisOverridden", overridden.clone()),
        s(5, "AnalysisCleared", json!({"reason": null})),
        s(6, "AnalysisOverridden", overridden),
        w(
            1,
            "WorkflowStarted",
            json!({"name": "n", "graph_id": "g-1", "nodes": [{"node_id": "a", "label": "A",
            "metadata": {}}], "edges": [], "concepts": [], "approval_timeout_ms": null}),
        ),
        w(2, "WorkflowCompleted", json!({"graph_id": "g-1"})),
        gr(
            1,
            "GraphCreated",
            json!({"graph_id": "g-1", "name": "n", "workflow_id": "w-1"}),
        ),
        gr(
            2,
            "GraphNodeAdded",
            json!({"graph_id": "g-1", "node_id": "a", "label": "A", "metadata": {"k": 1}}),
        ),
        gr(
            3,
            "GraphNodeAdded",
            json!({"graph_id": "g-1", "node_id": "b", "label": "B", "metadata": {}}),
        ),
        gr(
            4,
            "GraphEdgeConnected",
            json!({"graph_id": "g-1", "edge_id": "e", "source": "a", "target": "b"}),
        ),
        gr(
            5,
            "ConceptualPointMapped",
            json!({"graph_id": "g-1", "node_id": "a", "coordinates": [0.5, 0.5]}),
        ),
    ]
}

async fn run(graph: &neo4rs::Graph, g: &str, writes: Vec<Write>) {
    let mut txn = graph.start_txn().await.unwrap();
    apply_neo4j(&mut txn, g, &Graph, writes)
        .await
        .unwrap_or_else(|e| panic!("apply: {e}"));
    txn.commit().await.unwrap();
}

async fn dump(graph: &neo4rs::Graph, g: &str) -> Vec<String> {
    let mut out = Vec::new();
    for q in Graph.dump() {
        let mut rows = graph.execute(query(&render(q, g))).await.unwrap();
        while let Some(row) = rows.next().await.unwrap() {
            let v: Value = row.get("row").unwrap();
            out.push(v.to_string().replace(g, ""));
        }
    }
    out.sort();
    out
}

async fn setup(graph: &neo4rs::Graph, g: &str) {
    for s in Graph.setup() {
        graph.run(query(&render(&s, g))).await.unwrap();
    }
}

async fn drop_generation(graph: &neo4rs::Graph, g: &str) {
    for s in Graph.reset() {
        graph.run(query(&render(&s, g))).await.unwrap();
    }
    for (kind, plural) in [("CONSTRAINT", "CONSTRAINTS"), ("INDEX", "INDEXES")] {
        let mut rows = graph
            .execute(
                query(&format!(
                    "SHOW {plural} YIELD name WHERE name ENDS WITH $g RETURN name"
                ))
                .param("g", g),
            )
            .await
            .unwrap();
        let mut names = Vec::new();
        while let Some(row) = rows.next().await.unwrap() {
            names.push(row.get::<String>("name").unwrap());
        }
        for n in names {
            graph
                .run(query(&format!("DROP {kind} {n} IF EXISTS")))
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_graph_statement_is_planned_on_unique_seeks_without_scans() {
    let stack = Stack::from_env().await;
    let graph = stack.neo4j.graph().unwrap();
    let g = format!("_plan{:08x}", fastrand::u32(..));
    setup(&graph, &g).await;
    // The rows each statement gets from the sample events, so the plans see real parameters.
    let mut rows: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for e in events() {
        for w in Graph.writes(&e).unwrap() {
            match rows.iter_mut().find(|(k, _)| *k == w.statement) {
                Some((_, r)) => r.push(w.row),
                None => rows.push((w.statement, vec![w.row])),
            }
        }
    }
    let keys: BTreeSet<&str> = rows.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys.len(),
        21,
        "the sample events use every statement: {keys:?}"
    );
    let mut bolt = Bolt::connect(&stack.neo4j.uri).await;
    let mut failures = Vec::new();
    for (key, r) in &rows {
        let cypher = render(Graph.statement(key).unwrap(), &g);
        let plan = bolt.explain(&cypher, json!({"rows": r})).await;
        let mut found = Vec::new();
        offences(&plan, false, &mut found);
        let mut lines = Vec::new();
        describe(&plan, 1, &mut lines);
        println!("{key}:\n{}", lines.join("\n"));
        if !found.is_empty() {
            failures.push(format!("{key}: {}\n{}", found.join("; "), lines.join("\n")));
        }
    }
    drop_generation(&graph, &g).await;
    assert!(
        failures.is_empty(),
        "plans that grow with the graph:\n{}",
        failures.join("\n\n")
    );
}

/// Scans that are not bounded: a scan is allowed only under a `Limit` with no `Eager` between
/// them (the limit then stops the scan after that many rows, so each statement of a reset loop
/// costs the same however large the graph is). `Eager` would read everything below it first.
fn unbounded_scans(plan: &Value, limited: bool, out: &mut Vec<String>) {
    let op = plan["operatorType"].as_str().unwrap_or("?");
    let name = op.split('@').next().unwrap_or(op);
    let details = plan["args"]["Details"].as_str().unwrap_or("");
    if name.contains("Scan") && !limited {
        out.push(format!("unbounded scan {name} ({details})"));
    }
    if name.contains("IndexSeek") && !name.contains("Unique") {
        out.push(format!("non-unique seek {name} ({details})"));
    }
    let limited = (limited || name == "Limit") && !name.contains("Eager");
    for c in plan["children"].as_array().into_iter().flatten() {
        unbounded_scans(c, limited, out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_engine_statement_is_planned_on_unique_seeks_without_scans() {
    use projector::target::{
        DROP_EPOCH_CYPHER, LOCK_OFFSETS_CYPHER, LOCK_VERSIONS_CYPHER, MOVE_EPOCH_CYPHER,
        RESET_OFFSETS_CYPHER, RESET_VERSIONS_CYPHER, SAVE_OFFSETS_CYPHER, SAVE_VERSIONS_CYPHER,
        TAKE_EPOCH_CYPHER, Target,
    };
    let stack = Stack::from_env().await;
    let graph = stack.neo4j.graph().unwrap();
    let g = format!("_eplan{:08x}", fastrand::u32(..));
    // The engine's constraints and the projection's, as a projector creates them.
    let target = Target::Neo4j {
        graph: graph.clone(),
        g: g.clone(),
        fence: None,
    };
    target.setup(&Graph).await.unwrap();
    let epoch = json!({"name": "graph", "epoch": 3});
    let version_keys = json!({"keys": [
        {"key": "CrossReference/x-1", "t": "CrossReference", "id": "x-1"},
        {"key": "Sentence/s-1", "t": "Sentence", "id": "s-1"}]});
    let offset_keys = json!({"keys": [
        {"key": "p.CrossReference/0", "topic": "p.CrossReference", "partition": 0},
        {"key": "p.Sentence/2", "topic": "p.Sentence", "partition": 2}]});
    let version_rows = json!({"rows": [
        {"key": "CrossReference/x-1", "t": "CrossReference", "id": "x-1", "v": 4},
        {"key": "Sentence/s-1", "t": "Sentence", "id": "s-1", "v": 2}]});
    let offset_rows = json!({"rows": [
        {"key": "p.CrossReference/0", "topic": "p.CrossReference", "partition": 0, "o": 17},
        {"key": "p.Sentence/2", "topic": "p.Sentence", "partition": 2, "o": 5}]});
    // Every transaction: epoch, offsets, versions, (the projection's writes,) versions, offsets.
    let hot: Vec<(&str, &str, Value)> = vec![
        ("take epoch", TAKE_EPOCH_CYPHER, epoch.clone()),
        ("lock offsets", LOCK_OFFSETS_CYPHER, offset_keys),
        ("lock versions", LOCK_VERSIONS_CYPHER, version_keys),
        ("save versions", SAVE_VERSIONS_CYPHER, version_rows),
        ("save offsets", SAVE_OFFSETS_CYPHER, offset_rows),
        ("move epoch", MOVE_EPOCH_CYPHER, epoch),
        ("drop epoch", DROP_EPOCH_CYPHER, json!({"name": "graph"})),
    ];
    // A reset deletes everything of its labels, so it scans them, but in bounded pieces.
    let mut resets: Vec<(String, String)> = vec![
        ("reset versions".into(), RESET_VERSIONS_CYPHER.into()),
        ("reset offsets".into(), RESET_OFFSETS_CYPHER.into()),
    ];
    resets.extend(
        Graph
            .reset()
            .into_iter()
            .map(|s| (format!("graph reset: {s}"), s)),
    );
    let mut bolt = Bolt::connect(&stack.neo4j.uri).await;
    let mut failures = Vec::new();
    for (key, statement, params) in &hot {
        let plan = bolt.explain(&render(statement, &g), params.clone()).await;
        let mut found = Vec::new();
        offences(&plan, false, &mut found);
        let mut lines = Vec::new();
        describe(&plan, 1, &mut lines);
        println!("{key}:\n{}", lines.join("\n"));
        if !found.is_empty() {
            failures.push(format!("{key}: {}\n{}", found.join("; "), lines.join("\n")));
        }
    }
    for (key, statement) in &resets {
        assert!(
            statement.contains("LIMIT"),
            "{key}: a reset statement deletes in bounded pieces"
        );
        let plan = bolt.explain(&render(statement, &g), json!({})).await;
        let mut found = Vec::new();
        unbounded_scans(&plan, false, &mut found);
        let mut lines = Vec::new();
        describe(&plan, 1, &mut lines);
        println!("{key}:\n{}", lines.join("\n"));
        if !found.is_empty() {
            failures.push(format!("{key}: {}\n{}", found.join("; "), lines.join("\n")));
        }
    }
    target.drop_all(&Graph).await.unwrap();
    assert!(
        failures.is_empty(),
        "plans that grow with the graph:\n{}",
        failures.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_graph_write_applied_twice_changes_nothing() {
    let stack = Stack::from_env().await;
    let graph = stack.neo4j.graph().unwrap();
    let once = format!("_once{:08x}", fastrand::u32(..));
    let twice = format!("_twice{:08x}", fastrand::u32(..));
    for g in [&once, &twice] {
        setup(&graph, g).await;
    }
    let events = events();
    for e in &events {
        let w = Graph.writes(e).unwrap();
        run(&graph, &once, w.clone()).await;
        // A replay racing the consumer: the same event's writes in a second transaction.
        run(&graph, &twice, w.clone()).await;
        run(&graph, &twice, w).await;
    }
    let counted = || async {
        let mut rows = graph
            .execute(query(&render(
                "MATCH ()-[x:CROSS_REFERENCE{g}]->() RETURN x.validations AS n, x.last_version AS v",
                &twice,
            )))
            .await
            .unwrap();
        let row = rows.next().await.unwrap().expect("the cross-reference");
        (row.get::<i64>("n").unwrap(), row.get::<i64>("v").unwrap())
    };
    let after_pairs = counted().await;
    let (a, b) = (dump(&graph, &once).await, dump(&graph, &twice).await);
    // And the whole history once more, as a redelivery after a crash would.
    for e in &events {
        run(&graph, &twice, Graph.writes(e).unwrap()).await;
    }
    let after_replay = counted().await;
    let c = dump(&graph, &twice).await;
    for g in [&once, &twice] {
        drop_generation(&graph, g).await;
    }
    assert_eq!(
        after_pairs,
        (2, 5),
        "validations counted once each, at version 5"
    );
    assert_eq!(
        after_replay,
        (2, 5),
        "a redelivered history changed the counter"
    );
    assert!(a.len() > 10, "{a:#?}");
    assert_eq!(a, b, "applying each event twice changed the graph");
    assert_eq!(a, c, "applying the history again changed the graph");
}
