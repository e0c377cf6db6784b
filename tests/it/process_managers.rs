//! Process managers against the real stack: seed 000's discovery pipeline over HTTP (verse
//! processing started and completed, cross-references discovered by the process manager through
//! the command service, their lineage in Neo4j), with the process manager's process aborted at
//! each step of its cycle and killed with SIGKILL mid-way: every planned cross-reference exists
//! exactly once.

use std::time::Duration;

use eventfold_tests::pipeline::Pipeline;
use eventfold_tests::relay::RelayProcess;
use eventfold_tests::{Stack, eventually, send_command};
use projector::process::managers::discovery::{CORPUS, CrossReferenceDiscovery, KeywordCandidates};
use reqwest::Client;
use serde_json::json;
use sqlx::Row;

const PM: &str = "discovery";
const COMMANDS: &str = "rm_discovery_g1.commands";

/// Starts and completes the intertextual phase of `verse_id` with `text`.
async fn process_verse(http: &Client, base: &str, verse_id: &str, text: &str) {
    let body = json!({"verse_id": verse_id, "book": "GEN", "chapter": 1, "verse": 1,
                      "text_content": text, "phase": "intertextual"});
    send_command(
        http,
        base,
        "VerseProcessing",
        verse_id,
        "StartVerseProcessing",
        body,
    )
    .await;
    let body = json!({"phase": "intertextual", "duration_ms": 7, "quality_score": 0.9});
    send_command(
        http,
        base,
        "VerseProcessing",
        verse_id,
        "CompleteVerseProcessing",
        body,
    )
    .await;
}

