//! In-process resolve → executor-running latency: an external guard, a call parked in `aexecute` on a 2-worker
//! tokio runtime, and another task calling `guard.resolve`. Each sample is the time from just before `resolve` to
//! the first line of the executor.
//!
//! ```text
//! cargo bench -p agentguard-bench --bench resolve_latency
//! ```
//!
//! The resolver waits 50 µs after the request is announced before it answers, so the agent is really parked (its
//! task asleep, its worker possibly idle) and the figure includes waking it. Criterion reports the median of its
//! sample means; the p50 and p99 of the individual samples are printed after it
//! (`resolve_latency: p50 … p99 …`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentguard::{AgentGuard, RequestId, ToolCall};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

/// How long the resolver lets the agent settle into its wait.
const SETTLE: Duration = Duration::from_micros(50);

fn bench_resolve_latency(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<RequestId>();
    let guard = AgentGuard::external()
        .on_request(move |req| {
            let _ = tx.send(req.request_id().clone());
        })
        .timeout(Duration::from_secs(30))
        .no_audit()
        .build();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let samples: Arc<Mutex<Vec<Duration>>> = Arc::default();

    let mut group = c.benchmark_group("resolve_latency");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("in_process_resolve_to_executor", |b| {
        b.iter_custom(|iters| {
            let (guard, rx, samples) = (guard.clone(), rx.clone(), samples.clone());
            rt.block_on(async move {
                // The resolver is a task of its own on the runtime, like a web handler would be.
                tokio::spawn(async move {
                    let mut rx = rx.lock().await;
                    let mut total = Duration::ZERO;
                    let mut mine = Vec::with_capacity(iters as usize);
                    for _ in 0..iters {
                        let g = guard.clone();
                        let agent = tokio::spawn(async move {
                            g.aexecute(ToolCall::new("delete_row", json!({"row": 1})), |_, _| async {
                                Instant::now()
                            })
                            .await
                        });
                        let id = rx.recv().await.expect("request announced");
                        let settle = Instant::now() + SETTLE;
                        while Instant::now() < settle {
                            std::hint::spin_loop();
                        }
                        let start = Instant::now();
                        assert_eq!(
                            guard.resolve(&id, true, Some("bench")),
                            agentguard::ResolveOutcome::Resolved
                        );
                        let ran = agent.await.expect("agent task").expect("approved");
                        let latency = ran.saturating_duration_since(start);
                        mine.push(latency);
                        total += latency;
                    }
                    samples.lock().expect("samples").extend(mine);
                    total
                })
                .await
                .expect("resolver task")
            })
        })
    });
    group.finish();

    let mut all = samples.lock().expect("samples").clone();
    all.sort();
    if !all.is_empty() {
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        println!(
            "resolve_latency: p50 {:.1} us, p99 {:.1} us over {} samples",
            pct(0.50).as_secs_f64() * 1e6,
            pct(0.99).as_secs_f64() * 1e6,
            all.len()
        );
    }
}

criterion_group!(benches, bench_resolve_latency);
criterion_main!(benches);
