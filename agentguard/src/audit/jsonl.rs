//! [`JsonlAudit`]: the file sink. Sealed lines appended under a lock shared by threads and processes, written in
//! batches (group commit: gated calls' callers write their own batch, a flusher thread writes safe calls' lines), with
//! size-based rotation that carries the chain on, checkpoints, repair of a torn tail, and a choice of how often to
//! flush to disk ([`Fsync`]).

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::body::{record_body, record_body_into};
use super::checkpoint::DEFAULT_CHECKPOINT_EVERY;
use super::files::sibling;
use super::queue::Started;
use super::writer::Config;
use super::{default_log_path, AuditError, AuditKey, AuditRecord, AuditSink};

/// Default size at which the file sink rotates: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// How often the file sink flushes the log to disk (`fdatasync`), and so what a power failure or a kernel crash can
/// take away. A process crash (a panic that aborts, `kill -9`) loses nothing the OS was handed, whatever this says:
/// see [`JsonlAudit`] for what it can lose.
///
/// Whatever the setting, a checkpoint is written only after the log was flushed, so a power failure never leaves a
/// checkpoint naming lines that are gone; [`verify`](super::verify) then reports a chain that holds up to its last
/// line that reached the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fsync {
    /// Never on the write path (the default, as before group commit): lines are handed to the OS with `write`, and the
    /// kernel writes them back when it chooses (on Linux within about 30 s, `vm.dirty_expire_centisecs`). The
    /// checkpoint thread still flushes the log before each checkpoint (every [`JsonlAudit::checkpoint_every`] lines).
    /// A power failure can lose every line since the last write-back, gated calls' lines included, even though those
    /// calls ran. The fastest setting.
    #[default]
    Never,
    /// After each batch, before any gated call in it goes on: a power failure loses no line of a gated call that
    /// ran. It can lose safe calls' lines still queued or in the batch being flushed (their calls ran without
    /// waiting). One `fdatasync` per batch: a gated call waits for the disk (0.2 to 8 ms on the test machine).
    PerBatch,
    /// Every line, safe calls' too: no `record` returns before its line is on disk, so a power failure loses no
    /// line of any call that went on. Safe calls wait for the disk like gated ones; lines queued together still share
    /// one `fdatasync` (each line is on disk before its caller goes on, which is what a flush per line would give).
    PerLine,
}

