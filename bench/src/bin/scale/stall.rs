//! stall: does a slow audit disk hold up unrelated tasks on the same runtime?
//!
//! Agent tasks make `aexecute` calls (9 safe, 1 gated and auto-approved, in turn) on a 2-worker tokio runtime, with
//! the default file sink. Every 500 ms the audit's disk stops for 100 ms. Meanwhile two probes measure how late
//! unrelated work runs: a task that sleeps 1 ms at a time (how late past each deadline it wakes), and a plain thread
//! that spawns a task every 2 ms (how long until that task runs). The same load runs first for as long without a
//! stall (the control): the probes are late there too (the timer's granularity, the machine's own scheduling), and
//! what the stalls add is the difference.
//!
//! The stall is real where the program can make it so: run as root with `mount`, `mkfs.ext4` and `fsfreeze`, the
//! log lives on a loop-mounted ext4 image that is frozen (`fsfreeze -f`: every write to it blocks in the kernel) for
//! 100 ms and thawed. Elsewhere the stall is another open file description holding the log's OS lock for 100 ms
//! (every batch waits for that lock, as a write waits for a slow disk). The method used is printed and recorded.

use super::*;
use std::path::{Path, PathBuf};

const STALL: Duration = Duration::from_millis(100);
const EVERY: Duration = Duration::from_millis(500);
const RUN: Duration = Duration::from_secs(3);
const AGENTS: usize = 8;

/// A loop-mounted ext4 image that can be frozen; unfrozen and unmounted when dropped.
struct FreezableDisk {
    mnt: PathBuf,
}

