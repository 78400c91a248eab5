//! Rules re-run every few seconds over retained tables that mostly did not change: only
//! the batches sealed since the last run are new, and only the rows the window's edge
//! passed have left. This module keeps, per rule, what lets a run work on that change
//! alone.
//!
//! How:
//! - [`ChunkScan`] is the scan of a retained table (or of its tumbling or hopping
//!   windows): it knows which sealed batch ([`Chunk`](crate::retained::Chunk)) each row comes from.
//! - [`rewrite`] finds every aggregate whose input is filters and projections over such a
//!   scan.
//! - A grouping whose aggregates are counts and exact sums becomes an
//!   `IncrementalAggregate` (`view`): its groups (`groups`) are kept between runs. A
//!   run adds the rows that entered the window and subtracts the rows that left it (a
//!   batch dropped from the table, rows the time filter now excludes); with a `HAVING`
//!   filter right above, only the changed groups are tested again and only the passing
//!   ones are emitted.
//! - Any other aggregate in one step (`Single`) is split into a partial and a final
//!   step, as a parallel plan is. The partial step runs per batch inside `CachedPartial`,
//!   which answers from [`PartialCache`] where it can. A batch the time filter cuts
//!   through is aggregated afresh and not kept. An aggregate whose partials keep more
//!   than a quarter of their batches' rows gains nothing and is left in one step.
//! - Both are kept under what computes them: the aggregate's expressions, the filters
//!   and projections, literals included, except the filters' bounds on the table's time
//!   column (`timestamp > clock() - INTERVAL '1 hour'`), which change every run with the
//!   clock while the rows they select barely do. A description is kept only once two runs
//!   in a row used it, so an aggregate with `clock()` inside it (whose description
//!   changes every run) never is.
//! - After each run of a rule, what the run did not use is dropped. The cache holds at
//!   most its byte budget; past it, aggregates run as planned.
//!
//! The answer is the same as without the cache: counts and integer or decimal sums are
//! exact under subtraction, and the final step merges partial states exactly as a
//! parallel plan merges its partitions'.

/// The `ExecutionPlan` methods of a plan node with no children to the planner (what it
/// runs, it runs inside) and no expressions of its own to show it.
macro_rules! leaf_plan {
    () => {
        fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
            Vec::new()
        }

        fn apply_expressions(
            &self,
            _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
        ) -> Result<TreeNodeRecursion> {
            Ok(TreeNodeRecursion::Continue)
        }

        fn replace_children(
            self: Arc<Self>,
            _: Vec<Arc<dyn ExecutionPlan>>,
            _: ReplaceChildrenOptions,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            Ok(self)
        }

        fn with_new_children(
            self: Arc<Self>,
            children: Vec<Arc<dyn ExecutionPlan>>,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            self.replace_children(
                children,
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )
        }
    };
}

mod groups;
mod plan;
mod scan;
mod store;
mod view;

