//! Encode and decode throughput of one ~300-byte event (OpportunityCreated) with its schema id
//! cached, without and with an upcast step (v1 → v2), on one core.
//!
//! Run with `make bench-avro` (or `cargo bench -p eventfold-avro --bench codec`). Besides
//! criterion's report, it prints events/s per core for each case and the upcast overhead.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use eventfold_avro::{AvroCodec, Catalog};
use eventfold_domain::DomainEvent;
use eventfold_reference::opportunity::opportunity::{Event, upcasters};
use futures::executor::block_on;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use serde_json::{Value, json};

const TOPIC: &str = "bench.Opportunity";

struct Setup {
    codec: AvroCodec,
    v1: Value,
    v2: Value,
    v1_record: Vec<u8>,
    v2_record: Vec<u8>,
}

fn setup() -> Setup {
    let catalog = Arc::new(Catalog::embedded().expect("schemas"));
    // Never contacted: both ids are preloaded, as after a warm start.
    let settings = SrSettings::new("http://127.0.0.1:1".into());
    let codec = AvroCodec::new(settings, catalog.clone());
    codec.preload(TOPIC, catalog.get("OpportunityCreated", 1).unwrap(), 101);
    codec.preload(TOPIC, catalog.get("OpportunityCreated", 2).unwrap(), 102);
    let description = "Answers first-line support tickets for small online shops in their own \
        language, escalating to a person when it is unsure; built on an open model fine-tuned on \
        the shop's past tickets, priced per resolved ticket, sold through e-commerce platforms.";
    let v2 = json!({
        "opportunity_id": "opp-2025-000123",
        "title": "AI Chatbot for customer support",
        "description": description,
        "ai_solution_type": "nlp",
        "market_size_estimate": 1_000_000,
        "ai_solution_category": "natural_language_processing",
        "confidence_score": 0.85
    });
    let v1 = json!({
        "opportunity_id": "opp-2025-000123",
        "title": "AI Chatbot for customer support",
        "description": description,
        "ai_solution_type": "nlp",
        "market_size": 1_000_000
    });
    let v1_record = block_on(codec.encode(TOPIC, "OpportunityCreated", 1, &v1)).unwrap();
    let v2_record = block_on(codec.encode(TOPIC, "OpportunityCreated", 2, &v2)).unwrap();
    Setup {
        codec,
        v1,
        v2,
        v1_record,
        v2_record,
    }
}

/// Decode to the JSON payload (no upcast).
fn decode(s: &Setup, record: &[u8]) -> Value {
    block_on(s.codec.decode(TOPIC, record)).unwrap().payload
}

/// Decode, then upcast the payload to the latest version.
fn decode_upcast(s: &Setup, record: &[u8]) -> Value {
    let d = block_on(s.codec.decode(TOPIC, record)).unwrap();
    upcasters()
        .upcast(&d.event_type, d.schema_version, d.payload)
        .unwrap()
}

/// Decode all the way to the typed domain event (upcast when needed, then deserialize).
fn decode_event(s: &Setup, record: &[u8]) -> Event {
    block_on(s.codec.decode(TOPIC, record))
        .unwrap()
        .into_event()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_v2", |b| {
        b.iter(|| {
            block_on(
                s.codec
                    .encode(TOPIC, "OpportunityCreated", 2, black_box(&s.v2)),
            )
        })
    });
    g.bench_function("decode_v2", |b| {
        b.iter(|| decode(&s, black_box(&s.v2_record)))
    });
    g.bench_function("decode_v1", |b| {
        b.iter(|| decode(&s, black_box(&s.v1_record)))
    });
    g.bench_function("decode_v1_upcast_v2", |b| {
        b.iter(|| decode_upcast(&s, black_box(&s.v1_record)))
    });
    g.bench_function("upcast_only_v1_to_v2", |b| {
        b.iter_batched(
            || s.v1.clone(),
            |p| upcasters().upcast("OpportunityCreated", 1, p).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("decode_v2_event", |b| {
        b.iter(|| decode_event(&s, black_box(&s.v2_record)))
    });
    g.bench_function("decode_v1_upcast_event", |b| {
        b.iter(|| decode_event(&s, black_box(&s.v1_record)))
    });
    g.finish();
}

/// Calls `f` for about `d` and returns calls per second.
fn rate(d: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..10_000 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        for _ in 0..1_000 {
            f();
        }
        n += 1_000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Prints the figures the issue asks for (per core: the benchmark runs on one thread).
fn summary() {
    let s = setup();
    let d = Duration::from_secs(2);
    println!(
        "\nrecord sizes: v1 {} bytes, v2 {} bytes (Confluent header included)",
        s.v1_record.len(),
        s.v2_record.len()
    );
    assert_eq!(decode(&s, &s.v2_record), s.v2);
    assert_eq!(decode_upcast(&s, &s.v1_record), {
        let mut v = s.v2.clone();
        v["confidence_score"] = json!(0.7);
        v
    });
    let enc = rate(d, || {
        black_box(block_on(s.codec.encode(TOPIC, "OpportunityCreated", 2, &s.v2)).unwrap());
    });
    let dec2 = rate(d, || {
        black_box(decode(&s, &s.v2_record));
    });
    let dec1 = rate(d, || {
        black_box(decode(&s, &s.v1_record));
    });
    let up = rate(d, || {
        black_box(decode_upcast(&s, &s.v1_record));
    });
    let ev2 = rate(d, || {
        black_box(decode_event(&s, &s.v2_record));
    });
    let ev1 = rate(d, || {
        black_box(decode_event(&s, &s.v1_record));
    });
    assert_eq!(
        decode_event(&s, &s.v1_record).event_type(),
        "OpportunityCreated"
    );
    println!("encode v2 (JSON payload -> record)      {enc:>12.0} events/s per core");
    println!("decode v2 (record -> JSON payload)      {dec2:>12.0} events/s per core");
    println!("decode v1 (record -> JSON payload)      {dec1:>12.0} events/s per core");
    println!(
        "decode v1 + upcast to v2 JSON           {up:>12.0} events/s per core \
         (+{:.1}% time vs decoding the same event stored as v2; the step alone {:.0} ns)",
        (dec2 / up - 1.0) * 100.0,
        (1.0 / up - 1.0 / dec1) * 1e9
    );
    println!("decode v2 -> domain event               {ev2:>12.0} events/s per core");
    println!(
        "decode v1 -> upcast -> domain event     {ev1:>12.0} events/s per core \
         (+{:.1}% time vs the v2 record)",
        (ev2 / ev1 - 1.0) * 100.0
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `EVENTFOLD_BENCH_SUMMARY=0` skips the summary (e.g. when profiling one benchmark).
    if std::env::var("EVENTFOLD_BENCH_SUMMARY").as_deref() != Ok("0") {
        summary();
    }
}
