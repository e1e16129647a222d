//! [`verify`]: checks a chain, from the files of a log (with its rotated files) or from a table's rows.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::chain::ChainWalker;
use super::jsonl::{rotated_files, rotation_index, sibling};

/// What [`verify`] found in a chain that holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The files read, oldest first.
    pub files: Vec<PathBuf>,
    /// How many lines were checked.
    pub lines: u64,
    /// The first line's `seq` (1 unless older rotated files were removed).
    pub first_seq: Option<u64>,
    /// The last line's `seq`.
    pub last_seq: Option<u64>,
}

/// Where and how a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    /// The file holding the first bad line.
    pub file: PathBuf,
    /// Its line number in that file, from 1 (0 when the file itself could not be read).
    pub line: u64,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.problem)
    }
}

impl std::error::Error for VerifyError {}

/// Checks the chain of the audit log at `path` and of its rotated files (`<path>.000001`, …), oldest first.
///
/// Returns the first line that was edited, inserted, deleted, moved or torn. Lines removed from the very end of
/// the newest file, or whole oldest files removed, cannot be detected from the files alone (a chain has no memory of
/// its future); compare [`VerifyReport::last_seq`] with a copy kept elsewhere to catch that. The chain is not keyed:
/// someone who can rewrite the whole file can recompute every hash, so keep a copy of the latest hash elsewhere if
/// that is in your threat model. Safe to run while writers append and rotate: it reads a snapshot taken under a
/// shared lock.
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, VerifyError> {
    let path = path.as_ref();
    let at = |line: u64, problem: String| VerifyError {
        file: path.to_path_buf(),
        line,
        problem,
    };
    // A consistent snapshot: under a shared lock (writers take it exclusively), list the files, open them and note
    // their lengths. Reading happens after the lock is released; open handles survive renames, and bytes appended
    // later are past the noted length.
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(sibling(path, "lock"))
        .ok();
    if let Some(lock) = &lock {
        let _ = lock.lock_shared();
    }
    let snapshot = (|| {
        let mut files = rotated_files(path).map_err(|e| at(0, e.to_string()))?;
        if path.exists() || files.is_empty() {
            files.push(path.to_path_buf());
        }
        files
            .into_iter()
            .map(|file| {
                let f = File::open(&file).map_err(|e| VerifyError {
                    file: file.clone(),
                    line: 0,
                    problem: format!("cannot open: {e}"),
                })?;
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                Ok((file, f, len))
            })
            .collect::<Result<Vec<_>, VerifyError>>()
    })();
    if let Some(lock) = &lock {
        let _ = lock.unlock();
    }
    let snapshot = snapshot?;
    // The chain must start at seq 1 unless older rotated files were removed (then the oldest is not .000001).
    let starts_whole = snapshot
        .first()
        .is_some_and(|(f, _, _)| f == path || rotation_index(path, f) == Some(1));
    let files: Vec<PathBuf> = snapshot.iter().map(|(f, _, _)| f.clone()).collect();
    let mut walker = ChainWalker::default();
    for (file, f, len) in snapshot {
        let mut reader = BufReader::new(f.take(len));
        let mut buf = Vec::new();
        let mut n = 0u64;
        loop {
            buf.clear();
            let read = reader.read_until(b'\n', &mut buf).map_err(|e| VerifyError {
                file: file.clone(),
                line: n + 1,
                problem: format!("cannot read: {e}"),
            })?;
            if read == 0 {
                break;
            }
            n += 1;
            let bad = |problem: String| VerifyError {
                file: file.clone(),
                line: n,
                problem,
            };
            let Some(line) = buf.strip_suffix(b"\n") else {
                return Err(bad("torn line: no newline at the end (a write was cut short)".into()));
            };
            walker
                .step(
                    line,
                    starts_whole,
                    ", and no older rotated file is missing: lines were deleted from the start",
                )
                .map_err(bad)?;
        }
    }
    Ok(report(files, &walker))
}

/// Verifies a chain given as lines (from a table rather than files); `source` names it in errors, whose line
/// numbers count from 1.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))] // used by the PostgreSQL audit
pub(crate) fn verify_lines<'a>(
    source: &str,
    lines: impl IntoIterator<Item = &'a str>,
) -> Result<VerifyReport, VerifyError> {
    let mut walker = ChainWalker::default();
    for (n, line) in lines.into_iter().enumerate() {
        walker
            .step(line.as_bytes(), true, ": rows were deleted from the start")
            .map_err(|problem| VerifyError {
                file: PathBuf::from(source),
                line: n as u64 + 1,
                problem,
            })?;
    }
    Ok(report(vec![PathBuf::from(source)], &walker))
}

fn report(files: Vec<PathBuf>, walker: &ChainWalker) -> VerifyReport {
    let (lines, first_seq, last_seq) = walker.totals();
    VerifyReport {
        files,
        lines,
        first_seq,
        last_seq,
    }
}
