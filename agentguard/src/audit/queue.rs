//! Group commit for the file sink. Callers queue their lines' bodies; whoever holds the [`Writer`] takes everything
//! queued, seals it onto the chain and appends it under one OS lock with one `write`.
//!
//! - A caller that must know its line is written (a gated call: [`Started::push`] with `wait`) queues it, then takes
//!   the writer itself: if another caller's batch already carried its line, it finds the outcome there; otherwise
//!   it writes the batch, its line and everything queued before it, and answers the others in it. No thread hand-off
//!   on this path: a lone gated call costs what the write costs.
//! - A safe call's line is queued and the call goes on; the sink's flusher thread is woken if it was idle (one
//!   system call, only then) and writes what is queued, then lets the next lines gather for up to [`LINGER`]. When
//!   more than [`HELP_AT`] is queued (the flusher is behind: busy threads leave it little CPU), the caller writes the
//!   batch itself if it can without waiting (see [`Shared::help`]); otherwise it goes on. When the queue is full
//!   ([`QUEUE_LIMIT`]: the disk is slower than the calls), the caller waits for the writer and writes the batch
//!   itself rather than let the queue grow.
//!
//! No wait happens on a tokio worker thread: taking the writer (which may mean waiting for a slow disk) inside a
//! multi-threaded runtime runs in [`block_in_place`](tokio::task::block_in_place), so the worker's other tasks move
//! to another thread meanwhile.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::writer::{Config, Writer};
use super::AuditError;

/// How many bytes of lines may wait in the queue; a caller that finds it fuller waits for the writer and writes the
/// batch itself. 4 MiB is about 12,000 typical lines: while a disk is stopped for 100 ms, safe calls at fewer than
/// 120,000 lines a second do not reach it (a safe call that was writing a batch to help when the disk stopped waits
/// like the flusher does), and it bounds what a crash can lose. (It was 16 MiB; with the queue's buffers freed after
/// each batch over 4 MiB, a flusher left behind by busy threads cost fresh memory for every batch.)
pub(super) const QUEUE_LIMIT: usize = 4 * 1024 * 1024;

/// How many bytes of queued lines make a safe call's caller write the batch itself, when no batch was taken for
/// [`STARVED`] and it can without waiting ([`Shared::help`]): about 3,000 typical lines, three times what the flusher
/// takes in one [`LINGER`] at a million lines a second. Below it the flusher alone writes; above it the flusher is
/// behind (busy threads leave it no CPU), and its batches would otherwise grow towards [`QUEUE_LIMIT`] (copied cold,
/// and all lost if the process dies).
pub(super) const HELP_AT: usize = 1024 * 1024;

