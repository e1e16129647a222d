//! Frozen parameter snapshots: canonical JSON, SHA-256 digest, and redaction of secrets.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use agentguard_classify::{normalize_name, Words};

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
/// Cloning is cheap (a shared, immutable string).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ParamsDigest(Arc<str>);

impl ParamsDigest {
    /// Digest of some bytes.
    pub fn of(bytes: &[u8]) -> Self {
        let mut text = [0u8; 64];
        hex_into(&Sha256::digest(bytes), &mut text);
        ParamsDigest(Arc::from(std::str::from_utf8(&text).expect("hex digits are ASCII")))
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Writes `bytes` as lowercase hex into `out` (twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[(b >> 4) as usize];
        pair[1] = DIGITS[(b & 0xf) as usize];
    }
}

impl fmt::Display for ParamsDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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

impl FromStr for ParamsDigest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(ParamsDigest(Arc::from(s)))
        } else {
            Err(ParseDigestError { input: s.to_owned() })
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
        d.0.to_string()
    }
}

/// A call's parameters, frozen: the value, its canonical JSON text and the SHA-256 digest of that text.
///
/// Canonical JSON is compact (no whitespace) with object keys sorted by their UTF-8 bytes at every depth, so two
/// equal values always give the same digest, whatever order their keys were inserted in.
#[derive(Debug, Clone, PartialEq)]
pub struct FrozenParams {
    value: Value,
    canonical: String,
    digest: ParamsDigest,
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
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth + 1 > limit {
            return true;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
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
        let canonical = canonical_json(&value, limit).ok_or(ParamsRejected::TooLarge { limit })?;
        let digest = ParamsDigest::of(canonical.as_bytes());
        Ok(FrozenParams {
            value,
            canonical,
            digest,
        })
    }

    /// The parameter values (real values, not redacted).
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The canonical JSON text the digest was computed over.
    pub fn canonical(&self) -> &str {
        &self.canonical
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

/// Canonical JSON of `value`, or `None` once it grows past `limit` bytes. Iterative: any depth is safe (a value
/// nested deeper than the stack could hold is written, or refused at the limit, without recursion).
pub fn canonical_json(value: &Value, limit: usize) -> Option<String> {
    let mut out = Vec::with_capacity(128);
    write_canonical(value, &mut out, limit)?;
    // Every piece written is serde_json's own (valid UTF-8) output or ASCII punctuation.
    Some(String::from_utf8(out).expect("canonical JSON is UTF-8"))
}

/// What is left to write: a value, or the punctuation that closes a container or separates its items.
enum Step<'a> {
    Value(&'a Value),
    Key(&'a str),
    Byte(u8),
}

fn write_canonical<'a>(value: &'a Value, out: &mut Vec<u8>, limit: usize) -> Option<()> {
    let mut todo = vec![Step::Value(value)];
    while let Some(step) = todo.pop() {
        match step {
            Step::Byte(b) => out.push(b),
            Step::Key(k) => {
                serde_json::to_writer(&mut *out, k).ok()?;
                out.push(b':');
            }
            Step::Value(Value::Object(map)) => {
                out.push(b'{');
                todo.push(Step::Byte(b'}'));
                // serde_json's default map is a BTreeMap, whose order is already the byte order of the keys. Only a
                // map in insertion order (serde_json's `preserve_order` feature) needs sorting.
                // Pushed in reverse so the first entry is written first.
                let mut push = |i: usize, k: &'a String, v: &'a Value| {
                    todo.push(Step::Value(v));
                    todo.push(Step::Key(k));
                    if i > 0 {
                        todo.push(Step::Byte(b','));
                    }
                };
                if in_byte_order(map.keys()) {
                    for (i, (k, v)) in map.iter().enumerate().rev() {
                        push(i, k, v);
                    }
                } else {
                    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                    for (i, (k, v)) in entries.into_iter().enumerate().rev() {
                        push(i, k, v);
                    }
                }
            }
            Step::Value(Value::Array(items)) => {
                out.push(b'[');
                todo.push(Step::Byte(b']'));
                for (i, v) in items.iter().enumerate().rev() {
                    todo.push(Step::Value(v));
                    if i > 0 {
                        todo.push(Step::Byte(b','));
                    }
                }
            }
            // Strings, numbers, booleans and null: serde_json's own compact text is already canonical. Writing into
            // a Vec cannot fail.
            Step::Value(other) => serde_json::to_writer(&mut *out, other).ok()?,
        }
        if out.len() > limit {
            return None;
        }
    }
    Some(())
}

/// Whether `keys` are in ascending byte order (equal neighbours allowed).
fn in_byte_order<'a>(mut keys: impl Iterator<Item = &'a String>) -> bool {
    let Some(mut prev) = keys.next() else { return true };
    for k in keys {
        if prev.as_bytes() > k.as_bytes() {
            return false;
        }
        prev = k;
    }
    true
}

/// Masks values whose keys look secret, in everything a person or a file sees.
///
/// A key is secret when one of its words (split like [`classify`](crate::classify) splits names, so `apiKey`,
/// `api-key` and `API_KEY` are the same) is `password`, `passwd`, `passphrase`, `pwd`, `secret`, `token`,
/// `authorization`, `auth`, `cookie`, `credential(s)`, `apikey`, `bearer`, `jwt`, `cvv`, `cvc`, `ssn`, `otp`, `pin`,
/// `signature`; when a run-together word ends in `password`, `passwd`, `passphrase`, `secret`, `token`,
/// `credential(s)`, `apikey`, `privatekey`, `accesskey` or `secretkey` (`accesstoken`, `clientsecret`, `dbpassword`); or when two adjacent
/// words are `api key`, `private key`, `access key`, `secret key`, `signing key`, `encryption key`, `client key`,
/// `session key`, `card number`, `account number`, `set cookie`. Keys added with
/// [`with_keys`](Self::with_keys) are matched by their whole word sequence (`customerNote` matches `customer_note`).
/// Matching is at every depth of objects and arrays; the whole value under a secret key is replaced by
/// [`REDACTED`].
///
/// Redaction changes only what is shown: the digest covers the real values and the executor receives them.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    extra: HashSet<String>,
}

