//! The abandoned-cart operator alone: decoded events through one worker, no I/O.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use footfall_operators::config::TriggersConfig;
use footfall_operators::decode::decode;
use footfall_operators::event::{Event, Topic};
use footfall_operators::identity::Identity;
use footfall_operators::time::Timestamp;
use footfall_operators::triggers;
use footfall_operators::worker::Worker;
use footfall_pipeline::generate::{Params, generate};

fn events() -> Vec<(Topic, Event)> {
    let p = Params {
        customers: 5000,
        hours: 4.0,
        seed: 2,
        start: Params::default_start(),
        bad_ratio: 0.0,
        duplicate_ratio: 0.0,
    };
    let now = Timestamp::now();
    let mut evs: Vec<(Topic, Event)> = generate(&p)
        .into_iter()
        .filter_map(|r| decode(r.topic, &r.bytes, now).ok().map(|e| (r.topic, e)))
        .collect();
    evs.sort_by_key(|(_, e)| e.timestamp);
    evs
}

fn bench(c: &mut Criterion) {
    let evs = events();
    let mut g = c.benchmark_group("abandoned_cart");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.bench_function("worker_on_event", |b| {
        b.iter(|| {
            let mut worker = Worker::new(triggers::build(&TriggersConfig::default()));
            let mut identity = Identity::default();
            let mut out = Vec::new();
            for (t, e) in &evs {
                let r = identity.resolve(*t, e);
                if let Some(m) = &r.merge {
                    worker.merge(&m.from, &m.into, &mut out);
                }
                worker.on_event(&r.key, e, &mut out);
            }
            worker.advance(Timestamp::MAX, &mut out);
            std::hint::black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
