//! A record as the JSON body of its line, `{"ts":…, "event":…, …}`, before the chain's fields are added
//! ([`seal_into`](super::chain::seal_into)).
//!
//! Written field by field into the caller's buffer, not through serde: every audited call makes one, on the
//! calling thread, and serde's path (the record flattened into the body, each key escaped, the digest and the
//! request id copied into a `String` to serialize) took a third of an audited safe call. The bytes are exactly
//! those serde writes for the record's derived [`Serialize`](serde::Serialize) with `ts` first (the tests hold the
//! two to each other on generated records), so the line's format is the record's documented one.

use std::time::SystemTime;

use super::chain::{rfc3339_fixed, Timestamp};
use super::{AuditError, AuditRecord};

/// A record's JSON with its timestamp, before `seq`, `prev` and `hash` are added.
pub(crate) fn record_body(record: &AuditRecord<'_>) -> Result<Vec<u8>, AuditError> {
    // Most lines are a few hundred bytes: one allocation instead of a series of doublings.
    let mut body = Vec::with_capacity(512);
    record_body_into(&mut body, record)?;
    Ok(body)
}

/// [`record_body`] appended to `out` (the file sink reuses one buffer per thread). On an error `out` may hold part
/// of the body: the caller clears it.
pub(crate) fn record_body_into(out: &mut Vec<u8>, record: &AuditRecord<'_>) -> Result<(), AuditError> {
    body_at(out, record, SystemTime::now())
}

/// The body with `ts` = `now`. Field order, `null`s and omitted fields as the record's derived `Serialize`: the
/// fields marked `skip_serializing_if` are left out when `None`, the others are `null`.
fn body_at(out: &mut Vec<u8>, record: &AuditRecord<'_>, now: SystemTime) -> Result<(), AuditError> {
    out.reserve(256);
    out.extend_from_slice(b"{\"ts\":");
    match rfc3339_fixed(now) {
        Some(text) => {
            out.push(b'"');
            out.extend_from_slice(&text);
            out.push(b'"');
        }
        // Past the year 9999: serde's own text of it (a rare path, no need to be quick).
        None => json_into(out, &Timestamp(now))?,
    }
    out.extend_from_slice(b",\"event\":");
    str_into(out, record.event)?;
    out.extend_from_slice(b",\"tool\":");
    str_into(out, record.tool)?;
    out.extend_from_slice(b",\"decision\":");
    str_into(out, record.decision.as_str())?;
    out.extend_from_slice(b",\"reason\":");
    opt_str_into(out, record.reason)?;
    out.extend_from_slice(b",\"risk\":");
    opt_str_into(out, record.risk.map(|r| r.label()))?;
    out.extend_from_slice(b",\"params\":");
    match record.params {
        Some(params) => json_into(out, params)?,
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"params_digest\":");
    opt_str_into(out, record.params_digest.map(|d| d.as_str()))?;
    out.extend_from_slice(b",\"agent_id\":");
    opt_str_into(out, record.agent_id)?;
    out.extend_from_slice(b",\"session_id\":");
    opt_str_into(out, record.session_id)?;
    if let Some(server) = record.server {
        out.extend_from_slice(b",\"server\":");
        str_into(out, server)?;
    }
    out.extend_from_slice(b",\"request_id\":");
    opt_str_into(out, record.request_id.map(|id| id.as_str()))?;
    out.extend_from_slice(b",\"actor\":");
    opt_str_into(out, record.actor)?;
    out.extend_from_slice(b",\"detail\":");
    opt_str_into(out, record.detail)?;
    if let Some(policy) = record.policy {
        out.extend_from_slice(b",\"policy\":");
        json_into(out, policy)?;
    }
    if let Some(grant) = record.grant {
        out.extend_from_slice(b",\"grant\":");
        json_into(out, grant)?;
    }
    if let Some(edit) = record.edit {
        out.extend_from_slice(b",\"edit\":");
        json_into(out, edit)?;
    }
    out.push(b'}');
    Ok(())
}

/// `s` as a JSON string. Text with nothing to escape (the usual case: names, ids, digests) is copied as it is;
/// anything else is escaped by serde_json, so the escapes are serde_json's own.
fn str_into(out: &mut Vec<u8>, s: &str) -> Result<(), AuditError> {
    // No early exit: the whole text is looked at, which the compiler does many bytes at a time.
    let plain = !s
        .bytes()
        .fold(false, |escape, b| escape | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        json_into(out, s)
    }
}

fn opt_str_into(out: &mut Vec<u8>, s: Option<&str>) -> Result<(), AuditError> {
    match s {
        Some(s) => str_into(out, s),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

/// A value as serde_json writes it.
fn json_into<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), AuditError> {
    serde_json::to_writer(out, value).map_err(|e| AuditError::new(format!("cannot serialize audit record: {e}")))
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
