//! Every Prometheus metric footfall exports, in one place.
//!
//! Names: prefix `footfall_`, counters end `_total`, durations `_seconds`. Labels stay
//! bounded (`topic`, `partition`, `trigger`, `group`, `reason`, `operator`), never a
//! customer id.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// footfall's metrics.
pub struct Metrics {
    registry: Registry,
    /// `footfall_events_read_total{topic}`: input records read (valid or not).
    pub events_read: IntCounterVec,
    /// `footfall_deadletter_total{topic,reason}`: records sent to `deadletter`.
    pub deadletter: IntCounterVec,
    /// `footfall_late_events_total{topic}`: records older than the clock on arrival.
    pub late_events: IntCounterVec,
    /// `footfall_duplicate_events_total{topic}`: redelivered `message_id`s skipped.
    pub duplicates: IntCounterVec,
    /// `footfall_actions_total{trigger,group}`: actions written.
    pub actions: IntCounterVec,
    /// `footfall_timers_pending`: event-time timers waiting for the clock.
    pub timers_pending: IntGauge,
    /// `footfall_state_keys{operator}`: keys holding state.
    pub state_keys: IntGaugeVec,
    /// `footfall_state_bytes{operator}`: encoded size of that state at the last checkpoint.
    pub state_bytes: IntGaugeVec,
    /// `footfall_state_evicted_total{operator}`: keys dropped after the state TTL idle.
    pub state_evicted: IntCounterVec,
    /// `footfall_erasures_total`: `erase` records applied.
    pub erasures: IntCounter,
    /// `footfall_erased_events_total`: events dropped because their customer was erased.
    pub erased_dropped: IntCounter,
    /// `footfall_actions_suppressed_total{trigger,reason}`: actions the delivery policies
    /// stopped.
    pub suppressed: IntCounterVec,
    /// `footfall_actions_erased_total`: actions of erased customers, dropped unrecorded.
    pub actions_erased: IntCounter,
    /// `footfall_actions_deduplicated_total`: actions whose id was already written.
    pub actions_deduplicated: IntCounter,
    /// `footfall_actions_held`: actions held for arbitration or quiet hours.
    pub actions_held: IntGauge,
    /// `footfall_rule_runs_total{rule,outcome}`: SQL rule evaluations (`ok`, `failed`,
    /// `timeout`).
    pub rule_runs: IntCounterVec,
    /// `footfall_rule_actions_total{rule}`: actions SQL rules produced.
    pub rule_actions: IntCounterVec,
    /// `footfall_rules_quarantined`: SQL rules stopped after repeated failures.
    pub rules_quarantined: IntGauge,
    /// `footfall_rule_cache_batches_total{source}`: batches whose partial aggregate a
    /// rule took from its cache (`kept`) or computed (`fresh`).
    pub rule_cache_batches: IntCounterVec,
    /// `footfall_rule_cache_bytes`: groups and partial aggregates the rules keep.
    pub rule_cache_bytes: IntGauge,
    /// `footfall_conversions_total{trigger,group}`: purchases credited to an action.
    pub conversions: IntCounterVec,
    /// `footfall_conversion_value_total{trigger,group}`: their value (all currencies).
    pub conversion_value: prometheus::CounterVec,
    /// `footfall_identity_conflicts_total{id_type}`: links refused because the customer
    /// already has another id of that hard type.
    pub identity_conflicts: IntCounterVec,
    /// `footfall_identity_junk_total{id_type}`: placeholder ids never linked.
    pub identity_junk: IntCounterVec,
    /// `footfall_clock_timestamp_seconds`: the pipeline clock.
    pub clock: Gauge,
    /// `footfall_watermark_lag_seconds`: wall clock minus pipeline clock.
    pub watermark_lag: Gauge,
    /// `footfall_event_to_action_latency_seconds`: from reading the record that made an
    /// action due to appending the action.
    pub latency: Histogram,
    /// `footfall_input_offset{topic,partition}`: next offset to read per input partition.
    pub input_offset: IntGaugeVec,
    /// `footfall_consumer_lag{topic,partition}`: records stored in an input partition and
    /// not read yet.
    pub consumer_lag: IntGaugeVec,
    /// `footfall_source_offset_gaps_total{topic,partition}`: batches the transport
    /// delivered with offsets missing, read again from the first missing one.
    pub offset_gaps: IntCounterVec,
    /// `footfall_up`: 1 while the pipeline runs.
    pub up: IntGauge,
    /// `footfall_checkpoint_duration_seconds`: barrier to manifest written.
    pub checkpoint_duration: Histogram,
    /// `footfall_checkpoint_stall_seconds`: how long a partition worker paused to copy
    /// its state for a checkpoint (its operators', and apart its policies').
    pub checkpoint_stall: Histogram,
    /// `footfall_checkpoint_bytes`: size of the last checkpoint.
    pub checkpoint_bytes: IntGauge,
    /// `footfall_last_checkpoint_timestamp_seconds`: wall time of the last checkpoint.
    pub last_checkpoint: prometheus::Gauge,
    /// `footfall_checkpoint_interval_seconds`: the configured interval (0: checkpoints
    /// off), for the checkpoint-age alert.
    pub checkpoint_interval: prometheus::Gauge,
    names: Vec<String>,
}

