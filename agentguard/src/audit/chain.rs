//! The chain: how a record becomes a sealed line (`seq`, `prev`, `hash`), and how one line is checked against the
//! one before it. Shared by the file writer, the PostgreSQL audit table and [`verify`](super::verify).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AuditError, AuditKey, VerifyErrorKind};
use crate::params::{hex, hex_into, is_lower_hex};

/// The `prev` of the first line of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain link of a sealed line (its `hash`, or its `mac` when keyed) and whether it is keyed, if the line ends
/// in a well-formed one. Reads the tail only; [`check_line`] is what checks it.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))] // used by the PostgreSQL audit
pub(crate) fn line_link(line: &str) -> Option<(String, bool)> {
    let tail = split_tail(line.trim_end().as_bytes())?;
    Some((tail.link.to_owned(), tail.keyed))
}

/// The body of a `repair` line: the writer found a torn tail (a line cut short by a crash or a full disk), removed
/// it, and says so here, with the size and SHA-256 of the bytes it removed and their start (at most 200 bytes, as
/// text).
pub(crate) fn repair_body(removed_bytes: u64, removed_sha256: &str, removed_head: &str) -> Result<Vec<u8>, AuditError> {
    #[derive(Serialize)]
    struct Repair<'a> {
        ts: Timestamp,
        event: &'static str,
        detail: &'static str,
        removed_bytes: u64,
        removed_sha256: &'a str,
        removed_head: &'a str,
    }
    serde_json::to_vec(&Repair {
        ts: Timestamp(SystemTime::now()),
        event: "repair",
        detail: "removed a torn tail: a write was cut short (crash or full disk) before its newline",
        removed_bytes,
        removed_sha256,
        removed_head,
    })
    .map_err(|e| AuditError::new(format!("cannot serialize audit repair record: {e}")))
}

/// A line ready to append, and its chain link (its hash or MAC: the next line's `prev`).
pub(crate) struct Sealed {
    pub(crate) line: String,
    pub(crate) link: String,
}

/// A chain link held inline: 64 lowercase hex digits (a line's SHA-256, or its HMAC-SHA256 when keyed).
#[derive(Clone, Copy)]
pub(crate) struct Link([u8; 64]);

