//! The seed 000 oracle events end to end against the real stack: `VerseOracle` commands over the
//! command-service HTTP API (listed in `/openapi.json`, bad values refused as 422 problems with a
//! code), through the relay and the projector into Neo4j: a necessity is a `NECESSITATES`
//! relationship between two verses of one tenant (a recalculation updates it), an LXX divergence a
//! node of the verse, a prophetic proof a node of the verse; the same verse id in another tenant is
//! a separate subgraph, and the graph audits clean against a from-scratch replay.

use std::time::Duration;

use eventfold_auth::scope;
use eventfold_tests::pipeline::Pipeline;
use eventfold_tests::{Stack, auth};
use reqwest::Client;
use serde_json::{Value, json};

async fn send(http: &Client, base: &str, id: &str, name: &str, body: Value) -> (u16, Value) {
    let r = http
        .post(format!("{base}/v1/VerseOracle/{id}/commands/{name}"))
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn ok(http: &Client, base: &str, id: &str, name: &str, body: Value) {
    let (status, answer) = send(http, base, id, name, body).await;
    assert!(
        (200..300).contains(&status),
        "{id} {name}: {status} {answer}"
    );
}

fn necessity(score: f64) -> Value {
    json!({"source_verse": "ISA.7.14", "target_verse": "MAT.1.23", "necessity_score": score,
        "necessity_type": "presuppositional", "necessity_strength": "strong",
        "semantic_gaps_filled": 3, "presuppositions_detected": ["virgin_birth", "immanuel"]})
}

fn divergence() -> Value {
    json!({"verse_id": "ISA.7.14", "divergence_type": "lexical", "lxx_reading": "ἡ παρθένος",
        "mt_reading": "הָעַלְמָה", "christological_category": "virgin_birth",
        "oldest_witness": "Codex Vaticanus", "manuscript_confidence": 0.95})
}

fn proof() -> Value {
    json!({"prophecy_ids": ["ISA.7.14", "MIC.5.2"], "compound_probability": 1e-6,
        "log_probability": -13.815510557964274, "bayesian_posterior": 0.999,
        "prior_used": 0.01, "bayes_factor": 98901.0, "interpretation": "far beyond chance"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oracle_commands_reach_the_graph_per_tenant_and_audit_clean() {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let api = p.command_service().await;
    let relay = p.relay("r1");
    let projector = p.projector("p1", &[]);
    let base = api.url.as_str();
    let default = auth::client("default", &[scope::COMMANDS_WRITE]);
    let acme = auth::client("acme", &[scope::COMMANDS_WRITE]);

    let openapi: Value = default
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    for c in [
        "CalculateNecessity",
        "DetectLXXDivergence",
        "ComputePropheticProof",
    ] {
        assert!(
            openapi["paths"][format!("/v1/VerseOracle/{{aggregate_id}}/commands/{c}")]["post"]
                .is_object(),
            "{c} missing from /openapi.json"
        );
    }

    ok(
        &default,
        base,
        "ISA.7.14",
        "CalculateNecessity",
        necessity(0.87),
    )
    .await;
    ok(
        &default,
        base,
        "ISA.7.14",
        "DetectLXXDivergence",
        divergence(),
    )
    .await;
    ok(&default, base, "ISA.7.14", "ComputePropheticProof", proof()).await;
    ok(
        &default,
        base,
        "ISA.7.14",
        "CalculateNecessity",
        necessity(0.5),
    )
    .await;
    ok(
        &acme,
        base,
        "ISA.7.14",
        "CalculateNecessity",
        necessity(0.25),
    )
    .await;

    // Bad values are refused with a code and write nothing.
    for (name, body, code) in [
        (
            "CalculateNecessity",
            necessity(1.5),
            "confidence_out_of_range",
        ),
        (
            "DetectLXXDivergence",
            json!({"verse_id": "MIC.5.2", "divergence_type": "lexical", "lxx_reading": "a",
                "mt_reading": "b", "oldest_witness": "w", "manuscript_confidence": 0.5}),
            "verse_mismatch",
        ),
        (
            "ComputePropheticProof",
            json!({"prophecy_ids": [], "compound_probability": 0.5, "log_probability": -0.7,
                "bayesian_posterior": 0.5, "prior_used": 0.5, "bayes_factor": 1.0,
                "interpretation": "i"}),
            "no_prophecies",
        ),
    ] {
        let (status, problem) = send(&default, base, "ISA.7.14", name, body).await;
        assert_eq!(status, 422, "{name}: {problem}");
        assert_eq!(problem["code"], code, "{name}: {problem}");
    }

    p.caught_up("graph", Duration::from_secs(90)).await;
    assert!(p.parked("graph").await.is_empty());
    let report = p.audit("graph").await;
    assert!(report.is_clean(), "audit: {report:#?}");
    assert!(
        report.expected_rows > 0,
        "audit compared nothing: {report:#?}"
    );

    // One NECESSITATES per tenant, between that tenant's two verses, at its latest score.
    assert_eq!(
        p.graph_count(
            "MATCH (a:Verse{g} {id: 'ISA.7.14'})-[n:NECESSITATES{g}]->(b:Verse{g} {id: 'MAT.1.23'}) \
             RETURN count(n) AS n"
        )
        .await,
        2
    );
    for (tenant, score, version) in [("default", 0.5, 4), ("acme", 0.25, 1)] {
        assert_eq!(
            p.graph_count(&format!(
                "MATCH (a:Verse{{g}} {{tenant: '{tenant}', id: 'ISA.7.14'}}) \
                 -[n:NECESSITATES{{g}} {{oracle_id: 'ISA.7.14'}}]-> \
                 (b:Verse{{g}} {{tenant: '{tenant}', id: 'MAT.1.23'}}) \
                 WHERE n.score = {score} AND n.last_version = {version} \
                   AND n.presuppositions = ['virgin_birth', 'immanuel'] \
                 RETURN count(n) AS n"
            ))
            .await,
            1,
            "{tenant}"
        );
    }
    assert_eq!(
        p.graph_count(
            "MATCH (a:Verse{g})-[:NECESSITATES{g}]->(b:Verse{g}) WHERE a.tenant <> b.tenant \
             RETURN count(*) AS n"
        )
        .await,
        0
    );
    // The divergence and the proof are nodes of the default tenant's verse only.
    assert_eq!(
        p.graph_count(
            "MATCH (v:Verse{g} {tenant: 'default', id: 'ISA.7.14'}) \
             -[:HAS_LXX_DIVERGENCE{g}]->(d:LxxDivergence{g} {tenant: 'default', id: 'ISA.7.14/lexical'}) \
             WHERE d.lxx_reading = 'ἡ παρθένος' AND d.mt_reading = 'הָעַלְמָה' \
               AND d.manuscript_confidence = 0.95 AND d.christological_category = 'virgin_birth' \
             RETURN count(d) AS n"
        )
        .await,
        1
    );
    assert_eq!(
        p.graph_count(
            "MATCH (v:Verse{g} {tenant: 'default', id: 'ISA.7.14'}) \
             -[:HAS_PROPHETIC_PROOF{g}]->(q:PropheticProof{g} {tenant: 'default', id: 'ISA.7.14'}) \
             WHERE q.prophecy_ids = ['ISA.7.14', 'MIC.5.2'] AND q.bayes_factor = 98901.0 \
               AND q.last_version = 3 \
             RETURN count(q) AS n"
        )
        .await,
        1
    );
    assert_eq!(
        p.graph_count(
            "MATCH (n) WHERE (n:LxxDivergence{g} OR n:PropheticProof{g}) AND n.tenant = 'acme' \
             RETURN count(n) AS n"
        )
        .await,
        0
    );

    projector.stop().await;
    relay.stop().await;
    api.shutdown.trigger();
    p.drop_all().await;
}
