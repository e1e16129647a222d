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
#[path = "queue_tests.rs"]
mod tests;
