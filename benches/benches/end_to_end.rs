//! End to end through the embedded log: replay of a generated workload (decode →
//! sequencer → operators → action encode → log). `footfall bench` runs the same at scale.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use footfall_pipeline::bench::{BenchParams, run};
use footfall_pipeline::config::Config;

fn bench(c: &mut Criterion) {
    let rt = footfall_pipeline::runtime::builder()
        .build()
        .expect("runtime");
    let events = 100_000;
    let mut g = c.benchmark_group("end_to_end");
    g.sample_size(10);
    g.throughput(Throughput::Elements(events));
    g.bench_function("replay_100k", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("tempdir");
                let p = BenchParams {
                    events,
                    customers: None,
                    rate: None,
                    seed: 1,
                    open_carts: false,
                    without_policies: false,
                    without_identity: false,
                    exiting: false,
                };
                let r = rt
                    .block_on(run(&Config::default(), dir.path(), &p))
                    .expect("bench run");
                total += std::time::Duration::from_secs_f64(r.replay_secs);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
