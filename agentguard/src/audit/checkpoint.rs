//! Checkpoints: `(seq, hash)` of a chain's line, appended to a second file (`<log>.checkpoint` by default) every so
//! many lines and at each rotation. A chain cannot remember its own future, so removing its newest lines leaves a
//! shorter chain that still holds; a checkpoint remembers how far it reached. [`verify`](super::verify) checks each
//! checkpoint against the chain, and the writer refuses to continue a chain that ends before its last checkpoint.
//!
//! Each line is `{"seq":N,"hash":"<the line's hash, or its MAC in a keyed log>"}`. The file is appended to under the
//! log's lock (a torn last line, from a crash while appending, is cut off first); a checkpoint is written only after
//! the log was flushed to disk (`fdatasync`), so a power loss cannot leave a checkpoint ahead of the log. The flush
//! takes milliseconds, so a `Checkpointer` thread does it, not the call being audited.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;

use super::chain::is_hash;
use super::files::lock_within;
use super::AuditError;

/// Default number of lines between two checkpoints of the file sink.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    seq: u64,
    hash: String,
}

/// One checkpoint line (without its newline) → (seq, hash), or what is wrong with it.
pub(crate) fn parse(line: &[u8]) -> Result<(u64, String), String> {
    let entry: Entry = std::str::from_utf8(line)
        .ok()
        .and_then(|text| serde_json::from_str(text).ok())
        .ok_or("not a checkpoint: expected {\"seq\":N,\"hash\":\"…\"}")?;
    if !is_hash(&entry.hash) || entry.seq == 0 {
        return Err(format!("checkpoint of seq {} is malformed", entry.seq));
    }
    Ok((entry.seq, entry.hash))
}

fn format(seq: u64, hash: &str) -> String {
    format!("{{\"seq\":{seq},\"hash\":\"{hash}\"}}\n")
}

/// The newest checkpoint in the file at `path` (None when there is no file or no checkpoint yet). A torn last line
/// (a crash while appending it) is cut off first: it recorded nothing that the line before does not. Called by the
/// writer under the log's lock.
pub(crate) fn read_last(path: &Path) -> Result<Option<(u64, String)>, AuditError> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AuditError::io(
                format!("cannot open audit checkpoint file {}", path.display()),
                e,
            ))
        }
    };
    let io_err = |e| AuditError::io(format!("cannot read audit checkpoint file {}", path.display()), e);
    let len = file.seek(SeekFrom::End(0)).map_err(io_err)?;
    let good = after_last_newline(&mut file, len).map_err(io_err)?;
    if good < len {
        file.set_len(good).map_err(|e| {
            AuditError::io(
                format!("cannot cut the torn last line of checkpoint file {}", path.display()),
                e,
            )
        })?;
    }
    if good == 0 {
        return Ok(None);
    }
    let start = after_last_newline(&mut file, good - 1).map_err(io_err)?;
    let mut line = vec![0u8; (good - 1 - start) as usize];
    file.seek(SeekFrom::Start(start)).map_err(io_err)?;
    file.read_exact(&mut line).map_err(io_err)?;
    parse(&line).map(Some).map_err(|problem| {
        AuditError::new(format!(
            "the last line of audit checkpoint file {} is damaged ({problem}); run `agentguard audit verify`",
            path.display()
        ))
    })
}

/// Appends one checkpoint. A failed write is cut back off, so no partial checkpoint stays.
pub(crate) fn append(path: &Path, seq: u64, hash: &str) -> Result<(), AuditError> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| AuditError::io(format!("cannot open audit checkpoint file {}", path.display()), e))?;
    let at = file
        .metadata()
        .map_err(|e| AuditError::io(format!("cannot stat audit checkpoint file {}", path.display()), e))?
        .len();
    write_whole(&mut file, at, format(seq, hash).as_bytes())
        .map_err(|e| AuditError::new(format!("audit checkpoint file {}: {e}", path.display())))
}

/// A checkpoint to write: the log file holding the line (flushed to disk first), its seq and hash.
pub(crate) struct Job {
    pub(crate) log: File,
    pub(crate) seq: u64,
    pub(crate) link: String,
}

