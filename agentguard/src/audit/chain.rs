//! The chain: how a record becomes a sealed line (`seq`, `prev`, `hash`), and how one line is checked against the
//! one before it. Shared by the file writer, the PostgreSQL audit table and [`verify`](super::verify).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AuditError, AuditRecord};
use crate::params::hex;

/// The `prev` of the first line of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

/// The `hash` field of a sealed line, if it has a well-formed one.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))] // used by the PostgreSQL audit
pub(crate) fn line_hash(line: &str) -> Option<String> {
    let tail = line.trim_end().strip_suffix("\"}")?;
    let hash = tail.get(tail.len().checked_sub(64)?..)?;
    is_hash(hash).then(|| hash.to_owned())
}

#[derive(Serialize)]
struct LineBody<'a> {
    ts: Timestamp,
    #[serde(flatten)]
    record: &'a AuditRecord<'a>,
}

/// A line ready to append, and its hash (the next line's `prev`).
pub(crate) struct Sealed {
    pub(crate) line: String,
    pub(crate) hash: String,
}

/// `{"ts":…}` → `{"seq":N,"ts":…,"prev":"…","hash":"…"}\n`.
pub(crate) fn seal(body: &[u8], seq: u64, prev: &str) -> Sealed {
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

pub(crate) fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// UTC time as RFC 3339 with milliseconds.
struct Timestamp(SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_rfc3339(self.0))
    }
}

fn format_rfc3339(t: SystemTime) -> String {
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

#[derive(Deserialize)]
struct ChainFields {
    seq: u64,
    prev: String,
    hash: String,
}

/// Checks one line against the previous (seq, hash); returns its own.
pub(crate) fn check_line(line: &[u8], prev: Option<&(u64, String)>) -> Result<(u64, String), String> {
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

/// Walks a chain line by line, oldest first, checking each line against the one before: the one chain checker that
/// file logs ([`verify`](super::verify)) and the PostgreSQL audit table share.
#[derive(Debug, Default)]
pub(crate) struct ChainWalker {
    prev: Option<(u64, String)>,
    first_seq: Option<u64>,
    lines: u64,
}

impl ChainWalker {
    /// Checks the next line. `whole` says the walk starts at the chain's beginning (nothing older was removed), so
    /// its first line must be seq 1; `start_hint` finishes the message when it is not.
    pub(crate) fn step(&mut self, line: &[u8], whole: bool, start_hint: &str) -> Result<(), String> {
        let (seq, hash) = check_line(line, self.prev.as_ref())?;
        if self.prev.is_none() && whole && seq != 1 {
            return Err(format!("the chain starts at seq {seq}, not 1{start_hint}"));
        }
        self.first_seq.get_or_insert(seq);
        self.lines += 1;
        self.prev = Some((seq, hash));
        Ok(())
    }

    /// How many lines were checked, the first seq and the last.
    pub(crate) fn totals(&self) -> (u64, Option<u64>, Option<u64>) {
        (self.lines, self.first_seq, self.prev.as_ref().map(|(seq, _)| *seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