pub use plan::rewrite;
pub use scan::{ChunkScan, Transform};
pub use store::{CacheStats, PartialCache};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, Limits};
    use crate::retained::{Retention, Tables};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use footfall_operators::event::{CartChange, Event, EventKind, Item, Topic};
    use footfall_operators::time::{Span, Timestamp};
    use rust_decimal::Decimal;
    use std::collections::HashMap;
    use std::sync::Arc;

    /// `n` clickstream events, one every 50 ms from `from`: few customers and items, so
    /// groups repeat.
    fn fill(t: &mut Tables, from: i64, n: i64, seed: &mut u64) -> i64 {
        let mut at = from;
        for i in 0..n {
            let x = {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                *seed
            };
            let customer = x % 300;
            let items = vec![Item {
                item_id: format!("sku-{}", (x >> 20) % 40).into(),
                item_name: None,
                item_category: None,
                price: Some(Decimal::new(((x >> 8) % 5_000) as i64 + 100, 2)),
                quantity: 1,
            }];
            let kind = match x % 10 {
                0..=5 => EventKind::ViewItem { items },
                6 | 7 => EventKind::AddToCart(CartChange {
                    cart_id: None,
                    currency: Some("CNY".into()),
                    items,
                }),
                _ => EventKind::PageView,
            };
            let e = Event {
                message_id: format!("c-{from}-{i}").into(),
                timestamp: Timestamp::from_nanos(at),
                user_id: Some(format!("m-{customer}").into()),
                anonymous_id: None,
                channel: Some("app".into()),
                store_id: Some(["st-1", "st-2", "st-3"][(x >> 30) as usize % 3].into()),
                kind,
            };
            t.append(Topic::Clickstream, &format!("m-{customer}"), &e);
            at += 50_000_000;
        }
        t.seal();
        at
    }

    fn rows(batches: &[RecordBatch]) -> Vec<String> {
        let text = pretty_format_batches(batches).unwrap().to_string();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    }

    #[tokio::test]
    async fn cached_partials_give_the_same_answers_as_a_fresh_run() {
        let rule = |name: &str| {
            let path = format!("{}/../deploy/rules/{name}.sql", env!("CARGO_MANIFEST_DIR"));
            crate::rules::Rule::load(std::path::Path::new(&path))
                .unwrap()
                .sql
        };
        let queries = [
            ("browse", rule("browse_abandonment")),
            // store_footfall_anomaly's windows (uniform data has no anomaly to find).
            (
                "anomaly",
                "SELECT store_id, window_start, window_end, count(*) AS events \
                 FROM tumble(clickstream, \"timestamp\", INTERVAL '15 minutes') \
                 WHERE store_id IS NOT NULL AND timestamp > clock() - INTERVAL '24 hours' \
                 AND timestamp <= clock() GROUP BY store_id, window_start, window_end"
                    .to_string(),
            ),
            // The clock inside the aggregate: its description changes every run.
            (
                "clock_inside",
                "SELECT customer_key, sum(CASE WHEN timestamp > clock() - INTERVAL '10 minutes' \
                 THEN value ELSE 0 END) AS recent, count(*) AS n FROM clickstream \
                 WHERE timestamp <= clock() GROUP BY customer_key HAVING count(*) > 2"
                    .to_string(),
            ),
            (
                "hop",
                "SELECT store_id, window_start, count(*) AS n, sum(value) AS v \
                 FROM hop(clickstream, \"timestamp\", INTERVAL '5 minutes', INTERVAL '15 minutes') \
                 WHERE timestamp > clock() - INTERVAL '30 minutes' GROUP BY store_id, window_start"
                    .to_string(),
            ),
            // Counts of a nullable column, sums of decimals and of integers, a dictionary
            // key, and a `HAVING` filter that reads a key.
            (
                "mixed",
                "SELECT store_id, item_id, count(value) AS priced, count(*) AS n, \
                 sum(value) AS v, sum(quantity) AS q FROM clickstream \
                 WHERE timestamp > clock() - INTERVAL '20 minutes' AND timestamp <= clock() \
                 GROUP BY store_id, item_id HAVING sum(quantity) > 160 OR store_id = 'st-1'"
                    .to_string(),
            ),
            // A grouping with no aggregate at all.
            (
                "distinct",
                "SELECT DISTINCT store_id, item_id FROM clickstream \
                 WHERE timestamp > clock() - INTERVAL '20 minutes' AND timestamp <= clock()"
                    .to_string(),
            ),
            // `max` cannot be subtracted from: its partials are kept per batch.
            (
                "hop_max",
                "SELECT store_id, window_start, max(value) AS top \
                 FROM hop(clickstream, \"timestamp\", INTERVAL '5 minutes', INTERVAL '15 minutes') \
                 WHERE timestamp > clock() - INTERVAL '30 minutes' GROUP BY store_id, window_start"
                    .to_string(),
            ),
        ];
        // Little retention by size, so old batches leave the table between runs.
        let mut t = Tables::new(Retention {
            age: Span::from_secs(86_400),
            bytes: 12 << 20,
        });
        let cache = Arc::new(PartialCache::new(usize::MAX));
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let mut at = fill(&mut t, 1_700_000_000_000_000_000, 100_000, &mut seed);
        let mut last = CacheStats::default();
        let mut last_rows = HashMap::new();
        for run in 0..5 {
            let clock = Timestamp::from_nanos(at);
            for (name, sql) in &queries {
                let fresh = Engine::new(t.snapshot(), Limits::default())
                    .with_clock(clock)
                    .with_partitions(1)
                    .query(sql)
                    .await
                    .unwrap();
                let cached = Engine::new(t.snapshot(), Limits::default())
                    .with_clock(clock)
                    .with_partitions(1)
                    .with_cache(cache.clone(), name)
                    .query(sql)
                    .await
                    .unwrap();
                assert_eq!(
                    rows(&cached.batches),
                    rows(&fresh.batches),
                    "{name}, run {run}"
                );
                assert!(fresh.rows() > 0, "{name} finds something to compare");
                last_rows.insert(*name, fresh.rows());
            }
            let now = cache.stats();
            if run >= 2 {
                assert!(
                    now.hits >= last.hits + 10,
                    "run {run}: the unchanged batches come from the cache: {now:?}"
                );
            }
            last = now;
            at = fill(&mut t, at, 9_000, &mut seed);
        }
        // The query with the clock inside its aggregate kept nothing; the counts and
        // sums are kept as groups, `max` as partials per batch.
        let s = cache.state();
        let sizes: HashMap<&str, (usize, usize)> = s
            .spaces
            .iter()
            .map(|(k, sp)| (k.as_str(), (sp.entries.len(), sp.views.len())))
            .collect();
        assert_eq!(sizes["clock_inside"], (0, 0), "{sizes:?}");
        for name in ["browse", "anomaly", "hop", "mixed", "distinct"] {
            assert_eq!(sizes[name], (0, 1), "{name}: {sizes:?}");
        }
        assert!(
            sizes["hop_max"].0 > 0 && sizes["hop_max"].1 == 0,
            "{sizes:?}"
        );
        // The groups kept as passing `HAVING` are exactly those the query returns.
        let mixed = s.spaces["mixed"].views.values().next().unwrap();
        assert_eq!(mixed.0.passing(), last_rows["mixed"]);
    }
}
