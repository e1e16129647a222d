//! Scale: what agentguard does with many parked approvals, many cycles, other processes and many audit writers.
//!
//! ```text
//! cargo run --release -p agentguard-bench --bin scale                      # every section
//! cargo run --release -p agentguard-bench --bin scale -- park cycles       # only these sections
//! cargo run --release -p agentguard-bench --bin scale -- --json out.json   # also write the figures as JSON
//! ```
//!
//! Sections (all by default; name some to run only those):
//!
//! - `park`: 100,000 calls parked through `aexecute` on a 2-worker tokio runtime with a 0.5 s timeout and nobody
//!   answering. Reports how long parking them took, when they have all failed closed, each call's lateness past its
//!   own deadline (p50/p99/max), peak RSS and RSS per parked approval (VmRSS sampled every 2 ms, and VmHWM), the
//!   live heap per parked approval (this program's global allocator counts bytes), and the round-trip latency of
//!   unrelated `spawn_blocking` calls made from a task while they are parked.
//! - `cycles`: 1,000,000 park → resolve → run cycles (256 agent tasks, one resolver task), RSS at start, after 10%,
//!   at the middle and at the end. The store forgets decided requests after `--retention-ms` (default 0, so what is
//!   measured is the cost per cycle, not the retention window, which holds rate × window requests by design; the
//!   library's default is 10 minutes, see BENCHMARKS.md).
//! - `wake`: cross-process resolve → wake latency. This process parks calls; a second OS process (this binary,
//!   re-executed as `scale __resolver URL`) answers each one 20–50 ms after it was parked. Each sample runs from
//!   just before the resolver's `resolve` to the first line of the executor (wall clock, same host). Over SQLite
//!   (polling), PostgreSQL (LISTEN/NOTIFY), and PostgreSQL with the agent's LISTEN connection killed and kept
//!   from reconnecting (the agent connects as an ordinary role, `agentguard_scale_agent`, capped by `ALTER ROLE …
//!   CONNECTION LIMIT` at the connections it has left; needs `psql` and a superuser URL), so the 1 s polling
//!   fallback is what wakes it. The role and schemas are removed afterwards.
//! - `audit`: records/s appended to one hash-chained JSONL file by 1 writer, 8 threads sharing one sink, and 8
//!   separate sinks on the same file (as 8 processes would: the OS file lock and a tail re-read per line).
//!
//! Options: `--park-n N` (100000), `--cycles N` (1000000), `--wake-samples N` (200), `--killed-samples N` (30),
//! `--audit-records N` (200000), `--retention-ms MS` (0), `--pg-url URL` (default `$AGENTGUARD_TEST_POSTGRES_URL`,
//! else `postgres://postgres@127.0.0.1:5432/test`), `--no-postgres`, `--no-sqlite`, `--json PATH`.
//! A section whose backend is missing says `skipped: …` and the run goes on.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentguard::audit::{AuditDecision, AuditRecord};
use agentguard::audit::{AuditSink, JsonlAudit};
use agentguard::store::{open_store, InMemoryStore};
use agentguard::{AgentGuard, DenyReason, RequestId, Resolution, ResolveOutcome, ToolCall};
use serde_json::{json, Map, Value};

