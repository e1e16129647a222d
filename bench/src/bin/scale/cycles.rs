//! cycles: park/decide cycles, and whether memory stays flat.

use super::*;

// ---------------------------------------------------------------------------------------------------------------
// cycles: 1,000,000 park/resolve cycles, RSS over time
// ---------------------------------------------------------------------------------------------------------------

/// A point in the cycles run: (label, VmRSS KiB, cycles done, decided requests the store still retains).
type Mark = (String, u64, usize, usize);

pub(super) fn cycles(opts: &Options, figures: &mut Figures) {
    let total = opts.cycles;
    let agents = 256usize;
    println!(
        "\n== cycles: {total} park → resolve → run cycles, {agents} agent tasks + 1 resolver task, 2 workers, \
         store retention {:?}",
        opts.retention
    );
    let rt = runtime();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RequestId>();
    let store = Arc::new(InMemoryStore::with_retention(opts.retention));
    let guard = AgentGuard::external()
        .shared_store(store.clone())
        .on_request(move |req| {
            let _ = tx.send(req.request_id().clone());
        })
        .timeout(Duration::from_secs(60))
        .no_audit()
        .build();
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let rss: Arc<Mutex<Vec<Mark>>> = Arc::default();

    let start_kib = status_kib("VmRSS");
    rss.lock().expect("rss").push(("start".into(), start_kib, 0, 0));
    let t0 = Instant::now();
    rt.block_on(async {
        let resolver = {
            let g = guard.clone();
            tokio::spawn(async move {
                while let Some(id) = rx.recv().await {
                    if g.resolve(&id, true, Some("scale")) != ResolveOutcome::Resolved {
                        panic!("resolve of {id} did not resolve");
                    }
                }
            })
        };
        let next = Arc::new(AtomicUsize::new(0));
        let marks = [(total / 10, "10%"), (total / 2, "middle")];
        let mut handles = Vec::new();
        for _ in 0..agents {
            let (g, next, done, failures, rss) =
                (guard.clone(), next.clone(), done.clone(), failures.clone(), rss.clone());
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let out = g
                        .aexecute(ToolCall::new("delete_row", json!({ "row": i })), |_, p| async move {
                            std::hint::black_box(p);
                        })
                        .await;
                    if out.is_err() {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if let Some((_, label)) = marks.iter().find(|(at, _)| *at == d) {
                        let mark = (label.to_string(), status_kib("VmRSS"), d, store.len());
                        rss.lock().expect("rss").push(mark);
                    }
                }
            }));
        }
        for h in handles {
            h.await.expect("agent task");
        }
        // The resolver holds a guard whose notifier holds the channel's sender: stop it rather than wait for the
        // channel to close.
        resolver.abort();
    });
    let elapsed = t0.elapsed();
    let end_kib = status_kib("VmRSS");
    let end_mark = ("end".into(), end_kib, done.load(Ordering::Relaxed), store.len());
    rss.lock().expect("rss").push(end_mark);
    let rss = rss.lock().expect("rss").clone();
    for (label, kib, at, held) in &rss {
        println!(
            "  RSS {label:<7} (after {at:>8} cycles) {:>8.1} MiB, {held:>7} decided requests retained",
            mib(*kib)
        );
    }
    let middle = rss.iter().find(|(l, ..)| l == "middle").map_or(start_kib, |r| r.1);
    let drift = (end_kib as f64 - middle as f64) / middle as f64 * 100.0;
    let rate = total as f64 / elapsed.as_secs_f64();
    println!(
        "  {total} cycles in {:.2} s ({rate:.0}/s), {} failed; RSS end vs middle {drift:+.1}%",
        elapsed.as_secs_f64(),
        failures.load(Ordering::Relaxed)
    );
    record(figures, "cycles.n", total);
    record(figures, "cycles.seconds", elapsed.as_secs_f64());
    record(figures, "cycles.per_second", rate);
    record(figures, "cycles.failures", failures.load(Ordering::Relaxed));
    record(figures, "cycles.retention_ms", opts.retention.as_millis() as u64);
    for (label, kib, _, held) in &rss {
        record(figures, &format!("cycles.rss_{label}_mib"), mib(*kib));
        record(figures, &format!("cycles.retained_{label}"), *held);
    }
    record(figures, "cycles.rss_end_vs_middle_pct", drift);
    rt.shutdown_timeout(Duration::from_secs(1));
}
