//! The group-commit command bus on the real PostgreSQL: batched concurrent commands, a stale cache
//! (another process wrote) corrected by retrying, bad commands that do not fail their batch,
//! idempotent command ids under concurrency, snapshots, and the cache's byte bound.

use std::time::Duration;

use eventfold_domain::{Aggregate, DomainError};
use eventfold_postgres::bus::BusMetrics;
use eventfold_postgres::{
    BusConfig, CommandBus, EventStore, HandleError, Handled, SnapshotPolicy, hydrate,
};
use eventfold_reference::CrossReference;
use eventfold_tests::xref::{Command, discover, meta, validate, validate_with};
use eventfold_tests::{Stack, unique};

async fn store() -> EventStore {
    EventStore::new(Stack::from_env().await.writer_pool().await)
}

fn bus(store: &EventStore, snapshots: SnapshotPolicy) -> CommandBus<CrossReference> {
    CommandBus::start(
        store.clone(),
        BusConfig {
            writers: 2,
            snapshots,
            ..BusConfig::default()
        },
    )
}

const NO_SNAPSHOTS: SnapshotPolicy = SnapshotPolicy { every: 0, keep: 1 };

async fn send(
    bus: &CommandBus<CrossReference>,
    id: &str,
    cmd: Command,
) -> Result<Handled, HandleError> {
    let m = meta();
    let hash = m.command_id.as_bytes().to_vec();
    bus.handle(id.to_owned(), cmd, m, hash, None).await
}

async fn versions(store: &EventStore, id: &str) -> Vec<i64> {
    store
        .load("default", CrossReference::TYPE, id, 0, None, None, None)
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect()
}

#[tokio::test]
async fn concurrent_commands_on_many_aggregates_are_all_appended_in_shared_batches() {
    let store = store().await;
    let bus = bus(&store, NO_SNAPSHOTS);
    let ids: Vec<String> = (0..20).map(|_| unique("bus")).collect();
    for id in &ids {
        send(&bus, id, discover()).await.unwrap();
    }
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (bus, id) = (bus.clone(), ids[i % ids.len()].clone());
            tokio::spawn(async move { send(&bus, &id, validate()).await })
        })
        .collect();
    for t in tasks {
        t.await
            .unwrap()
            .expect("no conflict surfaces within one process");
    }
    for id in &ids {
        assert_eq!(versions(&store, id).await, (1..=11).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn batches_in_flight_together_keep_versions_contiguous_with_one_answer_per_version() {
    let store = store().await;
    let bus = CommandBus::<CrossReference>::start(
        store.clone(),
        BusConfig {
            writers: 1,
            in_flight: 4,
            max_batch: 4,
            snapshots: NO_SNAPSHOTS,
            ..BusConfig::default()
        },
    );
    let ids: Vec<String> = (0..6).map(|_| unique("flight")).collect();
    for id in &ids {
        send(&bus, id, discover()).await.unwrap();
    }
    // Few hot aggregates, small batches, four statements at once: a command whose aggregate is in
    // a running batch must wait for it, or versions would collide or skip.
    let tasks: Vec<_> = (0..240)
        .map(|i| {
            let (bus, id) = (bus.clone(), ids[i % ids.len()].clone());
            tokio::spawn(async move { send(&bus, &id, validate()).await })
        })
        .collect();
    let mut answered: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for (i, t) in tasks.into_iter().enumerate() {
        let h = t
            .await
            .unwrap()
            .expect("no conflict surfaces within one process");
        answered
            .entry(ids[i % ids.len()].clone())
            .or_default()
            .push(h.version);
    }
    for id in &ids {
        let mut got = answered.remove(id).unwrap();
        got.sort();
        assert_eq!(
            got,
            (2..=41).collect::<Vec<i64>>(),
            "one answer per version"
        );
        assert_eq!(versions(&store, id).await, (1..=41).collect::<Vec<i64>>());
    }
}

#[tokio::test]
async fn a_state_made_stale_by_another_process_is_reloaded_and_the_command_decided_again() {
    let store = store().await;
    let (one, other) = (bus(&store, NO_SNAPSHOTS), bus(&store, NO_SNAPSHOTS));
    let id = unique("stale");

    // `one` caches the aggregate as not yet discovered (the refusal is confirmed against the store).
    let refused = send(&one, &id, validate()).await.unwrap_err();
    assert!(matches!(
        refused,
        HandleError::Domain(DomainError::InvalidTransition { .. })
    ));
    // Another process discovers it; `one`'s cache is now stale.
    send(&other, &id, discover()).await.unwrap();
    let h = send(&one, &id, validate()).await.unwrap();
    assert_eq!(h.version, 2);

    // Both processes keep writing the same aggregate: every command lands exactly once.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let b = if i % 2 == 0 {
                one.clone()
            } else {
                other.clone()
            };
            let id = id.clone();
            tokio::spawn(async move { send(&b, &id, validate()).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(HandleError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(ok > 0);
    assert_eq!(
        versions(&store, &id).await,
        (1..=2 + ok).collect::<Vec<i64>>()
    );
}

#[tokio::test]
async fn a_command_the_store_would_refuse_fails_alone_and_its_batch_is_appended() {
    let store = store().await;
    let bus = bus(&store, NO_SNAPSHOTS);
    let ids: Vec<String> = (0..8).map(|_| unique("nul")).collect();
    for id in &ids {
        send(&bus, id, discover()).await.unwrap();
    }
    // An id too long for the index breaks the whole statement; the batch is then written command
    // by command, so only that command fails.
    let too_long: String = (0..250)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (bus, id) = (bus.clone(), ids[i % ids.len()].clone());
            let too_long = too_long.clone();
            tokio::spawn(async move {
                match i {
                    17 => send(&bus, &id, validate_with("bad\u{0}byte")).await,
                    40 => send(&bus, &too_long, discover()).await,
                    _ => send(&bus, &id, validate()).await,
                }
            })
        })
        .collect();
    let mut refused = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(_) => {}
            Err(HandleError::Domain(DomainError::Rule { code, .. })) => refused.push((i, code)),
            Err(HandleError::Database(_)) => refused.push((i, "database")),
            Err(e) => panic!("command {i}: {e}"),
        }
    }
    assert_eq!(refused, vec![(17, "nul_in_string"), (40, "database")]);
    let total: usize = {
        let mut n = 0;
        for id in &ids {
            n += versions(&store, id).await.len();
        }
        n
    };
    assert_eq!(total, 8 + 62);
}

