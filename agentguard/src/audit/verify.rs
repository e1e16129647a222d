//! [`verify`]: checks a chain, from the files of a log (with its rotated files) or from a table's rows.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::chain::{ChainWalker, LineFault};
use super::checkpoint;
use super::files::{poll_lock, rotated_files, rotation_index, sibling, Polled};
use super::AuditKey;

/// What [`verify`] found in a chain that holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The files read, oldest first.
    pub files: Vec<PathBuf>,
    /// How many lines were checked.
    pub lines: u64,
    /// The first line's `seq` (1 unless older rotated files were removed).
    pub first_seq: Option<u64>,
    /// The last line's `seq`.
    pub last_seq: Option<u64>,
    /// Whether the lines carry MACs (a keyed log), all checked with the key given.
    pub keyed: bool,
    /// How many `repair` lines the chain has: each says the writer removed a torn tail (a write cut short by a crash
    /// or a full disk), with the size and SHA-256 of what it removed.
    pub repairs: u64,
    /// The newest checkpoint's `seq`, when a checkpoint file was checked and has one.
    pub checkpoint: Option<u64>,
}

/// What kind of fault [`verify`] found: tell a crash from an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VerifyErrorKind {
    /// A line was edited, inserted, deleted or moved, or written without the key in a keyed log.
    Tampered,
    /// The newest lines were removed: the chain ends before its last checkpoint, or a checkpointed line is no
    /// longer the one in the chain (cut back and rewritten).
    Truncated,
    /// The live file's last line has no newline: most likely a write cut short (a crash or a full disk); lines cut
    /// off mid-line by hand look the same, and only the checkpoints tell how many went. The next write removes it and
    /// records a `repair` line; everything before it verified.
    TornTail,
    /// The log is keyed and no key was given. (A line sealed with another key than the one given is
    /// [`Tampered`](VerifyErrorKind::Tampered).)
    KeyNeeded,
    /// A file could not be opened or read.
    Unreadable,
}

impl VerifyErrorKind {
    /// The snake_case name (`tampered`, `truncated`, `torn_tail`, `key_needed`, `unreadable`).
    pub const fn as_str(self) -> &'static str {
        match self {
            VerifyErrorKind::Tampered => "tampered",
            VerifyErrorKind::Truncated => "truncated",
            VerifyErrorKind::TornTail => "torn_tail",
            VerifyErrorKind::KeyNeeded => "key_needed",
            VerifyErrorKind::Unreadable => "unreadable",
        }
    }
}

/// Where and how a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyError {
    /// The file holding the first bad line (the checkpoint file, for [`VerifyErrorKind::Truncated`]).
    pub file: PathBuf,
    /// Its line number in that file, from 1 (0 when the file itself could not be read).
    pub line: u64,
    /// What kind of fault it is.
    pub kind: VerifyErrorKind,
    /// What is wrong with it.
    pub problem: String,
}

impl VerifyError {
    fn new(file: &Path, line: u64, kind: VerifyErrorKind, problem: impl Into<String>) -> Self {
        VerifyError {
            file: file.to_path_buf(),
            line,
            kind,
            problem: problem.into(),
        }
    }

    fn of(file: &Path, line: u64, fault: LineFault) -> Self {
        Self::new(file, line, fault.kind, fault.problem)
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.problem)
    }
}

impl std::error::Error for VerifyError {}

/// Checks the chain of the audit log at `path` and of its rotated files (`<path>.000001`, …), oldest first, and its
/// checkpoint file `<path>.checkpoint` when there is one: `Verify::new(path).run()`. A keyed log needs
/// [`Verify::key`].
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, VerifyError> {
    Verify::new(path.as_ref()).run()
}

