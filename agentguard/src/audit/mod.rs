//! The audit trail: one hash-chained JSON line per call ([`AuditRecord`], [`AuditSink`]), the file sink
//! ([`JsonlAudit`]), the PostgreSQL table sink (`PostgresAudit`, feature `postgres`), an optional key
//! ([`AuditKey`]), checkpoints, and [`verify`] / [`Verify`].
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
//!
//! A keyed log ([`JsonlAudit::key`]) ends each line in `"kid":"<key id>","mac":"<HMAC-SHA256>"` instead of
//! `"hash"`: the same rule with HMAC-SHA256 under the key, so nobody without the key can recompute the chain after
//! an edit. Both kinds verify; an unkeyed log stays as it was, and a log that gains a key keeps its unkeyed lines
//! before the first keyed one (after it, an unkeyed line is a forgery).
//!
//! A line with `"event":"repair"` is written by the file sink when it finds the log ending in a torn line (a write
//! cut short by a crash or a full disk): it removed those bytes, and records how many (`removed_bytes`), their
//! SHA-256 (`removed_sha256`) and their first 200 bytes as text (`removed_head`).
//!
//! # Checkpoints
//!
//! The file sink appends `{"seq":N,"hash":"…"}` of its newest line to `<log>.checkpoint` every 100 lines (by
//! default) and at each rotation. A chain alone cannot show that its newest lines were removed; [`verify`] checks
//! the chain against every checkpoint, and the writer refuses to continue a chain that ends before its last one.

mod body;
mod chain;
mod checkpoint;
mod files;
mod jsonl;
mod key;
#[cfg(feature = "postgres")]
mod postgres;
mod queue;
mod verify;
mod writer;

use std::fmt;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::params::ParamsDigest;
use crate::policy::PolicyStamp;
use crate::request::{ApprovalRequest, RequestId, ToolCall};
use agentguard_classify::Risk;

pub use chain::GENESIS;
pub use checkpoint::DEFAULT_CHECKPOINT_EVERY;
pub use jsonl::{Fsync, JsonlAudit, DEFAULT_MAX_BYTES};
pub use key::{AuditKey, KEY_FILE_ENV};
#[cfg(feature = "postgres")]
pub use postgres::PostgresAudit;
pub use verify::{verify, Verify, VerifyError, VerifyErrorKind, VerifyReport, VERIFY_LOCK_TIMEOUT};

/// The environment variable that names the default audit log file.
pub const LOG_ENV: &str = "AGENTGUARD_LOG";

/// The default audit log file, in the working directory, when [`LOG_ENV`] is not set.
pub const DEFAULT_LOG_FILE: &str = "agentguard.log";

/// Where the default audit log is: `$AGENTGUARD_LOG` if set, else `agentguard.log` in the working directory. The
/// guard's default sink writes there and `agentguard audit verify` reads there.
pub fn default_log_path() -> PathBuf {
    std::env::var_os(LOG_ENV).map_or_else(|| PathBuf::from(DEFAULT_LOG_FILE), PathBuf::from)
}

/// What happened to a call, as recorded in the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditDecision {
    /// Not gated: ran without asking (safe name, or listed in `safe_tools`).
    Allowed,
    /// Gated and approved: it runs next (if it then cannot start — its claim in the store fails — a `blocked` line
    /// with the reason follows).
    Approved,
    /// Gated and denied by a person.
    Denied,
    /// Gated and blocked without a person's "no": approver failure, params too large, store down, …
    Blocked,
    /// Gated and unanswered before the deadline.
    Expired,
    /// Not a call: the `on_request` notifier failed (the request stayed parked).
    NotifierError,
    /// Not a call: the policy file changed and its new version is in force (`event: "policy"`).
    PolicyLoaded,
    /// Not a call: the policy file changed but does not compile; the version in force stays (`event: "policy"`).
    PolicyRejected,
    /// Gated and approved with params an approver edited: it runs next with them (`edit` holds their digest and
    /// redacted values; `params_digest` stays the original's; `actor` is who edited).
    Edited,
    /// Gated, and a person answered for the tool: it did not run, the agent read their text (`detail`).
    Responded,
    /// Not a call: one person's vote on a quorum request (`event: "vote"`; `detail` is `approve` or `deny`).
    Vote,
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
            AuditDecision::PolicyLoaded => "policy_loaded",
            AuditDecision::PolicyRejected => "policy_rejected",
            AuditDecision::Edited => "edited",
            AuditDecision::Responded => "responded",
            AuditDecision::Vote => "vote",
        }
    }
}

/// One audit record, as handed to an [`AuditSink`]. `params` are already redacted.
// The file sink writes a line's body field by field (`body.rs`), in this order: a field added here goes there too
// (its tests compare the two on every field, and fail until it does).
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
    /// The tool server the call went to (the MCP gateway's upstream), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<&'a str>,
    /// The approval request, when one was made.
    pub request_id: Option<&'a RequestId>,
    /// Who decided.
    pub actor: Option<&'a str>,
    /// More: the approver's note, an error message.
    pub detail: Option<&'a str>,
    /// What decided, when the guard has a policy: the rule (or `default`), its action and the policy's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<&'a PolicyStamp>,
    /// The standing grant involved: on a call a grant let through, `{"id", "by"}` (who made it); on an approval
    /// that made one, `{"id", "made": true, "scope", …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<&'a Value>,
    /// On an `edited` line: `{"params_digest", "params"}` of the edited params (redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit: Option<&'a Value>,
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
            server: None,
            request_id: None,
            actor: None,
            detail: None,
            policy: None,
            grant: None,
            edit: None,
        }
    }

    /// The record of an approval request: its tool, risk, redacted params, digest, agent, session and id.
    pub fn of_request(request: &'a ApprovalRequest, decision: AuditDecision) -> Self {
        AuditRecord {
            risk: Some(request.risk()),
            params: Some(request.params()),
            params_digest: Some(request.params_digest()),
            agent_id: request.agent_id(),
            session_id: request.session_id(),
            server: request.server(),
            request_id: Some(request.request_id()),
            ..AuditRecord::new(request.tool(), decision)
        }
    }

    /// The record of a call that made no request: its tool, agent and session (params are set by the caller,
    /// redacted).
    pub(crate) fn of_call(call: &'a ToolCall, decision: AuditDecision) -> Self {
        AuditRecord {
            agent_id: call.agent_id.as_deref(),
            session_id: call.session_id.as_deref(),
            server: call.server.as_deref(),
            ..AuditRecord::new(&call.name, decision)
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

    pub(crate) fn io(message: impl Into<String>, source: io::Error) -> Self {
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
    /// Writes one record durably enough for this sink, or says why not. The guard calls this for every record
    /// that must be written before it goes on (a gated call's verdict: the call runs only if this returns `Ok`).
    fn record(&self, record: &AuditRecord<'_>) -> Result<(), AuditError>;

    /// Writes a record that may reach its destination after this returns: the guard calls this for a safe call's
    /// line (the call runs whether or not its line is written; a failure is reported on stderr). The default writes
    /// it as [`record`](Self::record) does. [`JsonlAudit`] queues it for its writer's next batch: see its docs for
    /// how long that takes and what a crash can lose.
    fn record_deferred(&self, record: &AuditRecord<'_>) -> Result<(), AuditError> {
        self.record(record)
    }

    /// Waits until every record handed to this sink so far is written. The default does nothing: a sink that
    /// writes in [`record`](Self::record) and [`record_deferred`](Self::record_deferred) has nothing pending.
    fn flush(&self) -> Result<(), AuditError> {
        Ok(())
    }
}