#[tokio::test]
async fn a_command_id_sent_concurrently_many_times_is_appended_once() {
    let store = store().await;
    let bus = bus(&store, NO_SNAPSHOTS);
    let id = unique("dup");
    send(&bus, &id, discover()).await.unwrap();
    let m = meta();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (bus, id, m) = (bus.clone(), id.clone(), m.clone());
            tokio::spawn(async move { bus.handle(id, validate(), m, b"same".to_vec(), None).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert_eq!(results.iter().filter(|h| !h.replayed).count(), 1);
    assert!(
        results
            .iter()
            .all(|h| h.version == 2 && h.event_ids == results[0].event_ids)
    );
    assert_eq!(versions(&store, &id).await, vec![1, 2]);
    // Another process sees the same record.
    let other = bus_of(&store);
    let again = other
        .handle(id.clone(), validate(), m.clone(), b"same".to_vec(), None)
        .await
        .unwrap();
    assert!(again.replayed);
    let mismatch = other
        .handle(id, validate(), m, b"other".to_vec(), None)
        .await
        .unwrap_err();
    assert!(matches!(mismatch, HandleError::IdempotencyMismatch(_)));
}

fn bus_of(store: &EventStore) -> CommandBus<CrossReference> {
    bus(store, NO_SNAPSHOTS)
}

#[tokio::test]
async fn an_expected_version_is_honoured_strictly_even_against_a_stale_cache() {
    let store = store().await;
    let (one, other) = (bus_of(&store), bus_of(&store));
    let id = unique("expected");
    send(&one, &id, discover()).await.unwrap();
    send(&other, &id, validate()).await.unwrap();
    // `one` still caches version 1, but the store is at 2: the caller's 2 is right.
    let m = meta();
    let h = one
        .handle(id.clone(), validate(), m, b"x".to_vec(), Some(2))
        .await
        .unwrap();
    assert_eq!(h.version, 3);
    let stale = one
        .handle(id.clone(), validate(), meta(), b"y".to_vec(), Some(2))
        .await
        .unwrap_err();
    assert!(matches!(
        stale,
        HandleError::Conflict { current_version: 3 }
    ));
    assert_eq!(versions(&store, &id).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn snapshots_are_written_every_n_events_keep_the_last_k_and_give_the_replayed_state() {
    let store = store().await;
    let bus = bus(&store, SnapshotPolicy { every: 10, keep: 2 });
    let id = unique("snap");
    send(&bus, &id, discover()).await.unwrap();
    for _ in 0..34 {
        send(&bus, &id, validate()).await.unwrap();
    }
    let kept =
        eventfold_tests::eventually("two newest snapshots kept", Duration::from_secs(10), || {
            let (store, id) = (store.clone(), id.clone());
            async move {
                let v = store
                    .snapshot_versions("default", CrossReference::TYPE, &id)
                    .await
                    .unwrap();
                (v == vec![(30, 1), (20, 1)]).then_some(v)
            }
        })
        .await;
    assert_eq!(kept, vec![(30, 1), (20, 1)]);

    let events: Vec<_> = store
        .load("default", CrossReference::TYPE, &id, 0, None, None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| eventfold_postgres::repository::decode::<CrossReference>(e).unwrap())
        .collect();
    let replayed = CrossReference::replay(&events);
    let (hydrated, version) = hydrate::<CrossReference>(&store, "default", &id, None, None)
        .await
        .unwrap();
    assert_eq!(version, 35);
    assert_eq!(
        serde_json::to_value(&hydrated).unwrap(),
        serde_json::to_value(&replayed).unwrap()
    );
    let (at_25, v) = hydrate::<CrossReference>(&store, "default", &id, Some(25), None)
        .await
        .unwrap();
    assert_eq!(v, 25);
    assert_eq!(
        serde_json::to_value(&at_25).unwrap(),
        serde_json::to_value(CrossReference::replay(&events[..25])).unwrap()
    );

    // A snapshot of another state version, or one that no longer deserializes, is ignored.
    let garbage = r#"{"not": "a cross reference"}"#;
    store
        .save_snapshot("default", CrossReference::TYPE, &id, 35, 999, garbage, 5)
        .await
        .unwrap();
    store
        .save_snapshot(
            "default",
            CrossReference::TYPE,
            &id,
            34,
            CrossReference::STATE_VERSION,
            garbage,
            5,
        )
        .await
        .unwrap();
    let (again, version) = hydrate::<CrossReference>(&store, "default", &id, None, None)
        .await
        .unwrap();
    assert_eq!(version, 35);
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&replayed).unwrap()
    );
}

#[tokio::test]
async fn a_cache_smaller_than_a_batch_still_decides_every_command() {
    let store = store().await;
    let bus = CommandBus::<CrossReference>::start(
        store.clone(),
        BusConfig {
            writers: 1,
            cache_capacity: 1,
            snapshots: NO_SNAPSHOTS,
            ..BusConfig::default()
        },
    );
    let ids: Vec<String> = (0..5).map(|_| unique("tiny")).collect();
    let tasks: Vec<_> = ids
        .iter()
        .flat_map(|id| [(id.clone(), true), (id.clone(), false)])
        .map(|(id, first)| {
            let bus = bus.clone();
            tokio::spawn(async move {
                if first {
                    send(&bus, &id, discover()).await
                } else {
                    send(&bus, &id, validate()).await
                }
            })
        })
        .collect();
    for t in tasks {
        // The validate may be decided before or after its discover (they race); both orders are
        // answered, never dropped.
        match t.await.unwrap() {
            Ok(_) | Err(HandleError::Domain(DomainError::InvalidTransition { .. })) => {}
            Err(e) => panic!("{e}"),
        }
    }
    for id in &ids {
        send(&bus, id, validate()).await.unwrap();
        assert!(versions(&store, id).await.len() >= 2);
    }
}

/// The value of `name{labels}` in `registry`, as Prometheus text has it.
fn metric(registry: &prometheus::Registry, name_and_labels: &str) -> f64 {
    use prometheus::Encoder;
    let mut text = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name_and_labels} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_state_over_the_cache_byte_bound_is_not_cached_and_its_commands_still_succeed() {
    let store = store().await;
    let run = |cache_bytes: usize| {
        let store = store.clone();
        async move {
            let registry = prometheus::Registry::new();
            let bus = CommandBus::<CrossReference>::start(
                store.clone(),
                BusConfig {
                    writers: 1,
                    cache_bytes,
                    snapshots: NO_SNAPSHOTS,
                    metrics: Some(BusMetrics::register(&registry).unwrap()),
                    ..BusConfig::default()
                },
            );
            let id = unique("bytes");
            send(&bus, &id, discover()).await.unwrap();
            for _ in 0..3 {
                send(&bus, &id, validate()).await.unwrap();
            }
            assert_eq!(versions(&store, &id).await, vec![1, 2, 3, 4]);
            let t = "{aggregate_type=\"CrossReference\"";
            (
                metric(&registry, &format!("aggregate_cache_bytes{t}}}")),
                metric(&registry, &format!("aggregate_cache_entries{t}}}")),
                metric(
                    &registry,
                    &format!("aggregate_cache_total{t},result=\"hit\"}}"),
                ),
            )
        }
    };
    // With room, the one state is cached after its first command and hit by the next three.
    let (bytes, entries, hits) = run(1 << 20).await;
    assert_eq!((entries, hits), (1.0, 3.0));
    assert!(
        (200.0..2000.0).contains(&bytes),
        "{bytes} bytes for one state"
    );
    // A bound below any state of it: nothing is cached, every command loads, all succeed.
    let (small_bytes, small_entries, small_hits) = run(64).await;
    assert_eq!((small_bytes, small_entries, small_hits), (0.0, 0.0, 0.0));
}
