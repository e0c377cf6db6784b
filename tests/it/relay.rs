//! The outbox relay against real PostgreSQL, Kafka and the schema registry: completeness and order
//! with two relays and a kill -9, late commits, parking, fencing, and Java-compatible partitioning.
//! Each test has a database and a topic prefix of its own.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use eventfold_postgres::{NewEvent, shard_key};
use eventfold_tests::relay::{
    RelayDb, RelayProcess, append_events, consume_complete, consume_until, metric_value,
    shard_locks, versions_by_aggregate, xref_chain,
};
use eventfold_tests::{Stack, eventually};
use outbox_relay::outbox::{self, Done};
use uuid::Uuid;

async fn wait_outbox_empty(db: &RelayDb, timeout: Duration) {
    eventually("outbox drained", timeout, || async {
        (db.outbox_len().await == 0).then_some(())
    })
    .await;
}

async fn metrics(http: &reqwest::Client, url: &str) -> String {
    http.get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_publish_100k_events_complete_and_in_order_despite_a_kill_9() {
    const AGGREGATES: usize = 5_000;
    const VERSIONS: usize = 20;
    let stack = Stack::from_env().await;
    let db = RelayDb::create(&stack).await;
    let ids: Vec<String> = (0..AGGREGATES).map(|i| format!("xref-{i}")).collect();
    let a = RelayProcess::start(&db, "relay-a", &[]);
    let b = RelayProcess::start(&db, "relay-b", &[]);
    // Both relays take a fair share: 8 shards each.
    eventually(
        "two relays own 8 shards each",
        Duration::from_secs(30),
        || async {
            let locks = shard_locks(&db).await;
            (locks.len() == 2 && locks.iter().all(|(_, n)| *n == 8)).then_some(())
        },
    )
    .await;

    let writer = {
        let db_ids = ids.clone();
        let admin = db.admin.clone();
        let chain = xref_chain(VERSIONS);
        tokio::spawn(async move { append_events(&admin, &db_ids, &chain, 0, 500).await })
    };
    eventually(
        "a third of the events written",
        Duration::from_secs(120),
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
                .fetch_one(&db.admin)
                .await
                .ok()?;
            (n >= (AGGREGATES * VERSIONS / 3) as i64).then_some(())
        },
    )
    .await;
    a.signal("KILL");
    let killed = Instant::now();
    eventually(
        "the surviving relay owns every shard",
        Duration::from_secs(5),
        || async {
            let locks = shard_locks(&db).await;
            (locks.len() == 1 && locks[0].1 == 16).then_some(())
        },
    )
    .await;
    let takeover = killed.elapsed();
    let a = RelayProcess::start(&db, "relay-a2", &[]);
    writer.await.expect("writer");
    wait_outbox_empty(&db, Duration::from_secs(180)).await;

    let total = AGGREGATES * VERSIONS;
    let (records, duplicates) = consume_complete(&stack, &db.topic(), AGGREGATES, VERSIONS).await;
    let partitions: std::collections::BTreeSet<i32> = records.iter().map(|r| r.partition).collect();
    assert_eq!(partitions.len(), 3, "every partition used");
    println!(
        "relay: {total} events, {} records consumed, {duplicates} duplicates after kill -9, takeover {takeover:?}",
        records.len()
    );
    a.stop().await;
    b.stop().await;
    db.drop_database().await;
}

