//! Encode and decode throughput of one ~300-byte event (OpportunityCreated) with its schema id
//! cached, without and with an upcast step (v1 → v2), on one core.
//!
//! Run with `make bench-avro` (or `cargo bench -p eventfold-avro --bench codec`). Besides
//! criterion's report, it prints events per CPU second of one core for each case and the upcast
//! overhead as time ratios, medians over interleaved rounds (see [`summary`]); `cargo bench -p
//! eventfold-avro --bench codec -- none` skips criterion and prints the summary only.
//!
//! The upcast overhead is the time to read the event from a v1 record (decode, then upcast to the
//! latest) over the time to read the same event from a v2 record (decode, no upcast step): what a
//! reader pays because the event was stored at an older version.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};
use eventfold_avro::{AvroCodec, Catalog};
use eventfold_domain::DomainEvent;
use eventfold_reference::opportunity::opportunity::{Event, upcasters};
use futures::executor::block_on;
use rustix::time::{ClockId, clock_gettime};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use serde_json::{Value, json};

/// The allocator the services that decode (projector, command-service) run on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Decode straight to the payload at the latest version (the upcast path compiled for the
/// writer's schema, renames while reading).
fn decode_upcast(s: &Setup, record: &[u8]) -> Value {
    block_on(s.codec.decode_latest(TOPIC, record, upcasters()))
        .unwrap()
        .payload
}

/// Decode to the writer's payload, then upcast that JSON with the chain as written.
fn decode_then_upcast(s: &Setup, record: &[u8]) -> Value {
    let d = block_on(s.codec.decode(TOPIC, record)).unwrap();
    upcasters()
        .upcast(&d.event_type, d.schema_version, d.payload)
        .unwrap()
}

