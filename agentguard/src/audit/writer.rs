//! The file sink's writer: appends a batch of lines under one OS lock with one `write`, continuing the chain that is
//! in the file (another process may have written since), rotating, checkpointing and repairing a torn tail. Used by
//! one thread at a time, under the sink's writer mutex ([`queue`](super::queue)).

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::chain::{repair_body, seal, seal_into, GENESIS};
use super::checkpoint::{self, write_whole, Checkpointer, Job};
use super::files::*;
use super::{AuditError, AuditKey, Fsync};
use crate::params::hex;

#[path = "lease.rs"]
mod lease;
use lease::Held;

/// What the writer needs to know of the sink's settings.
#[derive(Clone)]
pub(super) struct Config {
    pub(super) path: PathBuf,
    pub(super) max_bytes: u64,
    pub(super) lock_timeout: Duration,
    pub(super) key: Option<AuditKey>,
    /// Where checkpoints go; `None`: no checkpoints.
    pub(super) checkpoint: Option<PathBuf>,
    pub(super) checkpoint_every: u64,
    pub(super) fsync: Fsync,
}

impl Config {
    pub(super) fn lock_path(&self) -> PathBuf {
        sibling(&self.path, "lock")
    }
}

#[derive(Default)]
struct WriterState {
    /// `<path>.lock`, kept open between batches (opening it each time cost two system calls).
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

/// A batch that was not (wholly) written: its first `written` lines are in the file, the rest are not.
pub(super) struct BatchError {
    pub(super) written: usize,
    pub(super) error: AuditError,
}

/// Appends batches of lines to one log.
///
/// Between batches it may keep the OS lock, leased ([`lease`]).
pub(super) struct Writer {
    cfg: Config,
    state: WriterState,
    /// Writes checkpoints on a thread of its own, started with the first one.
    checkpointer: Option<Checkpointer>,
    /// The batch's sealed lines (reused).
    out: Vec<u8>,
    /// Lines of the current batch already in the file.
    written: usize,
    /// The OS lock, held from before the next batch: leased, or taken by [`hold_lock_now`](Writer::hold_lock_now).
    held: Option<Held>,
    /// When the previous batch ended.
    last_end: Option<Instant>,
    /// No lease before this (after a lease, and after the lock was found taken by someone else).
    no_lease_until: Option<Instant>,
}

impl Writer {
    pub(super) fn new(cfg: Config) -> Self {
        Writer {
            cfg,
            state: WriterState::default(),
            checkpointer: None,
            out: Vec::new(),
            written: 0,
            held: None,
            last_end: None,
            no_lease_until: None,
        }
    }

    /// Seals the bodies (`bodies[ends[i-1]..ends[i]]`, each `{"ts":…}`) into chained lines and appends them: one
    /// lock, one stat, one `write` for the whole batch (two when the file rotates inside it), then, if the sink
    /// says so, one `fdatasync`.
    pub(super) fn write_batch(&mut self, bodies: &[u8], ends: &[usize]) -> Result<(), BatchError> {
        self.written = 0;
        let result = self.append(bodies, ends);
        let result = result.and_then(|()| self.sync());
        result.map_err(|error| BatchError {
            written: self.written,
            error,
        })
    }

    fn sync(&mut self) -> Result<(), AuditError> {
        if self.cfg.fsync == Fsync::Never {
            return Ok(());
        }
        let Some(file) = &self.state.file else { return Ok(()) };
        file.sync_data().map_err(|e| {
            // Written but perhaps not on disk: for the callers waiting on it, that is not written.
            self.written = 0;
            AuditError::io(
                format!("cannot flush the audit log {} to disk", self.cfg.path.display()),
                e,
            )
        })
    }