/// The file sink: hash-chained JSON lines, size-based rotation, safe across threads and processes.
///
/// **Group commit.** Callers serialize their record and queue it; whoever writes next takes everything queued,
/// seals it onto the chain and appends it with one `write` under one lock, so a burst of calls from many threads
/// costs one set of system calls, not one per line. [`record`](AuditSink::record) (a gated call's verdict, and any
/// direct use of the sink) returns only once the batch holding its line is written (and flushed, per [`Fsync`]): its
/// caller writes that batch itself unless another caller's batch already carried the line, so a gated call never
/// runs before its line is in the log and a lone one pays no hand-off to another thread.
/// [`record_deferred`](AuditSink::record_deferred) (a safe call's line) returns as soon as the line is queued; the
/// sink's flusher thread (started by the first record) writes it: at once if the flusher was idle, and otherwise
/// with every line queued in the same millisecond (the flusher writes at most one batch per millisecond while lines
/// keep coming, so their callers never wake it), so the line is handed to the OS within about a millisecond and one
/// batch write of the call (see BENCHMARKS.md for the measured figures) unless the disk or another process's lock
/// stalls it; a gated call's batch carries it too. When the flusher falls behind (more than 1 MiB queued: many busy
/// threads on few cores leave it little CPU), a safe call that can write the queue without waiting for anyone (no
/// batch being written in this process, the log's lock free, [`Fsync::Never`]) writes it itself; none waits for
/// another's batch until 4 MiB are queued. Lines reach the file in the order they were queued.
///
/// **What a crash can lose.** A process killed (`kill -9`, an abort) loses the safe calls' lines still queued, never a
/// gated call's line: at most what was queued in the last millisecond and while the batch before it was being written,
/// and never more than 4 MiB of lines (a caller that finds the queue that full writes it itself). The chain in the
/// file stays whole: a batch is one `write` of whole lines, and a torn one is repaired by the next writer, on the
/// record. Dropping the sink writes what is queued; so does the end of a thread that queued lines, which covers a
/// normal process exit (`return` from `main`, or `std::process::exit` from the thread that made the calls, with a guard
/// that is never dropped) on Linux with glibc, where thread-local destructors run at exit (tested); elsewhere, drop the
/// guard or call [`flush`](JsonlAudit::flush) before exiting. A power failure can lose more, depending on [`Fsync`].
///
/// **Async.** Nothing waits on a tokio worker thread: writing a batch (and waiting for the writer) inside a
/// multi-threaded runtime runs in `block_in_place`, so the worker's other tasks move to another thread while the
/// disk is slow; a safe call queues (and writes a batch only to help a flusher that is behind, or when the queue is
/// full). (In a current-thread runtime such a write blocks that runtime, as any blocking call there would.)
///
/// Writers in one process share the sink; writers in several processes take an exclusive lock on `<path>.lock` (an
/// OS file lock, released by the OS if a process dies) around each batch, re-read the chain's tail when another
/// process wrote since, and write each batch with a single `write` on a file opened for append.
///
/// **Leases.** Taking and releasing that lock, and looking at the path for another process's rotation or lines, are
/// four system calls around the batch's one `write`: about half of a gated audited call. When a batch starts within
/// 200 µs of the previous one's end (gated calls one after another, each waiting for its line), the sink keeps the
/// lock after it for up to 2 ms (a lease) and skips the lock and the look meanwhile (nobody that follows the lock
/// can write); its flusher thread ends the lease when it is due, and no lease follows for 1 ms, so another process
/// polling for the lock (every ≤ 1 ms) gets it. A sink that finds the lock held by another process, or lines another
/// process wrote, takes no lease for 50 ms: processes that write one log at the same time take the lock batch by
/// batch. So another process's line may wait up to about 3 ms where it waited microseconds (far within the lock
/// timeout). What a lease widens: a tool that renames the log without the lock (`logrotate`) is noticed up to 2 ms
/// later (the lines meanwhile go on the renamed file, continuing its chain), and a lock file deleted during a lease
/// lets another process lock a new one and write beside this one for up to 2 ms (without leases, for the
/// microseconds between a batch's check and its write); the chain then forks, which `verify` reports. Only with
/// [`Fsync::Never`]: with a flush per batch the lock would be held across the flush.
///
/// When the file passes
/// `max_bytes` it is renamed `<path>.000001`, `<path>.000002`, … (higher is newer) and a new `<path>` continues the
/// chain. Rotated files are never deleted by agentguard.
///
/// A write that fails (a full disk) is cut back off under the lock, so no partial line stays and the next write
/// works once there is room; the gated calls in that batch are denied, the safe calls' lines are reported on stderr.
/// A torn last line left by a crash (no newline) is removed by the next write, which first appends a `repair` line
/// recording the size and SHA-256 of what it removed; the chain stays verifiable.
///
/// With a [`key`](JsonlAudit::key), lines carry an HMAC-SHA256 instead of a SHA-256. Every
/// [`checkpoint_every`](JsonlAudit::checkpoint_every) lines (100 by default; checked at the end of each batch) and at
/// each rotation the sink appends the newest line's `(seq, hash)` to `<path>.checkpoint` (or
/// [`checkpoint_file`](JsonlAudit::checkpoint_file)), after flushing the log to disk (on a thread of its own, so
/// that no call waits for the disk); it refuses to continue a chain that ends before its last checkpoint (lines were
/// removed), so gated calls fail closed until a person looks. Dropping the sink waits for its queued lines and the
/// checkpoints it handed over.
///
/// ```no_run
/// use agentguard::audit::{AuditKey, Fsync, JsonlAudit};
/// let audit = JsonlAudit::new("/var/log/agentguard/agentguard.log")
///     .max_bytes(16 * 1024 * 1024)
///     .key(AuditKey::from_file("/etc/agentguard/audit.key")?)
///     .checkpoint_file("/var/lib/agentguard/agentguard.log.checkpoint")
///     .fsync(Fsync::PerBatch);
/// # Ok::<(), agentguard::audit::AuditError>(())
/// ```
pub struct JsonlAudit {
    cfg: Config,
    /// Why the key named by the environment could not be loaded: every record fails with it (fail closed).
    key_error: Option<String>,
    /// The queue, the writer and the flusher thread, started by the first record.
    writer: OnceLock<Started>,
    starting: Mutex<()>,
}