/// Options for checking a log: its key, its checkpoint file.
///
/// Finds the first line that was edited, inserted, deleted, moved or torn. With the key of a keyed log, a line
/// forged or re-chained without the key is found too. With a checkpoint file, removing the newest lines is found
/// (back to the last checkpoint; lines after it can go unnoticed). Whole oldest rotated files removed cannot be
/// told from a retention policy and are not reported ([`VerifyReport::first_seq`] says where the chain starts).
/// Safe to run while writers append and rotate: it reads a snapshot taken under a shared lock, which it waits for
/// at most [`lock_timeout`](Verify::lock_timeout) (a process stuck holding it is reported, not waited for).
///
/// ```no_run
/// use agentguard::audit::{AuditKey, Verify};
/// let report = Verify::new("agentguard.log")
///     .key(AuditKey::from_file("/etc/agentguard/audit.key")?)
///     .checkpoint_file("/var/lib/agentguard/agentguard.log.checkpoint")
///     .run()?;
/// println!("intact: {} lines", report.lines);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Verify {
    path: PathBuf,
    keys: Vec<AuditKey>,
    checkpoint: CheckpointChoice,
    lock_timeout: Duration,
}

/// How long [`Verify::run`] waits for the log's lock by default.
pub const VERIFY_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum CheckpointChoice {
    /// `<path>.checkpoint` if it exists.
    Default,
    /// This file, which must exist.
    File(PathBuf),
    Off,
}

