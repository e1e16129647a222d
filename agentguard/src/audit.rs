//! The audit trail: one hash-chained JSON line per call, a rotating file sink, and [`verify`].
//!
//! # Line format
//!
//! Each line is one JSON object:
//!
//! ```text
//! {"seq":7,"ts":"2026-11-25T13:40:02.117Z","event":"call","tool":"delete_file","decision":"approved",
//!  "reason":null,"risk":"IRREVERSIBLE - cannot be undone","params":{"path":"notes.txt"},
//!  "params_digest":"5f1c…","agent_id":"bot","session_id":null,"request_id":"3f9c…","actor":"alice",
//!  "detail":null,"prev":"<hash of line 6>","hash":"<sha256 of this line without its hash field>"}
//! ```
//!
//! `hash` is the SHA-256 (hex) of the line's bytes up to and excluding `,"hash":…`, with the closing `}` in its
//! place; that text includes `prev`, the previous line's hash (64 zeros before the first line). `seq` counts from 1.
//! Editing, deleting, inserting or reordering lines breaks the chain at the first line touched, and [`verify`] names
//! it. The chain carries on across rotated files.

use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::params::{hex, ParamsDigest};
use crate::request::RequestId;
use agentguard_classify::Risk;

/// The `prev` of the first line of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Default size at which the file sink rotates: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// What happened to a call, as recorded in the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditDecision {
    /// Not gated: ran without asking (safe name, or listed in `safe_tools`).
    Allowed,
    /// Gated and approved: ran.
    Approved,
    /// Gated and denied by a person.
    Denied,
    /// Gated and blocked without a person's "no": approver failure, params too large, store down, …
    Blocked,
    /// Gated and unanswered before the deadline.
    Expired,
    /// Not a call: the `on_request` notifier failed (the request stayed parked).
    NotifierError,
}

impl AuditDecision {
    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Allowed => "allowed",
            AuditDecision::Approved => "approved",
            AuditDecision::Denied => "denied",
            AuditDecision::Blocked => "blocked",
            AuditDecision::Expired => "expired",
            AuditDecision::NotifierError => "notifier_error",
        }
    }
}

/// One audit record, as handed to an [`AuditSink`]. `params` are already redacted.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord<'a> {
    /// `call` for a tool call, `notifier` for a failed `on_request`.
    pub event: &'a str,
    /// The tool.
    pub tool: &'a str,
    /// What happened.
    pub decision: AuditDecision,
    /// The deny reason code, when it did not run.
    pub reason: Option<&'a str>,
    /// Why it was gated.
    pub risk: Option<Risk>,
    /// The params, redacted (or a note that they were too large to record).
    pub params: Option<&'a Value>,
    /// SHA-256 of the real params' canonical JSON.
    pub params_digest: Option<&'a ParamsDigest>,
    /// Who was acting.
    pub agent_id: Option<&'a str>,
    /// Which run.
    pub session_id: Option<&'a str>,
    /// The approval request, when one was made.
    pub request_id: Option<&'a RequestId>,
    /// Who decided.
    pub actor: Option<&'a str>,
    /// More: the approver's note, an error message.
    pub detail: Option<&'a str>,
}

impl<'a> AuditRecord<'a> {
    /// A record with only the tool and decision set.
    pub fn new(tool: &'a str, decision: AuditDecision) -> Self {
        AuditRecord {
            event: "call",
            tool,
            decision,
            reason: None,
            risk: None,
            params: None,
            params_digest: None,
            agent_id: None,
            session_id: None,
            request_id: None,
            actor: None,
            detail: None,
        }
    }
}

/// An audit record could not be written.
#[derive(Debug)]
pub struct AuditError {
    message: String,
    source: Option<io::Error>,
}

impl AuditError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        AuditError {
            message: message.into(),
            source: None,
        }
    }

    fn io(message: impl Into<String>, source: io::Error) -> Self {
        AuditError {
            message: message.into(),
            source: Some(source),
        }
    }
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{}: {}", self.message, e),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for AuditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// Somewhere audit records go. A gated call whose record cannot be written does not run.
pub trait AuditSink: Send + Sync + fmt::Debug + 'static {
    /// Writes one record durably enough for this sink, or says why not.
    fn record(&self, record: &AuditRecord<'_>) -> Result<(), AuditError>;
}

