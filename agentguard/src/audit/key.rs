//! [`AuditKey`]: the secret that turns each line's SHA-256 `hash` into an HMAC-SHA256 `mac`, so that someone who can
//! rewrite the log but cannot read the key cannot recompute the chain after an edit.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::AuditError;
use crate::params::hex;

/// The environment variable that names the audit key file. The default sink ([`JsonlAudit::from_env`]) keys its
/// lines with it, and `agentguard audit verify` checks them with it.
///
/// [`JsonlAudit::from_env`]: super::JsonlAudit::from_env
pub const KEY_FILE_ENV: &str = "AGENTGUARD_AUDIT_KEY_FILE";

/// A key for the audit chain (HMAC-SHA256).
///
/// With a key, each line ends in `"kid":"<key id>","mac":"<HMAC-SHA256 of the line>"` instead of `"hash":"…"`, and
/// the next line's `prev` is that MAC. Without the key nobody can recompute a MAC, so an edited, inserted or
/// reordered line cannot be hidden by rewriting the rest of the file. The key id (16 hex digits derived from the key
/// by HMAC) names the key in each line without revealing it, so [`Verify`](super::Verify) can say "wrong key" rather
/// than "edited".
///
/// The key is the content of a file (surrounding whitespace trimmed), at least [`AuditKey::MIN_LEN`] bytes: for
/// example `openssl rand -hex 32 > /etc/agentguard/audit.key`. Keep it where the log's writers can read it and
/// someone who can write the log cannot: see the README's threat model.
///
/// ```no_run
/// use agentguard::audit::{AuditKey, JsonlAudit};
/// let audit = JsonlAudit::new("agentguard.log").key(AuditKey::from_file("/etc/agentguard/audit.key")?);
/// # Ok::<(), agentguard::audit::AuditError>(())
/// ```
#[derive(Clone)]
pub struct AuditKey {
    /// The HMAC state after absorbing the key; cloned for each line. The key's bytes are not kept.
    mac: Hmac<Sha256>,
    id: String,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl AuditKey {
    /// The shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 32;

    /// A key from its bytes (at least [`AuditKey::MIN_LEN`]).
    pub fn new(bytes: &[u8]) -> Result<Self, AuditError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(AuditError::new(format!(
                "an audit key of {} bytes is too short: use at least {} (for example `openssl rand -hex 32`)",
                bytes.len(),
                Self::MIN_LEN
            )));
        }
        let mac = Hmac::<Sha256>::new_from_slice(bytes).expect("HMAC takes a key of any length");
        let mut for_id = mac.clone();
        for_id.update(b"agentguard audit key id");
        let id = hex(&for_id.finalize().into_bytes()[..8]);
        Ok(AuditKey { mac, id })
    }

    /// The key in the file at `path`: its content with surrounding whitespace trimmed.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, AuditError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| AuditError::io(format!("cannot read the audit key file {}", path.display()), e))?;
        Self::new(bytes.trim_ascii()).map_err(|e| AuditError::new(format!("audit key file {}: {e}", path.display())))
    }

    /// The key in the file named by `$AGENTGUARD_AUDIT_KEY_FILE` ([`KEY_FILE_ENV`]); `Ok(None)` when it is not set.
    pub fn from_env() -> Result<Option<Self>, AuditError> {
        match std::env::var_os(KEY_FILE_ENV) {
            Some(file) if !file.is_empty() => Self::from_file(file)
                .map(Some)
                .map_err(|e| AuditError::new(format!("{e} (named by {KEY_FILE_ENV})"))),
            _ => Ok(None),
        }
    }

    /// The key's id: 16 hex digits derived from the key, written in every line it seals. It does not reveal the key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// HMAC-SHA256 of `data`, in hex.
    pub(crate) fn mac_hex(&self, data: &[u8]) -> String {
        hex(&self.mac(data))
    }

    /// HMAC-SHA256 of `data`.
    pub(crate) fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_key_is_refused_with_a_hint() {
        let err = AuditKey::new(b"short").unwrap_err().to_string();
        assert!(err.contains("too short") && err.contains("openssl rand"), "{err}");
    }

    #[test]
    fn the_id_names_the_key_without_revealing_it_and_debug_shows_only_the_id() {
        let a = AuditKey::new(&[7u8; 32]).unwrap();
        let b = AuditKey::new(&[8u8; 32]).unwrap();
        assert_eq!(a.id().len(), 16);
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), AuditKey::new(&[7u8; 32]).unwrap().id());
        assert_eq!(format!("{a:?}"), format!("AuditKey {{ id: {:?}, .. }}", a.id()));
    }

    #[test]
    fn mac_is_hmac_sha256_rfc_4231_case_6() {
        let key = AuditKey::new(&[0xaa; 131]).unwrap();
        assert_eq!(
            key.mac_hex(b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
