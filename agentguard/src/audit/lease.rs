//! Leases of the audit log's OS lock: a writer whose batches come one right after another keeps the lock between
//! them.
//!
//! Each batch takes the log's OS lock (`flock` on `<path>.lock`) and releases it after its `write`, and
//! looks at the path first (a rotation or lines by another process): four system calls around the one `write`,
//! about 5 µs of a gated call's 10 on this project's test machine. A batch that starts within [`LEASE_GAP`] of the
//! end of the previous one (gated calls one after another, each waiting for its line) instead keeps the lock after
//! it, for at most [`LEASE`]; while it is held nobody that follows the lock can write, so the next batches skip the
//! lock and the look. The sink's flusher thread ends a lease when it is due ([`Writer::end_lease_if_due`]); the next
//! batch after that takes the lock as usual, and none leases again for [`COOLDOWN`], so another process polling for
//! the lock gets it. Once this writer has found the lock taken by another process (not its own checkpoint thread),
//! or its look before a batch found lines another process wrote, it does not lease for [`QUIET`]. What another
//! process sharing the log sees: its write can wait up to about `LEASE` + `COOLDOWN` (3 ms) instead of the few
//! microseconds of one batch; this writer's next look finds its lines, and while both write they take the lock batch
//! by batch. Only with [`Fsync::Never`](crate::audit::Fsync::Never): with a flush per batch the lock would be held across
//! the flush. A tool that renames the log without taking the lock (`logrotate`) is noticed at the next batch after
//! the lease, up to `LEASE` later than without leases; the lines written meanwhile go on the renamed file,
//! continuing its chain.

use std::fs::{self, File, OpenOptions};
use std::time::{Duration, Instant};

use super::super::checkpoint::Checkpointer;
use super::super::files::{lock_within, still_linked};
use super::super::{AuditError, Fsync};
use super::{Writer, WriterState};

/// How long a lease on the OS lock lasts at most: a writer whose batches come quickly one after another keeps the
/// lock between them for up to this long (the [module](self) tells how).
pub(super) const LEASE: Duration = Duration::from_millis(2);

/// A batch that starts within this of the end of the previous one keeps the lock after it (a lease begins): batches
/// this close come from calls that each wait for their line, one after another, and the next is about to come.
pub(super) const LEASE_GAP: Duration = Duration::from_micros(200);

/// After a lease, how long batches take and release the lock each before the next lease: the window in which
/// another process polling for the lock ([`lock_within`]) gets it.
pub(super) const COOLDOWN: Duration = Duration::from_millis(1);

/// After the writer found the lock held by another process (not its own checkpoint thread), or lines another process
/// wrote, how long it takes no lease: they share the log, and each batch takes and releases the lock, as without
/// leases.
pub(super) const QUIET: Duration = Duration::from_millis(50);

/// The OS lock, held between batches.
pub(super) struct Held {
    pub(super) lock: File,
    /// When the lease this hold belongs to began (`None`: taken for the next batch only, by
    /// [`Writer::hold_lock_now`]).
    lease_since: Option<Instant>,
    /// Held since before the last batch was written: nobody that follows the lock wrote, rotated or removed anything
    /// since, so the next batch need not look. (`false` for a hold taken, or a lease taken over, by
    /// [`Writer::hold_lock_now`]: its batch looks first.)
    unbroken: bool,
}

impl Writer {
    /// When the current lease is due to end, if the lock is leased.
    pub(in crate::audit) fn lease_due(&self) -> Option<Instant> {
        self.held
            .as_ref()
            .and_then(|h| h.lease_since)
            .map(|since| since + LEASE)
    }

    /// Ends the lease if it is due (the sink's flusher thread calls this when it is): releases the lock, and no
    /// batch leases it again for [`COOLDOWN`].
    pub(in crate::audit) fn end_lease_if_due(&mut self, now: Instant) {
        if self.lease_due().is_some_and(|due| due <= now) {
            self.end_lease(now);
        }
    }

    /// Releases a held lock now, leased or not: when no flusher thread is left to end a lease (the sink is closing).
    pub(in crate::audit) fn release_lock(&mut self) {
        self.end_lease(Instant::now());
    }

    /// Releases the held lock; after a lease, no lease for [`COOLDOWN`].
    pub(super) fn end_lease(&mut self, now: Instant) {
        if let Some(held) = self.held.take() {
            let _ = held.lock.unlock();
            self.state.lock = Some(held.lock);
            if held.lease_since.is_some() {
                self.no_lease_until = Some(now + COOLDOWN).max(self.no_lease_until);
            }
        }
    }

    /// Whether this sink's checkpoint thread is at the lock: then a try that found it taken is put down to it.
    fn own_checkpointer_at_lock(&self) -> bool {
        self.checkpointer.as_ref().is_some_and(Checkpointer::at_lock)
    }

    /// Another process shares the log (its lock or its lines were found): no lease for a while.
    pub(super) fn contended(&mut self) {
        self.no_lease_until = Some(Instant::now() + QUIET).max(self.no_lease_until);
    }