/// The checkpoint thread of one file sink. Jobs that queue up while one is written are merged into the newest (a
/// later checkpoint covers every line before it).
pub(crate) struct Checkpointer {
    tx: mpsc::Sender<Job>,
    thread: JoinHandle<()>,
    /// The thread is at the log's lock: waiting for it or holding it.
    at_lock: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Starts the thread writing checkpoints to `path` under the log's lock file `lock`.
    /// A thread that cannot be started is an error: the caller reports it and skips the checkpoint.
    pub(crate) fn start(path: PathBuf, lock: PathBuf, lock_timeout: Duration) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let at_lock = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&at_lock);
        let thread = std::thread::Builder::new()
            .name("agentguard-audit-checkpoint".into())
            .spawn(move || {
                while let Ok(mut job) = rx.recv() {
                    while let Ok(newer) = rx.try_recv() {
                        job = newer;
                    }
                    if let Err(e) = write_durably(&job, &path, &lock, lock_timeout, &flag) {
                        report!(
                            "agentguard: audit checkpoint of seq {} failed ({e}); the line was written, and the next \
                             checkpoint covers it",
                            job.seq
                        );
                    }
                }
            })?;
        Ok(Checkpointer { tx, thread, at_lock })
    }

    /// Whether the thread is waiting for the log's lock or holding it: a writer that finds the lock taken then
    /// takes it for this thread, not another process. (If another process held it meanwhile, the writer learns of it
    /// from that process's lines, at its next look at the log.)
    pub(crate) fn at_lock(&self) -> bool {
        self.at_lock.load(Ordering::Relaxed)
    }

    /// Queues a checkpoint.
    pub(crate) fn submit(&self, job: Job) {
        let _ = self.tx.send(job);
    }

    /// Writes what is queued, then ends the thread.
    pub(crate) fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// Flushes the log to disk, so that the checkpoint never names a line a power loss could take away, then appends the
/// checkpoint under the log's lock, unless one as new is already there (from another process).
fn write_durably(
    job: &Job,
    path: &Path,
    lock_path: &Path,
    timeout: Duration,
    at_lock: &AtomicBool,
) -> Result<(), AuditError> {
    job.log
        .sync_data()
        .map_err(|e| AuditError::io("cannot flush the audit log to disk", e))?;
    at_lock.store(true, Ordering::Relaxed);
    let result = append_locked(job, path, lock_path, timeout);
    at_lock.store(false, Ordering::Relaxed);
    result
}

/// Appends the checkpoint under the log's lock, unless one as new is already there.
fn append_locked(job: &Job, path: &Path, lock_path: &Path, timeout: Duration) -> Result<(), AuditError> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(|e| AuditError::io(format!("cannot open audit lock {}", lock_path.display()), e))?;
    lock_within(&lock, lock_path, timeout, &|| false)?;
    let result = match read_last(path) {
        Ok(Some((seq, _))) if seq >= job.seq => Ok(()),
        Ok(_) => append(path, job.seq, &job.link),
        Err(e) => Err(e),
    };
    let _ = lock.unlock();
    result
}

/// Writes `bytes` at the end of `file` (opened for append, `at` bytes long), or leaves it `at` bytes long: a write
/// that fails part-way (a full disk) is cut back off, under the caller's lock.
pub(crate) fn write_whole(file: &mut File, at: u64, bytes: &[u8]) -> Result<(), WriteFailed> {
    file.write_all(bytes).map_err(|error| WriteFailed {
        cleanup: file.set_len(at).err(),
        error,
    })
}

/// A write failed; `cleanup` is set when the partial write could not be cut off either.
#[derive(Debug)]
pub(crate) struct WriteFailed {
    pub(crate) error: io::Error,
    pub(crate) cleanup: Option<io::Error>,
}

impl std::fmt::Display for WriteFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cleanup {
            None => write!(f, "cannot write ({}); nothing was left of the failed write", self.error),
            Some(c) => write!(
                f,
                "cannot write ({}), and cannot cut off what was written ({c}); the next write repairs the torn line",
                self.error
            ),
        }
    }
}

/// The offset just past the last `\n` in `file[..end]` (0 when there is none), scanning backwards.
pub(crate) fn after_last_newline(file: &mut File, end: u64) -> io::Result<u64> {
    let mut end = end;
    let mut buf = vec![0u8; 8192];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(pos) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_torn_last_checkpoint_is_cut_off_and_the_one_before_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.checkpoint");
        assert_eq!(read_last(&path).unwrap(), None);
        let h = "a".repeat(64);
        append(&path, 100, &h).unwrap();
        append(&path, 200, &h).unwrap();
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(b"{\"seq\":3");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_last(&path).unwrap(), Some((200, h.clone())));
        assert!(std::fs::read(&path).unwrap().ends_with(b"}\n"));
    }

    proptest! {
        #[test]
        fn any_bytes_are_a_checkpoint_or_a_clean_error(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn a_checkpoint_line_round_trips(seq in 1..u64::MAX, hash in "[0-9a-f]{64}") {
            let line = format(seq, &hash);
            prop_assert_eq!(parse(line.trim_end().as_bytes()), Ok((seq, hash)));
        }
    }
}