impl Metrics {
    /// The name of every metric footfall exports, whether or not it has a value yet.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

fn build() -> Metrics {
    let registry = Registry::new();
    let names = std::cell::RefCell::new(Vec::new());
    let register = |c: Box<dyn prometheus::core::Collector>| {
        names
            .borrow_mut()
            .extend(c.desc().iter().map(|d| d.fq_name.clone()));
        registry.register(c).expect("unique metric");
    };
    let counter = |name: &str, help: &str, labels: &[&str]| {
        let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition");
        register(Box::new(c.clone()));
        c
    };
    let events_read = counter(
        "footfall_events_read_total",
        "Input records read, valid or not.",
        &["topic"],
    );
    let deadletter = counter(
        "footfall_deadletter_total",
        "Input records sent to the deadletter topic.",
        &["topic", "reason"],
    );
    let late_events = counter(
        "footfall_late_events_total",
        "Records older than the pipeline clock on arrival (applied, timers not re-fired).",
        &["topic"],
    );
    let duplicates = counter(
        "footfall_duplicate_events_total",
        "Records whose message_id was already applied.",
        &["topic"],
    );
    let actions = counter(
        "footfall_actions_total",
        "Actions written.",
        &["trigger", "group"],
    );
    let suppressed = counter(
        "footfall_actions_suppressed_total",
        "Customer-facing actions the delivery policies stopped, by reason.",
        &["trigger", "reason"],
    );
    let conversions = counter(
        "footfall_conversions_total",
        "Purchases within the attribution window after a customer's latest action of a trigger.",
        &["trigger", "group"],
    );
    let identity_conflicts = counter(
        "footfall_identity_conflicts_total",
        "Identity links refused: the customer already has another id of that hard type.",
        &["id_type"],
    );
    let identity_junk = counter(
        "footfall_identity_junk_total",
        "Placeholder ids (\"\", 0, -1, null, undefined, anonymous, all zeros) never linked.",
        &["id_type"],
    );
    let conversion_value = prometheus::CounterVec::new(
        Opts::new(
            "footfall_conversion_value_total",
            "Value of the purchases counted in footfall_conversions_total (all currencies).",
        ),
        &["trigger", "group"],
    )
    .expect("metric definition");
    let actions_erased = IntCounter::new(
        "footfall_actions_erased_total",
        "Actions of erased customers, dropped without a record.",
    )
    .expect("metric definition");
    let actions_deduplicated = IntCounter::new(
        "footfall_actions_deduplicated_total",
        "Actions whose action_id was already written.",
    )
    .expect("metric definition");
    let actions_held = IntGauge::new(
        "footfall_actions_held",
        "Actions held for an arbitration window or quiet hours.",
    )
    .expect("metric definition");
    let rule_runs = counter(
        "footfall_rule_runs_total",
        "SQL rule evaluations, by outcome (ok, failed, timeout).",
        &["rule", "outcome"],
    );
    let rule_actions = counter(
        "footfall_rule_actions_total",
        "Actions produced by SQL rules (before the delivery policies).",
        &["rule"],
    );
    let rules_quarantined = IntGauge::new(
        "footfall_rules_quarantined",
        "SQL rules stopped after repeated failures or overruns.",
    )
    .expect("metric definition");
    let rule_cache_batches = counter(
        "footfall_rule_cache_batches_total",
        "Retained batches whose partial aggregate a SQL rule took from its cache (kept) or computed (fresh).",
        &["source"],
    );
    let rule_cache_bytes = IntGauge::new(
        "footfall_rule_cache_bytes",
        "Bytes of kept groups and partial aggregates the SQL rules keep between runs.",
    )
    .expect("metric definition");
    let state_evicted = counter(
        "footfall_state_evicted_total",
        "Keys whose state was dropped after the state TTL without activity.",
        &["operator"],
    );
    let erasures = IntCounter::new("footfall_erasures_total", "Erase records applied.")
        .expect("metric definition");
    let erased_dropped = IntCounter::new(
        "footfall_erased_events_total",
        "Events dropped because their customer was erased.",
    )
    .expect("metric definition");
    let state_bytes = IntGaugeVec::new(
        Opts::new(
            "footfall_state_bytes",
            "Encoded bytes of state per operator, as of the last checkpoint.",
        ),
        &["operator"],
    )
    .expect("metric definition");
    let timers_pending = IntGauge::new(
        "footfall_timers_pending",
        "Event-time timers waiting for the clock.",
    )
    .expect("metric definition");
    let state_keys = IntGaugeVec::new(
        Opts::new("footfall_state_keys", "Keys holding state, per operator."),
        &["operator"],
    )
    .expect("metric definition");
    let clock = Gauge::new(
        "footfall_clock_timestamp_seconds",
        "The pipeline clock (event time), Unix seconds.",
    )
    .expect("metric definition");
    let watermark_lag = Gauge::new(
        "footfall_watermark_lag_seconds",
        "Wall clock minus the pipeline clock.",
    )
    .expect("metric definition");
    let latency = Histogram::with_opts(
        HistogramOpts::new(
            "footfall_event_to_action_latency_seconds",
            "From reading the record that made an action due to appending the action.",
        )
        .buckets(vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0,
        ]),
    )
    .expect("metric definition");
    let input_offset = IntGaugeVec::new(
        Opts::new(
            "footfall_input_offset",
            "Next offset to read, per input partition.",
        ),
        &["topic", "partition"],
    )
    .expect("metric definition");
    let up = IntGauge::new("footfall_up", "1 while the pipeline runs.").expect("metric definition");
    let consumer_lag = IntGaugeVec::new(
        Opts::new(
            "footfall_consumer_lag",
            "Records stored in an input partition and not read yet.",
        ),
        &["topic", "partition"],
    )
    .expect("metric definition");
    let offset_gaps = counter(
        "footfall_source_offset_gaps_total",
        "Batches the transport delivered with offsets missing; read again from the first missing one.",
        &["topic", "partition"],
    );
    let checkpoint_interval = prometheus::Gauge::new(
        "footfall_checkpoint_interval_seconds",
        "The configured checkpoint interval (0: checkpoints off).",
    )
    .expect("metric definition");
    let checkpoint_duration = Histogram::with_opts(
        prometheus::HistogramOpts::new(
            "footfall_checkpoint_duration_seconds",
            "Time from a checkpoint barrier to its manifest being written.",
        )
        .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
    )
    .expect("metric definition");
    let checkpoint_stall = Histogram::with_opts(
        HistogramOpts::new(
            "footfall_checkpoint_stall_seconds",
            "How long a partition worker paused processing to copy its state for a checkpoint.",
        )
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        ]),
    )
    .expect("metric definition");
    let checkpoint_bytes = IntGauge::new(
        "footfall_checkpoint_bytes",
        "Size of the last complete checkpoint.",
    )
    .expect("metric definition");
    let last_checkpoint = prometheus::Gauge::new(
        "footfall_last_checkpoint_timestamp_seconds",
        "Wall time (Unix seconds) the last complete checkpoint was written.",
    )
    .expect("metric definition");
    for m in [
        Box::new(timers_pending.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(state_keys.clone()),
        Box::new(state_bytes.clone()),
        Box::new(erasures.clone()),
        Box::new(erased_dropped.clone()),
        Box::new(conversion_value.clone()),
        Box::new(actions_erased.clone()),
        Box::new(actions_deduplicated.clone()),
        Box::new(actions_held.clone()),
        Box::new(rules_quarantined.clone()),
        Box::new(rule_cache_bytes.clone()),
        Box::new(clock.clone()),
        Box::new(watermark_lag.clone()),
        Box::new(latency.clone()),
        Box::new(input_offset.clone()),
        Box::new(up.clone()),
        Box::new(checkpoint_duration.clone()),
        Box::new(checkpoint_bytes.clone()),
        Box::new(checkpoint_stall.clone()),
        Box::new(last_checkpoint.clone()),
        Box::new(consumer_lag.clone()),
        Box::new(checkpoint_interval.clone()),
    ] {
        register(m);
    }
    let names = names.into_inner();
    Metrics {
        registry,
        events_read,
        deadletter,
        late_events,
        duplicates,
        actions,
        timers_pending,
        state_keys,
        state_bytes,
        state_evicted,
        erasures,
        erased_dropped,
        suppressed,
        actions_erased,
        actions_deduplicated,
        actions_held,
        rule_runs,
        rule_actions,
        rules_quarantined,
        rule_cache_batches,
        rule_cache_bytes,
        conversions,
        conversion_value,
        identity_conflicts,
        identity_junk,
        clock,
        watermark_lag,
        latency,
        input_offset,
        up,
        checkpoint_duration,
        checkpoint_bytes,
        checkpoint_stall,
        last_checkpoint,
        consumer_lag,
        offset_gaps,
        checkpoint_interval,
        names,
    }
}