/// Decode all the way to the typed domain event (upcast when needed, then deserialize).
fn decode_event(s: &Setup, record: &[u8]) -> Event {
    block_on(s.codec.decode_event(TOPIC, record)).unwrap()
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
    g.bench_function("decode_v1_then_upcast_v2", |b| {
        b.iter(|| decode_then_upcast(&s, black_box(&s.v1_record)))
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

/// One case of the summary: its label and one call.
type Case<'a> = (&'static str, Box<dyn FnMut() + 'a>);

/// Runs of the summary (`EVENTFOLD_BENCH_RUNS`, default 5), each of `ROUNDS_PER_RUN` rounds.
fn runs() -> usize {
    std::env::var("EVENTFOLD_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(5)
}

/// Rounds per run: each round times every case once, for `SLICE`.
const ROUNDS_PER_RUN: usize = 10;

/// How long each case runs in one round.
const SLICE: Duration = Duration::from_millis(20);

/// The CPU time this thread has used: unlike the wall clock, it does not count the time other
/// work on the machine kept the benchmark off its core.
fn cpu_time() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.unsigned_abs(),
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// CPU nanoseconds per call of `f`, calling it in batches of 1,000 for at least `d` of CPU time.
fn ns_per_call(d: Duration, f: &mut dyn FnMut()) -> f64 {
    let start = cpu_time();
    let mut n = 0u64;
    let mut used = Duration::ZERO;
    while n == 0 || used < d {
        for _ in 0..1_000 {
            f();
        }
        n += 1_000;
        used = cpu_time() - start;
    }
    used.as_secs_f64() * 1e9 / n as f64
}

/// The median of `xs` (not empty).
fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Prints the codec's figures, per core: events per second of CPU time of the one
/// thread the benchmark runs on.
///
/// Other work on the machine makes one long run of each case after the other unreliable for a
/// ratio, so every case runs for a short slice in each of many rounds, in rotating order, and the
/// ratios are taken within a round (the cases of one round ran within a fraction of a second of
/// each other); the figures printed are medians over the rounds, overall and per run.
fn summary() {
    let s = setup();
    println!(
        "\nrecord sizes: v1 {} bytes, v2 {} bytes (Confluent header included)",
        s.v1_record.len(),
        s.v2_record.len()
    );
    assert_eq!(decode(&s, &s.v2_record), s.v2);
    let expected_v2 = {
        let mut v = s.v2.clone();
        v["confidence_score"] = json!(0.7);
        v
    };
    assert_eq!(decode_upcast(&s, &s.v1_record), expected_v2);
    assert_eq!(decode_then_upcast(&s, &s.v1_record), expected_v2);
    assert_eq!(
        decode_event(&s, &s.v1_record).event_type(),
        "OpportunityCreated"
    );
    let mut cases: Vec<Case<'_>> = vec![
        (
            "encode v2 (JSON payload -> record)",
            Box::new(|| {
                black_box(block_on(s.codec.encode(TOPIC, "OpportunityCreated", 2, &s.v2)).unwrap());
            }),
        ),
        (
            "decode v2 (record -> JSON payload)",
            Box::new(|| {
                black_box(decode(&s, black_box(&s.v2_record)));
            }),
        ),
        (
            "decode v1 (record -> JSON payload)",
            Box::new(|| {
                black_box(decode(&s, black_box(&s.v1_record)));
            }),
        ),
        (
            "decode v1 + upcast to v2 JSON",
            Box::new(|| {
                black_box(decode_upcast(&s, black_box(&s.v1_record)));
            }),
        ),
        (
            "decode v1, then upcast the JSON to v2",
            Box::new(|| {
                black_box(decode_then_upcast(&s, black_box(&s.v1_record)));
            }),
        ),
        (
            "decode v2 -> domain event",
            Box::new(|| {
                black_box(decode_event(&s, black_box(&s.v2_record)));
            }),
        ),
        (
            "decode v1 -> upcast -> domain event",
            Box::new(|| {
                black_box(decode_event(&s, black_box(&s.v1_record)));
            }),
        ),
    ];
    for (_, f) in cases.iter_mut() {
        ns_per_call(Duration::from_millis(200), f.as_mut());
    }
    let n = cases.len();
    let runs = runs();
    let rounds = runs * ROUNDS_PER_RUN;
    // ns[case][round]
    let mut ns = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            ns[i].push(ns_per_call(SLICE, cases[i].1.as_mut()));
        }
    }
    let [_, dec2, dec1, up, then_up, ev2, ev1] = [0, 1, 2, 3, 4, 5, 6].map(|i| ns[i].as_slice());
    let ratio =
        |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(a, b)| a / b).collect() };
    let up_vs_dec1 = ratio(up, dec1);
    let up_vs_dec2 = ratio(up, dec2);
    let then_up_vs_dec1 = ratio(then_up, dec1);
    let ev1_vs_ev2 = ratio(ev1, ev2);
    let per_s = |ns: &[f64]| 1e9 / median(ns);
    println!(
        "\nevents per CPU second of one core, median of {rounds} rounds ({runs} runs of {ROUNDS_PER_RUN}; each case {} ms a round):",
        SLICE.as_millis()
    );
    for (i, (name, _)) in cases.iter().enumerate() {
        println!("  {name:<40} {:>10.0}", per_s(&ns[i]));
    }
    println!(
        "\nper run (medians of its rounds), events per CPU second and time ratios:\n  run   decode v2  v1+upcast  decode v1   upcast/v2  upcast/v1"
    );
    for r in 0..runs {
        let at = r * ROUNDS_PER_RUN..(r + 1) * ROUNDS_PER_RUN;
        println!(
            "  {:>3}  {:>10.0} {:>10.0} {:>10.0}   {:>9.3} {:>10.3}",
            r + 1,
            per_s(&dec2[at.clone()]),
            per_s(&up[at.clone()]),
            per_s(&dec1[at.clone()]),
            median(&up_vs_dec2[at.clone()]),
            median(&up_vs_dec1[at]),
        );
    }
    let pct = |r: f64| (r - 1.0) * 100.0;
    println!(
        "\nupcast step (target <= 1.20): reading the event from its v1 record, decode + upcast \
         to v2, takes {:.3}x the time of reading the same event from its v2 record, decode only \
         ({:+.1}%)",
        median(&up_vs_dec2),
        pct(median(&up_vs_dec2)),
    );
    println!(
        "(against decoding the v1 record to its own 5-field v1 payload, which no reader uses, \
         decode + upcast takes {:.3}x the time: the cost of building the 2 fields v1 lacks, which \
         decoding v2 pays too)",
        median(&up_vs_dec1),
    );
    println!(
        "(decoding first and upcasting the JSON with the chain as written: {:.3}x decode v1 alone)",
        median(&then_up_vs_dec1),
    );
    println!(
        "to the domain event: the v1 record takes {:.3}x the time of the v2 record ({:+.1}%)",
        median(&ev1_vs_ev2),
        pct(median(&ev1_vs_ev2)),
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
