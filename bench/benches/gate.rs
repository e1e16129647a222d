//! `#[gate]` wrapper vs calling the same body directly, with an auto-approving callback guard (audit off, and audit
//! on a hash-chained file).
//!
//! ```text
//! cargo bench -p agentguard-bench --bench gate
//! ```
//!
//! The wrapper freezes the arguments into a params object, asks the guard, serializes the arguments again to check
//! their digest, then runs the body; the direct call is the body alone.

use std::hint::black_box;
use std::sync::LazyLock;

use agentguard::{gate, AgentGuard};
use criterion::{criterion_group, criterion_main, Criterion};

/// Approves everything, records nothing.
static QUIET: LazyLock<AgentGuard> = LazyLock::new(|| AgentGuard::callback(|_| true).no_audit().build());

/// Where the audited guard writes (removed at the end).
static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().expect("temp dir"));

/// Approves everything, one hash-chained audit line per call.
static AUDITED: LazyLock<AgentGuard> = LazyLock::new(|| {
    AgentGuard::callback(|_| true)
        .audit_file(DIR.path().join("gate.log"))
        .build()
});

/// The body both ways: a little real work on the arguments.
fn body(path: &str, force: bool) -> usize {
    black_box(path).len() + usize::from(black_box(force))
}

/// Gated through the audit-free guard.
#[gate(guard = QUIET)]
fn delete_file(path: String, force: bool) -> usize {
    body(&path, force)
}

/// Gated through the audited guard.
#[gate(guard = AUDITED, name = "delete_file")]
fn delete_file_audited(path: String, force: bool) -> usize {
    body(&path, force)
}

fn bench_gate(c: &mut Criterion) {
    let mut group = c.benchmark_group("gate");
    group.bench_function("direct_body", |b| {
        b.iter(|| body(&String::from(black_box("notes.txt")), black_box(true)))
    });
    group.bench_function("wrapper_auto_approved_no_audit", |b| {
        b.iter(|| delete_file(String::from(black_box("notes.txt")), black_box(true)).expect("approved"))
    });
    group.bench_function("wrapper_auto_approved_audit_chained_file", |b| {
        b.iter(|| delete_file_audited(String::from(black_box("notes.txt")), black_box(true)).expect("approved"))
    });
    group.finish();
    let report = agentguard::audit::verify(DIR.path().join("gate.log")).expect("audit chain intact");
    eprintln!("gate: chain intact, {} lines", report.lines);
    let _ = std::fs::remove_dir_all(DIR.path());
}

criterion_group!(benches, bench_gate);
criterion_main!(benches);
