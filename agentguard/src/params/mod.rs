//! Frozen parameter snapshots: canonical JSON, SHA-256 digest, and redaction of secrets.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

mod canonical;
mod finite;
mod redact;
#[cfg(test)]
pub(crate) mod tests;

pub use canonical::canonical_json;
pub(crate) use canonical::canonical_sha256;
pub(crate) use finite::{check_finite, check_finite_at};
pub use redact::Redactor;

/// Default limit on the canonical JSON size of a gated call's parameters: 1 MiB.
pub const DEFAULT_MAX_PARAMS_BYTES: usize = 1024 * 1024;

/// The text shown instead of a secret value.
pub const REDACTED: &str = "[REDACTED]";

/// The SHA-256 digest of a params snapshot's canonical JSON, as 64 lowercase hex digits.
///
/// An approver that was shown a request can send its digest back with the answer
/// ([`Resolution::params_digest`](crate::Resolution::params_digest)); if the digest does not match the parked request,
/// the answer is refused with [`ResolveOutcome::DigestMismatch`](crate::ResolveOutcome::DigestMismatch).
///
/// The digits are held inline (64 bytes, no allocation): every gated call makes one, and a parked request holds it
/// for its whole wait.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ParamsDigest([u8; 64]);

impl ParamsDigest {
    /// Digest of some bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_sha256(&Sha256::digest(bytes).into())
    }

    /// The digest whose SHA-256 is `hash`.
    pub(crate) fn from_sha256(hash: &[u8; 32]) -> Self {
        let mut text = [0u8; 64];
        hex_into(hash, &mut text);
        ParamsDigest(text)
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        // Made only of hex digits (`from_sha256`, or text that `from_str` checked), so always UTF-8.
        std::str::from_utf8(&self.0).expect("a params digest is hex digits")
    }
}

impl fmt::Debug for ParamsDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ParamsDigest").field(&self.as_str()).finish()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Writes `bytes` as lowercase hex into `out` (twice as long).
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[(b >> 4) as usize];
        pair[1] = DIGITS[(b & 0xf) as usize];
    }
}

impl fmt::Display for ParamsDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a string that is not 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDigestError {
    input: String,
}

impl fmt::Display for ParseDigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid params digest {:?}: expected 64 lowercase hex digits (the params_digest field of the request)",
            self.input
        )
    }
}

impl std::error::Error for ParseDigestError {}

/// `s` is `len` lowercase hex digits (a digest, a MAC, a key id).
pub(crate) fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl FromStr for ParamsDigest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match <[u8; 64]>::try_from(s.as_bytes()) {
            Ok(text) if is_lower_hex(s, 64) => Ok(ParamsDigest(text)),
            _ => Err(ParseDigestError { input: s.to_owned() }),
        }
    }
}

impl TryFrom<String> for ParamsDigest {
    type Error = ParseDigestError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ParamsDigest> for String {
    fn from(d: ParamsDigest) -> String {
        d.as_str().to_owned()
    }
}

/// A call's parameters, frozen: the value, its canonical JSON text and the SHA-256 digest of that text.
///
/// Canonical JSON is compact (no whitespace) with object keys sorted by their UTF-8 bytes at every depth, so two
/// equal values always give the same digest, whatever order their keys were inserted in.
#[derive(Debug, Clone)]
pub struct FrozenParams {
    value: Value,
    /// The canonical text, written when [`canonical`](Self::canonical) is first asked for: the digest is hashed as
    /// the text is written, so a snapshot nobody reads as text (every guarded call's) keeps no second copy of its
    /// params. The value never changes, so the text is the one the digest was made of.
    canonical: OnceLock<Box<str>>,
    digest: ParamsDigest,
}

/// Equal when the digests and the values are, whether or not either snapshot's text has been written yet. (The
/// digest, not only the value: `0.0` and `-0.0` are equal values with different texts.)
impl PartialEq for FrozenParams {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest && self.value == other.value
    }
}

