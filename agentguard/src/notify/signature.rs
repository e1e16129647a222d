//! The delivery signature: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "x-agentguard-signature";

/// The header carrying the delivery's id, the same on every retry of one notification.
pub const DELIVERY_HEADER: &str = "x-agentguard-delivery";

/// Why a signature was refused by [`verify_signature`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// The header is not `t=<seconds>,v1=<64 hex digits>`.
    Malformed,
    /// The HMAC does not match: another secret, or a changed body or timestamp.
    Mismatch,
    /// The timestamp is further from now than the tolerance: a replayed (or badly delayed) delivery.
    Stale {
        /// How far the timestamp is from now, in seconds.
        age_secs: u64,
    },
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::Malformed => f.write_str(
                "the signature header is not `t=<unix seconds>,v1=<hex HMAC-SHA256>`: was it sent by agentguard?",
            ),
            SignatureError::Mismatch => f.write_str(
                "the signature does not match: check that both sides use the same secret and that the raw body bytes \
                 are verified (not a re-serialized copy)",
            ),
            SignatureError::Stale { age_secs } => write!(
                f,
                "the signature's timestamp is {age_secs} s from now, beyond the tolerance: a replay, or clocks out \
                 of step"
            ),
        }
    }
}

impl std::error::Error for SignatureError {}

/// The header value for `body` signed with `secret` at `t` (Unix seconds).
pub(crate) fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex(&mac(secret, t, body).finalize().into_bytes()))
}

fn mac(secret: &[u8], t: u64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Checks a delivery's [`SIGNATURE_HEADER`] against the raw `body` and `secret`, in constant time, and refuses a
/// timestamp more than `tolerance` away from now (five minutes is usual).
///
/// ```
/// # use agentguard::notify::verify_signature;
/// # use std::time::Duration;
/// fn receive(header: &str, body: &[u8]) -> bool {
///     verify_signature(b"the shared secret", header, body, Duration::from_secs(300)).is_ok()
/// }
/// ```
pub fn verify_signature(secret: &[u8], header: &str, body: &[u8], tolerance: Duration) -> Result<(), SignatureError> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<u64>().ok(),
            Some(("v1", value)) => v1 = unhex(value),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(SignatureError::Malformed);
    };
    mac(secret, t, body)
        .verify_slice(&v1)
        .map_err(|_| SignatureError::Mismatch)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let age_secs = now.abs_diff(t);
    if age_secs > tolerance.as_secs() {
        return Err(SignatureError::Stale { age_secs });
    }
    Ok(())
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_is_refused() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let header = sign(b"k", now, b"{\"a\":1}");
        assert_eq!(
            verify_signature(b"k", &header, b"{\"a\":1}", Duration::from_secs(300)),
            Ok(())
        );
        assert_eq!(
            verify_signature(b"k", &header, b"{\"a\":2}", Duration::from_secs(300)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"other", &header, b"{\"a\":1}", Duration::from_secs(300)),
            Err(SignatureError::Mismatch)
        );
        let moved = header.replacen(&format!("t={now}"), &format!("t={}", now + 1), 1);
        assert_eq!(
            verify_signature(b"k", &moved, b"{\"a\":1}", Duration::from_secs(300)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"k", "v1=00", b"", Duration::from_secs(300)),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn an_old_timestamp_is_stale_even_with_a_good_mac() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let header = sign(b"k", now - 3600, b"x");
        assert!(matches!(
            verify_signature(b"k", &header, b"x", Duration::from_secs(300)),
            Err(SignatureError::Stale { age_secs }) if age_secs >= 3600
        ));
    }
}
