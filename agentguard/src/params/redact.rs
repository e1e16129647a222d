//! [`Redactor`]: masks values under secret-looking keys in everything a person or a file sees.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::Value;

use super::{deeper_than, MAX_PARAMS_DEPTH, REDACTED};
use agentguard_classify::{normalize_name, Words};

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

    /// `value` as [`redact_with`](Self::redact_with) would show it, borrowed when that would change nothing (no
    /// secret key at any depth, none of `keys` at the top): the common case copies nothing. `value` must be at most
    /// [`MAX_PARAMS_DEPTH`] deep (the caller has checked: the guard refuses deeper params before it shows any), since
    /// the look for secret keys recurses.
    pub(crate) fn shown<'v>(&self, value: &'v Value, keys: &[String]) -> Cow<'v, Value> {
        debug_assert!(!deeper_than(value, MAX_PARAMS_DEPTH), "the caller checks the depth");
        let listed = value
            .as_object()
            .is_some_and(|map| keys.iter().any(|k| map.contains_key(k)));
        if listed || self.masks_any(value) {
            Cow::Owned(self.redact_with(value, keys))
        } else {
            Cow::Borrowed(value)
        }
    }

    /// Whether some key at any depth of `value` is secret (`value` is at most [`MAX_PARAMS_DEPTH`] deep, so the
    /// recursion is bounded).
    fn masks_any(&self, value: &Value) -> bool {
        match value {
            Value::Object(map) => map.iter().any(|(k, v)| self.is_secret_key(k) || self.masks_any(v)),
            Value::Array(items) => items.iter().any(|v| self.masks_any(v)),
            _ => false,
        }
    }

    /// A copy of `value` with secret values masked. A value nested deeper than [`MAX_PARAMS_DEPTH`] is not shown at
    /// all (the guard refuses such params at intake): it is replaced by a note, so no depth can overflow the stack.
    pub fn redact(&self, value: &Value) -> Value {
        if deeper_than(value, MAX_PARAMS_DEPTH) {
            return Value::String(format!("[not shown: nested deeper than {MAX_PARAMS_DEPTH} levels]"));
        }
        let mut shown = value.clone();
        self.mask(&mut shown);
        shown
    }

    /// Masks the values of secret keys in place, at every depth (at most [`MAX_PARAMS_DEPTH`]: the caller checked).
    /// On a copy: cloning a map copies its tree as it stands, which costs less than collecting a new map entry by
    /// entry (a tenth of a gated call went to that). A secret value is copied too and replaced at once; its copy is
    /// freed as the call's own params are later (nothing here zeroes freed memory).
    fn mask(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if self.is_secret_key(k) {
                        *v = Value::String(REDACTED.to_owned());
                    } else {
                        self.mask(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask(v)),
            _ => {}
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
    ENDINGS.iter().any(|end| word.len() > end.len() && word.ends_with(end))
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
