//! Decoding: footfall's validated decode against bare serde_json and sonic-rs on the same records.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use footfall_operators::decode::decode;
use footfall_operators::event::Topic;
use footfall_operators::time::Timestamp;
use footfall_pipeline::generate::{Params, generate};

// The allocator the footfall binary uses, so the baselines compare like with like.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn records() -> Vec<(Topic, Vec<u8>)> {
    let p = Params {
        customers: 2000,
        hours: 4.0,
        seed: 1,
        start: Params::default_start(),
        bad_ratio: 0.0,
        duplicate_ratio: 0.0,
    };
    generate(&p)
        .into_iter()
        .map(|r| (r.topic, r.bytes))
        .collect()
}

/// What a plain consumer would decode into: owned strings, money as text, no checks.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Plain {
    message_id: String,
    #[serde(rename = "type")]
    kind: String,
    timestamp: String,
    user_id: Option<String>,
    anonymous_id: Option<String>,
    channel: Option<String>,
    cart_id: Option<String>,
    currency: Option<String>,
    value: Option<serde_json::Value>,
    items: Option<Vec<PlainItem>>,
}

/// The same fields borrowed from the record, for sonic-rs (money as raw text).
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Sonic<'a> {
    message_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: &'a str,
    user_id: Option<&'a str>,
    anonymous_id: Option<&'a str>,
    channel: Option<&'a str>,
    cart_id: Option<&'a str>,
    currency: Option<&'a str>,
    #[serde(borrow)]
    value: Option<sonic_rs::LazyValue<'a>>,
    #[serde(borrow)]
    items: Option<Vec<SonicItem<'a>>>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct SonicItem<'a> {
    item_id: &'a str,
    item_name: Option<&'a str>,
    item_category: Option<&'a str>,
    #[serde(borrow)]
    price: Option<sonic_rs::LazyValue<'a>>,
    quantity: Option<i64>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct PlainItem {
    item_id: String,
    item_name: Option<String>,
    item_category: Option<String>,
    price: Option<serde_json::Value>,
    quantity: Option<i64>,
}

/// The same fields borrowed from the record, for serde_json (money as raw text).
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Borrowed<'a> {
    message_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: &'a str,
    user_id: Option<&'a str>,
    anonymous_id: Option<&'a str>,
    channel: Option<&'a str>,
    cart_id: Option<&'a str>,
    currency: Option<&'a str>,
    #[serde(borrow)]
    value: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    items: Option<Vec<BorrowedItem<'a>>>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct BorrowedItem<'a> {
    item_id: &'a str,
    item_name: Option<&'a str>,
    item_category: Option<&'a str>,
    #[serde(borrow)]
    price: Option<&'a serde_json::value::RawValue>,
    quantity: Option<i64>,
}

fn bench(c: &mut Criterion) {
    let recs = records();
    let now = Timestamp::now();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function("serde_json_value", |b| {
        b.iter(|| {
            for (_, r) in &recs {
                let v: serde_json::Value = serde_json::from_slice(r).unwrap();
                std::hint::black_box(v);
            }
        })
    });
    g.bench_function("serde_json_typed", |b| {
        b.iter(|| {
            for (_, r) in &recs {
                let v: Plain = serde_json::from_slice(r).unwrap();
                std::hint::black_box(v);
            }
        })
    });
    g.bench_function("sonic_rs_borrowed", |b| {
        b.iter(|| {
            for (_, r) in &recs {
                let v: Sonic = sonic_rs::from_slice(r).unwrap();
                std::hint::black_box(v);
            }
        })
    });
    g.bench_function("serde_json_borrowed", |b| {
        b.iter(|| {
            for (_, r) in &recs {
                let v: Borrowed = serde_json::from_slice(r).unwrap();
                std::hint::black_box(v);
            }
        })
    });
    g.bench_function("footfall_decode", |b| {
        b.iter(|| {
            for (t, r) in &recs {
                std::hint::black_box(decode(*t, r, now).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