/// The cross-references the process manager must discover for `verse_id` with `text`.
fn planned(verse_id: &str, text: &str) -> Vec<String> {
    CrossReferenceDiscovery::default()
        .request(verse_id, text)
        .plan(&KeywordCandidates)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// The process manager alone in a projector process of the pipeline.
fn process_manager(p: &Pipeline, id: &str, api: &str, crash_at: Option<&str>) -> RelayProcess {
    let key = eventfold_tests::auth::settings()
        .key_file
        .display()
        .to_string();
    let mut extra = vec![
        ("PROJECTOR_READ_MODELS", PM),
        ("PROCESS_COMMAND_URL", api),
        ("PROCESS_SIGNING_KEY_FILE", key.as_str()),
        ("PROCESS_POLL_MS", "50"),
    ];
    if let Some(point) = crash_at {
        extra.push(("PROCESS_CRASH_AT", point));
    }
    p.projector(id, &extra)
}

/// Waits until the process manager has recorded and sent `n` commands.
async fn all_sent(p: &Pipeline, n: i64) {
    let pool = p.db.admin.clone();
    eventually(
        "every command recorded and sent",
        Duration::from_secs(90),
        || {
            let pool = pool.clone();
            async move {
                let r = sqlx::query(&format!(
                    "SELECT count(*) FILTER (WHERE status = 'done'), count(*) FROM {COMMANDS}"
                ))
                .fetch_one(&pool)
                .await
                .ok()?;
                let (done, all): (i64, i64) = (r.get(0), r.get(1));
                (done == n && all == n).then_some(())
            }
        },
    )
    .await;
}

/// Checks that every planned cross-reference of `verse_id` exists once, at version 1, caused by
/// the completion of the verse's phase and in its correlation; and no other one exists.
async fn discovered_exactly_once(p: &Pipeline, verse_id: &str, text: &str) {
    let completed = sqlx::query(
        "SELECT event_id, correlation_id FROM events WHERE aggregate_type = 'VerseProcessing' \
         AND aggregate_id = $1 AND event_type = 'VerseProcessingCompleted'",
    )
    .bind(verse_id)
    .fetch_one(&p.db.admin)
    .await
    .expect("the completion event");
    let (cause, correlation): (uuid::Uuid, uuid::Uuid) = (completed.get(0), completed.get(1));
    let rows = sqlx::query(
        "SELECT aggregate_id, count(*), max(version), bool_and(event_type = 'CrossReferenceDiscovered'), \
           bool_and(causation_id = $2), bool_and(correlation_id = $3), \
           bool_and(actor_kind = 'system' AND actor_id = $4) \
         FROM events WHERE aggregate_type = 'CrossReference' AND aggregate_id LIKE $1 || ':%' \
         GROUP BY aggregate_id ORDER BY aggregate_id",
    )
    .bind(verse_id)
    .bind(cause)
    .bind(correlation)
    .bind(PM)
    .fetch_all(&p.db.admin)
    .await
    .expect("cross-references");
    let mut expected = planned(verse_id, text);
    expected.sort();
    let found: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(found, expected, "cross-references of {verse_id}");
    for r in rows {
        let id: String = r.get(0);
        assert_eq!(
            (r.get::<i64, _>(1), r.get::<i64, _>(2)),
            (1, 1),
            "{id}: one event, version 1"
        );
        assert!(r.get::<bool, _>(3), "{id}: discovered");
        assert!(r.get::<bool, _>(4), "{id}: caused by {cause}");
        assert!(r.get::<bool, _>(5), "{id}: correlation {correlation}");
        assert!(r.get::<bool, _>(6), "{id}: sent as system:{PM}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verse_processing_discovers_each_cross_reference_once_whatever_step_the_process_manager_dies_at()
 {
    let stack = Stack::from_env().await;
    let p = Pipeline::create(&stack).await;
    let api = p.command_service().await;
    let relay = p.relay("r1");
    let graph = p.projector("graph", &[("PROJECTOR_READ_MODELS", "graph")]);
    let http = eventfold_tests::auth::operator();
    let base = api.url.as_str();
    let mut expected = 0i64;
    let mut verses = Vec::new();

    // Rounds: the process manager aborts at one step of its cycle (after reading the inbox but
    // before its transaction commits, right after it commits, after a command was applied but
    // before it was marked sent), is started again, and finishes the work.
    for (round, point) in [
        "react-before-commit",
        "react-after-commit",
        "dispatch-after-send",
    ]
    .into_iter()
    .enumerate()
    {
        let mut pm = process_manager(&p, &format!("pm{round}"), base, Some(point));
        for (i, (id, text)) in CORPUS.iter().enumerate().take(3) {
            let verse = format!("{id}.r{round}.{i}");
            process_verse(&http, base, &verse, text).await;
            expected += planned(&verse, text).len() as i64;
            verses.push((verse, *text));
        }
        let status = tokio::time::timeout(Duration::from_secs(90), pm.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the process manager aborts at {point}"))
            .expect("wait");
        assert!(!status.success(), "{point}: {status}");
        let again = process_manager(&p, &format!("pm{round}b"), base, None);
        all_sent(&p, expected).await;
        again.stop().await;
    }

    // SIGKILL while commands are in flight.
    let pm = process_manager(&p, "pm-kill", base, None);
    for (i, (id, text)) in CORPUS.iter().enumerate() {
        let verse = format!("{id}.kill.{i}");
        process_verse(&http, base, &verse, text).await;
        expected += planned(&verse, text).len() as i64;
        verses.push((verse, *text));
    }
    let pool = p.db.admin.clone();
    eventually(
        "some commands sent before the kill",
        Duration::from_secs(60),
        || {
            let pool = pool.clone();
            async move {
                let done: i64 = sqlx::query_scalar(&format!(
                    "SELECT count(*) FROM {COMMANDS} WHERE status = 'done'"
                ))
                .fetch_one(&pool)
                .await
                .ok()?;
                (done > 0).then_some(())
            }
        },
    )
    .await;
    pm.signal("KILL");
    let again = process_manager(&p, "pm-kill-b", base, None);
    all_sent(&p, expected).await;

    for (verse, text) in &verses {
        discovered_exactly_once(&p, verse, text).await;
    }
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'CrossReference'")
            .fetch_one(&p.db.admin)
            .await
            .expect("count");
    assert_eq!(total, expected, "no cross-reference event twice");

    // The lineage in Neo4j: each completion CAUSED its verse's discoveries.
    p.caught_up("graph", Duration::from_secs(90)).await;
    let (verse, text) = &verses[0];
    let caused = p
        .graph_count(&format!(
            "MATCH (c:Event{{g}} {{type: 'VerseProcessingCompleted', aggregate_id: '{verse}'}})\
             -[:CAUSED{{g}}]->(d:Event{{g}} {{type: 'CrossReferenceDiscovered'}}) RETURN count(d) AS n"
        ))
        .await;
    assert_eq!(caused, planned(verse, text).len() as i64);

    again.stop().await;
    graph.stop().await;
    relay.stop().await;
    api.stop().await;
    p.drop_all().await;
}
