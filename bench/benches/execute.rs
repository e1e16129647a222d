//! `AgentGuard::execute`: a safe tool with the audit off and on (hash-chained JSONL file), and a gated tool with an
//! auto-approving callback, audited (and audited with an `fdatasync` per batch). A safe call's line is queued for the
//! sink's writer thread (group commit), so the safe figure is the caller's share; the writer's share runs on the
//! other core, and the queue's limit makes callers wait if the writer cannot keep up.
//!
//! ```text
//! cargo bench -p agentguard-bench --bench execute
//! ```
//!
//! Building the `ToolCall` (the name `String` and the params map) is done outside the timed part (`iter_batched`),
//! so each figure is the guard's own cost: classify, freeze/digest, audit line, approval, executor call, drop of the
//! params. The audit file lives in a temporary directory and rotates at the default 64 MiB.

use std::hint::black_box;

use agentguard::{AgentGuard, ToolCall};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Value};

/// A realistic small argument object.
fn params() -> Value {
    json!({"id": 7, "email": "jane@example.com"})
}

fn executor(name: &str, params: Value) -> usize {
    black_box(name).len() + black_box(&params).as_object().map_or(0, |m| m.len())
}

fn bench_execute(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("execute");

    // The floor: the same executor called directly on the same name and params (built outside the timing, dropped
    // inside it, as in the guarded runs).
    group.bench_function("direct_executor_baseline", |b| {
        b.iter_batched(
            || (String::from("read_customer"), params()),
            |(name, params)| executor(&name, params),
            BatchSize::SmallInput,
        )
    });

    let plain = AgentGuard::callback(|_| true).no_audit().build();
    group.bench_function("safe_no_audit", |b| {
        b.iter_batched(
            || ToolCall::new("read_customer", params()),
            |call| plain.execute(call, executor),
            BatchSize::SmallInput,
        )
    });

    // The same with params that own no heap memory: what is left is the guard plus the name's allocation.
    group.bench_function("safe_no_audit_null_params", |b| {
        b.iter_batched(
            || ToolCall::new("read_customer", Value::Null),
            |call| plain.execute(call, |name: &str, _params: Value| black_box(name).len()),
            BatchSize::SmallInput,
        )
    });

    let audited = AgentGuard::callback(|_| true)
        .audit_file(dir.path().join("safe.log"))
        .build();
    group.bench_function("safe_audit_chained_file", |b| {
        b.iter_batched(
            || ToolCall::new("read_customer", params()),
            |call| audited.execute(call, executor),
            BatchSize::SmallInput,
        )
    });

    let gated = AgentGuard::callback(|_| true)
        .audit_file(dir.path().join("gated.log"))
        .build();
    group.bench_function("gated_auto_approved_audit_chained_file", |b| {
        b.iter_batched(
            || ToolCall::new("update_email", params()).agent_id("bench"),
            |call| gated.execute(call, executor),
            BatchSize::SmallInput,
        )
    });

    // The same with `Fsync::PerBatch`: the call waits for the disk (an `fdatasync` per batch, here per call).
    let synced = AgentGuard::callback(|_| true)
        .audit(
            agentguard::audit::JsonlAudit::new(dir.path().join("gated_fsync.log"))
                .fsync(agentguard::audit::Fsync::PerBatch),
        )
        .build();
    group.bench_function("gated_auto_approved_audit_fsync_per_batch", |b| {
        b.iter_batched(
            || ToolCall::new("update_email", params()).agent_id("bench"),
            |call| synced.execute(call, executor),
            BatchSize::SmallInput,
        )
    });
    group.finish();
    // Dropping the guards writes the safe calls' lines still queued.
    drop((audited, gated, synced));

    // The audit files must verify: the benchmark measured real, intact chains (a filtered run may skip one).
    for log in ["safe.log", "gated.log", "gated_fsync.log"] {
        if !dir.path().join(log).exists() {
            continue;
        }
        let report = agentguard::audit::verify(dir.path().join(log)).expect("audit chain intact");
        eprintln!("execute: {log}: chain intact, {} lines", report.lines);
    }
}

criterion_group!(benches, bench_execute);
criterion_main!(benches);