/// Params refused at intake, before anyone is shown them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParamsRejected {
    /// Larger than the limit, in bytes of canonical JSON.
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Nested deeper than [`MAX_PARAMS_DEPTH`] objects and arrays: too deep to show, and to read back from a store.
    TooDeep {
        /// The limit.
        limit: usize,
    },
}

impl ParamsRejected {
    /// The deny reason an agent reads for it.
    pub fn deny_reason(&self) -> crate::DenyReason {
        match self {
            ParamsRejected::TooLarge { .. } => crate::DenyReason::ParamsTooLarge,
            ParamsRejected::TooDeep { .. } => crate::DenyReason::ParamsTooDeep,
        }
    }
}

impl fmt::Display for ParamsRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamsRejected::TooLarge { limit } => write!(
                f,
                "params are larger than {limit} bytes of canonical JSON; send a reference (a path, an id) instead of \
                 the data, or raise the limit with .max_params_bytes(..)"
            ),
            ParamsRejected::TooDeep { limit } => write!(
                f,
                "params are nested deeper than {limit} levels of objects and arrays; flatten them (a person must be \
                 able to read what they approve)"
            ),
        }
    }
}

impl std::error::Error for ParamsRejected {}

/// The deepest nesting of objects and arrays accepted in a call's params: 64 levels. Deeper params are refused at
/// intake (`params_too_deep`): nobody can review them, and stores could not read them back.
pub const MAX_PARAMS_DEPTH: usize = 64;

/// Whether `value` nests objects and arrays more than `limit` levels deep (a scalar is depth 0, `[]` depth 1).
/// Iterative, so any depth is safe to ask about, and it stops looking once past the limit.
pub fn deeper_than(value: &Value, limit: usize) -> bool {
    // Only containers go on the stack (a scalar adds no level), and the stack is allocated only for a container
    // inside a container: the common flat object of scalars costs no allocation.
    let mut stack: Vec<(&Value, usize)> = Vec::new();
    let mut next = Some((value, 0));
    while let Some((v, depth)) = next.take().or_else(|| stack.pop()) {
        let nested = |c: &&Value| c.is_array() || c.is_object();
        match v {
            Value::Array(items) if depth < limit => stack.extend(items.iter().filter(nested).map(|c| (c, depth + 1))),
            Value::Object(map) if depth < limit => stack.extend(map.values().filter(nested).map(|c| (c, depth + 1))),
            Value::Array(_) | Value::Object(_) => return true,
            _ => {}
        }
    }
    false
}

/// Drops a value without recursion, so a refused value nested a million levels deep cannot overflow the stack on
/// its way out.
pub(crate) fn drop_flat(value: Value) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

impl FrozenParams {
    /// Freezes a value. Refuses params nested deeper than [`MAX_PARAMS_DEPTH`], or whose canonical JSON is longer
    /// than `limit` bytes (it stops writing at the limit, so a huge value costs no more than the limit to reject).
    pub fn freeze(value: Value, limit: usize) -> Result<Self, ParamsRejected> {
        if deeper_than(&value, MAX_PARAMS_DEPTH) {
            drop_flat(value);
            return Err(ParamsRejected::TooDeep {
                limit: MAX_PARAMS_DEPTH,
            });
        }
        let hash = canonical_sha256(&value, limit).ok_or(ParamsRejected::TooLarge { limit })?;
        Ok(FrozenParams {
            value,
            canonical: OnceLock::new(),
            digest: ParamsDigest::from_sha256(&hash),
        })
    }

    /// The parameter values (real values, not redacted).
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The canonical JSON text the digest was computed over (written on the first call).
    pub fn canonical(&self) -> &str {
        self.canonical.get_or_init(|| {
            canonical_json(&self.value, usize::MAX)
                .expect("without a limit the text is always written")
                .into_boxed_str()
        })
    }

    /// SHA-256 of [`canonical`](Self::canonical).
    pub fn digest(&self) -> &ParamsDigest {
        &self.digest
    }

    /// Gives back the value.
    pub fn into_value(self) -> Value {
        self.value
    }
}
