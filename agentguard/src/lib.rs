//! # agentguard
//!
//! Human approval in front of an AI agent's dangerous tool calls.
//!
//! Agents call functions that do real things: delete files, send email, charge cards. Put an [`AgentGuard`] in front
//! of your tool dispatcher and a call that looks dangerous — by its name ([`classify`]), because you listed it
//! ([`dangerous_tools`](GuardBuilder::dangerous_tools)), or because it is a `#[gate]`d function — is paused until a
//! person approves it: at a terminal prompt, through a callback, or later from a web page or another process
//! ([`external`](AgentGuard::external) + [`resolve`](AgentGuard::resolve)). No answer before the deadline means
//! denied. Denial is a value, `Err(`[`ActionDenied`]`)`, that the agent reads rather than retries.
//!
//! ```
//! use agentguard::{AgentGuard, ToolCall};
//! use serde_json::json;
//!
//! // Approve everything except deletions of the production database (a real app would ask a person).
//! let guard = AgentGuard::callback(|req| req.params()["db"] != "prod").no_audit().build();
//!
//! let run = |name: &str, params: serde_json::Value| format!("{name} {params}");
//! assert!(guard.execute(ToolCall::new("read_customer", json!({"id": 7})), run).is_ok()); // safe: no prompt
//! let denied = guard
//!     .execute(ToolCall::new("drop_database", json!({"db": "prod"})), run)
//!     .unwrap_err();
//! assert_eq!(denied.to_string(), "Blocked by AgentGuard (user_denied)");
//! ```
//!
//! What makes it safe to rely on:
//!
//! - **Fail closed.** Timeout, a panicking approver, no terminal, a store or audit failure: the call does not run
//!   and [`ActionDenied::reason`] says why.
//! - **Approve exactly what runs.** Params are frozen into canonical JSON with a SHA-256 digest when the request
//!   is made; approver, audit and executor all see that one snapshot, and an answer can carry the digest it was
//!   shown ([`Resolution::params_digest`]).
//! - **A record of everything.** Every call, gated or not, is one hash-chained audit line ([`JsonlAudit`],
//!   [`verify`](audit::verify)); secrets are redacted in everything a person or file sees ([`Redactor`]).
//! - **Bounded.** A finite default timeout, decided requests evicted after a retention window, a params size
//!   limit.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod approver;
pub mod audit;
mod global;
mod guard;
#[cfg(feature = "http")]
pub mod http;
mod params;
#[cfg(feature = "postgres")]
mod postgres;
mod request;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
mod tool;

pub use agentguard_classify::{classify, ParseRiskError, Risk};
pub use audit::{AuditDecision, AuditError, AuditRecord, AuditSink, JsonlAudit};
#[cfg(feature = "tokio")]
pub use global::aexecute;
pub use global::execute;
pub use global::{__private, install, installed, AlreadyInstalled};
pub use guard::{mode, AgentGuard, Approval, Gating, GuardBuilder, DEFAULT_TIMEOUT, MAX_TIMEOUT};
pub use params::{
    canonical_json, FrozenParams, ParamsDigest, ParamsTooLarge, ParseDigestError, Redactor, DEFAULT_MAX_PARAMS_BYTES,
    REDACTED,
};
pub use request::{
    ActionDenied, ApprovalRequest, DenyReason, ParseRequestIdError, RequestId, Resolution, ResolveOutcome, ToolCall,
};
pub use tool::{AsyncDispatch, Dispatch, Tool, ToolParseError};

/// `#[gate]`: route a function through the guard. See the crate docs and README.
pub use agentguard_macros::gate;
/// `#[derive(Tool)]`: an enum of tool calls with parsing, gating and a handler trait.
pub use agentguard_macros::Tool;

#[cfg(feature = "postgres")]
pub use postgres::{PostgresAudit, PostgresStore, POLL_FALLBACK as POSTGRES_POLL_FALLBACK, POSTGRES_SCHEMA_VERSION};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, MAX_POLL as SQLITE_MAX_POLL, SQLITE_SCHEMA_VERSION};
pub use store::{
    open_store, ApprovalStore, ChangeFuture, Decision, ExecOutcome, InMemoryStore, RequestState, StoreError,
    StoredRequest, WaitFuture, DEFAULT_RETENTION,
};
