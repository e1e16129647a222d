//! Scale: what agentguard does with many parked approvals, many cycles, other processes and many audit writers.
//!
//! ```text
//! cargo run --release -p agentguard-bench --bin scale                      # every section
//! cargo run --release -p agentguard-bench --bin scale -- park cycles       # only these sections
//! cargo run --release -p agentguard-bench --bin scale -- --json out.json   # also write the figures as JSON
//! ```
//!
//! Sections (all but `park-task` and `park-million` by default; name some to run only those):
//!
//! - `park`: 100,000 calls parked through `aexecute` on a 2-worker tokio runtime with a 0.5 s timeout and nobody
//!   answering. Reports how long parking them took, when they have all failed closed, each call's lateness past its
//!   own deadline (p50/p99/max), peak RSS and RSS per parked approval (VmRSS sampled every 2 ms, and VmHWM), the
//!   live heap per parked approval (this program's global allocator counts bytes), and the round-trip latency of
//!   unrelated `spawn_blocking` calls made from a task while they are parked. The guard's in-memory store is made
//!   with room for the calls (`InMemoryStore::with_capacity`), as a service expecting that many would make it;
//!   `--park-no-reserve` uses the default store, whose table doubles under its lock as it fills. The calls' tasks
//!   are spawned from the thread that runs `block_on`.
//! - `park-task`: the same, with the calls' tasks spawned by one task on the runtime (as a server's accept loop or
//!   an agent's dispatcher spawns them); figures keyed `park_task.*`. The two differ in the allocator's
//!   fragmentation, not in what a parked call holds (BENCHMARKS.md). Not run by default: run it in a process of its
//!   own (RSS counts only what the process maps after its baseline, so a section before it would lend it pages).
//! - `park-million`: as `park`, with the issue's million calls and a 10 s timeout (about 1.3 GB of RSS; `--park-n`
//!   and `--park-timeout-ms` do not apply); figures keyed `park_million.*`, or `park_million_mimalloc.*` when built
//!   with the `mimalloc` feature. Not run by default; in a process of its own, as `park-task`.
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
//! - `audit`: records/s appended to one hash-chained JSONL file by 1 writer and by 8 threads sharing one sink, each
//!   waiting for its line (as a gated call's) or queueing it (as a safe call's), and by 8 separate sinks on the same
//!   file (as 8 processes would: the OS file lock and a tail re-read per batch). A run ends when every line is written.
//! - `stall`: agent tasks calling through the audited guard on a 2-worker runtime while the audit's disk stops for
//!   100 ms every 500 ms (`fsfreeze` of a loop-mounted ext4 when run as root, else the log's lock held by another
//!   file description); how late an unrelated sleeping task wakes and how long a task spawned from outside waits.
//! - `pages`: 1,000,000 pending requests in the in-memory store; the first page of 100 read in process and over
//!   HTTP (`GET /agentguard/pending?limit=100`, a new loopback connection each time), 20 times each, and the page at
//!   the middle by its cursor; and the slowest single insert while filling the store, with and without room
//!   reserved first.
//! - `watch`: 100,000 pending in the in-memory store behind the approval API; 100 changes a second (one parked, one
//!   of the oldest answered, in turn) for 10 s without a client, then 10 s with one event stream open (the approval
//!   page's): the process's CPU time in each (/proc/self/stat), the difference being what the open page costs.
//! - `crash`: an agent process (this binary, `scale __crash_child LOG`) killed with SIGKILL mid-stream, 10 times:
//!   does its log verify, and which returned calls have no line (how many, how long before the kill they returned).
//!
//! Options: `--park-n N` (100000), `--park-timeout-ms MS` (500), `--park-no-reserve`, `--pages-n N` (1000000),
//! `--watch-n N` (100000), `--watch-secs S` (10), `--cycles N` (1000000), `--wake-samples N` (200),
//! `--killed-samples N` (30), `--audit-records N` (200000), `--audit-run KEY` (repeatable: only these runs of the
//! audit section, e.g. `eight_threads_deferred`; all by default), `--retention-ms MS` (0), `--pg-url URL` (default
//! `$AGENTGUARD_TEST_POSTGRES_URL`, else `postgres://postgres@127.0.0.1:5432/test`), `--no-postgres`, `--no-sqlite`,
//! `--json PATH`.
//! A section whose backend is missing says `skipped: …` and the run goes on.

mod audit;
mod crash;
mod cycles;
mod pages;
mod park;
mod stall;
mod wake;