/// The command line, parsed.
#[derive(Debug)]
struct Options {
    sections: Vec<String>,
    park_n: usize,
    cycles: usize,
    wake_samples: usize,
    killed_samples: usize,
    audit_records: usize,
    retention: Duration,
    pg_url: Option<String>,
    sqlite: bool,
    json: Option<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            sections: Vec::new(),
            park_n: 100_000,
            cycles: 1_000_000,
            wake_samples: 200,
            killed_samples: 30,
            audit_records: 200_000,
            retention: Duration::ZERO,
            pg_url: Some(
                std::env::var("AGENTGUARD_TEST_POSTGRES_URL")
                    .ok()
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
            ),
            sqlite: true,
            json: None,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
            let number = |name: &str, v: String| v.parse::<usize>().map_err(|e| format!("{name} {v:?}: {e}"));
            match arg.as_str() {
                "--park-n" => o.park_n = number(arg, value(arg)?)?,
                "--cycles" => o.cycles = number(arg, value(arg)?)?,
                "--wake-samples" => o.wake_samples = number(arg, value(arg)?)?,
                "--killed-samples" => o.killed_samples = number(arg, value(arg)?)?,
                "--audit-records" => o.audit_records = number(arg, value(arg)?)?,
                "--retention-ms" => o.retention = Duration::from_millis(number(arg, value(arg)?)? as u64),
                "--pg-url" => o.pg_url = Some(value(arg)?),
                "--no-postgres" => o.pg_url = None,
                "--no-sqlite" => o.sqlite = false,
                "--json" => o.json = Some(value(arg)?),
                "park" | "cycles" | "wake" | "audit" => o.sections.push(arg.clone()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if o.sections.is_empty() {
            o.sections = ["park", "cycles", "wake", "audit"].map(String::from).to_vec();
        }
        Ok(o)
    }
}

/// Figures gathered for `--json`, keyed `section.figure`.
type Figures = BTreeMap<String, Value>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__resolver") {
        resolver_process(args.get(1).expect("usage: scale __resolver URL"));
        return;
    }
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "scale: {e}\nusage: scale [park] [cycles] [wake] [audit] [--park-n N] [--cycles N] [--json PATH] …"
            );
            std::process::exit(2);
        }
    };
    let mut figures = Figures::new();
    println!(
        "agentguard scale: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    for section in &opts.sections {
        match section.as_str() {
            "park" => park(&opts, &mut figures),
            "cycles" => cycles(&opts, &mut figures),
            "wake" => wake(&opts, &mut figures),
            "audit" => audit(&opts, &mut figures),
            _ => unreachable!("checked by Options::parse"),
        }
    }
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&figures).expect("figures are JSON");
        std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        println!("figures written to {path}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Measuring helpers
// ---------------------------------------------------------------------------------------------------------------

/// The system allocator, counting the bytes it has handed out and not yet had back, so the `park` section can
/// report live heap per parked approval exactly (RSS adds the allocator's own overhead and fragmentation).
struct CountingAllocator;

static LIVE_HEAP: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc` contract; the counter is
// only arithmetic on the layout sizes.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE_HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE_HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE_HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the caller guarantees `new_size` is valid.
        let new = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE_HEAP.fetch_add(new_size, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Bytes of heap handed out and not yet freed.
fn live_heap() -> usize {
    LIVE_HEAP.load(Ordering::Relaxed)
}

/// A field of /proc/self/status in KiB (VmRSS, VmHWM), or 0 where there is no /proc.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The `p`-quantile (0..=1) of sorted values.
fn quantile<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn record(figures: &mut Figures, key: &str, value: impl Into<Value>) {
    figures.insert(key.to_owned(), value.into());
}

/// Wall-clock nanoseconds since the epoch: comparable between processes on one host.
fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

// ---------------------------------------------------------------------------------------------------------------
// park: 100,000 parked approvals failing closed
// ---------------------------------------------------------------------------------------------------------------

fn park(opts: &Options, figures: &mut Figures) {
    let n = opts.park_n;
    let timeout = Duration::from_millis(500);
    println!("\n== park: {n} approvals parked via aexecute, 2 workers, timeout {timeout:?}, nobody answers");
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
    let sh = Arc::new(Shared {
        guard: AgentGuard::external().timeout(timeout).no_audit().build(),
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
        let spawned_in = t0.elapsed();
        // Unrelated blocking work while they are parked: a task asks the blocking pool for something and waits.
        let mut probes = Vec::new();
        while t0.elapsed() < Duration::from_millis(450) {
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
    let heap_per_parked = peak_heap.load(Ordering::Relaxed).saturating_sub(base_heap) as f64 / n as f64;

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
        println!("  spawn_blocking while parked   no probe ran (parking took longer than 450 ms)");
    } else {
        println!(
            "  spawn_blocking while parked   {} probes: median {:.3} ms, max {:.3} ms",
            probes_sorted.len(),
            ms(quantile(&probes_sorted, 0.5)),
            ms(*probes_sorted.last().expect("non-empty"))
        );
    }
    println!("  (wall time including the harness: {:.1} ms)", ms(all_done));

    record(figures, "park.n", n);
    record(figures, "park.spawn_ms", ms(spawned_in));
    record(figures, "park.last_parked_ms", ms(last_parked));
    record(figures, "park.all_failed_closed_ms", ms(last_end));
    record(figures, "park.timed_out", denied);
    record(figures, "park.executors_run", ran);
    record(figures, "park.lateness_p50_ms", ms(quantile(&lateness, 0.5)));
    record(figures, "park.lateness_p99_ms", ms(quantile(&lateness, 0.99)));
    record(figures, "park.lateness_max_ms", ms(*lateness.last().expect("n > 0")));
    record(figures, "park.rss_base_mib", mib(base_kib));
    record(figures, "park.rss_peak_mib", mib(peak_kib));
    record(figures, "park.vmhwm_mib", mib(hwm_kib));
    record(figures, "park.bytes_per_parked", per_parked);
    record(figures, "park.heap_bytes_per_parked", heap_per_parked);
    if !probes_sorted.is_empty() {
        record(figures, "park.blocking_probes", probes_sorted.len());
        record(figures, "park.blocking_median_ms", ms(quantile(&probes_sorted, 0.5)));
        record(
            figures,
            "park.blocking_max_ms",
            ms(*probes_sorted.last().expect("non-empty")),
        );
    }
    drop(sh);
    rt.shutdown_timeout(Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------------------------------
// cycles: 1,000,000 park/resolve cycles, RSS over time
// ---------------------------------------------------------------------------------------------------------------

/// A point in the cycles run: (label, VmRSS KiB, cycles done, decided requests the store still retains).
type Mark = (String, u64, usize, usize);

fn cycles(opts: &Options, figures: &mut Figures) {
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

// ---------------------------------------------------------------------------------------------------------------
// wake: cross-process resolve → wake latency
// ---------------------------------------------------------------------------------------------------------------

/// The second process: answers "approve" to each request id read from stdin after the pause given with it, printing
/// the wall-clock time just before each `resolve`.
fn resolver_process(url: &str) {
    let store = open_store(url).unwrap_or_else(|e| {
        eprintln!("resolver: cannot open {url}: {e}");
        std::process::exit(1)
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").and_then(|()| out.flush()).expect("stdout");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let (id, pause_us) = line.split_once(' ').expect("`<id> <pause_us>`");
        std::thread::sleep(Duration::from_micros(pause_us.parse().expect("pause")));
        let id: RequestId = id.parse().expect("request id");
        let at = wall_ns();
        let outcome = store.resolve(&Resolution::approve(id).actor("resolver-process"));
        match outcome {
            Ok(ResolveOutcome::Resolved) => writeln!(out, "{at}"),
            other => writeln!(out, "error {other:?}"),
        }
        .and_then(|()| out.flush())
        .expect("stdout");
    }
}

/// Runs SQL through `psql` (as the URL's user); the output, or why it failed.
fn psql(server: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([server, "-Atqc", sql])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("psql not runnable ({e}); it is needed to cut the LISTEN connection"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!("psql failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The role the agent connects as in the listener-killed run: an ordinary role, so a connection limit binds it.
const CUT_ROLE: &str = "agentguard_scale_agent";

/// `server` with its user replaced by `user`.
fn with_user(server: &str, user: &str) -> String {
    let (scheme, rest) = server.split_once("://").unwrap_or(("postgres", server));
    let host_and_rest = rest.split_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}@{host_and_rest}")
}

/// Kills the agent role's LISTEN connection and caps the role at its remaining connections, so the listener cannot
/// come back and only the store's polling can notice a decision. Checks that it stayed down.
fn cut_listener(server: &str) -> Result<(), String> {
    psql(
        server,
        &format!(
            "DO $$DECLARE k int; BEGIN                PERFORM pg_terminate_backend(pid, 5000) FROM pg_stat_activity                  WHERE usename = '{CUT_ROLE}' AND application_name = 'agentguard-listen';                SELECT count(*) INTO k FROM pg_stat_activity                  WHERE usename = '{CUT_ROLE}' AND application_name <> 'agentguard-listen';                EXECUTE format('ALTER ROLE {CUT_ROLE} CONNECTION LIMIT %s', k);              END$$;"
        ),
    )?;
    std::thread::sleep(Duration::from_millis(400)); // past the listener's reconnect attempt
    let listening = psql(
        server,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{CUT_ROLE}'              AND application_name = 'agentguard-listen'"
        ),
    )?;
    if listening == "0" {
        Ok(())
    } else {
        Err(format!("the LISTEN connection came back ({listening} found)"))
    }
}

/// Parks `samples` calls one after another on the store at `url`, each answered by the resolver process; returns
/// the sorted latencies.
fn wake_samples(
    agent_url: &str,
    resolver_url: &str,
    samples: usize,
    rt: &tokio::runtime::Runtime,
    after_open: &dyn Fn() -> Result<(), String>,
) -> Result<Vec<Duration>, String> {
    let store = open_store(agent_url).map_err(|e| e.to_string())?;
    after_open()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child: Child = Command::new(exe)
        .args(["__resolver", resolver_url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the resolver process: {e}"))?;
    let child_in: Arc<Mutex<ChildStdin>> = Arc::new(Mutex::new(child.stdin.take().expect("child stdin")));
    let (times_tx, times) = mpsc::channel::<String>();
    let child_out = child.stdout.take().expect("child stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(child_out).lines().map_while(Result::ok) {
            if times_tx.send(line).is_err() {
                break;
            }
        }
    });
    if times.recv_timeout(Duration::from_secs(30)).as_deref() != Ok("ready") {
        let _ = child.kill();
        return Err("the resolver process did not start".into());
    }
    // A cheap, deterministic spread of pauses (20–50 ms): a person never answers in the same poll phase.
    let seed = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let writer = child_in.clone();
    let guard = AgentGuard::external()
        .shared_store(store)
        .on_request(move |req| {
            let x = seed.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
            let pause_us = 20_000 + (x >> 33) % 30_000;
            let mut w = writer.lock().expect("child stdin");
            let _ = writeln!(w, "{} {pause_us}", req.request_id()).and_then(|()| w.flush());
        })
        .timeout(Duration::from_secs(30))
        .no_audit()
        .build();
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let out = rt.block_on(
            guard.aexecute(ToolCall::new("delete_row", json!({ "row": i })), |_, _| async {
                wall_ns()
            }),
        );
        let ran_at = out.map_err(|d| format!("sample {i} was not approved: {d} {:?}", d.detail()))?;
        let line = times
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the resolver process went quiet".to_owned())?;
        let resolved_at: u64 = line.parse().map_err(|_| format!("resolver: {line}"))?;
        latencies.push(Duration::from_nanos(ran_at.saturating_sub(resolved_at)));
    }
    drop(child_in);
    drop(guard);
    let _ = child.wait();
    latencies.sort();
    Ok(latencies)
}

fn report_wake(figures: &mut Figures, key: &str, label: &str, result: Result<Vec<Duration>, String>) {
    match result {
        Ok(l) => {
            println!(
                "  {label:<38} n={:<4} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
                l.len(),
                ms(quantile(&l, 0.5)),
                ms(quantile(&l, 0.99)),
                ms(*l.last().expect("samples > 0"))
            );
            record(figures, &format!("wake.{key}.n"), l.len());
            record(figures, &format!("wake.{key}.p50_ms"), ms(quantile(&l, 0.5)));
            record(figures, &format!("wake.{key}.p99_ms"), ms(quantile(&l, 0.99)));
            record(
                figures,
                &format!("wake.{key}.max_ms"),
                ms(*l.last().expect("samples > 0")),
            );
        }
        Err(e) => {
            println!("  {label:<38} skipped: {e}");
            record(figures, &format!("wake.{key}.skipped"), e);
        }
    }
}

fn wake(opts: &Options, figures: &mut Figures) {
    println!("\n== wake: cross-process resolve → executor running (resolver is a second OS process)");
    let rt = runtime();
    let nothing = || Ok(());
    if opts.sqlite {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("scale.db").display());
        let result = wake_samples(&url, &url, opts.wake_samples.max(1), &rt, &nothing);
        report_wake(figures, "sqlite", "SQLite (polling, 2→25 ms)", result);
    } else {
        println!("  SQLite                                 skipped: --no-sqlite");
    }
    let Some(server) = &opts.pg_url else {
        println!("  PostgreSQL                             skipped: --no-postgres");
        return;
    };
    let fresh = |base: &str, schema: &str| {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}schema={schema}")
    };
    let schema = format!("ag_scale_{}", RequestId::new().as_str().replace('-', ""));
    let url = fresh(server, &schema);
    if let Err(e) = open_store(&url) {
        let why = format!("no PostgreSQL at {server} ({e})");
        println!("  PostgreSQL                             skipped: {why}");
        record(figures, "wake.postgres_notify.skipped", why.clone());
        record(figures, "wake.postgres_killed.skipped", why);
        return;
    }
    let result = wake_samples(&url, &url, opts.wake_samples.max(1), &rt, &nothing);
    report_wake(figures, "postgres_notify", "PostgreSQL (LISTEN/NOTIFY)", result);
    let _ = psql(server, &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));

    // Listener killed: the agent connects as an ordinary role; once its store is open, its LISTEN connection is
    // terminated and the role capped at the connections it has left, so the listener cannot reconnect and only the
    // 1 s polling fallback can wake a waiter. The resolver process connects as the server URL's user.
    let schema = format!("ag_scale_{}", RequestId::new().as_str().replace('-', ""));
    let setup = psql(
        server,
        &format!(
            "DO $$BEGIN \
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{CUT_ROLE}') THEN CREATE ROLE {CUT_ROLE} LOGIN; \
               END IF; \
               ALTER ROLE {CUT_ROLE} CONNECTION LIMIT -1; \
               EXECUTE format('GRANT CREATE ON DATABASE %I TO {CUT_ROLE}', current_database()); \
             END$$;"
        ),
    );
    let result = setup.and_then(|_| {
        let agent_url = fresh(&with_user(server, CUT_ROLE), &schema);
        let resolver_url = fresh(server, &schema);
        wake_samples(&agent_url, &resolver_url, opts.killed_samples.max(1), &rt, &|| {
            cut_listener(server)
        })
    });
    report_wake(
        figures,
        "postgres_killed",
        "PostgreSQL, LISTEN connection killed",
        result,
    );
    // Leave nothing behind (best effort).
    let _ = psql(
        server,
        &format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; \
             DO $$BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM {CUT_ROLE}', current_database()); END$$; \
             DROP ROLE IF EXISTS {CUT_ROLE};"
        ),
    );
}

// ---------------------------------------------------------------------------------------------------------------
// audit: append throughput
// ---------------------------------------------------------------------------------------------------------------

fn append(audit: &JsonlAudit, tag: usize, n: usize) {
    let params = json!({"id": tag, "email": "jane@example.com"});
    for _ in 0..n {
        let mut rec = AuditRecord::new("update_email", AuditDecision::Allowed);
        rec.params = Some(&params);
        rec.agent_id = Some("scale");
        audit.record(&rec).expect("audit append");
    }
}

fn audit(opts: &Options, figures: &mut Figures) {
    let n = opts.audit_records;
    println!("\n== audit: {n} records appended to a hash-chained JSONL file");
    let dir = tempfile::tempdir().expect("temp dir");
    let runs: [(&str, &str, usize, bool); 3] = [
        ("one_writer", "1 writer", 1, true),
        ("eight_threads_one_sink", "8 threads, one shared sink", 8, true),
        ("eight_sinks_one_file", "8 sinks on one file (as 8 processes)", 8, false),
    ];
    for (key, label, writers, shared) in runs {
        let path = dir.path().join(format!("{key}.log"));
        let per = n / writers;
        let t0 = Instant::now();
        if shared {
            let audit = Arc::new(JsonlAudit::new(&path));
            std::thread::scope(|s| {
                for w in 0..writers {
                    let audit = audit.clone();
                    s.spawn(move || append(&audit, w, per));
                }
            });
        } else {
            std::thread::scope(|s| {
                for w in 0..writers {
                    let path = path.clone();
                    s.spawn(move || append(&JsonlAudit::new(path), w, per));
                }
            });
        }
        let elapsed = t0.elapsed();
        let written = per * writers;
        let rate = written as f64 / elapsed.as_secs_f64();
        let verified = agentguard::audit::verify(&path).map(|r| r.lines);
        let chain = match &verified {
            Ok(lines) if *lines == written as u64 => "chain intact".to_owned(),
            Ok(lines) => format!("CHAIN HAS {lines} LINES, EXPECTED {written}"),
            Err(e) => format!("CHAIN BROKEN: {e}"),
        };
        println!(
            "  {label:<38} {rate:>10.0} records/s  ({written} in {:.2} s, {chain})",
            elapsed.as_secs_f64()
        );
        record(figures, &format!("audit.{key}.records_per_s"), rate);
        record(
            figures,
            &format!("audit.{key}.chain_ok"),
            verified.is_ok_and(|l| l == written as u64),
        );
    }
}
