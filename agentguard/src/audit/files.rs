//! The log's files: reading the chain's tail (and a torn one), the lock, rotated files by index, inode checks.

use super::chain::line_link;
use super::checkpoint::after_last_newline;
use super::*;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The end of a chain file: its last complete line's (seq, link, keyed), and the bytes after it if the file does not
/// end in a newline.
pub(super) struct TailRead {
    pub(super) last: Option<(u64, String, bool)>,
    pub(super) torn: Option<Torn>,
}

/// A torn tail: bytes after the last newline, from offset `at`.
pub(super) struct Torn {
    pub(super) at: u64,
    pub(super) bytes: Vec<u8>,
}

/// A torn write is at most one line; more bytes than this without a newline is not one, and is not repaired.
pub(super) const MAX_TORN: u64 = 64 * 1024 * 1024;

/// Reads the end of a chain file.
pub(super) fn read_tail(file: &mut File, path: &Path) -> Result<TailRead, AuditError> {
    let io_err = |e| AuditError::io(format!("cannot read audit log {}", path.display()), e);
    let len = file.seek(SeekFrom::End(0)).map_err(io_err)?;
    let good = after_last_newline(file, len).map_err(io_err)?;
    let torn = if good < len {
        if len - good > MAX_TORN {
            return Err(AuditError::new(format!(
                "the audit log {} ends in {} bytes without a newline, more than any line: run `agentguard audit \
                 verify {}` and move the file aside to start a new chain",
                path.display(),
                len - good,
                path.display()
            )));
        }
        let mut bytes = vec![0u8; (len - good) as usize];
        file.seek(SeekFrom::Start(good)).map_err(io_err)?;
        file.read_exact(&mut bytes).map_err(io_err)?;
        Some(Torn { at: good, bytes })
    } else {
        None
    };
    if good == 0 {
        return Ok(TailRead { last: None, torn });
    }
    let start = after_last_newline(file, good - 1).map_err(io_err)?;
    let mut line = vec![0u8; (good - 1 - start) as usize];
    file.seek(SeekFrom::Start(start)).map_err(io_err)?;
    file.read_exact(&mut line).map_err(io_err)?;
    let line = String::from_utf8_lossy(&line);
    let damaged = |what: String| {
        AuditError::new(format!(
            "the last line of audit log {} {what}; run `agentguard audit verify {}` and move the file aside to start \
             a new chain",
            path.display(),
            path.display()
        ))
    };
    let fields: TailFields = serde_json::from_str(&line).map_err(|e| damaged(format!("is damaged ({e})")))?;
    let (link, keyed) = line_link(&line).ok_or_else(|| damaged("has a malformed hash".into()))?;
    Ok(TailRead {
        last: Some((fields.seq, link, keyed)),
        torn,
    })
}

#[derive(Deserialize)]
pub(super) struct TailFields {
    pub(super) seq: u64,
}

/// Takes the exclusive lock on `lock` (the file at `path`), waiting at most `timeout` ([`poll_lock`]): a process that
/// hangs while holding it must not hang every call of every other process (the calls fail closed with
/// `audit_unavailable` instead). Returns whether it had to wait for someone other than what `ours` says holds it
/// (asked at each try that finds it taken: the writer's own checkpoint thread).
pub(super) fn lock_within(
    lock: &File,
    path: &Path,
    timeout: std::time::Duration,
    ours: &dyn Fn() -> bool,
) -> Result<bool, AuditError> {
    let mut others = false;
    match poll_lock(timeout, || lock.try_lock(), || others |= !ours()) {
        Polled::Taken => Ok(others),
        Polled::TimedOut => Err(AuditError::new(format!(
            "could not lock {} within {timeout:?}: another process holds it; if that process is stuck, stop it",
            path.display(),
        ))),
        Polled::Failed(e) => Err(AuditError::io(format!("cannot lock {}", path.display()), e)),
    }
}