impl fmt::Debug for JsonlAudit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlAudit")
            .field("path", &self.cfg.path)
            .field("max_bytes", &self.cfg.max_bytes)
            .field("key", &self.cfg.key)
            .field("checkpoint", &self.cfg.checkpoint)
            .field("checkpoint_every", &self.cfg.checkpoint_every)
            .field("fsync", &self.cfg.fsync)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Each thread serializes its records into a buffer of its own, reused (outside the queue's lock).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Serializes `record` and hands its body to `then`.
fn with_body<T>(record: &AuditRecord<'_>, then: impl FnOnce(&[u8]) -> Result<T, AuditError>) -> Result<T, AuditError> {
    let mut then = Some(then);
    let reused = SCRATCH.try_with(|cell| {
        let Ok(mut buf) = cell.try_borrow_mut() else {
            return None;
        };
        buf.clear();
        let result = match record_body_into(&mut buf, record) {
            Ok(()) => (then.take().expect("called once"))(&buf),
            Err(e) => Err(e),
        };
        if buf.capacity() > 64 * 1024 {
            *buf = Vec::new(); // a huge record does not keep its memory
        }
        Some(result)
    });
    match reused {
        Ok(Some(result)) => result,
        _ => {
            let body = record_body(record)?;
            (then.take().expect("not called yet"))(&body)
        }
    }
}

impl JsonlAudit {
    /// A sink writing to `path` (created on first write, with its directory if missing).
    /// Unkeyed, with checkpoints in `<path>.checkpoint` every [`DEFAULT_CHECKPOINT_EVERY`] lines.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        JsonlAudit {
            cfg: Config {
                checkpoint: Some(sibling(&path, "checkpoint")),
                path,
                max_bytes: DEFAULT_MAX_BYTES,
                lock_timeout: std::time::Duration::from_secs(5),
                key: None,
                checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
                fsync: Fsync::Never,
            },
            key_error: None,
            writer: OnceLock::new(),
            starting: Mutex::new(()),
        }
    }

    /// The default sink: at [`default_log_path`] (`$AGENTGUARD_LOG` if set, else `agentguard.log` in the working
    /// directory), keyed with the key file named by `$AGENTGUARD_AUDIT_KEY_FILE` ([`KEY_FILE_ENV`]) if set. If that
    /// key cannot be loaded, every record fails with the reason, so gated calls are denied (`audit_unavailable`)
    /// rather than logged without the key.
    ///
    /// [`KEY_FILE_ENV`]: super::KEY_FILE_ENV
    pub fn from_env() -> Self {
        let mut sink = Self::new(default_log_path());
        match AuditKey::from_env() {
            Ok(key) => sink.cfg.key = key,
            Err(e) => sink.key_error = Some(e.to_string()),
        }
        sink
    }

    /// Seals lines with HMAC-SHA256 under `key` (see [`AuditKey`]). A log written without a key can gain one: its
    /// unkeyed lines stay verifiable before the first keyed line. A keyed log refuses writers without its key.
    pub fn key(mut self, key: AuditKey) -> Self {
        self.cfg.key = Some(key);
        self.key_error = None;
        self
    }

    /// Appends checkpoints to `path` instead of `<log>.checkpoint`: somewhere that whoever can rewrite the log
    /// cannot (another directory with other permissions, an append-only file, a mount that is shipped elsewhere).
    /// Verify with [`Verify::checkpoint_file`](super::Verify::checkpoint_file).
    pub fn checkpoint_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cfg.checkpoint = Some(path.into());
        self
    }

    /// A checkpoint every `lines` lines (default [`DEFAULT_CHECKPOINT_EVERY`]; at least 1), and at each rotation.
    /// Removing fewer newest lines than this can go unnoticed. Each checkpoint costs one `fdatasync` of the log on
    /// the checkpoint thread (0.2 to 8 ms on the test machine's disk, depending on its load); checkpoints asked for
    /// while one is being written are merged into the newest.
    pub fn checkpoint_every(mut self, lines: u64) -> Self {
        self.cfg.checkpoint_every = lines.max(1);
        self
    }

    /// No checkpoints: removing the newest lines cannot be detected.
    pub fn no_checkpoints(mut self) -> Self {
        self.cfg.checkpoint = None;
        self
    }

    /// Rotates when the file reaches `bytes` (default [`DEFAULT_MAX_BYTES`]).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.cfg.max_bytes = bytes.max(1);
        self
    }

    /// How long a write waits for the file lock held by another writer before it fails (default 5 s).
    pub fn lock_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.cfg.lock_timeout = timeout;
        self
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.cfg.path
    }

    /// How often lines are flushed to disk (default [`Fsync::Never`], as before group commit): see [`Fsync`] for
    /// what each setting can lose in a power failure.
    pub fn fsync(mut self, fsync: Fsync) -> Self {
        self.cfg.fsync = fsync;
        self
    }

    /// Waits until every line recorded so far (deferred ones too) is written, as the setting of [`Fsync`] says.
    /// The error, if any, is that of the newest line.
    pub fn flush(&self) -> Result<(), AuditError> {
        match self.writer.get() {
            Some(writer) => writer.flush(),
            None => Ok(()),
        }
    }

    /// The queue, the writer and the flusher thread, started by the first record.
    fn writer(&self) -> Result<&Started, AuditError> {
        if let Some(writer) = self.writer.get() {
            return Ok(writer);
        }
        let _one_at_a_time = self.starting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(writer) = self.writer.get() {
            return Ok(writer);
        }
        let started =
            Started::start(self.cfg.clone()).map_err(|e| AuditError::io("cannot start the audit flusher thread", e))?;
        Ok(self.writer.get_or_init(|| started))
    }
}

