//! The cost of feature `tracing` on a call: the same safe and gated calls as `execute`, with agentguard built with
//! `tracing`, (a) with no subscriber (the span and events are disabled at their call sites) and (b) with a subscriber
//! that takes every span and event and keeps nothing (what creating them costs). Compare with `execute`'s
//! `safe_no_audit` built without the feature:
//!
//! ```text
//! cargo bench -p agentguard-bench --bench execute -- safe_no_audit
//! cargo bench -p agentguard-bench --features tracing --bench tracing
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use agentguard::{AgentGuard, ToolCall};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Value};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

fn params() -> Value {
    json!({"id": 7, "fields": ["name", "plan"]})
}

fn executor(name: &str, params: Value) -> usize {
    black_box(name).len() + black_box(params).as_object().map_or(0, |o| o.len())
}

/// Takes everything, keeps nothing: span ids are handed out, field values are visited by nobody.
struct Sink(AtomicU64);

impl Subscriber for Sink {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn bench_tracing(c: &mut Criterion) {
    let mut group = c.benchmark_group("tracing");
    let guard = AgentGuard::callback(|_| true).no_audit().build();

    group.bench_function("safe_no_audit_no_subscriber", |b| {
        b.iter_batched(
            || ToolCall::new("read_customer", params()),
            |call| guard.execute(call, executor),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("gated_approved_no_audit_no_subscriber", |b| {
        b.iter_batched(
            || ToolCall::new("delete_customer", params()),
            |call| guard.execute(call, executor),
            BatchSize::SmallInput,
        )
    });

    let sink = tracing::Dispatch::new(Sink(AtomicU64::new(0)));
    tracing::dispatcher::with_default(&sink, || {
        group.bench_function("safe_no_audit_with_subscriber", |b| {
            b.iter_batched(
                || ToolCall::new("read_customer", params()),
                |call| guard.execute(call, executor),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("gated_approved_no_audit_with_subscriber", |b| {
            b.iter_batched(
                || ToolCall::new("delete_customer", params()),
                |call| guard.execute(call, executor),
                BatchSize::SmallInput,
            )
        });
    });
    group.finish();
}

criterion_group!(benches, bench_tracing);
criterion_main!(benches);