    /// Opens (creating) the live file for appending; returns its length.
    fn open_live(&mut self) -> Result<u64, AuditError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.cfg.path)
            .map_err(|e| AuditError::io(format!("cannot open audit log {}", self.cfg.path.display()), e))?;
        let meta = file
            .metadata()
            .map_err(|e| AuditError::io("cannot stat audit log", e))?;
        self.state.id = file_id(&meta);
        self.state.file = Some(file);
        Ok(meta.len())
    }

    /// Appends under the lock; `unbroken`: the lock was held since our last batch, so the file is as it left it.
    fn append_locked(&mut self, bodies: &[u8], ends: &[usize], unbroken: bool) -> Result<(), AuditError> {
        // One stat of the path tells both whether another process rotated the file (a different inode) and, when it
        // is still ours, its length (a different length means another process wrote since our last line).
        let look = match unbroken {
            true if self.state.file.is_some() => Some((self.state.id, self.state.len)),
            _ => path_id_len(&self.cfg.path),
        };
        if self.state.file.is_some() && look != Some((self.state.id, self.state.len)) {
            // Another process wrote or rotated since our last batch: it shares the log.
            self.contended();
        }
        let mut len = match look {
            Some((id, len)) if self.state.file.is_some() && id == self.state.id => len,
            _ => {
                let len = self.open_live()?;
                self.state.len = u64::MAX; // force a tail read
                len
            }
        };
        if len != self.state.len {
            len = self.reread_head(len)?;
        }
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let result = self.seal_and_write(&mut out, bodies, ends, len);
        self.out = out;
        result
    }

    /// Seals each body onto the chain into `out` and writes `out` at `len`, rotating first when a line would take
    /// the file past `max_bytes` (the lines before it go to the old file).
    fn seal_and_write(
        &mut self,
        out: &mut Vec<u8>,
        bodies: &[u8],
        ends: &[usize],
        mut len: u64,
    ) -> Result<(), AuditError> {
        let key = self.cfg.key.clone();
        let mut start = 0;
        for (i, &end) in ends.iter().enumerate() {
            let body = &bodies[start..end];
            start = end;
            let seq = self.next_seq()?;
            let at = out.len();
            let link = seal_into(out, body, seq, &self.state.last_link, key.as_ref());
            let line_len = (out.len() - at) as u64;
            let before = len + at as u64;
            if before > 0 && before + line_len > self.cfg.max_bytes {
                // Rotate first: if the rename fails, nothing more of this batch is written.
                if at > 0 {
                    self.write_at(&out[..at], len)?;
                    self.written = i;
                    if self.cfg.fsync != Fsync::Never {
                        self.sync()?;
                        self.written = i;
                    }
                }
                if self.state.checkpoint_seq < self.state.last_seq {
                    self.checkpoint();
                }
                self.rotate()?;
                len = self.open_live()?;
                out.drain(..at);
            }
            self.state.last_seq = seq;
            // In place: the link's 64 digits fit the capacity the String already has.
            self.state.last_link.clear();
            self.state.last_link.push_str(link.as_str());
            self.state.last_keyed = key.is_some();
        }
        self.write_at(out, len)?;
        self.written = ends.len();
        if self.state.last_seq - self.state.checkpoint_seq >= self.cfg.checkpoint_every {
            self.checkpoint();
        }
        Ok(())
    }

    fn write_at(&mut self, bytes: &[u8], len: u64) -> Result<(), AuditError> {
        let file = self.state.file.as_mut().expect("opened above");
        write_whole(file, len, bytes)
            .map_err(|e| AuditError::new(format!("audit log {}: {e}", self.cfg.path.display())))?;
        self.state.len = len + bytes.len() as u64;
        Ok(())
    }

    fn next_seq(&self) -> Result<u64, AuditError> {
        self.state.last_seq.checked_add(1).ok_or_else(|| {
            AuditError::new(format!(
                "the audit log {} ends at the largest possible seq; move it aside to start a new chain",
                self.cfg.path.display()
            ))
        })
    }

    /// Reads the chain's head (another process wrote, or the file is newly opened), checks it against the newest
    /// checkpoint and the key, and repairs a torn tail. Returns the file's length after that.
    fn reread_head(&mut self, len: u64) -> Result<u64, AuditError> {
        let file = self.state.file.as_mut().expect("opened by the caller");
        let tail = read_tail(file, &self.cfg.path)?;
        let (seq, link, keyed) = match tail.last {
            Some(head) => head,
            None => self.chain_head_from_rotated()?,
        };
        let checkpoint = match &self.cfg.checkpoint {
            Some(cp) => checkpoint::read_last(cp)?,
            None => None,
        };
        if let Some((cseq, chash)) = &checkpoint {
            if *cseq > seq || (*cseq == seq && *chash != link) {
                return Err(AuditError::new(format!(
                    "the audit log {} ends at seq {seq}, but its checkpoint file {} records seq {cseq}: lines were \
                     removed. Run `agentguard audit verify {}`; to start a new chain on purpose, move the log, its \
                     rotated files and the checkpoint file aside",
                    self.cfg.path.display(),
                    self.cfg.checkpoint.as_deref().unwrap_or(Path::new("")).display(),
                    self.cfg.path.display()
                )));
            }
        }
        if keyed && self.cfg.key.is_none() {
            return Err(AuditError::new(format!(
                "the audit log {} is keyed (its last line carries a MAC) and this writer has no key: give it the key \
                 (JsonlAudit::key, or {} for the default log)",
                self.cfg.path.display(),
                super::KEY_FILE_ENV
            )));
        }
        self.state.last_seq = seq;
        self.state.last_link = link;
        self.state.last_keyed = keyed;
        self.state.checkpoint_seq = checkpoint.map_or(0, |(cseq, _)| cseq);
        match tail.torn {
            None => Ok(len),
            Some(torn) => self.repair(torn),
        }
    }

    /// Cuts off a torn tail and records that in a `repair` line. If the repair line cannot be written (a full
    /// disk), the torn bytes are put back, so that nothing is lost unrecorded, and the next write tries again.
    fn repair(&mut self, torn: Torn) -> Result<u64, AuditError> {
        let sha256 = hex(&Sha256::digest(&torn.bytes));
        let head = String::from_utf8_lossy(&torn.bytes[..torn.bytes.len().min(200)]).into_owned();
        let seq = self.next_seq()?;
        let line = seal(
            &repair_body(torn.bytes.len() as u64, &sha256, &head)?,
            seq,
            &self.state.last_link,
            self.cfg.key.as_ref(),
        );
        let file = self.state.file.as_mut().expect("opened by the caller");
        let what = format!(
            "the audit log {} ends in a torn line ({} bytes without a newline, SHA-256 {sha256})",
            self.cfg.path.display(),
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
        self.state.last_seq = seq;
        self.state.last_link = line.link;
        self.state.last_keyed = self.cfg.key.is_some();
        Ok(torn.at + line.line.len() as u64)
    }

    /// Hands a checkpoint of the newest line to the checkpoint thread, which flushes the log to disk and then appends
    /// it: an `fdatasync` takes milliseconds on a busy disk, and no call waits for it. A failure there is reported
    /// on stderr; the line itself was written, and the next checkpoint covers it.
    fn checkpoint(&mut self) {
        let Some(path) = &self.cfg.checkpoint else { return };
        let Some(log) = self.state.file.as_ref().and_then(|f| f.try_clone().ok()) else {
            return;
        };
        if self.checkpointer.is_none() {
            match Checkpointer::start(path.clone(), self.cfg.lock_path(), self.cfg.lock_timeout) {
                Ok(started) => self.checkpointer = Some(started),
                Err(e) => {
                    report!(
                        "agentguard: cannot start the audit checkpoint thread ({e}); the line was written, and the \
                         next line tries again"
                    );
                    return;
                }
            }
        }
        let Some(checkpointer) = &self.checkpointer else { return };
        checkpointer.submit(Job {
            log,
            seq: self.state.last_seq,
            link: self.state.last_link.clone(),
        });
        self.state.checkpoint_seq = self.state.last_seq;
    }

    /// The chain's head when the live file has no complete line: the last line of the newest rotated file, or
    /// genesis.
    fn chain_head_from_rotated(&self) -> Result<(u64, String, bool), AuditError> {
        match rotated_files(&self.cfg.path)?.last() {
            Some(newest) => {
                let mut f =
                    File::open(newest).map_err(|e| AuditError::io(format!("cannot open {}", newest.display()), e))?;
                let tail = read_tail(&mut f, newest)?;
                if tail.torn.is_some() {
                    return Err(AuditError::new(format!(
                        "the rotated audit log {} ends in a torn line; run `agentguard audit verify {}`",
                        newest.display(),
                        self.cfg.path.display()
                    )));
                }
                Ok(tail.last.unwrap_or_else(|| (0, GENESIS.to_owned(), false)))
            }
            None => Ok((0, GENESIS.to_owned(), false)),
        }
    }

    fn rotate(&self) -> Result<(), AuditError> {
        let next = rotated_files(&self.cfg.path)?
            .last()
            .and_then(|p| rotation_index(&self.cfg.path, p))
            .unwrap_or(0)
            + 1;
        let target = sibling(&self.cfg.path, &format!("{next:06}"));
        fs::rename(&self.cfg.path, &target)
            .map_err(|e| AuditError::io(format!("cannot rotate audit log to {}", target.display()), e))
    }
}

impl Drop for Writer {
    /// Releases a leased lock, then waits for the checkpoints handed to the checkpoint thread to be written (it
    /// takes the lock to write them).
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            let _ = held.lock.unlock();
        }
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.finish();
        }
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