/// The counters of one `{trigger, <label>}` metric, each looked up once: prometheus's
/// `with_label_values` hashes the labels and takes a lock on every call, and the policy
/// tasks count every record they write.
pub struct ByTrigger<P: prometheus::core::Atomic> {
    vec: prometheus::core::GenericCounterVec<P>,
    known: Vec<(String, &'static str, prometheus::core::GenericCounter<P>)>,
}

impl<P: prometheus::core::Atomic> ByTrigger<P> {
    /// The counters of `vec`.
    pub fn new(vec: &prometheus::core::GenericCounterVec<P>) -> Self {
        ByTrigger {
            vec: vec.clone(),
            known: Vec::new(),
        }
    }

    /// The counter of `trigger` and `label`.
    pub fn get(
        &mut self,
        trigger: &str,
        label: &'static str,
    ) -> &prometheus::core::GenericCounter<P> {
        let i = match self
            .known
            .iter()
            .position(|(t, l, _)| *l == label && t == trigger)
        {
            Some(i) => i,
            None => {
                let c = self.vec.with_label_values(&[trigger, label]);
                self.known.push((trigger.to_owned(), label, c));
                self.known.len() - 1
            }
        };
        &self.known[i].2
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(build)
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_prometheus_text() {
        let m = super::get();
        m.events_read.with_label_values(&["clickstream"]).inc();
        let text = m.render();
        assert!(text.contains("footfall_events_read_total{topic=\"clickstream\"}"));
        assert!(text.contains("# TYPE footfall_event_to_action_latency_seconds histogram"));
    }
}