/// Inserts event + outbox row for `aggregate_id` version 1 inside `tx`; returns the outbox id.
async fn insert_in(tx: &mut sqlx::PgConnection, aggregate_id: &str, event: &NewEvent) -> i64 {
    sqlx::query_scalar(
        "WITH e AS ( \
            INSERT INTO events (event_id, event_type, schema_version, category, aggregate_type, \
                aggregate_id, version, occurred_at, correlation_id, actor_kind, actor_id, tenant, payload) \
            VALUES ($1, $2, $3, $4, 'CrossReference', $5, 1, now(), $6, 'agent', 'test', 'default', $7) \
            RETURNING position) \
         INSERT INTO outbox (shard_key, event_position, aggregate_type, aggregate_id, version) \
         SELECT $8, position, 'CrossReference', $5, 1 FROM e RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(&event.event_type)
    .bind(event.schema_version)
    .bind(&event.category)
    .bind(aggregate_id)
    .bind(Uuid::new_v4())
    .bind(&event.payload)
    .bind(shard_key(aggregate_id))
    .fetch_one(tx)
    .await
    .expect("insert event and outbox row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_commits_late_with_a_smaller_id_is_still_published() {
    let stack = Stack::from_env().await;
    let db = RelayDb::create(&stack).await;
    let relay = db.spawn_relay(&[]).await;
    let discovered = &xref_chain(1)[0];

    let mut late = db.admin.begin().await.expect("begin");
    let late_id = insert_in(&mut late, "late-1", discovered).await;
    let mut early = db.admin.begin().await.expect("begin");
    let early_id = insert_in(&mut early, "early-1", discovered).await;
    early.commit().await.expect("commit early");
    assert!(late_id < early_id, "the late row has the smaller id");

    consume_until(&stack, &db.topic(), Duration::from_secs(60), |r| {
        r.iter().any(|c| c.key == "early-1")
    })
    .await;
    late.commit().await.expect("commit late");
    let records = consume_until(&stack, &db.topic(), Duration::from_secs(60), |r| {
        r.iter().any(|c| c.key == "late-1")
    })
    .await;
    let keys: Vec<&str> = records.iter().map(|c| c.key.as_str()).collect();
    assert!(
        keys.contains(&"early-1") && keys.contains(&"late-1"),
        "{keys:?}"
    );
    wait_outbox_empty(&db, Duration::from_secs(30)).await;
    relay.stop().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unencodable_row_is_parked_with_its_later_events_while_others_flow() {
    let stack = Stack::from_env().await;
    let db = RelayDb::create(&stack).await;
    let relay = db.spawn_relay(&[]).await;
    let chain = xref_chain(4);
    let mut broken = chain[1].clone();
    broken.payload = serde_json::json!({"not": "a validation"});
    // good-1 gets versions 1-3; bad-1 gets 1, an unencodable 2, then 3.
    for (v, (good, bad)) in [
        (&chain[0], &chain[0]),
        (&chain[1], &broken),
        (&chain[2], &chain[2]),
    ]
    .into_iter()
    .enumerate()
    {
        append_one(&db, "good-1", v as i64, good).await;
        append_one(&db, "bad-1", v as i64, bad).await;
    }
    let records = consume_until(&stack, &db.topic(), Duration::from_secs(60), |r| {
        r.iter()
            .any(|c| c.key == "good-1" && c.envelope.aggregate_version == 3)
    })
    .await;
    wait_outbox_empty(&db, Duration::from_secs(30)).await;
    let by = versions_by_aggregate(&records);
    assert_eq!(by["good-1"], vec![1, 2, 3]);
    assert_eq!(by["bad-1"], vec![1], "bad-1 stops at its broken version 2");

    let parked: Vec<(i64, i64, String, Option<i64>)> = sqlx::query_as(
        "SELECT id, version, reason, blocked_by FROM outbox_parked WHERE aggregate_id = 'bad-1' ORDER BY id",
    )
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert_eq!(parked.len(), 2, "{parked:?}");
    assert_eq!((parked[0].1, parked[0].3), (2, None));
    assert!(
        parked[0].2.contains("CrossReferenceValidated"),
        "{}",
        parked[0].2
    );
    assert_eq!((parked[1].1, parked[1].3), (3, Some(parked[0].0)));

    // Later events: bad-1 keeps waiting behind its parked row, good-1 keeps flowing.
    append_one(&db, "bad-1", 3, &chain[3]).await;
    append_one(&db, "good-1", 3, &chain[3]).await;
    let records = consume_until(&stack, &db.topic(), Duration::from_secs(60), |r| {
        r.iter()
            .any(|c| c.key == "good-1" && c.envelope.aggregate_version == 4)
    })
    .await;
    wait_outbox_empty(&db, Duration::from_secs(30)).await;
    assert_eq!(versions_by_aggregate(&records)["bad-1"], vec![1]);
    let behind: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox_parked WHERE aggregate_id = 'bad-1' AND blocked_by IS NOT NULL",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(behind, 2);
    let text = metrics(&reqwest::Client::new(), &relay.admin_url).await;
    assert!(
        text.contains("eventfold_relay_parked_total{reason=\"encode\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("eventfold_relay_parked_total{reason=\"behind_parked\"} 2"),
        "{text}"
    );
    relay.stop().await;
    db.drop_database().await;
}

async fn append_one(db: &RelayDb, id: &str, after: i64, event: &NewEvent) {
    append_events(
        &db.admin,
        &[id.to_owned()],
        std::slice::from_ref(event),
        after,
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_epoch_moved_on_deletes_nothing_and_a_stopped_relay_hands_over() {
    let stack = Stack::from_env().await;
    let db = RelayDb::create(&stack).await;
    let a = db.spawn_relay(&[("RELAY_ID", "relay-a")]).await;
    let b = db.spawn_relay(&[("RELAY_ID", "relay-b")]).await;
    eventually("8 shards each", Duration::from_secs(30), || async {
        let locks = shard_locks(&db).await;
        (locks.len() == 2 && locks.iter().all(|(_, n)| *n == 8)).then_some(())
    })
    .await;
    let epochs_before: HashMap<i32, i64> =
        sqlx::query_as::<_, (i32, i64)>("SELECT shard, epoch FROM relay_shards")
            .fetch_all(&db.admin)
            .await
            .unwrap()
            .into_iter()
            .collect();
    // relay-a stops gracefully: it releases its shards and relay-b takes them (new epochs).
    a.stop().await;
    let started = Instant::now();
    eventually(
        "relay-b owns every shard",
        Duration::from_secs(5),
        || async {
            let locks = shard_locks(&db).await;
            (locks.len() == 1 && locks[0].1 == 16).then_some(())
        },
    )
    .await;
    println!("handover after a graceful stop: {:?}", started.elapsed());
    let after: Vec<(i32, i64, String)> =
        sqlx::query_as("SELECT shard, epoch, owner FROM relay_shards ORDER BY shard")
            .fetch_all(&db.admin)
            .await
            .unwrap();
    assert_eq!(after.len(), 16);
    assert!(
        after.iter().all(|(_, _, owner)| owner == "relay-b"),
        "{after:?}"
    );
    let moved = after
        .iter()
        .filter(|(s, e, _)| epochs_before.get(s).is_some_and(|old| e > old))
        .count();
    // At least the 8 shards taken over (a shard can also have changed hands while the two relays
    // settled their shares).
    assert!(moved >= 8, "{moved} shards with new epochs: {after:?}");
    b.stop().await;

    // A delete that names an old epoch is refused; the row stays for the new owner.
    let discovered = &xref_chain(1)[0];
    let mut tx = db.admin.begin().await.unwrap();
    let id = insert_in(&mut tx, "fenced-1", discovered).await;
    tx.commit().await.unwrap();
    let shard = shard_key("fenced-1") % 16;
    let epoch: i64 = sqlx::query_scalar("SELECT epoch FROM relay_shards WHERE shard = $1")
        .bind(shard)
        .fetch_one(&db.admin)
        .await
        .unwrap();
    let stale = Done {
        id,
        epoch: epoch - 1,
    };
    assert_eq!(outbox::delete(&db.admin, 16, &[stale]).await.unwrap(), 0);
    assert_eq!(db.outbox_len().await, 1);
    assert_eq!(
        outbox::delete(&db.admin, 16, &[Done { id, epoch }])
            .await
            .unwrap(),
        1
    );
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_on_the_partition_that_kafkas_java_client_computes() {
    let stack = Stack::from_env().await;
    let db = RelayDb::create(&stack).await;
    let relay = db.spawn_relay(&[("KAFKA_TOPIC_PARTITIONS", "12")]).await;
    let mut keys: Vec<String> = (0..40).map(|i| format!("xref-{i}")).collect();
    keys.extend(
        [
            "GEN.1.1→JHN.1.1",
            "ключ",
            "a",
            "0123456789abcdef0123456789abcdef",
        ]
        .map(String::from),
    );
    let discovered = &xref_chain(1)[0];
    for k in &keys {
        append_one(&db, k, 0, discovered).await;
    }
    let records = consume_until(&stack, &db.topic(), Duration::from_secs(60), |r| {
        r.len() >= keys.len()
    })
    .await;
    let java = java_partitions(&keys, 12);
    let mut mismatches = Vec::new();
    for r in &records {
        if java[&r.key] != r.partition {
            mismatches.push((r.key.clone(), r.partition, java[&r.key]));
        }
    }
    assert!(
        mismatches.is_empty(),
        "(key, eventfold partition, Java partition): {mismatches:?}"
    );
    let used: std::collections::BTreeSet<i32> = records.iter().map(|r| r.partition).collect();
    assert!(used.len() >= 8, "keys spread over partitions: {used:?}");
    relay.stop().await;
    db.drop_database().await;
}

/// Partitions of `keys` by Kafka's own Java client code (`Utils.murmur2`, as its default
/// partitioner), run from the Kafka jars of the local stack.
fn java_partitions(keys: &[String], partitions: u32) -> HashMap<String, i32> {
    use std::io::Write;
    let cache = std::env::var("EVENTFOLD_CACHE").unwrap_or_else(|_| {
        format!(
            "{}/.cache/eventfold",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let libs = std::fs::read_dir(format!("{cache}/downloads"))
        .expect("downloads directory of the stack")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("kafka-"))
        })
        .expect("Kafka jars downloaded by the stack")
        .join("libs");
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/Murmur2Partitions.java"
    );
    let mut child = std::process::Command::new("java")
        .args(["-cp", &format!("{}/*", libs.display()), source])
        .arg(partitions.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run java");
    let mut stdin = child.stdin.take().expect("stdin");
    for k in keys {
        writeln!(stdin, "{k}").expect("write key");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("java output");
    assert!(out.status.success(), "java failed");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let (k, p) = l.rsplit_once('\t').expect("key<TAB>partition");
            (k.to_owned(), p.parse().expect("partition"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_relay_loses_its_shards_to_a_standby_and_is_fenced_when_it_wakes() {
    const AGGREGATES: usize = 1_000;
    const VERSIONS: usize = 10;
    let stack = Stack::from_env().await;
    let db = RelayDb::create(&stack).await;
    let lease = [("RELAY_LEASE_MS", "1000")];
    let a = RelayProcess::start(&db, "relay-a", &lease);
    let a_backend = eventually(
        "relay-a owns every shard",
        Duration::from_secs(30),
        || async {
            let locks = shard_locks(&db).await;
            (locks.len() == 1 && locks[0].1 == 16).then(|| locks[0].0)
        },
    )
    .await;
    let ids: Vec<String> = (0..AGGREGATES).map(|i| format!("xref-{i}")).collect();
    let chain = xref_chain(VERSIONS);
    let writer = {
        let admin = db.admin.clone();
        let ids = ids.clone();
        tokio::spawn(async move { append_events(&admin, &ids, &chain, 0, 100).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SIGSTOP: relay-a keeps its process and its connections but says nothing; PostgreSQL ends its
    // lock session after the lease, and the standby takes the shards.
    a.signal("STOP");
    let paused = Instant::now();
    let b = RelayProcess::start(&db, "relay-b", &lease);
    eventually(
        "relay-b owns every shard",
        Duration::from_secs(10),
        || async {
            let locks = shard_locks(&db).await;
            (locks.len() == 1 && locks[0].1 == 16 && locks[0].0 != a_backend).then_some(())
        },
    )
    .await;
    let takeover = paused.elapsed();
    a.signal("CONT");
    let http = eventfold_tests::auth::operator();
    let lost = eventually(
        "relay-a notices it lost its shards",
        Duration::from_secs(10),
        || {
            let http = http.clone();
            let url = a.admin_url.clone();
            async move {
                let text = metrics(&http, &url).await;
                let lost = metric_value(&text, "eventfold_relay_shard_lost_total")?;
                (lost >= 16.0).then_some(lost)
            }
        },
    )
    .await;
    writer.await.expect("writer");
    wait_outbox_empty(&db, Duration::from_secs(120)).await;
    let (_, duplicates) = consume_complete(&stack, &db.topic(), AGGREGATES, VERSIONS).await;
    let rejections = metric_value(
        &metrics(&http, &a.admin_url).await,
        "eventfold_relay_epoch_rejections_total",
    )
    .unwrap_or(0.0);
    println!(
        "pause: standby owned every shard {takeover:?} after SIGSTOP (lease 1 s); relay-a lost {lost} shards, \
         {rejections} fenced deletes, {duplicates} duplicates"
    );
    a.stop().await;
    b.stop().await;
    db.drop_database().await;
}