/// How long since the last batch was taken before a caller past [`HELP_AT`] helps: twice the flusher's [`LINGER`].
pub(super) const STARVED: Duration = Duration::from_millis(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The lock if nobody holds it (a poisoned one too: the writer's state is re-read after a failed batch).
fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// The outcome of one waited-for line, set by whoever wrote its batch (while holding the writer).
type Slot = Arc<OnceLock<Result<(), String>>>;

pub(super) struct Shared {
    path: PathBuf,
    q: Mutex<Queue>,
    /// Held while a batch is taken from the queue and written, and until its waiters are answered.
    writer: Mutex<Writer>,
    /// The flusher waits here for lines.
    work: Condvar,
}

#[derive(Default)]
struct Queue {
    /// The queued bodies, back to back: body `i` is `bodies[ends[i - 1]..ends[i]]`.
    bodies: Vec<u8>,
    ends: Vec<usize>,
    /// Waited-for lines: (index in `ends`, where to put the outcome).
    waiters: Vec<(usize, Slot)>,
    /// The flusher is waiting for work: the next line queued wakes it (a system call, so only then).
    flusher_idle: bool,
    /// When the last batch was taken from the queue (by anyone).
    last_take: Option<Instant>,
    /// When the writer's lease on the OS lock is due to end, if it holds one: the flusher ends it then.
    lease_due: Option<Instant>,
    closing: bool,
    /// Emptied buffers handed back after a batch, reused for the next one.
    spare: (Vec<u8>, Vec<usize>),
}

/// A batch taken from the queue.
struct Batch {
    bodies: Vec<u8>,
    ends: Vec<usize>,
    waiters: Vec<(usize, Slot)>,
}

impl Shared {
    /// Takes everything queued (the caller holds the writer).
    fn take(&self) -> Batch {
        let mut q = lock(&self.q);
        q.last_take = Some(Instant::now());
        let (spare_bodies, spare_ends) = std::mem::take(&mut q.spare);
        Batch {
            bodies: std::mem::replace(&mut q.bodies, spare_bodies),
            ends: std::mem::replace(&mut q.ends, spare_ends),
            waiters: std::mem::take(&mut q.waiters),
        }
    }

    /// Writes a batch (the caller holds the writer), answers its waiters, and hands its buffers back.
    fn write(&self, writer: &mut Writer, mut batch: Batch) {
        if !batch.ends.is_empty() {
            self.write_lines(writer, &mut batch);
        }
        batch.bodies.clear();
        batch.ends.clear();
        let due = writer.lease_due();
        let mut q = lock(&self.q);
        // Kept for the next batch (a batch is about QUEUE_LIMIT at most, and each thread may add a line past it):
        // memory allocated afresh for every batch costs page faults on every byte. A larger one is let go.
        if batch.bodies.capacity() <= 2 * QUEUE_LIMIT && q.spare.0.capacity() == 0 {
            q.spare = (batch.bodies, batch.ends);
        }
        // A lease began (or ended): the flusher ends it when it is due; an idle one is woken to wait for that.
        if q.lease_due != due {
            q.lease_due = due;
            if due.is_some() && q.flusher_idle {
                q.flusher_idle = false;
                self.work.notify_one();
            }
        }
    }

    /// Ends the writer's lease on the OS lock if it is due (the flusher, when it is).
    fn end_lease(&self) {
        let mut writer = lock(&self.writer);
        writer.end_lease_if_due(Instant::now());
        lock(&self.q).lease_due = writer.lease_due();
    }

    /// Writes a batch's lines and answers its waiters.
    fn write_lines(&self, writer: &mut Writer, batch: &mut Batch) {
        let outcome = writer.write_batch(&batch.bodies, &batch.ends);
        if let Err(failed) = &outcome {
            let lost = batch.ends.len() - failed.written;
            let gated = batch.waiters.iter().filter(|(i, _)| *i >= failed.written).count();
            report!(
                "agentguard: {lost} of {} audit lines could not be written to {} ({}); {gated} of them gated calls', \
                 which were denied",
                batch.ends.len(),
                self.path.display(),
                failed.error
            );
        }
        for (i, slot) in batch.waiters.drain(..) {
            let _ = slot.set(match &outcome {
                Err(failed) if i >= failed.written => Err(failed.error.to_string()),
                _ => Ok(()),
            });
        }
    }

    /// A safe call found more than [`HELP_AT`] queued: the flusher is behind (busy threads leave it little CPU). It
    /// writes the batch itself if that needs no wait: nobody in this process is writing a batch (a slow disk), no other
    /// process holds the log's lock, and a batch does not include a flush to disk. Otherwise it goes on.
    fn help(&self) {
        let Some(mut writer) = try_lock(&self.writer) else {
            return;
        };
        // Whoever had the writer before may have written the queue meanwhile.
        if lock(&self.q).bodies.len() < HELP_AT || !writer.hold_lock_now() {
            return;
        }
        off_runtime(|| {
            let batch = self.take();
            self.write(&mut writer, batch);
        });
        writer.release_held();
    }

    /// Takes the writer and writes everything queued.
    fn write_queued(&self) {
        let mut writer = lock(&self.writer);
        let batch = self.take();
        self.write(&mut writer, batch);
    }
}

/// A sink's queue, writer and flusher thread.
pub(super) struct Started {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl Started {
    /// Starts the flusher thread.
    pub(super) fn start(cfg: Config) -> std::io::Result<Started> {
        let shared = Arc::new(Shared {
            path: cfg.path.clone(),
            q: Mutex::new(Queue::default()),
            writer: Mutex::new(Writer::new(cfg)),
            work: Condvar::new(),
        });
        let for_thread = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("agentguard-audit-flusher".into())
            .spawn(move || flusher(&for_thread))?;
        Ok(Started {
            shared,
            flusher: Some(flusher),
        })
    }

    /// Queues one body; with `wait`, returns once the batch holding it is written (or failed).
    pub(super) fn push(&self, body: &[u8], wait: bool) -> Result<(), AuditError> {
        let shared = &*self.shared;
        let mut q = lock(&shared.q);
        q.bodies.extend_from_slice(body);
        let end = q.bodies.len();
        q.ends.push(end);
        if !wait {
            let queued = q.bodies.len();
            if q.flusher_idle && queued < QUEUE_LIMIT {
                q.flusher_idle = false;
                shared.work.notify_one();
            }
            // Behind: much is queued and nobody has taken a batch for a while (the flusher got no CPU). A flusher
            // that is merely lingering or writing is left to it, so that a lone busy caller does not pay for writes
            // the flusher makes on another core.
            let behind = queued >= HELP_AT && q.last_take.is_none_or(|t| t.elapsed() >= STARVED);
            drop(q);
            if queued >= QUEUE_LIMIT {
                // The disk is slower than the calls: write rather than queue without end.
                off_runtime(|| shared.write_queued());
            } else if behind {
                shared.help();
            }
            return Ok(());
        }
        let slot = Slot::default();
        let index = q.ends.len() - 1;
        q.waiters.push((index, Arc::clone(&slot)));
        drop(q);
        off_runtime(|| {
            let mut writer = lock(&shared.writer);
            if slot.get().is_none() {
                // Nobody took our line yet (whoever takes it holds the writer until it is answered): our batch.
                let batch = shared.take();
                shared.write(&mut writer, batch);
            }
        });
        match slot.get() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(AuditError::new(e.clone())),
            None => Err(AuditError::new(
                "the audit line was not written (its batch ended without an outcome)",
            )),
        }
    }

    /// Returns once every line queued so far is written (or failed): the outcome of the newest of them.
    pub(super) fn flush(&self) -> Result<(), AuditError> {
        let shared = &*self.shared;
        let newest = {
            let mut q = lock(&shared.q);
            let newest = q.ends.len().checked_sub(1).map(|i| (i, Slot::default()));
            if let Some((i, slot)) = &newest {
                q.waiters.push((*i, Arc::clone(slot)));
            }
            newest
        };
        off_runtime(|| {
            // Holding the writer also waits for a batch being written right now.
            let mut writer = lock(&shared.writer);
            if newest.as_ref().is_some_and(|(_, slot)| slot.get().is_none()) {
                let batch = shared.take();
                shared.write(&mut writer, batch);
            }
        });
        match newest.as_ref().and_then(|(_, slot)| slot.get()) {
            None | Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(AuditError::new(e.clone())),
        }
    }

    /// Makes the thread that calls this write the sink's queue when it ends, if the sink still exists then: the main
    /// thread ends at process exit (`return` from `main` or `std::process::exit`), where statics such as a global
    /// guard are not dropped. Thread-local destructors run at exit on Linux with glibc; elsewhere drop the sink (or
    /// call `flush`) before exiting.
    pub(super) fn flush_at_thread_exit(&self) {
        let _ = EXIT_FLUSH.try_with(|list| {
            let Ok(mut list) = list.try_borrow_mut() else { return };
            let me = Arc::as_ptr(&self.shared);
            if !list.0.iter().any(|w| std::ptr::eq(w.as_ptr(), me)) {
                list.0.retain(|w| w.strong_count() > 0);
                list.0.push(Arc::downgrade(&self.shared));
            }
        });
    }

    /// Ends the flusher thread and writes what is queued.
    pub(super) fn close(&mut self) {
        lock(&self.shared.q).closing = true;
        self.shared.work.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        self.shared.write_queued();
        // No flusher is left to end a lease that the last batches began: release the lock now (a reader such as
        // `verify` waits for it).
        lock(&self.shared.writer).release_lock();
    }
}

/// The sinks the current thread queued lines into, written when the thread ends.
struct ExitFlush(Vec<Weak<Shared>>);

impl Drop for ExitFlush {
    fn drop(&mut self) {
        for shared in self.0.drain(..).filter_map(|w| w.upgrade()) {
            shared.write_queued();
        }
    }
}

thread_local! {
    static EXIT_FLUSH: RefCell<ExitFlush> = const { RefCell::new(ExitFlush(Vec::new())) };
}

use crate::store::offload::off_runtime;

/// How long the flusher lets safe calls' lines gather after it starts a batch, before it writes the next one. While
/// lines keep coming, one `write` (and one lock) carries up to a millisecond of them, and their callers wake no
/// thread (only a line queued while the flusher is idle does). A line queued while the flusher is idle is written
/// at once.
pub(super) const LINGER: Duration = Duration::from_millis(1);

/// The flusher thread: writes safe calls' lines as they are queued, at most one batch per [`LINGER`].
fn flusher(shared: &Shared) {
    loop {
        {
            let mut q = lock(&shared.q);
            while q.ends.is_empty() {
                if q.closing {
                    return;
                }
                q.flusher_idle = true;
                match q.lease_due {
                    None => q = shared.work.wait(q).unwrap_or_else(PoisonError::into_inner),
                    Some(due) => match due.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => {
                            q = shared
                                .work
                                .wait_timeout(q, left)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0;
                        }
                        _ => {
                            drop(q);
                            shared.end_lease();
                            q = lock(&shared.q);
                        }
                    },
                }
            }
            q.flusher_idle = false;
        }
        let started = Instant::now();
        shared.write_queued();
        let left = LINGER.saturating_sub(started.elapsed());
        if !left.is_zero() {
            let q = lock(&shared.q);
            // Closing (its notification) ends the wait early.
            if !q.closing {
                let _ = shared.work.wait_timeout(q, left);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::DEFAULT_CHECKPOINT_EVERY;
    use crate::audit::Fsync;

    fn config(path: &std::path::Path) -> Config {
        Config {
            checkpoint: None,
            path: path.to_owned(),
            max_bytes: u64::MAX,
            lock_timeout: Duration::from_secs(5),
            key: None,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            fsync: Fsync::Never,
        }
    }

    /// A queue and writer with no flusher thread: only callers write, as when busy threads leave the flusher no CPU.
    fn without_flusher(path: PathBuf) -> Started {
        without_flusher_with(config(&path))
    }

    fn without_flusher_with(cfg: Config) -> Started {
        Started {
            shared: Arc::new(Shared {
                q: Mutex::new(Queue::default()),
                path: cfg.path.clone(),
                writer: Mutex::new(Writer::new(cfg)),
                work: Condvar::new(),
            }),
            flusher: None,
        }
    }

    const BODY: &[u8] = br#"{"ts":"2026-12-01T00:00:00.000Z","tool":"read_file","decision":"allowed","params":{"path":"/tmp/a-file-name-of-some-length"}}"#;

    fn queued(started: &Started) -> usize {
        lock(&started.shared.q).bodies.len()
    }

    fn lines_in(path: &std::path::Path) -> usize {
        std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
    }

    #[test]
    fn a_safe_call_that_finds_the_flusher_behind_writes_the_queue_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let started = without_flusher(path.clone());
        let (mut n, mut written) = (0, 0);
        for round in 0..3 {
            while queued(&started) + BODY.len() < HELP_AT {
                started.push(BODY, false).unwrap();
                n += 1;
            }
            assert_eq!(lines_in(&path), written, "nobody writes below HELP_AT");
            // Nobody took a batch for a while: the next call past HELP_AT writes the queue, its line too.
            std::thread::sleep(STARVED);
            started.push(BODY, false).unwrap();
            n += 1;
            assert_eq!(queued(&started), 0, "round {round}: the caller wrote the queue");
            assert_eq!(lines_in(&path), n);
            written = n;
        }
        assert_eq!(crate::audit::verify(&path).unwrap().lines, n as u64);
    }

    #[test]
    fn helpers_the_flusher_and_gated_calls_together_keep_every_line_in_each_threads_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut started = Started::start(config(&path)).unwrap();
        let (threads, per) = (6usize, 12_000usize);
        let pad = "x".repeat(200);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (started, pad) = (&started, &pad);
                s.spawn(move || {
                    for i in 0..per {
                        let body = format!(r#"{{"ts":"2026-12-01T00:00:00.000Z","thread":{t},"i":{i},"pad":"{pad}"}}"#);
                        started.push(body.as_bytes(), i % 100 == 99).unwrap();
                    }
                });
            }
        });
        started.close(); // ends the flusher, after writing what is queued
        assert_eq!(crate::audit::verify(&path).unwrap().lines, (threads * per) as u64);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut next = vec![0u64; threads];
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let (t, i) = (v["thread"].as_u64().unwrap() as usize, v["i"].as_u64().unwrap());
            assert_eq!(i, next[t], "thread {t}'s lines in the order it queued them");
            next[t] += 1;
        }
        assert!(next.iter().all(|&n| n == per as u64));
    }

    #[test]
    fn a_safe_call_does_not_wait_for_a_busy_writer_until_the_queue_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let started = without_flusher(path.clone());
        // Someone is writing a batch (a slow disk): callers past HELP_AT go on without waiting for it.
        let mut busy = Some(lock(&started.shared.writer));
        let n = 2 * HELP_AT / BODY.len();
        std::thread::scope(|s| {
            let pusher = s.spawn(|| {
                for _ in 0..n {
                    started.push(BODY, false).unwrap();
                }
            });
            let deadline = Instant::now() + Duration::from_secs(20);
            while !pusher.is_finished() {
                if Instant::now() > deadline {
                    busy = None; // let the pusher finish, so that the test ends
                    panic!("the safe calls waited for the writer");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        assert_eq!(queued(&started), n * BODY.len(), "all queued, none written");
        drop(busy);
        started.flush().unwrap();
        assert_eq!(crate::audit::verify(&path).unwrap().lines, n as u64);
    }

    /// Pushes past HELP_AT with no flusher; returns how many lines were written meanwhile (by helping callers).
    fn push_past_help_at(started: &Started) -> usize {
        let n = 2 * HELP_AT / BODY.len();
        let t0 = Instant::now();
        for _ in 0..n {
            started.push(BODY, false).unwrap();
        }
        // The log's lock timeout is 5 s: a caller that waited for it would take that long.
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "a safe call waited: {:?}",
            t0.elapsed()
        );
        n - queued(started) / BODY.len()
    }

    #[test]
    fn a_safe_call_does_not_help_when_another_process_holds_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let started = without_flusher(path.clone());
        // Another open file description's lock: to flock, another process.
        let other = std::fs::File::create(crate::audit::files::sibling(&path, "lock")).unwrap();
        other.lock().unwrap();
        assert_eq!(
            push_past_help_at(&started),
            0,
            "nothing written while another holds the lock"
        );
        other.unlock().unwrap();
        started.flush().unwrap();
        assert_eq!(
            crate::audit::verify(&path).unwrap().lines,
            (2 * HELP_AT / BODY.len()) as u64
        );
    }

    #[test]
    fn a_safe_call_does_not_help_when_a_batch_means_a_flush_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let started = without_flusher_with(Config {
            fsync: Fsync::PerBatch,
            ..config(&path)
        });
        assert_eq!(push_past_help_at(&started), 0);
        let without = without_flusher(dir.path().join("other.log"));
        assert!(push_past_help_at(&without) > 0, "with Fsync::Never the same calls help");
    }

    /// Whether another open file description (to `flock`, another process) can take the log's lock right now; it
    /// lets go at once if it can.
    fn lock_is_free(path: &std::path::Path) -> bool {
        let other = std::fs::File::create(crate::audit::files::sibling(path, "lock")).unwrap();
        let free = other.try_lock().is_ok();
        drop(other);
        free
    }

    #[test]
    fn a_loop_of_gated_lines_leases_the_lock_and_the_flusher_ends_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let started = Started::start(config(&path)).unwrap();
        // Waited lines one after another (a loop of gated calls): soon one finds the lock still held after its batch.
        // (A look that finds it free, or a pause on a busy machine, only delays that.)
        let t0 = Instant::now();
        let mut n = 0;
        let leased = loop {
            started.push(BODY, true).unwrap();
            n += 1;
            if !lock_is_free(&path) {
                break true;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                break false;
            }
        };
        assert!(leased, "{n} waited lines in a row, and the lock was free after each");
        // No more lines: the flusher ends the lease when it is due.
        let t1 = Instant::now();
        while !lock_is_free(&path) {
            assert!(t1.elapsed() < Duration::from_secs(10), "the lease was never ended");
            std::thread::sleep(Duration::from_micros(200));
        }
        drop(started);
        assert_eq!(crate::audit::verify(&path).unwrap().lines, n as u64);
    }

    #[test]
    fn no_lease_when_a_batch_means_a_flush_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let started = Started::start(Config {
            fsync: Fsync::PerBatch,
            ..config(&path)
        })
        .unwrap();
        for i in 0..50 {
            started.push(BODY, true).unwrap();
            assert!(lock_is_free(&path), "line {i}: the lock was kept after its batch");
        }
    }

    /// Pushes waited lines for up to 40 ms after `since` (a moment before the writer's pause of its leases began),
    /// and checks that the lock is free after each: a batch that started before `since` + 40 ms did not lease
    /// (the pause lasts 50 ms). Returns how many were checked (a preemption can leave none).
    fn no_lease_within_40_ms_of(started: &Started, path: &std::path::Path, since: Instant) -> usize {
        let mut checked = 0;
        loop {
            started.push(BODY, true).unwrap();
            if since.elapsed() >= Duration::from_millis(40) {
                return checked;
            }
            assert!(lock_is_free(path), "leased {:?} after the pause began", since.elapsed());
            checked += 1;
        }
    }

    #[test]
    fn a_writer_that_finds_the_lock_taken_takes_no_lease_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let started = Started::start(config(&path)).unwrap();
        started.push(BODY, true).unwrap();
        // A few rounds, in case a busy machine leaves one with nothing checked.
        let mut checked = 0;
        for _ in 0..5 {
            // Another process holds the lock while the next line waits for it.
            let other = std::fs::File::create(crate::audit::files::sibling(&path, "lock")).unwrap();
            other.lock().unwrap();
            let release = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                drop(other);
            });
            let before = Instant::now();
            started.push(BODY, true).unwrap();
            release.join().unwrap();
            checked += no_lease_within_40_ms_of(&started, &path, before);
            if checked > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(60));
        }
        assert!(checked > 0);
    }

    #[test]
    fn a_writer_that_finds_another_process_lines_takes_no_lease_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let started = Started::start(config(&path)).unwrap();
        // Another sink (its own lock file description: to flock, another process) on the same log.
        let other = Started::start(config(&path)).unwrap();
        started.push(BODY, true).unwrap();
        let mut checked = 0;
        for _ in 0..5 {
            // Past any lease or pause of our writer, the other process writes a line; our next batch sees it.
            std::thread::sleep(Duration::from_millis(60));
            other.push(BODY, true).unwrap();
            let before = Instant::now();
            checked += no_lease_within_40_ms_of(&started, &path, before);
            if checked > 0 {
                break;
            }
        }
        assert!(checked > 0);
        drop((started, other));
        crate::audit::verify(&path).unwrap();
    }
}