impl Redactor {
    /// A redactor with the built-in secret words only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds keys to mask (in any naming convention).
    pub fn with_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.extra.extend(keys.into_iter().map(|k| normalize_name(k.as_ref())));
        self
    }

    /// Whether the value under `key` is masked.
    pub fn is_secret_key(&self, key: &str) -> bool {
        // Every listed word is short ASCII: longer or non-ASCII words match nothing, alone or in a pair. Words are
        // lowercased into stack buffers, so checking a key allocates nothing.
        const MAX: usize = 32;
        let mut prev = [0u8; MAX];
        let mut prev_len: Option<usize> = None;
        for (s, e) in Words::new(key) {
            let raw = &key.as_bytes()[s..e];
            if raw.len() > MAX || !raw.is_ascii() {
                prev_len = None;
                continue;
            }
            let mut buf = [0u8; MAX];
            for (o, b) in buf.iter_mut().zip(raw) {
                *o = b.to_ascii_lowercase();
            }
            let word = std::str::from_utf8(&buf[..raw.len()]).expect("ASCII");
            if is_secret_word(word) || is_secret_compound(word) {
                return true;
            }
            if let Some(len) = prev_len {
                if is_secret_pair(std::str::from_utf8(&prev[..len]).expect("ASCII"), word) {
                    return true;
                }
            }
            prev = buf;
            prev_len = Some(raw.len());
        }
        !self.extra.is_empty() && self.extra.contains(&normalize_name(key))
    }

    /// [`redact`](Self::redact), then also masks the top-level keys in `keys`.
    pub fn redact_with(&self, value: &Value, keys: &[String]) -> Value {
        let mut shown = self.redact(value);
        if let Value::Object(map) = &mut shown {
            for key in keys {
                if let Some(v) = map.get_mut(key) {
                    *v = Value::String(REDACTED.to_owned());
                }
            }
        }
        shown
    }

    /// A copy of `value` with secret values masked. A value nested deeper than [`MAX_PARAMS_DEPTH`] is not shown at
    /// all (the guard refuses such params at intake): it is replaced by a note, so no depth can overflow the stack.
    pub fn redact(&self, value: &Value) -> Value {
        if deeper_than(value, MAX_PARAMS_DEPTH) {
            return Value::String(format!("[not shown: nested deeper than {MAX_PARAMS_DEPTH} levels]"));
        }
        self.redact_shallow(value)
    }

    fn redact_shallow(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let shown = if self.is_secret_key(k) {
                            Value::String(REDACTED.to_owned())
                        } else {
                            self.redact_shallow(v)
                        };
                        (k.clone(), shown)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.redact_shallow(v)).collect()),
            other => other.clone(),
        }
    }
}