/// The file sink: hash-chained JSON lines, size-based rotation, safe across threads and processes.
///
/// Writers in one process share a mutex; writers in several processes take an exclusive lock on `<path>.lock` (an
/// OS file lock, released by the OS if a process dies) around each line, re-read the chain's tail when another
/// process wrote since, and write each line with a single `write` on a file opened for append. When the file passes
/// `max_bytes` it is renamed `<path>.000001`, `<path>.000002`, … (higher is newer) and a new `<path>` continues the
/// chain. Rotated files are never deleted by agentguard.
///
/// ```no_run
/// use agentguard::JsonlAudit;
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

    /// The default sink: `$AGENTGUARD_LOG` if set, else `agentguard.log` in the working directory.
    pub fn from_env() -> Self {
        Self::new(std::env::var_os("AGENTGUARD_LOG").map_or_else(|| PathBuf::from("agentguard.log"), PathBuf::from))
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

/// A record's JSON with its timestamp, before `seq`, `prev` and `hash` are added.
pub(crate) fn record_body(record: &AuditRecord<'_>) -> Result<Vec<u8>, AuditError> {
    // Most lines are a few hundred bytes: one allocation instead of a series of doublings.
    let mut body = Vec::with_capacity(512);
    serde_json::to_writer(
        &mut body,
        &LineBody {
            ts: Timestamp(SystemTime::now()),
            record,
        },
    )
    .map_err(|e| AuditError::new(format!("cannot serialize audit record: {e}")))?;
    Ok(body)
}

/// The sealed line (with its newline) for `body` at `seq` after `prev`.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn seal_line(body: &[u8], seq: u64, prev: &str) -> String {
    seal(body, seq, prev).line
}

/// The `hash` field of a sealed line, if it has a well-formed one.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn line_hash(line: &str) -> Option<String> {
    let tail = line.trim_end().strip_suffix("\"}")?;
    let hash = tail.get(tail.len().checked_sub(64)?..)?;
    is_hash(hash).then(|| hash.to_owned())
}

/// Verifies a chain given as lines (from a table rather than files); `source` names it in errors, whose line
/// numbers count from 1.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn verify_lines<'a>(
    source: &str,
    lines: impl IntoIterator<Item = &'a str>,
) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport {
        files: vec![PathBuf::from(source)],
        lines: 0,
        first_seq: None,
        last_seq: None,
    };
    let mut prev: Option<(u64, String)> = None;
    for (n, line) in lines.into_iter().enumerate() {
        let bad = |problem: String| VerifyError {
            file: PathBuf::from(source),
            line: n as u64 + 1,
            problem,
        };
        let (seq, hash) = check_line(line.as_bytes(), prev.as_ref()).map_err(bad)?;
        if prev.is_none() && seq != 1 {
            return Err(bad(format!(
                "the chain starts at seq {seq}, not 1: rows were deleted from the start"
            )));
        }
        report.first_seq.get_or_insert(seq);
        report.last_seq = Some(seq);
        report.lines += 1;
        prev = Some((seq, hash));
    }
    Ok(report)
}

#[derive(Serialize)]
struct LineBody<'a> {
    ts: Timestamp,
    #[serde(flatten)]
    record: &'a AuditRecord<'a>,
}

struct Sealed {
    line: String,
    hash: String,
}

