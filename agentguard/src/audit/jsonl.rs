//! [`JsonlAudit`]: the file sink. One sealed line per record, appended under a lock shared by threads and
//! processes, with size-based rotation that carries the chain on, checkpoints, and repair of a torn tail.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
#[cfg(not(unix))]
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::chain::{record_body, repair_body, seal, GENESIS};
use super::checkpoint::{self, write_whole, Checkpointer, Job, DEFAULT_CHECKPOINT_EVERY};
use super::files::*;
use super::{default_log_path, AuditError, AuditKey, AuditRecord, AuditSink};
use crate::params::hex;

/// Default size at which the file sink rotates: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The file sink: hash-chained JSON lines, size-based rotation, safe across threads and processes.
///
/// Writers in one process share a mutex; writers in several processes take an exclusive lock on `<path>.lock` (an
/// OS file lock, released by the OS if a process dies) around each line, re-read the chain's tail when another
/// process wrote since, and write each line with a single `write` on a file opened for append. When the file passes
/// `max_bytes` it is renamed `<path>.000001`, `<path>.000002`, … (higher is newer) and a new `<path>` continues the
/// chain. Rotated files are never deleted by agentguard.
///
/// A write that fails (a full disk) is cut back off under the lock, so no partial line stays and the next write
/// works once there is room. A torn last line left by a crash (no newline) is removed by the next write, which
/// first appends a `repair` line recording the size and SHA-256 of what it removed; the chain stays verifiable.
///
/// With a [`key`](JsonlAudit::key), lines carry an HMAC-SHA256 instead of a SHA-256. Every
/// [`checkpoint_every`](JsonlAudit::checkpoint_every) lines (100 by default) and at each rotation the sink appends
/// the newest line's `(seq, hash)` to `<path>.checkpoint` (or [`checkpoint_file`](JsonlAudit::checkpoint_file)),
/// after flushing the log to disk (on a thread of its own, so that no call waits for the disk); it refuses to
/// continue a chain that ends before its last checkpoint (lines were removed), so gated calls fail closed until a
/// person looks. Dropping the sink waits for the checkpoints it handed over.
///
/// ```no_run
/// use agentguard::audit::{AuditKey, JsonlAudit};
/// let audit = JsonlAudit::new("/var/log/agentguard/agentguard.log")
///     .max_bytes(16 * 1024 * 1024)
///     .key(AuditKey::from_file("/etc/agentguard/audit.key")?)
///     .checkpoint_file("/var/lib/agentguard/agentguard.log.checkpoint");
/// # Ok::<(), agentguard::audit::AuditError>(())
/// ```
pub struct JsonlAudit {
    path: PathBuf,
    max_bytes: u64,
    lock_timeout: std::time::Duration,
    key: Option<AuditKey>,
    /// Why the key named by the environment could not be loaded: every record fails with it (fail closed).
    key_error: Option<String>,
    /// Where checkpoints go; `None`: no checkpoints.
    checkpoint: Option<PathBuf>,
    checkpoint_every: u64,
    /// Writes checkpoints on a thread of its own, started with the first one.
    checkpointer: Mutex<Option<Checkpointer>>,
    state: Mutex<WriterState>,
}

#[derive(Default)]
struct WriterState {
    /// `<path>.lock`, kept open between lines (opening it per line cost two system calls).
    lock: Option<File>,
    file: Option<File>,
    /// (device, inode) of `file`, to notice a rotation by another process.
    id: (u64, u64),
    /// Length of the file after our last write; a different length means someone else wrote.
    len: u64,
    last_seq: u64,
    /// The last line's hash, or MAC if it is keyed: the next line's `prev`.
    last_link: String,
    /// The last line is keyed: a writer without the key must not continue the chain.
    last_keyed: bool,
    /// The seq of the newest checkpoint written or handed to the checkpoint thread (0: none).
    checkpoint_seq: u64,
}

impl fmt::Debug for JsonlAudit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlAudit")
            .field("path", &self.path)
            .field("max_bytes", &self.max_bytes)
            .field("key", &self.key)
            .field("checkpoint", &self.checkpoint)
            .field("checkpoint_every", &self.checkpoint_every)
            .finish_non_exhaustive()
    }
}