fn quiet(cmd: &str, args: &[&std::ffi::OsStr]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl FreezableDisk {
    fn mount(base: &Path) -> Option<FreezableDisk> {
        let img = base.join("disk.img");
        let mnt = base.join("mnt");
        std::fs::create_dir_all(&mnt).ok()?;
        let ok = quiet("truncate", &["-s".as_ref(), "256M".as_ref(), img.as_os_str()])
            && quiet("mkfs.ext4", &["-q".as_ref(), "-F".as_ref(), img.as_os_str()])
            && quiet(
                "mount",
                &["-o".as_ref(), "loop".as_ref(), img.as_os_str(), mnt.as_os_str()],
            );
        if !ok {
            return None;
        }
        let disk = FreezableDisk { mnt };
        // A first freeze and thaw: the kernel and the tools can do it here.
        if disk.freeze() {
            disk.thaw();
            Some(disk)
        } else {
            None
        }
    }

    fn freeze(&self) -> bool {
        quiet("fsfreeze", &["-f".as_ref(), self.mnt.as_os_str()])
    }

    fn thaw(&self) {
        quiet("fsfreeze", &["-u".as_ref(), self.mnt.as_os_str()]);
    }
}

impl Drop for FreezableDisk {
    fn drop(&mut self) {
        self.thaw();
        quiet("umount", &[self.mnt.as_os_str()]);
    }
}

/// The sink's OS lock file beside `log` (`<log>.lock`).
fn agentguard_lock_file(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// What one phase measured.
struct Phase {
    /// How late the 1 ms sleeper woke, sorted.
    late: Vec<Duration>,
    /// How long the spawned tasks waited to start, sorted.
    waits: Vec<Duration>,
    /// How long each stall lasted (none in the control phase).
    stalls: Vec<Duration>,
    calls: u64,
    slowest_gated: Duration,
    /// The log's line count as `verify` reads it.
    verified: Result<u64, String>,
}

/// Runs the agents and the two probes for [`RUN`] against a fresh log at `log`; with `stall`, stops its disk for
/// [`STALL`] every [`EVERY`] (`disk`, or the log's lock held from outside when there is no freezable disk).
fn phase(log: &Path, disk: Option<&FreezableDisk>, stall: bool) -> Phase {
    let guard = Arc::new(AgentGuard::callback(|_| true).audit(JsonlAudit::new(log)).build());
    let rt = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let slowest_gated = Arc::new(AtomicU64::new(0));

    let mut agents = Vec::new();
    for a in 0..AGENTS {
        let (guard, stop, calls, slowest) = (guard.clone(), stop.clone(), calls.clone(), slowest_gated.clone());
        agents.push(rt.spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let gated = i % 10 == 9;
                let tool = if gated { "update_email" } else { "read_customer" };
                let t0 = Instant::now();
                let out = guard
                    .aexecute(ToolCall::new(tool, json!({"agent": a, "i": i})), |_, _| async {})
                    .await;
                assert!(out.is_ok(), "call denied: {out:?}");
                if gated {
                    slowest.fetch_max(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                calls.fetch_add(1, Ordering::Relaxed);
                i += 1;
                // Agents wait for their model between calls; 1 ms keeps the queue of safe lines within bounds.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }

    // Probe 1: a task sleeping 1 ms at a time; how late past each deadline does it wake?
    let sleeper = {
        let stop = stop.clone();
        rt.spawn(async move {
            let mut late = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let deadline = tokio::time::Instant::now() + Duration::from_millis(1);
                tokio::time::sleep_until(deadline).await;
                late.push(tokio::time::Instant::now() - deadline);
            }
            late
        })
    };

    // Probe 2: a plain thread spawning a task every 2 ms; how long until it runs?
    let spawner = {
        let (stop, handle) = (stop.clone(), rt.handle().clone());
        std::thread::spawn(move || {
            let (tx, rx) = mpsc::channel::<Duration>();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let (tx, sent) = (tx.clone(), Instant::now());
                handle.spawn(async move {
                    let _ = tx.send(sent.elapsed());
                });
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            drop(tx);
            let mut waits: Vec<Duration> = rx.iter().collect();
            waits.truncate(n);
            waits
        })
    };

    // The stalls (in the control phase, the same time with none).
    let t0 = Instant::now();
    let mut stalls = Vec::new();
    if !stall {
        std::thread::sleep(RUN);
    }
    let holder = if stall && disk.is_none() {
        std::fs::create_dir_all(log.parent().expect("dir")).expect("dir");
        Some(
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(agentguard_lock_file(log))
                .expect("lock file"),
        )
    } else {
        None
    };
    while stall && t0.elapsed() + EVERY < RUN {
        std::thread::sleep(EVERY - STALL);
        let s0 = Instant::now();
        match (disk, &holder) {
            (Some(d), _) => {
                if d.freeze() {
                    std::thread::sleep(STALL);
                    d.thaw();
                }
            }
            (None, Some(h)) => {
                h.lock().expect("lock");
                std::thread::sleep(STALL);
                h.unlock().expect("unlock");
            }
            _ => unreachable!(),
        }
        stalls.push(s0.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let late = rt.block_on(sleeper).expect("sleeper");
    for a in agents {
        rt.block_on(a).expect("agent");
    }
    let waits = spawner.join().expect("spawner");
    let total = calls.load(Ordering::Relaxed);
    drop(rt);
    drop(Arc::try_unwrap(guard).ok()); // writes what is queued
    let verified = agentguard::audit::verify(log)
        .map(|r| r.lines)
        .map_err(|e| e.to_string());
    let (mut late, mut waits) = (late, waits);
    late.sort();
    waits.sort();
    Phase {
        late,
        waits,
        stalls,
        calls: total,
        slowest_gated: Duration::from_micros(slowest_gated.load(Ordering::Relaxed)),
        verified,
    }
}

pub(super) fn stall(_opts: &Options, figures: &mut Figures) {
    println!(
        "\n== stall: {AGENTS} agent tasks calling through the audited guard, the audit disk stopped {} ms every {} ms",
        STALL.as_millis(),
        EVERY.as_millis()
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let disk = FreezableDisk::mount(tmp.path());
    let method = if disk.is_some() {
        "fsfreeze of the log's ext4 file system (loop device)"
    } else {
        "the log's OS lock held by another open file description"
    };
    let dir = match &disk {
        Some(d) => d.mnt.clone(),
        None => tmp.path().to_path_buf(),
    };
    println!("  stall method: {method}");
    // The same load without stalls first: a 1 ms sleeper on this runtime is late by the timer's own granularity and
    // by whatever the machine does (on a 2-vCPU virtual machine, an idle runtime's sleeper alone was up to 4.8 ms
    // late within 3 s), so what the stalls add is the difference between the two phases.
    let control = phase(&dir.join("control.log"), disk.as_ref(), false);
    let stalled = phase(&dir.join("audit.log"), disk.as_ref(), true);
    drop(disk);

    for (name, p) in [("no stall (control)", &control), ("with the stalls", &stalled)] {
        let chain = match &p.verified {
            Ok(lines) if *lines == p.calls => "chain intact, one line per call".to_owned(),
            Ok(lines) => format!("CHAIN HAS {lines} LINES FOR {} CALLS", p.calls),
            Err(e) => format!("CHAIN BROKEN: {e}"),
        };
        let stall_ms: Vec<f64> = p.stalls.iter().map(|d| ms(*d)).collect();
        let stalls = if stall_ms.is_empty() {
            "no stalls".to_owned()
        } else {
            format!(
                "{} stalls of {:.0}–{:.0} ms",
                stall_ms.len(),
                stall_ms.iter().cloned().fold(f64::MAX, f64::min),
                stall_ms.iter().cloned().fold(0.0, f64::max)
            )
        };
        println!(
            "  {name}: {stalls}; {} calls ({chain}); slowest gated call {:.1} ms",
            p.calls,
            ms(p.slowest_gated)
        );
        println!(
            "    1 ms sleeper: {} wake-ups, late p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            p.late.len(),
            ms(quantile(&p.late, 0.5)),
            ms(quantile(&p.late, 0.99)),
            ms(*p.late.last().expect("samples"))
        );
        println!(
            "    task spawned from outside every 2 ms: {} runs, start delay p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            p.waits.len(),
            ms(quantile(&p.waits, 0.5)),
            ms(quantile(&p.waits, 0.99)),
            ms(*p.waits.last().expect("samples"))
        );
    }
    let added = |f: fn(&Phase) -> Duration| ms(f(&stalled)) - ms(f(&control));
    println!(
        "  added by the stalls: sleeper p99 {:+.2} ms, max {:+.2} ms; spawned task p99 {:+.3} ms, max {:+.3} ms",
        added(|p| quantile(&p.late, 0.99)),
        added(|p| *p.late.last().expect("samples")),
        added(|p| quantile(&p.waits, 0.99)),
        added(|p| *p.waits.last().expect("samples"))
    );
    let stall_ms: Vec<f64> = stalled.stalls.iter().map(|d| ms(*d)).collect();
    record(figures, "stall.method", method);
    record(figures, "stall.stalls", stalled.stalls.len());
    record(
        figures,
        "stall.stall_ms_min",
        stall_ms.iter().cloned().fold(f64::MAX, f64::min),
    );
    record(figures, "stall.calls", stalled.calls);
    record(
        figures,
        "stall.chain_ok",
        stalled.verified.as_ref().is_ok_and(|l| *l == stalled.calls)
            && control.verified.as_ref().is_ok_and(|l| *l == control.calls),
    );
    record(figures, "stall.slowest_gated_ms", ms(stalled.slowest_gated));
    for (prefix, p) in [("stall", &stalled), ("stall.control", &control)] {
        for (probe, samples) in [("sleeper_late", &p.late), ("spawn_delay", &p.waits)] {
            let (p99, max) = (quantile(samples, 0.99), *samples.last().expect("samples"));
            record(figures, &format!("{prefix}.{probe}_p99_ms"), ms(p99));
            record(figures, &format!("{prefix}.{probe}_max_ms"), ms(max));
        }
    }
}