use audit::audit;
use crash::{crash, crash_child};
use cycles::cycles;
use pages::{pages, watch};
use park::park;
use stall::stall;
use wake::{resolver_process, wake};

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};
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
    park_timeout: Duration,
    /// The park section's store is made with room for its calls (`InMemoryStore::with_capacity`).
    park_reserve: bool,
    pages_n: usize,
    watch_n: usize,
    watch_secs: u64,
    cycles: usize,
    wake_samples: usize,
    killed_samples: usize,
    audit_records: usize,
    /// Only these runs of the audit section (by key; all when empty).
    audit_runs: Vec<String>,
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
            park_timeout: Duration::from_millis(500),
            park_reserve: true,
            pages_n: 1_000_000,
            watch_n: 100_000,
            watch_secs: 10,
            cycles: 1_000_000,
            wake_samples: 200,
            killed_samples: 30,
            audit_records: 200_000,
            audit_runs: Vec::new(),
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
                "--park-timeout-ms" => o.park_timeout = Duration::from_millis(number(arg, value(arg)?)? as u64),
                "--park-no-reserve" => o.park_reserve = false,
                "--pages-n" => o.pages_n = number(arg, value(arg)?)?.max(200),
                "--watch-n" => o.watch_n = number(arg, value(arg)?)?,
                "--watch-secs" => o.watch_secs = number(arg, value(arg)?)?.max(1) as u64,
                "--cycles" => o.cycles = number(arg, value(arg)?)?,
                "--wake-samples" => o.wake_samples = number(arg, value(arg)?)?,
                "--killed-samples" => o.killed_samples = number(arg, value(arg)?)?,
                "--audit-records" => o.audit_records = number(arg, value(arg)?)?,
                "--audit-run" => o.audit_runs.push(value(arg)?),
                "--retention-ms" => o.retention = Duration::from_millis(number(arg, value(arg)?)? as u64),
                "--pg-url" => o.pg_url = Some(value(arg)?),
                "--no-postgres" => o.pg_url = None,
                "--no-sqlite" => o.sqlite = false,
                "--json" => o.json = Some(value(arg)?),
                "park" | "park-task" | "park-million" | "cycles" | "wake" | "audit" | "stall" | "crash" | "pages"
                | "watch" => o.sections.push(arg.clone()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if o.sections.is_empty() {
            o.sections = ["park", "cycles", "wake", "audit", "stall", "crash", "pages", "watch"]
                .map(String::from)
                .to_vec();
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
    if args.first().map(String::as_str) == Some("__crash_child") {
        crash_child(args.get(1).expect("usage: scale __crash_child LOG"));
        return;
    }
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "scale: {e}\nusage: scale [park] [park-task] [park-million] [cycles] [wake] [audit] [stall] [crash] [pages] [watch] [--park-n N] [--cycles N] [--json PATH] …"
            );
            std::process::exit(2);
        }
    };
    let mut figures = Figures::new();
    println!(
        "agentguard scale: {} cores, load average {}, {ALLOCATOR_NAME} allocator",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    for section in &opts.sections {
        match section.as_str() {
            "park" => park(&opts, &mut figures, park::Spawner::EntryThread),
            "park-task" => park(&opts, &mut figures, park::Spawner::Task),
            "park-million" => park(&opts, &mut figures, park::Spawner::Million),
            "cycles" => cycles(&opts, &mut figures),
            "wake" => wake(&opts, &mut figures),
            "audit" => audit(&opts, &mut figures),
            "stall" => stall(&opts, &mut figures),
            "crash" => crash(&opts, &mut figures),
            "pages" => pages(&opts, &mut figures),
            "watch" => watch(&opts, &mut figures),
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

/// The allocator under the counting one: the system's (glibc's malloc on Linux), or mimalloc with the bench
/// crate's `mimalloc` feature, to see what a production allocator changes (the header line says which).
#[cfg(not(feature = "mimalloc"))]
const UNDER: std::alloc::System = std::alloc::System;
#[cfg(feature = "mimalloc")]
const UNDER: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocator's name, for the header line.
const ALLOCATOR_NAME: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "the system's"
};

/// The allocator under [`UNDER`], counting the bytes it has handed out and not yet had back, so the `park` section
/// can report live heap per parked approval exactly (RSS adds the allocator's own overhead and fragmentation).
struct CountingAllocator;

/// The count, in shards: each thread adds to its own (threads are dealt shards in turn), so two workers allocating
/// at once do not fight over one cache line (a single counter cost each allocation a contended atomic: harness cost
/// in the figures it measured). A shard can go negative (memory freed by another thread than its allocator's); the
/// sum is exact.
#[repr(align(128))]
struct Shard(AtomicIsize);

const SHARDS: usize = 64;
static LIVE_HEAP: [Shard; SHARDS] = [const { Shard(AtomicIsize::new(0)) }; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

fn count(delta: isize) {
    // A thread being torn down (its thread-locals gone) counts in shard 0.
    let shard = MY_SHARD.try_with(|s| *s).unwrap_or(0);
    LIVE_HEAP[shard].0.fetch_add(delta, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `UNDER`, which upholds the `GlobalAlloc` contract; the counter is
// only arithmetic on the layout sizes (its thread-local slot holds a `usize` and allocates nothing).
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded with the caller's layout.
        unsafe { UNDER.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded with the caller's layout.
        unsafe { UNDER.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        count(-(layout.size() as isize));
        // SAFETY: `ptr` came from this allocator with this layout.
        unsafe { UNDER.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the caller guarantees `new_size` is valid.
        let new = unsafe { UNDER.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Bytes of heap handed out and not yet freed.
fn live_heap() -> usize {
    let sum: isize = LIVE_HEAP.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
    sum.max(0) as usize
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