/// `{"ts":…}` → `{"seq":N,"ts":…,"prev":"…","hash":"…"}\n`.
fn seal(body: &[u8], seq: u64, prev: &str) -> Sealed {
    let body = std::str::from_utf8(body).unwrap_or("{}");
    let inner = body.strip_prefix('{').and_then(|b| b.strip_suffix('}')).unwrap_or("");
    let mut hashed = String::with_capacity(body.len() + 100);
    hashed.push_str("{\"seq\":");
    let _ = write!(hashed, "{seq}"); // writing to a String cannot fail
    if !inner.is_empty() {
        hashed.push(',');
        hashed.push_str(inner);
    }
    hashed.push_str(",\"prev\":\"");
    hashed.push_str(prev);
    hashed.push_str("\"}");
    let hash = hex(&Sha256::digest(hashed.as_bytes()));
    hashed.pop(); // the closing brace
    hashed.push_str(",\"hash\":\"");
    hashed.push_str(&hash);
    hashed.push_str("\"}\n");
    Sealed { line: hashed, hash }
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

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
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

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn rotation_index(base: &Path, candidate: &Path) -> Option<u64> {
    let base_name = base.file_name()?.to_str()?;
    let name = candidate.file_name()?.to_str()?;
    let digits = name.strip_prefix(base_name)?.strip_prefix('.')?;
    (digits.len() >= 6 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Rotated files of `base`, oldest first.
fn rotated_files(base: &Path) -> Result<Vec<PathBuf>, AuditError> {
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

/// UTC time as RFC 3339 with milliseconds.
struct Timestamp(SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_rfc3339(self.0))
    }
}

pub(crate) fn format_rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

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
    let mut report = VerifyReport {
        files: files.clone(),
        lines: 0,
        first_seq: None,
        last_seq: None,
    };
    let mut prev: Option<(u64, String)> = None;
    for (file, f, len) in snapshot {
        let file = &file;
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
            let (seq, hash) = check_line(line, prev.as_ref()).map_err(bad)?;
            if prev.is_none() && starts_whole && seq != 1 {
                return Err(bad(format!(
                    "the chain starts at seq {seq}, not 1, and no older rotated file is missing: lines were \
                     deleted from the start"
                )));
            }
            report.first_seq.get_or_insert(seq);
            report.last_seq = Some(seq);
            report.lines += 1;
            prev = Some((seq, hash));
        }
    }
    Ok(report)
}

#[derive(Deserialize)]
struct ChainFields {
    seq: u64,
    prev: String,
    hash: String,
}

/// Checks one line against the previous (seq, hash); returns its own.
fn check_line(line: &[u8], prev: Option<&(u64, String)>) -> Result<(u64, String), String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    let fields: ChainFields = serde_json::from_str(text).map_err(|e| format!("not an audit record: {e}"))?;
    const TAIL: usize = ",\"hash\":\"\"}".len() + 64;
    let cut = text.len().checked_sub(TAIL).ok_or("line too short to carry a hash")?;
    let bytes = text.as_bytes();
    if !text.is_char_boundary(cut) || &bytes[cut..cut + 9] != b",\"hash\":\"" || !bytes.ends_with(b"\"}") {
        return Err("the hash is not the last field".into());
    }
    let hashed = format!("{}}}", &text[..cut]);
    let actual = hex(&Sha256::digest(hashed.as_bytes()));
    if actual != fields.hash {
        return Err(format!(
            "content does not match its hash (seq {}): the line was edited",
            fields.seq
        ));
    }
    match prev {
        None => {
            if fields.seq == 1 && fields.prev != GENESIS {
                return Err("seq 1 does not start from the genesis hash".into());
            }
        }
        Some((prev_seq, prev_hash)) => {
            if fields.seq != prev_seq + 1 {
                return Err(format!(
                    "expected seq {} after seq {}, found seq {}: lines were deleted, inserted or reordered",
                    prev_seq + 1,
                    prev_seq,
                    fields.seq
                ));
            }
            if &fields.prev != prev_hash {
                return Err(format!(
                    "prev does not match the hash of seq {prev_seq}: the chain was broken here"
                ));
            }
        }
    }
    Ok((fields.seq, fields.hash))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let report = verify(audit.path()).unwrap();
        assert_eq!((report.lines, report.first_seq, report.last_seq), (2, Some(1), Some(2)));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_709_210_096_789);
        assert_eq!(format_rfc3339(t), "2024-02-29T12:34:56.789Z");
    }

    #[test]
    fn check_line_rejects_damaged_non_ascii_lines_without_panicking() {
        for n in 30..60 {
            let line = format!(
                "{{\"seq\":1,\"prev\":\"{GENESIS}\",\"hash\":\"{}\",\"x\":\"{}\"}}",
                "0".repeat(64),
                "é".repeat(n)
            );
            assert!(check_line(line.as_bytes(), None).is_err());
        }
    }

    #[test]
    fn sealed_line_hash_covers_everything_but_itself() {
        let s = seal(br#"{"ts":"x","tool":"t"}"#, 3, GENESIS);
        assert!(s.line.starts_with(r#"{"seq":3,"ts":"x","tool":"t","prev":"000"#));
        assert!(s.line.ends_with(&format!(",\"hash\":\"{}\"}}\n", s.hash)));
        let line = s.line.trim_end().as_bytes();
        assert_eq!(check_line(line, Some(&(2, GENESIS.to_owned()))).unwrap().0, 3);
    }
}