impl Link {
    fn of(digest: &[u8]) -> Link {
        let mut hex = [0u8; 64];
        hex_into(digest, &mut hex);
        Link(hex)
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

/// [`seal`] appended to `out` (the file sink seals a batch of lines into one buffer): returns the line's link. The
/// same bytes as `seal`, without its allocations (the batch's writer runs this once per line, one line after the
/// other).
pub(crate) fn seal_into(out: &mut Vec<u8>, body: &[u8], seq: u64, prev: &str, key: Option<&AuditKey>) -> Link {
    // The bodies are serde_json's output (UTF-8, one object): the braces are bytes, no text check is needed.
    debug_assert!(std::str::from_utf8(body).is_ok());
    let inner = body
        .strip_prefix(b"{")
        .and_then(|b| b.strip_suffix(b"}"))
        .unwrap_or(b"");
    let at = out.len();
    out.extend_from_slice(b"{\"seq\":");
    push_decimal(out, seq);
    if !inner.is_empty() {
        out.push(b',');
        out.extend_from_slice(inner);
    }
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(prev.as_bytes());
    if let Some(key) = key {
        out.extend_from_slice(b"\",\"kid\":\"");
        out.extend_from_slice(key.id().as_bytes());
    }
    out.extend_from_slice(b"\"}");
    let (link, field): (Link, &[u8]) = match key {
        Some(key) => (Link::of(&key.mac(&out[at..])), b",\"mac\":\""),
        None => (Link::of(&Sha256::digest(&out[at..])), b",\"hash\":\""),
    };
    out.pop(); // the closing brace
    out.extend_from_slice(field);
    out.extend_from_slice(&link.0);
    out.extend_from_slice(b"\"}\n");
    link
}

/// `n`'s decimal digits appended to `out`.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `{"ts":…}` → `{"seq":N,"ts":…,"prev":"…","hash":"…"}\n`, or with a key
/// `{"seq":N,"ts":…,"prev":"…","kid":"…","mac":"…"}\n`. The hash (or MAC) covers the line up to that last field,
/// with a closing brace in its place.
pub(crate) fn seal(body: &[u8], seq: u64, prev: &str, key: Option<&AuditKey>) -> Sealed {
    let body = std::str::from_utf8(body).unwrap_or("{}");
    let inner = body.strip_prefix('{').and_then(|b| b.strip_suffix('}')).unwrap_or("");
    let mut covered = String::with_capacity(body.len() + 140);
    covered.push_str("{\"seq\":");
    let _ = write!(covered, "{seq}"); // writing to a String cannot fail
    if !inner.is_empty() {
        covered.push(',');
        covered.push_str(inner);
    }
    covered.push_str(",\"prev\":\"");
    covered.push_str(prev);
    if let Some(key) = key {
        covered.push_str("\",\"kid\":\"");
        covered.push_str(key.id());
    }
    covered.push_str("\"}");
    let (link, field) = match key {
        Some(key) => (key.mac_hex(covered.as_bytes()), ",\"mac\":\""),
        None => (hex(&Sha256::digest(covered.as_bytes())), ",\"hash\":\""),
    };
    covered.pop(); // the closing brace
    covered.push_str(field);
    covered.push_str(&link);
    covered.push_str("\"}\n");
    Sealed { line: covered, link }
}

/// 64 lowercase hex digits: a SHA-256 or HMAC-SHA256 in hex.
pub(crate) fn is_hash(s: &str) -> bool {
    is_lower_hex(s, 64)
}

/// UTC time as RFC 3339 with milliseconds.
pub(super) struct Timestamp(pub(super) SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match rfc3339_fixed(self.0) {
            Some(text) => s.serialize_str(std::str::from_utf8(&text).expect("ASCII digits and punctuation")),
            None => s.collect_str(&Rfc3339(self.0)),
        }
    }
}

#[cfg(test)]
fn format_rfc3339(t: SystemTime) -> String {
    Rfc3339(t).to_string()
}

/// Displays a time as RFC 3339 UTC with milliseconds (written straight into the line, no `String` in between).
struct Rfc3339(SystemTime);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match rfc3339_fixed(self.0) {
            Some(text) => f.write_str(std::str::from_utf8(&text).expect("ASCII digits and punctuation")),
            None => {
                let c = Civil::of(self.0);
                write!(
                    f,
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                    c.year, c.month, c.day, c.hour, c.minute, c.second, c.milli
                )
            }
        }
    }
}

/// A UTC time's calendar fields.
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: u64,
    minute: u64,
    second: u64,
    milli: u32,
}

