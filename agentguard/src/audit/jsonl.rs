//! [`JsonlAudit`]: the file sink. One sealed line per record, appended under a lock shared by threads and
//! processes, with size-based rotation that carries the chain on.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
#[cfg(not(unix))]
use std::time::UNIX_EPOCH;

use serde::Deserialize;

use super::chain::{is_hash, record_body, seal, GENESIS};
use super::{default_log_path, AuditError, AuditRecord, AuditSink};

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
/// ```no_run
/// use agentguard::audit::JsonlAudit;
/// let audit = JsonlAudit::new("agentguard.log").max_bytes(16 * 1024 * 1024);
/// ```
pub struct JsonlAudit {
    path: PathBuf,
    max_bytes: u64,
    lock_timeout: std::time::Duration,
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
    last_hash: String,
}

impl fmt::Debug for JsonlAudit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlAudit")
            .field("path", &self.path)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl JsonlAudit {
    /// A sink writing to `path` (created on first write, with its directory if missing).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonlAudit {
            path: path.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            lock_timeout: std::time::Duration::from_secs(5),
            state: Mutex::new(WriterState::default()),
        }
    }

    /// The default sink: at [`default_log_path`] (`$AGENTGUARD_LOG` if set, else `agentguard.log` in the working
    /// directory).
    pub fn from_env() -> Self {
        Self::new(default_log_path())
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

    /// Takes the exclusive lock, waiting at most `lock_timeout`: a process that hangs while holding it must not
    /// hang every call of every other process (the calls fail closed with `audit_unavailable` instead).
    fn lock_within(&self, lock: &File) -> Result<(), AuditError> {
        let give_up = std::time::Instant::now() + self.lock_timeout;
        let mut pause = std::time::Duration::from_micros(50);
        loop {
            match lock.try_lock() {
                Ok(()) => return Ok(()),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < give_up => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(AuditError::new(format!(
                        "could not lock {} within {:?}: another process holds it; if that process is stuck, stop it",
                        self.lock_path().display(),
                        self.lock_timeout
                    )))
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(AuditError::io(format!("cannot lock {}", self.lock_path().display()), e))
                }
            }
        }
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
        let len = match &path_meta {
            Some(meta) if state.file.is_some() && file_id(meta) == state.id => meta.len(),
            _ => {
                let len = self.open_live(state)?;
                state.len = u64::MAX; // force a tail read
                len
            }
        };
        let file = state.file.as_mut().expect("opened above");
        if len != state.len {
            let (seq, hash) = if len == 0 {
                self.chain_head_from_rotated()?
            } else {
                chain_tail(file, &self.path)?
            };
            state.last_seq = seq;
            state.last_hash = hash;
        }
        let seq = state.last_seq.checked_add(1).ok_or_else(|| {
            AuditError::new(format!(
                "the audit log {} ends at the largest possible seq; move it aside to start a new chain",
                self.path.display()
            ))
        })?;
        let line = seal(body, seq, &state.last_hash);
        let mut len = len;
        if len > 0 && len + line.line.len() as u64 > self.max_bytes {
            // Rotate first: if the rename fails, nothing was written for this call.
            self.rotate()?;
            len = self.open_live(state)?;
        }
        let file = state.file.as_mut().expect("opened above");
        file.write_all(line.line.as_bytes())
            .map_err(|e| AuditError::io(format!("cannot write audit log {}", self.path.display()), e))?;
        state.len = len + line.line.len() as u64;
        state.last_seq = seq;
        state.last_hash = line.hash;
        Ok(())
    }

    /// The chain's head when the live file is empty: the last line of the newest rotated file, or genesis.
    fn chain_head_from_rotated(&self) -> Result<(u64, String), AuditError> {
        match rotated_files(&self.path)?.last() {
            Some(newest) => {
                let mut f =
                    File::open(newest).map_err(|e| AuditError::io(format!("cannot open {}", newest.display()), e))?;
                chain_tail(&mut f, newest)
            }
            None => Ok((0, GENESIS.to_owned())),
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

impl AuditSink for JsonlAudit {
    fn record(&self, record: &AuditRecord<'_>) -> Result<(), AuditError> {
        self.append(&record_body(record)?)
    }
}

/// Reads the last line of a chain file and returns its (seq, hash).
fn chain_tail(file: &mut File, path: &Path) -> Result<(u64, String), AuditError> {
    let line = last_line(file).map_err(|e| AuditError::io(format!("cannot read audit log {}", path.display()), e))?;
    let Some(line) = line else {
        return Ok((0, GENESIS.to_owned()));
    };
    let fields: TailFields = serde_json::from_str(&line).map_err(|e| {
        AuditError::new(format!(
            "the last line of audit log {} is damaged ({e}); run `agentguard audit verify {}` and move the file \
             aside to start a new chain",
            path.display(),
            path.display()
        ))
    })?;
    if !is_hash(&fields.hash) {
        return Err(AuditError::new(format!(
            "the last line of audit log {} has a malformed hash; run `agentguard audit verify {}` and move the file \
             aside to start a new chain",
            path.display(),
            path.display()
        )));
    }
    Ok((fields.seq, fields.hash))
}

#[derive(Deserialize)]
struct TailFields {
    seq: u64,
    hash: String,
}

/// The last complete line of a file, without its newline.
fn last_line(file: &mut File) -> io::Result<Option<String>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    let mut end = len;
    let mut tail: Vec<u8> = Vec::new();
    // Skip the final newline.
    let mut chunk = 8192u64;
    loop {
        let start = end.saturating_sub(chunk);
        let mut buf = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        buf.extend_from_slice(&tail);
        tail = buf;
        let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
        if let Some(pos) = body.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(String::from_utf8_lossy(&body[pos + 1..]).into_owned()));
        }
        if start == 0 {
            return Ok(Some(String::from_utf8_lossy(body).into_owned()));
        }
        end = start;
        chunk = chunk.saturating_mul(2);
    }
}

pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

pub(super) fn rotation_index(base: &Path, candidate: &Path) -> Option<u64> {
    let base_name = base.file_name()?.to_str()?;
    let name = candidate.file_name()?.to_str()?;
    let digits = name.strip_prefix(base_name)?.strip_prefix('.')?;
    (digits.len() >= 6 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Rotated files of `base`, oldest first.
pub(super) fn rotated_files(base: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let dir = match base.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AuditError::io(format!("cannot list {}", dir.display()), e)),
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let p = dir.join(e.file_name());
            rotation_index(base, &p).map(|i| (i, p))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// `false` once the file was deleted (its link count is 0).
#[cfg(unix)]
fn still_linked(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.nlink() > 0
}

#[cfg(not(unix))]
fn still_linked(_meta: &fs::Metadata) -> bool {
    true
}

#[cfg(unix)]
fn file_id(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn file_id(meta: &fs::Metadata) -> (u64, u64) {
    // Without inodes, a rotation by another process is noticed by the length check only.
    (
        0,
        meta.created()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64),
    )
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