impl Verify {
    /// Checks the log at `path`, unkeyed, with `<path>.checkpoint` if it exists.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Verify {
            path: path.into(),
            keys: Vec::new(),
            checkpoint: CheckpointChoice::Default,
            lock_timeout: VERIFY_LOCK_TIMEOUT,
        }
    }

    /// How long to wait for the log's lock before giving up ([`VERIFY_LOCK_TIMEOUT`], 10 s, by default). Writers
    /// hold it for microseconds at a time, or a few milliseconds while they lease it; a lock held longer than this
    /// belongs to a stuck process, and `run` says so ([`VerifyErrorKind::Unreadable`]) instead of waiting for ever.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Checks MACs with this key. Call it again for each key a log was written with, if its key was changed.
    pub fn key(mut self, key: AuditKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Checks against this checkpoint file (which must exist), for a sink whose checkpoints are kept elsewhere
    /// ([`JsonlAudit::checkpoint_file`](super::JsonlAudit::checkpoint_file)).
    pub fn checkpoint_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint = CheckpointChoice::File(path.into());
        self
    }

    /// Ignores checkpoints.
    pub fn no_checkpoint(mut self) -> Self {
        self.checkpoint = CheckpointChoice::Off;
        self
    }

    /// Runs the check.
    pub fn run(&self) -> Result<VerifyReport, VerifyError> {
        let path = self.path.as_path();
        let unreadable = |file: &Path, e: std::io::Error| {
            VerifyError::new(file, 0, VerifyErrorKind::Unreadable, format!("cannot open: {e}"))
        };
        // A consistent snapshot: under a shared lock (writers take it exclusively), list the files, open them and
        // note their lengths. Reading happens after the lock is released; open handles survive renames, and bytes
        // appended later are past the noted length.
        let lock_path = sibling(path, "lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ok();
        if let Some(lock) = &lock {
            // A lock that cannot be taken at all (a file system without `flock`) is read without, as before.
            if let Polled::TimedOut = poll_lock(self.lock_timeout, || lock.try_lock_shared(), || ()) {
                return Err(VerifyError::new(
                    &lock_path,
                    0,
                    VerifyErrorKind::Unreadable,
                    format!(
                        "another process has held the log's lock for more than {:?} (writers hold it for \
                         microseconds at a time): it is likely stuck; stop it and verify again",
                        self.lock_timeout
                    ),
                ));
            }
        }
        let snapshot = (|| {
            let checkpoint = match &self.checkpoint {
                CheckpointChoice::Off => None,
                CheckpointChoice::Default => {
                    let file = sibling(path, "checkpoint");
                    match File::open(&file) {
                        Ok(f) => Some((file, f)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        Err(e) => return Err(unreadable(&file, e)),
                    }
                }
                CheckpointChoice::File(file) => {
                    Some((file.clone(), File::open(file).map_err(|e| unreadable(file, e))?))
                }
            };
            let checkpoint = checkpoint.map(|(file, f)| {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                (file, f, len)
            });
            let mut files = rotated_files(path)
                .map_err(|e| VerifyError::new(path, 0, VerifyErrorKind::Unreadable, e.to_string()))?;
            // No log at all is an error of its own, unless a checkpoint says what it held: then it is a truncation.
            if path.exists() || (files.is_empty() && checkpoint.is_none()) {
                files.push(path.to_path_buf());
            }
            let files = files
                .into_iter()
                .map(|file| {
                    let f = File::open(&file).map_err(|e| unreadable(&file, e))?;
                    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                    Ok((file, f, len))
                })
                .collect::<Result<Vec<_>, VerifyError>>()?;
            Ok((files, checkpoint))
        })();
        if let Some(lock) = &lock {
            let _ = lock.unlock();
        }
        let (snapshot, checkpoint) = snapshot?;
        let mut checkpoints = match checkpoint {
            Some((file, f, len)) => Some(Checkpoints::load(file, f, len)?),
            None => None,
        };
        // The chain must start at seq 1 unless older rotated files were removed (then the oldest is not .000001).
        let starts_whole = snapshot
            .first()
            .is_some_and(|(f, _, _)| f == path || rotation_index(path, f) == Some(1));
        let files: Vec<PathBuf> = snapshot.iter().map(|(f, _, _)| f.clone()).collect();
        let count = snapshot.len();
        let mut walker = ChainWalker::new(&self.keys);
        for (index, (file, f, len)) in snapshot.into_iter().enumerate() {
            let mut reader = BufReader::new(f.take(len));
            let mut buf = Vec::new();
            let mut n = 0u64;
            loop {
                buf.clear();
                let read = reader.read_until(b'\n', &mut buf).map_err(|e| {
                    VerifyError::new(&file, n + 1, VerifyErrorKind::Unreadable, format!("cannot read: {e}"))
                })?;
                if read == 0 {
                    break;
                }
                n += 1;
                let Some(line) = buf.strip_suffix(b"\n") else {
                    if index + 1 < count {
                        return Err(VerifyError::new(
                            &file,
                            n,
                            VerifyErrorKind::Tampered,
                            "a torn line (no newline) at the end of a rotated file: the writer repairs torn lines \
                             before it rotates, so this file was cut short after rotation",
                        ));
                    }
                    // What came before the torn tail must still reach the checkpoints and hold the key.
                    finish(&walker, checkpoints.as_mut(), &file, n)?;
                    return Err(VerifyError::new(
                        &file,
                        n,
                        VerifyErrorKind::TornTail,
                        format!(
                            "torn tail: the last {} bytes have no newline, as when a write is cut short (a crash \
                             or a full disk); every line before them verified (removed newest lines show against the \
                             checkpoints), and the next write removes them and records a repair line",
                            buf.len()
                        ),
                    ));
                };
                let checked = walker
                    .step(
                        line,
                        starts_whole,
                        ", and no older rotated file is missing: lines were deleted from the start",
                    )
                    .map_err(|fault| VerifyError::of(&file, n, fault))?;
                if let Some(cps) = checkpoints.as_mut() {
                    cps.observe(checked.seq, &checked.link)?;
                }
            }
        }
        let last_file = files.last().cloned().unwrap_or_else(|| path.to_path_buf());
        finish(&walker, checkpoints.as_mut(), &last_file, 0)?;
        Ok(report(files, &walker, checkpoints.as_ref()))
    }
}

/// The checks after the last good line: every checkpoint was reached, and a keyed walk met keyed lines.
fn finish(
    walker: &ChainWalker<'_>,
    checkpoints: Option<&mut Checkpoints>,
    file: &Path,
    line: u64,
) -> Result<(), VerifyError> {
    if let Some(cps) = checkpoints {
        cps.finish(walker.totals().last_seq)?;
    }
    walker.finish().map_err(|fault| VerifyError::of(file, line, fault))
}

/// The checkpoints of a log, oldest first, as they are matched against its lines.
struct Checkpoints {
    file: PathBuf,
    /// (seq, hash, line number in the checkpoint file).
    entries: Vec<(u64, String, u64)>,
    /// The next entry to match.
    next: usize,
}

impl Checkpoints {
    fn load(file: PathBuf, f: File, len: u64) -> Result<Self, VerifyError> {
        let mut entries: Vec<(u64, String, u64)> = Vec::new();
        let mut reader = BufReader::new(f.take(len));
        let mut buf = Vec::new();
        let mut n = 0u64;
        loop {
            buf.clear();
            reader.read_until(b'\n', &mut buf).map_err(|e| {
                VerifyError::new(&file, n + 1, VerifyErrorKind::Unreadable, format!("cannot read: {e}"))
            })?;
            n += 1;
            // A last line without a newline is a checkpoint whose write was cut short: it adds nothing.
            let Some(line) = buf.strip_suffix(b"\n") else { break };
            let bad = |problem: String| VerifyError::new(&file, n, VerifyErrorKind::Tampered, problem);
            let (seq, hash) = checkpoint::parse(line).map_err(bad)?;
            if let Some((last, last_hash, _)) = entries.last() {
                if seq < *last || (seq == *last && hash != *last_hash) {
                    return Err(bad(format!(
                        "checkpoint of seq {seq} after one of seq {last}: the checkpoint file was edited, or belongs \
                         to another log"
                    )));
                }
            }
            entries.push((seq, hash, n));
        }
        Ok(Checkpoints { file, entries, next: 0 })
    }

    /// A line of the chain, in order: checkpoints of older lines (in files since removed) are passed over; one of
    /// this line must name it.
    fn observe(&mut self, seq: u64, link: &str) -> Result<(), VerifyError> {
        while let Some((cseq, hash, n)) = self.entries.get(self.next) {
            if *cseq > seq {
                break;
            }
            if *cseq == seq && hash != link {
                return Err(VerifyError::new(
                    &self.file,
                    *n,
                    VerifyErrorKind::Truncated,
                    format!(
                        "the checkpoint of seq {seq} names another line than the chain's seq {seq}: the log was cut \
                         back and rewritten from seq {seq} or before"
                    ),
                ));
            }
            self.next += 1;
        }
        Ok(())
    }

    /// After the last line (seq `last`): no checkpoint may remain unmatched.
    fn finish(&mut self, last: Option<u64>) -> Result<(), VerifyError> {
        match self.entries.get(self.next) {
            None => Ok(()),
            Some((cseq, _, n)) => Err(VerifyError::new(
                &self.file,
                *n,
                VerifyErrorKind::Truncated,
                match last {
                    Some(last) => format!(
                        "the chain ends at seq {last}, but a checkpoint records seq {cseq}: the newest lines (from \
                         seq {} on) were removed",
                        last + 1
                    ),
                    None => {
                        format!("the log has no lines, but a checkpoint records seq {cseq}: its lines were removed")
                    }
                },
            )),
        }
    }
}

/// Verifies a chain given as lines (from a table rather than files); `source` names it in errors, whose line
/// numbers count from 1.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))] // used by the PostgreSQL audit
pub(crate) fn verify_lines<'a>(
    source: &str,
    lines: impl IntoIterator<Item = &'a str>,
    keys: &[AuditKey],
) -> Result<VerifyReport, VerifyError> {
    let source = Path::new(source);
    let mut walker = ChainWalker::new(keys);
    let mut n = 0;
    for line in lines {
        n += 1;
        walker
            .step(line.as_bytes(), true, ": rows were deleted from the start")
            .map_err(|fault| VerifyError::of(source, n, fault))?;
    }
    walker.finish().map_err(|fault| VerifyError::of(source, n, fault))?;
    Ok(report(vec![source.to_path_buf()], &walker, None))
}

fn report(files: Vec<PathBuf>, walker: &ChainWalker<'_>, checkpoints: Option<&Checkpoints>) -> VerifyReport {
    let totals = walker.totals();
    VerifyReport {
        files,
        lines: totals.lines,
        first_seq: totals.first_seq,
        last_seq: totals.last_seq,
        keyed: totals.keyed,
        repairs: totals.repairs,
        checkpoint: checkpoints.and_then(|c| c.entries.last().map(|(seq, _, _)| *seq)),
    }
}