    /// Takes the OS lock for the next batch if that costs no wait: not when another process holds it, and not when a
    /// batch means a flush to disk ([`Fsync`] other than `Never`). For a caller that must not wait (a safe call
    /// helping a flusher that is behind). A lock held here is used by the next [`write_batch`](Writer::write_batch);
    /// [`release_held`](Writer::release_held) gives it back if none follows.
    pub(in crate::audit) fn hold_lock_now(&mut self) -> bool {
        if let Some(held) = &mut self.held {
            // Leased: the batch that follows uses the lock as it is (it may be due by then, and ending it there
            // would mean taking the lock again, with waiting), and looks at the path first.
            held.unbroken = false;
            return true;
        }
        if self.cfg.fsync != Fsync::Never {
            return false;
        }
        // If the file cannot be opened, the next batch's own try reports why.
        let Ok(lock) = self.lock_file() else { return false };
        match lock.try_lock() {
            Ok(()) => {}
            Err(_) => {
                self.state.lock = Some(lock);
                if !self.own_checkpointer_at_lock() {
                    self.contended();
                }
                return false;
            }
        }
        match lock.metadata() {
            Ok(meta) if still_linked(&meta) => {
                self.held = Some(Held {
                    lock,
                    lease_since: None,
                    unbroken: false,
                });
                true
            }
            // Deleted while we held it open (or unreadable): the next batch opens the one at the path, with waiting.
            _ => {
                let _ = lock.unlock();
                false
            }
        }
    }

    /// After [`hold_lock_now`](Writer::hold_lock_now): releases the lock if no batch used it (a lease that a batch
    /// continued is kept).
    pub(in crate::audit) fn release_held(&mut self) {
        if self.held.as_ref().is_some_and(|h| !h.unbroken) {
            self.end_lease(Instant::now());
        }
    }

    pub(super) fn append(&mut self, bodies: &[u8], ends: &[usize]) -> Result<(), AuditError> {
        let now = Instant::now();
        let frequent = self.last_end.is_some_and(|end| now.duration_since(end) < LEASE_GAP);
        let result = self.append_at(now, frequent, bodies, ends);
        self.last_end = Some(Instant::now());
        result
    }

    fn append_at(&mut self, now: Instant, frequent: bool, bodies: &[u8], ends: &[usize]) -> Result<(), AuditError> {
        // A lease still running: nobody else wrote since our last batch. One past its due time ends here (the
        // flusher had no CPU to end it), and the lock is taken as usual.
        let (taken, lease_since, unbroken) = match self.held.take() {
            Some(held) if held.unbroken && held.lease_since.is_some_and(|since| now.duration_since(since) < LEASE) => {
                (Ok(held.lock), held.lease_since, true)
            }
            Some(held) if held.unbroken => {
                self.held = Some(held);
                self.end_lease(now);
                (self.take_lock(), None, false)
            }
            Some(held) => (Ok(held.lock), held.lease_since, false),
            None => (self.take_lock(), None, false),
        };
        let lock = match taken {
            Ok(lock) => lock,
            Err(e) => {
                self.state = WriterState::default();
                return Err(e);
            }
        };
        let result = self.append_locked(bodies, ends, unbroken);
        if result.is_err() {
            // Re-read everything next time rather than trust a state that a failed write may have left.
            let _ = lock.unlock();
            self.state = WriterState::default();
            return result;
        }
        let (keep, lease_since) = match lease_since {
            // A lease goes on until it is due (then it ends here, with its cooldown).
            Some(since) => (now.duration_since(since) < LEASE, Some(since)),
            None => {
                let may = self.cfg.fsync == Fsync::Never && self.no_lease_until.is_none_or(|until| now >= until);
                let begins = may && frequent;
                (begins, begins.then_some(now))
            }
        };
        self.held = Some(Held {
            lock,
            lease_since,
            unbroken: true,
        });
        if !keep {
            // Released; the file stays open for the next batch.
            self.end_lease(now);
        }
        result
    }

    /// Opens `<path>.lock` (creating it and the directory the first time; afterwards the open file is reused) and
    /// takes its exclusive lock. A lock file deleted while we held it open no longer excludes anyone, so when its
    /// link count is 0 the one now at the path is opened and locked instead.
    fn take_lock(&mut self) -> Result<File, AuditError> {
        let lock_path = self.cfg.lock_path();
        for _ in 0..3 {
            let lock = self.lock_file()?;
            // Waiting for this sink's own checkpoint thread is not sharing the log with another process.
            let checkpointer = self.checkpointer.as_ref();
            let ours = || checkpointer.is_some_and(Checkpointer::at_lock);
            if lock_within(&lock, &lock_path, self.cfg.lock_timeout, &ours)? {
                self.contended();
            }
            let meta = lock
                .metadata()
                .map_err(|e| AuditError::io(format!("cannot stat audit lock {}", lock_path.display()), e))?;
            if still_linked(&meta) {
                return Ok(lock);
            }
            let _ = lock.unlock();
        }
        Err(AuditError::new(format!(
            "the audit lock {} keeps being deleted; stop whatever removes it",
            lock_path.display()
        )))
    }

    /// `<path>.lock`: the one kept open from the last batch, or opened now.
    fn lock_file(&mut self) -> Result<File, AuditError> {
        match self.state.lock.take() {
            Some(lock) => Ok(lock),
            None => self.open_lock(),
        }
    }

    /// Opens `<path>.lock`, creating it and the directory if need be.
    fn open_lock(&self) -> Result<File, AuditError> {
        let lock_path = self.cfg.lock_path();
        if let Some(dir) = self.cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)
                .map_err(|e| AuditError::io(format!("cannot create audit directory {}", dir.display()), e))?;
        }
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| AuditError::io(format!("cannot open audit lock {}", lock_path.display()), e))
    }
}