/// A run-together word that ends in a long secret word: `accesstoken`, `clientsecret`, `dbpassword`, `authtoken`.
/// Only these long endings are read this way, so a short secret word such as `pin`, `otp` or `auth` at the end of a
/// longer word (`spin`, `hotp`, `oauth`) is not.
fn is_secret_compound(word: &str) -> bool {
    const ENDINGS: [&str; 11] = [
        "accesskey",
        "secretkey",
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "credential",
        "credentials",
        "apikey",
        "privatekey",
    ];
    ENDINGS
        .iter()
        .any(|end| word.len() > end.len() && word.ends_with(end))
}

/// A word that marks a key secret on its own.
fn is_secret_word(word: &str) -> bool {
    matches!(
        word,
        "jwt"
            | "password"
            | "passwd"
            | "passphrase"
            | "pwd"
            | "secret"
            | "secrets"
            | "token"
            | "authorization"
            | "auth"
            | "cookie"
            | "cookies"
            | "credential"
            | "credentials"
            | "apikey"
            | "bearer"
            | "cvv"
            | "cvc"
            | "ssn"
            | "otp"
            | "pin"
            | "signature"
            | "privatekey"
            | "accesskey"
            | "secretkey"
    )
}

/// Two adjacent words that mark a key secret together.
fn is_secret_pair(prev: &str, word: &str) -> bool {
    matches!(
        (prev, word),
        (
            "api" | "private" | "access" | "secret" | "signing" | "encryption" | "client" | "session",
            "key"
        ) | ("card" | "account", "number")
            | ("set", "cookie")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a = json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 3}], "c": "é\n"}});
        let text = canonical_json(&a, usize::MAX).unwrap();
        assert_eq!(text, r#"{"a":{"c":"é\n","z":[1,{"x":3,"y":2}]},"b":1}"#);
        // Round trip: the canonical text parses back to the same value.
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), a);
    }

    #[test]
    fn canonical_strings_and_numbers_are_serde_jsons_own_text() {
        let mut text: String = (0u8..0x80).map(char::from).collect();
        text.push_str("é€😀\u{2028}\u{200b}");
        let v = json!({"k\"\n": text, "n": [0, -1, 1.5, 1e300, u64::MAX, i64::MIN], "b": [true, false, null]});
        let canonical = canonical_json(&v, usize::MAX).unwrap();
        assert_eq!(canonical, serde_json::to_string(&v).unwrap()); // a BTreeMap already sorts keys bytewise
        assert_eq!(serde_json::from_str::<Value>(&canonical).unwrap(), v);
    }

    #[test]
    fn key_order_check_catches_maps_kept_in_insertion_order() {
        let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        assert!(in_byte_order(keys(&[]).iter()));
        assert!(in_byte_order(keys(&["a", "b", "é"]).iter()));
        assert!(!in_byte_order(keys(&["b", "a"]).iter()));
        assert!(!in_byte_order(keys(&["é", "z"]).iter())); // é is 0xC3 0xA9: after z in byte order
    }

    #[test]
    fn digest_is_sha256_of_canonical_text() {
        let frozen = FrozenParams::freeze(json!({"path": "notes.txt"}), 1024).unwrap();
        assert_eq!(frozen.canonical(), r#"{"path":"notes.txt"}"#);
        // sha256('{"path":"notes.txt"}'), computed with `printf '%s' '{"path":"notes.txt"}' | sha256sum`.
        assert_eq!(
            frozen.digest().as_str(),
            "327e09780c8ca587a9edeb9d363553cc8b785fea45069b53e00cbf802c0ee078"
        );
        assert_eq!(frozen.digest(), &ParamsDigest::of(br#"{"path":"notes.txt"}"#));
        assert_eq!(frozen.digest().as_str().len(), 64);
    }

    #[test]
    fn freeze_rejects_params_over_the_limit_without_building_them_whole() {
        let big = json!({"data": "x".repeat(2000)});
        let err = FrozenParams::freeze(big, 1000).unwrap_err();
        assert_eq!(err, ParamsRejected::TooLarge { limit: 1000 });
        assert!(err.to_string().contains("max_params_bytes"));
        assert!(FrozenParams::freeze(json!({"data": "x"}), 1000).is_ok());
    }

    /// `[[[…]]]`, `levels` deep, built without recursion.
    fn nested(levels: usize) -> Value {
        let mut v = json!("bottom");
        for i in 0..levels {
            // Not json!([v]): json! serializes an expression, which would recurse.
            v = if i % 2 == 0 {
                Value::Array(vec![v])
            } else {
                Value::Object([("k".to_owned(), v)].into_iter().collect())
            };
        }
        v
    }

    #[test]
    fn params_nested_past_the_limit_are_refused_at_any_depth_without_overflowing_the_stack() {
        assert!(FrozenParams::freeze(nested(MAX_PARAMS_DEPTH), usize::MAX).is_ok());
        for levels in [MAX_PARAMS_DEPTH + 1, 127, 2_000, 200_000] {
            let err = FrozenParams::freeze(nested(levels), usize::MAX).unwrap_err();
            assert_eq!(
                err,
                ParamsRejected::TooDeep {
                    limit: MAX_PARAMS_DEPTH
                },
                "{levels}"
            );
            assert_eq!(err.deny_reason(), crate::DenyReason::ParamsTooDeep);
        }
    }

    #[test]
    fn canonical_json_and_redaction_are_stack_safe_at_any_depth() {
        // Run on a small stack, so a recursive walk would overflow it at these depths.
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let deep = nested(100_000);
                let text = canonical_json(&deep, usize::MAX).unwrap();
                assert!(text.starts_with("{\"k\":[{\"k\":[") && text.ends_with("]}]}"));
                assert_eq!(text.matches("bottom").count(), 1);
                let shown = Redactor::new().redact(&deep);
                assert!(
                    shown.as_str().unwrap().contains("nested deeper than 64 levels"),
                    "{shown}"
                );
                drop_flat(deep);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn digest_parses_only_64_lowercase_hex() {
        assert!("a".repeat(64).parse::<ParamsDigest>().is_ok());
        assert!("A".repeat(64).parse::<ParamsDigest>().is_err());
        assert!("abc".parse::<ParamsDigest>().is_err());
        let err = serde_json::from_str::<ParamsDigest>("\"zz\"").unwrap_err().to_string();
        assert!(err.contains("64 lowercase hex"), "{err}");
    }

    #[test]
    fn redactor_masks_secret_keys_by_words_at_any_depth() {
        let r = Redactor::new().with_keys(["customerNote"]);
        let v = json!({
            "user": "bob",
            "password": "hunter2",
            "apiKey": "k1",
            "API-KEY": "k2",
            "headers": {"Authorization": "Bearer t", "Accept": "json"},
            "items": [{"client_secret": "s"}, {"name": "ok"}],
            "customer_note": "private",
            "max_tokens": 100,
            "author": "alice",
            "key": "id-7"
        });
        let shown = r.redact(&v);
        let text = shown.to_string();
        for secret in ["hunter2", "k1", "k2", "Bearer t", "\"s\"", "private"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert_eq!(shown["user"], "bob");
        assert_eq!(shown["headers"]["Accept"], "json");
        assert_eq!(shown["max_tokens"], 100);
        assert_eq!(shown["author"], "alice");
        assert_eq!(shown["key"], "id-7");
        assert_eq!(shown["password"], REDACTED);
    }
    #[test]
    fn run_together_secret_keys_are_redacted_and_ordinary_words_are_not() {
        let r = Redactor::new();
        for key in [
            "accesstoken",
            "ACCESSTOKEN",
            "clientsecret",
            "dbpassword",
            "DbPassword",
            "jwt",
            "user_jwt",
            "authtoken",
            "refreshtoken",
            "githubPersonalAccessToken",
            "awssecretaccesskey",
            "sshprivatekey",
        ] {
            assert!(r.is_secret_key(key), "{key} should be secret");
        }
        for key in ["max_tokens", "tokens", "spin", "oauth_provider", "hotp_digits", "path", "id", "tokenizer"] {
            assert!(!r.is_secret_key(key), "{key} should not be secret");
        }
    }

}