impl Drop for JsonlAudit {
    /// Writes the queued lines, then waits for the checkpoints handed to the checkpoint thread.
    fn drop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            writer.close();
        }
    }
}

impl AuditSink for JsonlAudit {
    /// Queues the line and returns once the batch holding it is written (flushed too with [`Fsync::PerBatch`] or
    /// [`Fsync::PerLine`]), or says why it could not be.
    fn record(&self, record: &AuditRecord<'_>) -> Result<(), AuditError> {
        if let Some(e) = &self.key_error {
            return Err(AuditError::new(e.clone()));
        }
        let writer = self.writer()?;
        with_body(record, |body| writer.push(body, true))
    }

    /// Queues the line for the writer's next batch and returns (waits as `record` does with [`Fsync::PerLine`]).
    fn record_deferred(&self, record: &AuditRecord<'_>) -> Result<(), AuditError> {
        if let Some(e) = &self.key_error {
            return Err(AuditError::new(e.clone()));
        }
        let writer = self.writer()?;
        writer.flush_at_thread_exit();
        with_body(record, |body| writer.push(body, self.cfg.fsync == Fsync::PerLine))
    }

    fn flush(&self) -> Result<(), AuditError> {
        JsonlAudit::flush(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditDecision;
    use std::fs;

    #[test]
    fn a_lock_file_deleted_between_lines_is_recreated_and_the_chain_goes_on() {
        let dir = std::env::temp_dir().join(format!("agentguard-audit-lock-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let audit = JsonlAudit::new(dir.join("logs").join("audit.log"));
        let line = |tool: &str| audit.record(&AuditRecord::new(tool, AuditDecision::Allowed));
        line("first").unwrap();
        // The sink keeps the lock file open; deleting it (or its whole directory) must not leave it locking a file
        // no other writer can see.
        fs::remove_dir_all(&dir).unwrap();
        line("second").unwrap();
        assert!(audit.cfg.lock_path().exists(), "the lock file was recreated");
        line("third").unwrap();
        let report = super::super::verify(audit.path()).unwrap();
        assert_eq!((report.lines, report.first_seq, report.last_seq), (2, Some(1), Some(2)));
        let _ = fs::remove_dir_all(&dir);
    }
}