impl JsonlAudit {
    /// A sink writing to `path` (created on first write, with its directory if missing).
    /// Unkeyed, with checkpoints in `<path>.checkpoint` every [`DEFAULT_CHECKPOINT_EVERY`] lines.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        JsonlAudit {
            checkpoint: Some(sibling(&path, "checkpoint")),
            path,
            max_bytes: DEFAULT_MAX_BYTES,
            lock_timeout: std::time::Duration::from_secs(5),
            key: None,
            key_error: None,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            checkpointer: Mutex::new(None),
            state: Mutex::new(WriterState::default()),
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
            Ok(key) => sink.key = key,
            Err(e) => sink.key_error = Some(e.to_string()),
        }
        sink
    }

    /// Seals lines with HMAC-SHA256 under `key` (see [`AuditKey`]). A log written without a key can gain one: its
    /// unkeyed lines stay verifiable before the first keyed line. A keyed log refuses writers without its key.
    pub fn key(mut self, key: AuditKey) -> Self {
        self.key = Some(key);
        self.key_error = None;
        self
    }

    /// Appends checkpoints to `path` instead of `<log>.checkpoint`: somewhere that whoever can rewrite the log
    /// cannot (another directory with other permissions, an append-only file, a mount that is shipped elsewhere).
    /// Verify with [`Verify::checkpoint_file`](super::Verify::checkpoint_file).
    pub fn checkpoint_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(path.into());
        self
    }

    /// A checkpoint every `lines` lines (default [`DEFAULT_CHECKPOINT_EVERY`]; at least 1), and at each rotation.
    /// Removing fewer newest lines than this can go unnoticed. Each checkpoint costs one `fdatasync` of the log on
    /// the checkpoint thread (0.2 to 8 ms on the test machine's disk, depending on its load); checkpoints asked for
    /// while one is being written are merged into the newest.
    pub fn checkpoint_every(mut self, lines: u64) -> Self {
        self.checkpoint_every = lines.max(1);
        self
    }

    /// No checkpoints: removing the newest lines cannot be detected.
    pub fn no_checkpoints(mut self) -> Self {
        self.checkpoint = None;
        self
    }

    /// Rotates when the file reaches `bytes` (default [`DEFAULT_MAX_BYTES`]).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }

    /// How long a write waits for the file lock held by another writer before it fails (default 5 s).
    pub fn lock_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_path(&self) -> PathBuf {
        sibling(&self.path, "lock")
    }

    fn append(&self, body: &[u8]) -> Result<(), AuditError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let lock = match self.take_lock(&mut state) {
            Ok(lock) => lock,
            Err(e) => {
                *state = WriterState::default();
                return Err(e);
            }
        };
        let result = self.append_locked(&mut state, body);
        // Release the OS lock; the file stays open for the next line.
        let _ = lock.unlock();
        if result.is_err() {
            // Re-read everything next time rather than trust a state that a failed write may have left.
            *state = WriterState::default();
        } else {
            state.lock = Some(lock);
        }
        result
    }

    /// Opens `<path>.lock` (creating it and the directory the first time; afterwards the open file is reused) and
    /// takes its exclusive lock. A lock file deleted while we held it open no longer excludes anyone, so when its
    /// link count is 0 the one now at the path is opened and locked instead.
    fn take_lock(&self, state: &mut WriterState) -> Result<File, AuditError> {
        for _ in 0..3 {
            let lock = match state.lock.take() {
                Some(lock) => lock,
                None => {
                    if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        fs::create_dir_all(dir).map_err(|e| {
                            AuditError::io(format!("cannot create audit directory {}", dir.display()), e)
                        })?;
                    }
                    OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(self.lock_path())
                        .map_err(|e| {
                            AuditError::io(format!("cannot open audit lock {}", self.lock_path().display()), e)
                        })?
                }
            };
            self.lock_within(&lock)?;
            let meta = lock
                .metadata()
                .map_err(|e| AuditError::io(format!("cannot stat audit lock {}", self.lock_path().display()), e))?;
            if still_linked(&meta) {
                return Ok(lock);
            }
            let _ = lock.unlock();
        }
        Err(AuditError::new(format!(
            "the audit lock {} keeps being deleted; stop whatever removes it",
            self.lock_path().display()
        )))
    }

    /// Takes the exclusive lock, waiting at most `lock_timeout`.
    fn lock_within(&self, lock: &File) -> Result<(), AuditError> {
        lock_within(lock, &self.lock_path(), self.lock_timeout)
    }

    /// Opens (creating) the live file for appending into `state`; returns its length.
    fn open_live(&self, state: &mut WriterState) -> Result<u64, AuditError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)
            .map_err(|e| AuditError::io(format!("cannot open audit log {}", self.path.display()), e))?;
        let meta = file
            .metadata()
            .map_err(|e| AuditError::io("cannot stat audit log", e))?;
        state.id = file_id(&meta);
        state.file = Some(file);
        Ok(meta.len())
    }

    fn append_locked(&self, state: &mut WriterState, body: &[u8]) -> Result<(), AuditError> {
        // One stat of the path tells both whether another process rotated the file (a different inode) and, when it
        // is still ours, its length (a different length means another process wrote since our last line).
        let path_meta = fs::metadata(&self.path).ok();
        let mut len = match &path_meta {
            Some(meta) if state.file.is_some() && file_id(meta) == state.id => meta.len(),
            _ => {
                let len = self.open_live(state)?;
                state.len = u64::MAX; // force a tail read
                len
            }
        };
        if len != state.len {
            len = self.reread_head(state, len)?;
        }
        let seq = self.next_seq(state)?;
        let line = seal(body, seq, &state.last_link, self.key.as_ref());
        if len > 0 && len + line.line.len() as u64 > self.max_bytes {
            // Rotate first: if the rename fails, nothing was written for this call.
            if state.checkpoint_seq < state.last_seq {
                self.checkpoint(state);
            }
            self.rotate()?;
            len = self.open_live(state)?;
        }
        let file = state.file.as_mut().expect("opened above");
        write_whole(file, len, line.line.as_bytes())
            .map_err(|e| AuditError::new(format!("audit log {}: {e}", self.path.display())))?;
        state.len = len + line.line.len() as u64;
        state.last_seq = seq;
        state.last_link = line.link;
        state.last_keyed = self.key.is_some();
        if seq - state.checkpoint_seq >= self.checkpoint_every {
            self.checkpoint(state);
        }
        Ok(())
    }

    fn next_seq(&self, state: &WriterState) -> Result<u64, AuditError> {
        state.last_seq.checked_add(1).ok_or_else(|| {
            AuditError::new(format!(
                "the audit log {} ends at the largest possible seq; move it aside to start a new chain",
                self.path.display()
            ))
        })
    }

    /// Reads the chain's head (another process wrote, or the file is newly opened), checks it against the newest
    /// checkpoint and the key, and repairs a torn tail. Returns the file's length after that.
    fn reread_head(&self, state: &mut WriterState, len: u64) -> Result<u64, AuditError> {
        let file = state.file.as_mut().expect("opened by the caller");
        let tail = read_tail(file, &self.path)?;
        let (seq, link, keyed) = match tail.last {
            Some(head) => head,
            None => self.chain_head_from_rotated()?,
        };
        let checkpoint = match &self.checkpoint {
            Some(cp) => checkpoint::read_last(cp)?,
            None => None,
        };
        if let Some((cseq, chash)) = &checkpoint {
            if *cseq > seq || (*cseq == seq && *chash != link) {
                return Err(AuditError::new(format!(
                    "the audit log {} ends at seq {seq}, but its checkpoint file {} records seq {cseq}: lines were \
                     removed. Run `agentguard audit verify {}`; to start a new chain on purpose, move the log, its \
                     rotated files and the checkpoint file aside",
                    self.path.display(),
                    self.checkpoint.as_deref().unwrap_or(Path::new("")).display(),
                    self.path.display()
                )));
            }
        }
        if keyed && self.key.is_none() {
            return Err(AuditError::new(format!(
                "the audit log {} is keyed (its last line carries a MAC) and this writer has no key: give it the key \
                 (JsonlAudit::key, or {} for the default log)",
                self.path.display(),
                super::KEY_FILE_ENV
            )));
        }
        state.last_seq = seq;
        state.last_link = link;
        state.last_keyed = keyed;
        state.checkpoint_seq = checkpoint.map_or(0, |(cseq, _)| cseq);
        match tail.torn {
            None => Ok(len),
            Some(torn) => self.repair(state, torn),
        }
    }

    /// Cuts off a torn tail and records that in a `repair` line. If the repair line cannot be written (a full
    /// disk), the torn bytes are put back, so that nothing is lost unrecorded, and the next write tries again.
    fn repair(&self, state: &mut WriterState, torn: Torn) -> Result<u64, AuditError> {
        let sha256 = hex(&Sha256::digest(&torn.bytes));
        let head = String::from_utf8_lossy(&torn.bytes[..torn.bytes.len().min(200)]).into_owned();
        let seq = self.next_seq(state)?;
        let line = seal(
            &repair_body(torn.bytes.len() as u64, &sha256, &head)?,
            seq,
            &state.last_link,
            self.key.as_ref(),
        );
        let file = state.file.as_mut().expect("opened by the caller");
        let what = format!(
            "the audit log {} ends in a torn line ({} bytes without a newline, SHA-256 {sha256})",
            self.path.display(),
            torn.bytes.len()
        );
        file.set_len(torn.at)
            .map_err(|e| AuditError::io(format!("{what}; cannot cut it off"), e))?;
        if let Err(e) = write_whole(file, torn.at, line.line.as_bytes()) {
            let restored = match write_whole(file, torn.at, &torn.bytes) {
                Ok(()) => "it was put back".to_owned(),
                Err(r) => format!("it could not be put back ({r}): those bytes are lost"),
            };
            return Err(AuditError::new(format!(
                "{what}; the repair line recording its removal could not be written ({e}); {restored}"
            )));
        }
        state.last_seq = seq;
        state.last_link = line.link;
        state.last_keyed = self.key.is_some();
        Ok(torn.at + line.line.len() as u64)
    }

    /// Hands a checkpoint of the newest line to the checkpoint thread, which flushes the log to disk and then appends
    /// it: an `fdatasync` takes milliseconds on a busy disk, and no call waits for it. A failure there is reported
    /// on stderr; the line itself was written, and the next checkpoint covers it.
    fn checkpoint(&self, state: &mut WriterState) {
        let Some(path) = &self.checkpoint else { return };
        let Some(log) = state.file.as_ref().and_then(|f| f.try_clone().ok()) else {
            return;
        };
        let mut slot = self.checkpointer.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            match Checkpointer::start(path.clone(), self.lock_path(), self.lock_timeout) {
                Ok(started) => *slot = Some(started),
                Err(e) => {
                    eprintln!(
                        "agentguard: cannot start the audit checkpoint thread ({e}); the line was written, and the \
                         next line tries again"
                    );
                    return;
                }
            }
        }
        let Some(checkpointer) = slot.as_ref() else { return };
        checkpointer.submit(Job {
            log,
            seq: state.last_seq,
            link: state.last_link.clone(),
        });
        state.checkpoint_seq = state.last_seq;
    }

    /// The chain's head when the live file has no complete line: the last line of the newest rotated file, or
    /// genesis.
    fn chain_head_from_rotated(&self) -> Result<(u64, String, bool), AuditError> {
        match rotated_files(&self.path)?.last() {
            Some(newest) => {
                let mut f =
                    File::open(newest).map_err(|e| AuditError::io(format!("cannot open {}", newest.display()), e))?;
                let tail = read_tail(&mut f, newest)?;
                if tail.torn.is_some() {
                    return Err(AuditError::new(format!(
                        "the rotated audit log {} ends in a torn line; run `agentguard audit verify {}`",
                        newest.display(),
                        self.path.display()
                    )));
                }
                Ok(tail.last.unwrap_or_else(|| (0, GENESIS.to_owned(), false)))
            }
            None => Ok((0, GENESIS.to_owned(), false)),
        }
    }

    fn rotate(&self) -> Result<(), AuditError> {
        let next = rotated_files(&self.path)?
            .last()
            .and_then(|p| rotation_index(&self.path, p))
            .unwrap_or(0)
            + 1;
        let target = sibling(&self.path, &format!("{next:06}"));
        fs::rename(&self.path, &target)
            .map_err(|e| AuditError::io(format!("cannot rotate audit log to {}", target.display()), e))
    }
}

impl Drop for JsonlAudit {
    /// Waits for the checkpoints handed to the checkpoint thread to be written.
    fn drop(&mut self) {
        if let Some(checkpointer) = self.checkpointer.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            checkpointer.finish();
        }
    }
}

impl AuditSink for JsonlAudit {
    fn record(&self, record: &AuditRecord<'_>) -> Result<(), AuditError> {
        if let Some(e) = &self.key_error {
            return Err(AuditError::new(e.clone()));
        }
        self.append(&record_body(record)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditDecision;

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
        assert!(audit.lock_path().exists(), "the lock file was recreated");
        line("third").unwrap();
        let report = super::super::verify(audit.path()).unwrap();
        assert_eq!((report.lines, report.first_seq, report.last_seq), (2, Some(1), Some(2)));
        let _ = fs::remove_dir_all(&dir);
    }
}