/// How [`poll_lock`] ended.
pub(super) enum Polled {
    Taken,
    /// Still held by someone else at the deadline.
    TimedOut,
    /// The lock cannot be taken at all (not that it is held).
    Failed(std::io::Error),
}

/// Tries `try_once` until it takes a lock, for at most `timeout`; `busy` is called at each try that finds it held.
///
/// It polls, 50 µs after the first try and then twice as long each time up to 1 ms: a writer that keeps the lock
/// between quick batches (a lease, see the writer) lets it go for at least 1 ms between leases, so polls this close
/// land in that gap most times (during it the writer still takes the lock for each of its batches). A try is one
/// system call: a stuck holder costs about 1,000 of them a second.
pub(super) fn poll_lock(
    timeout: std::time::Duration,
    mut try_once: impl FnMut() -> Result<(), std::fs::TryLockError>,
    mut busy: impl FnMut(),
) -> Polled {
    let give_up = std::time::Instant::now() + timeout;
    let mut pause = std::time::Duration::from_micros(50);
    loop {
        match try_once() {
            Ok(()) => return Polled::Taken,
            Err(std::fs::TryLockError::WouldBlock) => {
                let left = give_up.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Polled::TimedOut;
                }
                busy();
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(std::time::Duration::from_millis(1));
            }
            Err(std::fs::TryLockError::Error(e)) => return Polled::Failed(e),
        }
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
pub(super) fn still_linked(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.nlink() > 0
}

#[cfg(not(unix))]
pub(super) fn still_linked(_meta: &fs::Metadata) -> bool {
    true
}

/// The identity ([`file_id`]) and length of the file at `path`, or `None` if it cannot be read: what the writer
/// checks before each batch (a rotation by another process, lines another process wrote).
///
/// On Linux, one `statx` that asks for the inode and the size only. `fs::metadata` asks for the timestamps too, and
/// since Linux 6.13 (multigrain timestamps) a file whose times were read gets a fine-grained time at its next write,
/// which dirties its inode: with a look before every batch, every batch's `write` cost about twice as much (0.9 →
/// 1.8 µs for a 300-byte append on this project's test machine, ext4).
pub(super) fn path_id_len(path: &Path) -> Option<((u64, u64), u64)> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{makedev, statx, AtFlags, StatxFlags, CWD};
        let wanted = StatxFlags::INO | StatxFlags::SIZE;
        match statx(CWD, path, AtFlags::empty(), wanted) {
            Ok(st) if StatxFlags::from_bits_retain(st.stx_mask).contains(wanted) => {
                return Some(((makedev(st.stx_dev_major, st.stx_dev_minor), st.stx_ino), st.stx_size));
            }
            // A kernel without statx (before 4.11) or one that did not fill the fields asked for: as elsewhere.
            Ok(_) | Err(rustix::io::Errno::NOSYS) => {}
            Err(_) => return None,
        }
    }
    fs::metadata(path).ok().map(|meta| (file_id(&meta), meta.len()))
}

#[cfg(unix)]
pub(super) fn file_id(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
pub(super) fn file_id(meta: &fs::Metadata) -> (u64, u64) {
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

    #[test]
    fn the_per_batch_look_at_the_path_sees_what_metadata_sees_and_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        assert_eq!(path_id_len(&path), None, "no file yet");
        fs::write(&path, b"{\"seq\":1}\n").unwrap();
        let meta = fs::metadata(&path).unwrap();
        let open = File::open(&path).unwrap().metadata().unwrap();
        assert_eq!(path_id_len(&path), Some((file_id(&meta), 10)));
        assert_eq!(
            file_id(&open),
            file_id(&meta),
            "the open file's id, which the writer compares it with"
        );
        // Another process rotates: the path now names another file.
        fs::rename(&path, dir.path().join("audit.log.000001")).unwrap();
        fs::write(&path, b"").unwrap();
        let (id, len) = path_id_len(&path).unwrap();
        assert_ne!(id, file_id(&open));
        assert_eq!(len, 0);
    }
}