impl Civil {
    fn of(t: SystemTime) -> Civil {
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
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: rem / 3600,
            minute: (rem / 60) % 60,
            second: rem % 60,
            milli: d.subsec_millis(),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` written digit by digit (the line's hot path: `write!` cost more than the rest of the
/// timestamp), or `None` for a year past 9999, which [`Rfc3339`] writes with more digits.
pub(super) fn rfc3339_fixed(t: SystemTime) -> Option<[u8; 24]> {
    let c = Civil::of(t);
    let year = u64::try_from(c.year).ok().filter(|y| *y <= 9999)?;
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, c.month as u64);
    put(8, 2, c.day as u64);
    put(11, 2, c.hour);
    put(14, 2, c.minute);
    put(17, 2, c.second);
    put(20, 3, u64::from(c.milli));
    Some(text)
}

#[derive(Deserialize)]
struct ChainFields {
    seq: u64,
    prev: String,
    hash: Option<String>,
    mac: Option<String>,
    kid: Option<String>,
    event: Option<String>,
}

/// The last field of a sealed line, read from its bytes: `,"hash":"<64 hex>"}` or `,"mac":"<64 hex>"}`.
struct Tail<'a> {
    /// Where the last field starts: the hash or MAC covers `line[..cut]` followed by `}`.
    cut: usize,
    link: &'a str,
    keyed: bool,
}

fn split_tail(line: &[u8]) -> Option<Tail<'_>> {
    const HASH: &[u8] = b",\"hash\":\"";
    const MAC: &[u8] = b",\"mac\":\"";
    let end = line.len().checked_sub(2)?;
    if &line[end..] != b"\"}" {
        return None;
    }
    let start = end.checked_sub(64)?;
    let link = std::str::from_utf8(&line[start..end]).ok().filter(|l| is_hash(l))?;
    let (cut, keyed) = if line[..start].ends_with(HASH) {
        (start - HASH.len(), false)
    } else if line[..start].ends_with(MAC) {
        (start - MAC.len(), true)
    } else {
        return None;
    };
    Some(Tail { cut, link, keyed })
}

/// What kind of fault a line has, and what to say about it.
#[derive(Debug)]
pub(crate) struct LineFault {
    pub(crate) kind: VerifyErrorKind,
    pub(crate) problem: String,
}

impl LineFault {
    fn tampered(problem: impl Into<String>) -> Self {
        LineFault {
            kind: VerifyErrorKind::Tampered,
            problem: problem.into(),
        }
    }
}

/// A line that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    pub(crate) seq: u64,
    /// Its hash or MAC.
    pub(crate) link: String,
    /// The id of the key that sealed it, if keyed.
    pub(crate) kid: Option<String>,
    /// A `repair` line (the writer removed a torn tail before it).
    pub(crate) repair: bool,
}

/// Checks one line (without its newline) against the previous (seq, link), with the keys that may have sealed it.
pub(crate) fn check_line(line: &[u8], prev: Option<&(u64, String)>, keys: &[AuditKey]) -> Result<Checked, LineFault> {
    let text = std::str::from_utf8(line).map_err(|_| LineFault::tampered("not UTF-8"))?;
    let fields: ChainFields =
        serde_json::from_str(text).map_err(|e| LineFault::tampered(format!("not an audit record: {e}")))?;
    let tail = split_tail(line).ok_or_else(|| LineFault::tampered("the hash (or mac) is not the last field"))?;
    let covered = format!("{}}}", &text[..tail.cut]); // cut is before an ASCII comma: a char boundary
    let seq = fields.seq;
    let kid = if tail.keyed {
        if fields.mac.as_deref() != Some(tail.link) || fields.hash.is_some() {
            return Err(LineFault::tampered("a keyed line must carry one mac and no hash"));
        }
        let kid = fields
            .kid
            .filter(|k| is_lower_hex(k, 16))
            .ok_or_else(|| LineFault::tampered("a keyed line without a well-formed key id (kid)"))?;
        let Some(key) = keys.iter().find(|k| k.id() == kid) else {
            if keys.is_empty() {
                return Err(LineFault {
                    kind: VerifyErrorKind::KeyNeeded,
                    problem: format!(
                        "seq {seq} is keyed (key id {kid}) and no key was given: pass the audit key to check it"
                    ),
                });
            }
            let given: Vec<&str> = keys.iter().map(AuditKey::id).collect();
            return Err(LineFault::tampered(format!(
                "seq {seq} is sealed with key id {kid}, not with the key given (id {}): if the key was never \
                 changed, this line was forged; otherwise give the key it was written with too",
                given.join(", ")
            )));
        };
        if key.mac_hex(covered.as_bytes()) != tail.link {
            return Err(LineFault::tampered(format!(
                "content does not match its MAC (seq {seq}): the line was edited, or written without the key"
            )));
        }
        Some(kid)
    } else {
        if fields.hash.as_deref() != Some(tail.link) || fields.mac.is_some() || fields.kid.is_some() {
            return Err(LineFault::tampered(
                "an unkeyed line must carry one hash and no mac or kid",
            ));
        }
        if hex(&Sha256::digest(covered.as_bytes())) != tail.link {
            return Err(LineFault::tampered(format!(
                "content does not match its hash (seq {seq}): the line was edited"
            )));
        }
        None
    };
    match prev {
        None => {
            if seq == 1 && fields.prev != GENESIS {
                return Err(LineFault::tampered("seq 1 does not start from the genesis hash"));
            }
        }
        Some((prev_seq, prev_link)) => {
            if Some(seq) != prev_seq.checked_add(1) {
                return Err(LineFault::tampered(format!(
                    "expected seq {} after seq {prev_seq}, found seq {seq}: lines were deleted, inserted or reordered",
                    u128::from(*prev_seq) + 1,
                )));
            }
            if &fields.prev != prev_link {
                return Err(LineFault::tampered(format!(
                    "prev does not match the hash of seq {prev_seq}: the chain was broken here"
                )));
            }
        }
    }
    Ok(Checked {
        seq,
        link: tail.link.to_owned(),
        kid,
        repair: fields.event.as_deref() == Some("repair"),
    })
}

/// Walks a chain line by line, oldest first, checking each line against the one before: the one chain checker that
/// file logs ([`verify`](super::verify)) and the PostgreSQL audit table share.
#[derive(Debug)]
pub(crate) struct ChainWalker<'k> {
    keys: &'k [AuditKey],
    prev: Option<(u64, String)>,
    first_seq: Option<u64>,
    lines: u64,
    /// The seq of the first keyed line: every line after it must be keyed too.
    first_keyed: Option<u64>,
    repairs: u64,
}

impl<'k> ChainWalker<'k> {
    /// A walker checking MACs with `keys` (none: an unkeyed chain).
    pub(crate) fn new(keys: &'k [AuditKey]) -> Self {
        ChainWalker {
            keys,
            prev: None,
            first_seq: None,
            lines: 0,
            first_keyed: None,
            repairs: 0,
        }
    }

    /// Checks the next line. `whole` says the walk starts at the chain's beginning (nothing older was removed), so
    /// its first line must be seq 1; `start_hint` finishes the message when it is not.
    pub(crate) fn step(&mut self, line: &[u8], whole: bool, start_hint: &str) -> Result<Checked, LineFault> {
        let checked = check_line(line, self.prev.as_ref(), self.keys)?;
        let seq = checked.seq;
        if self.prev.is_none() && whole && seq != 1 {
            return Err(LineFault::tampered(format!(
                "the chain starts at seq {seq}, not 1{start_hint}"
            )));
        }
        match (checked.kid.is_some(), self.first_keyed) {
            (true, None) => self.first_keyed = Some(seq),
            (false, Some(first)) => {
                return Err(LineFault::tampered(format!(
                    "seq {seq} is unkeyed after keyed lines (from seq {first}): it was written by someone without \
                     the key"
                )))
            }
            _ => {}
        }
        self.first_seq.get_or_insert(seq);
        self.lines += 1;
        self.repairs += u64::from(checked.repair);
        self.prev = Some((seq, checked.link.clone()));
        Ok(checked)
    }

    /// The check after the last line: with a key, a chain with lines must have keyed ones (else it was written, or
    /// rewritten, without the key).
    pub(crate) fn finish(&self) -> Result<(), LineFault> {
        if !self.keys.is_empty() && self.lines > 0 && self.first_keyed.is_none() {
            return Err(LineFault::tampered(
                "a key was given but no line carries a MAC: the log was written without the key, or rewritten by \
                 someone without it",
            ));
        }
        Ok(())
    }

    /// How many lines were checked, the first seq, the last, whether any was keyed, and how many were repairs.
    pub(crate) fn totals(&self) -> Totals {
        Totals {
            lines: self.lines,
            first_seq: self.first_seq,
            last_seq: self.prev.as_ref().map(|(seq, _)| *seq),
            keyed: self.first_keyed.is_some(),
            repairs: self.repairs,
        }
    }
}

/// What a walk counted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) lines: u64,
    pub(crate) first_seq: Option<u64>,
    pub(crate) last_seq: Option<u64>,
    pub(crate) keyed: bool,
    pub(crate) repairs: u64,
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
