//! park: many approvals parked at once, their memory and how late they fail closed.

use super::*;

// ---------------------------------------------------------------------------------------------------------------
// park: 100,000 parked approvals failing closed
// ---------------------------------------------------------------------------------------------------------------

/// Where the parked calls are spawned from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Spawner {
    /// A loop on the thread that entered the runtime (`block_on`), as a program's `main` would: the section `park`.
    EntryThread,
    /// One task on the runtime, as a server's accept loop or an agent's dispatcher would: the section `park-task`.
    Task,
    /// As `EntryThread`, a million calls with a 10 s timeout (the size): the section `park-million`, whose
    /// figures are keyed `park_million` (`park_million_mimalloc` on mimalloc).
    Million,
}

pub(super) fn park(opts: &Options, figures: &mut Figures, spawner: Spawner) {
    let (n, timeout) = match spawner {
        Spawner::Million => (1_000_000, Duration::from_secs(10)),
        _ => (opts.park_n, opts.park_timeout),
    };
    let (section, from) = match spawner {
        Spawner::EntryThread => ("park", "spawned from block_on's thread"),
        Spawner::Task => ("park_task", "spawned by a task on the runtime"),
        Spawner::Million if cfg!(feature = "mimalloc") => ("park_million_mimalloc", "spawned from block_on's thread"),
        Spawner::Million => ("park_million", "spawned from block_on's thread"),
    };
    println!(
        "\n== {}: {n} approvals parked via aexecute, {from}, 2 workers, timeout {timeout:?}, nobody answers; {}",
        section.replace('_', "-"),
        if opts.park_reserve {
            "store made with room for them (InMemoryStore::with_capacity)"
        } else {
            "default store (--park-no-reserve)"
        }
    );
    let rt = runtime();
    // Everything the harness shares with the tasks sits behind one Arc, preallocated, so it adds almost nothing
    // per parked call: per-call start and end (ns after t0) and counters.
    struct Shared {
        guard: AgentGuard,
        t0: Instant,
        starts: Vec<AtomicU64>,
        ends: Vec<AtomicU64>,
        timed_out: AtomicUsize,
        finished: AtomicUsize,
        ran: AtomicUsize,
    }

    // Warm the runtime's threads and the allocator's arenas, then take the baseline.
    rt.block_on(async {
        let _ = tokio::task::spawn_blocking(|| ()).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
    // The room reserved up front is counted as the parked calls' (it is allocated before the baseline; RSS counts
    // its pages as they fill).
    let before_store = live_heap();
    let store = if opts.park_reserve {
        InMemoryStore::with_capacity(n)
    } else {
        InMemoryStore::new()
    };
    let reserved_heap = live_heap().saturating_sub(before_store);
    let sh = Arc::new(Shared {
        guard: AgentGuard::external().timeout(timeout).no_audit().store(store).build(),
        t0: Instant::now(),
        starts: (0..n).map(|_| AtomicU64::new(0)).collect(),
        ends: (0..n).map(|_| AtomicU64::new(0)).collect(),
        timed_out: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        ran: AtomicUsize::new(0),
    });
    let base_kib = status_kib("VmRSS");
    let base_heap = live_heap();

    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(base_kib));
    let peak_heap = Arc::new(AtomicUsize::new(base_heap));
    let sampler = {
        let (sampling, peak, peak_heap) = (sampling.clone(), peak.clone(), peak_heap.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(status_kib("VmRSS"), Ordering::Relaxed);
                peak_heap.fetch_max(live_heap(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let t0 = Instant::now();
    let (spawned_in, probes) = rt.block_on(async {
        // Every call's task is spawned by `spawn_all`: here on this thread, or inside one task. (glibc's allocator
        // gives each thread its own arena, and tokio's tasks are allocated aligned to 128 bytes, which leaves a free
        // fragment beside each: fragments that only that thread's own later allocations reuse. See BENCHMARKS.md.)
        let spawn_all = {
            let sh = sh.clone();
            move || {
                for i in 0..n {
                    let sh = sh.clone();
                    tokio::spawn(async move {
                        sh.starts[i].store(sh.t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        let out = sh
                            .guard
                            .aexecute(ToolCall::new("delete_row", Value::Object(Map::new())), |_, _| async {
                                sh.ran.fetch_add(1, Ordering::Relaxed);
                            })
                            .await;
                        sh.ends[i].store(sh.t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        if out.is_err_and(|d| d.reason() == DenyReason::ApprovalTimeout) {
                            sh.timed_out.fetch_add(1, Ordering::Relaxed);
                        }
                        sh.finished.fetch_add(1, Ordering::Relaxed);
                    });
                }
            }
        };
        match spawner {
            Spawner::EntryThread | Spawner::Million => spawn_all(),
            Spawner::Task => tokio::spawn(async move { spawn_all() })
                .await
                .expect("the spawning task"),
        }
        let spawned_in = t0.elapsed();
        // Unrelated blocking work while they are parked: a task asks the blocking pool for something and waits.
        let mut probes = Vec::new();
        while t0.elapsed() < timeout.saturating_sub(Duration::from_millis(50)) {
            let asked = Instant::now();
            let _ = tokio::task::spawn_blocking(|| std::hint::black_box(17u64).count_ones()).await;
            probes.push(asked.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while sh.finished.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (spawned_in, probes)
    });
    let all_done = t0.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let hwm_kib = status_kib("VmHWM");

    // The tasks' clock starts at sh.t0, a moment before t0: measure from sh.t0 throughout.
    let mut lateness: Vec<Duration> = (0..n)
        .map(|i| {
            let due = sh.starts[i].load(Ordering::Relaxed) + timeout.as_nanos() as u64;
            Duration::from_nanos(sh.ends[i].load(Ordering::Relaxed).saturating_sub(due))
        })
        .collect();
    lateness.sort();
    let first_start = sh.starts.iter().map(|e| e.load(Ordering::Relaxed)).min().unwrap_or(0);
    let last_start = sh.starts.iter().map(|e| e.load(Ordering::Relaxed)).max().unwrap_or(0);
    let last_end = Duration::from_nanos(
        sh.ends
            .iter()
            .map(|e| e.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
            .saturating_sub(first_start),
    );
    let last_parked = Duration::from_nanos(last_start.saturating_sub(first_start));
    let mut probes_sorted = probes.clone();
    probes_sorted.sort();
    let peak_kib = peak.load(Ordering::Relaxed);
    let per_parked = (peak_kib.saturating_sub(base_kib) * 1024) as f64 / n as f64;
    let heap_per_parked =
        (peak_heap.load(Ordering::Relaxed).saturating_sub(base_heap) + reserved_heap) as f64 / n as f64;

    let denied = sh.timed_out.load(Ordering::Relaxed);
    let ran = sh.ran.load(Ordering::Relaxed);
    println!("  spawned in                    {:>9.1} ms", ms(spawned_in));
    println!(
        "  last call parked after        {:>9.1} ms from the first call",
        ms(last_parked)
    );
    println!(
        "  all failed closed after       {:>9.1} ms from the first call",
        ms(last_end)
    );
    println!("  failed closed (timeout)       {denied} of {n}; executors run: {ran}");
    println!(
        "  lateness past own deadline    p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(quantile(&lateness, 0.5)),
        ms(quantile(&lateness, 0.99)),
        ms(*lateness.last().expect("n > 0"))
    );
    println!(
        "  RSS                           baseline {:.1} MiB, peak {:.1} MiB (VmHWM {:.1} MiB)",
        mib(base_kib),
        mib(peak_kib),
        mib(hwm_kib)
    );
    println!("  RSS per parked approval       {per_parked:.0} bytes (params: empty object)");
    println!("  live heap per parked approval {heap_per_parked:.0} bytes (counted by this program's allocator)");
    if probes_sorted.is_empty() {
        println!("  spawn_blocking while parked   no probe ran (parking took longer than the timeout less 50 ms)");
    } else {
        println!(
            "  spawn_blocking while parked   {} probes: median {:.3} ms, max {:.3} ms",
            probes_sorted.len(),
            ms(quantile(&probes_sorted, 0.5)),
            ms(*probes_sorted.last().expect("non-empty"))
        );
    }
    println!("  (wall time including the harness: {:.1} ms)", ms(all_done));

    record(figures, &format!("{section}.n"), n);
    record(figures, &format!("{section}.spawn_ms"), ms(spawned_in));
    record(figures, &format!("{section}.last_parked_ms"), ms(last_parked));
    record(figures, &format!("{section}.all_failed_closed_ms"), ms(last_end));
    record(figures, &format!("{section}.timed_out"), denied);
    record(figures, &format!("{section}.executors_run"), ran);
    record(
        figures,
        &format!("{section}.lateness_p50_ms"),
        ms(quantile(&lateness, 0.5)),
    );
    record(
        figures,
        &format!("{section}.lateness_p99_ms"),
        ms(quantile(&lateness, 0.99)),
    );
    record(
        figures,
        &format!("{section}.lateness_max_ms"),
        ms(*lateness.last().expect("n > 0")),
    );
    record(figures, &format!("{section}.rss_base_mib"), mib(base_kib));
    record(figures, &format!("{section}.rss_peak_mib"), mib(peak_kib));
    record(figures, &format!("{section}.vmhwm_mib"), mib(hwm_kib));
    record(figures, &format!("{section}.bytes_per_parked"), per_parked);
    record(figures, &format!("{section}.heap_bytes_per_parked"), heap_per_parked);
    if !probes_sorted.is_empty() {
        record(figures, &format!("{section}.blocking_probes"), probes_sorted.len());
        record(
            figures,
            &format!("{section}.blocking_median_ms"),
            ms(quantile(&probes_sorted, 0.5)),
        );
        record(
            figures,
            &format!("{section}.blocking_max_ms"),
            ms(*probes_sorted.last().expect("non-empty")),
        );
    }
    drop(sh);
    rt.shutdown_timeout(Duration::from_secs(1));
}
