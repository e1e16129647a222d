//! # agentguard
//!
//! Human approval in front of an AI agent's dangerous tool calls.
//!
//! Agents call functions that do real things: delete files, send email, charge cards. Put an [`AgentGuard`] in front
//! of your tool dispatcher and a call that looks dangerous — by its name ([`classify`]), because you listed it
//! ([`dangerous_tools`](guard::GuardBuilder::dangerous_tools)), or because it is a `#[gate]`d function — is paused until a
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
//! - **A record of everything.** Every call, gated or not, is one hash-chained audit line ([`audit::JsonlAudit`],
//!   [`audit::verify`]); secrets are redacted in everything a person or file sees ([`params::Redactor`]).
//! - **Bounded.** A finite default timeout, decided requests evicted after a retention window, a params size
//!   limit.
//!
//! # Where things are
//!
//! The headline types are at the crate root. Everything else lives in one module by concept, reachable by one path:
//!
//! | module | what |
//! |---|---|
//! | [`guard`] | [`GuardBuilder`](guard::GuardBuilder) and its approval [`mode`](guard::mode)s, [`Gating`](guard::Gating), timeouts, the process-wide guard |
//! | [`params`] | frozen snapshots, canonical JSON, digests, redaction, size limits |
//! | [`policy`] | rules on tool names and arguments: allow, ask or deny, from a TOML file, before any approver |
//! | [`tool`] | typed tools: dispatching them ([`Dispatch`](tool::Dispatch), [`AsyncDispatch`](tool::AsyncDispatch)), parse errors |
//! | [`text`] | showing text a model wrote without hidden or reordering characters |
//! | [`error`] | the parse errors of the root types |
//! | [`store`] | where parked requests wait: the [`ApprovalStore`](store::ApprovalStore) trait, memory, SQLite, PostgreSQL, store URLs |
//! | [`audit`] | the hash-chained audit: records, sinks (file, PostgreSQL), [`verify`](audit::verify) |
//! | `http` | the approval API and page (feature `http`) |
//! | `notify` | webhook notifications: your receiver, Slack, ntfy (feature `webhook`) |
//! | `rmcp` | the guard in front of an rmcp MCP server's tools (feature `rmcp`) |
//!
//! Cargo features: `tokio` (default: `aexecute`, async callbacks), `sqlite`, `postgres`, `http`, `tracing` (a span
//! per call, an event per decision), `webhook` (notifications), `rmcp` (MCP servers). Items that need a feature say
//! so in these docs.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// Reports a problem on stderr without panicking: `eprintln!` panics when stderr is gone (a closed pipe, `EPIPE`),
/// which in a sink's thread would stop it and in a caller would turn a denial into a panic.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod approver;
pub mod audit;
pub mod guard;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "webhook")]
pub mod notify;
pub mod params;
pub mod policy;
mod request;
#[cfg(feature = "rig")]
#[cfg_attr(docsrs, doc(cfg(feature = "rig")))]
pub mod rig;
#[cfg(feature = "rmcp")]
pub mod rmcp;
pub mod store;
pub mod tool;

/// Showing text a model wrote: characters that hide, reorder or fake text (controls, zero-width and bidi controls, tag
/// characters, variation selectors, every Default_Ignorable_Code_Point) as visible `\u{…}` marks. The terminal
/// prompt, the CLI and the approval page all use this one definition.
pub mod text {
    pub use agentguard_classify::{escape_hidden, is_hidden};
}

/// Richer answers than yes or no: the [kind](answer::AnswerKind) of an answer (approve, deny, edit, respond), the
/// standing grant an approval can make ([`GrantSpec`](answer::GrantSpec), [`GrantScope`](answer::GrantScope);
/// stored as [`store::Grant`]), and the quorum a policy rule can require ([`Quorum`](answer::Quorum),
/// [`Vote`](answer::Vote), [`QuorumProgress`](answer::QuorumProgress)). Answers are given with [`Resolution`].
pub mod answer {
    pub use crate::request::{AnswerKind, GrantScope, GrantSpec, Quorum, QuorumProgress, Vote};
}

/// The parse errors of the root types: a request id ([`RequestId`]'s `FromStr`) and a risk label ([`Risk`]'s).
pub mod error {
    pub use crate::request::ParseRequestIdError;
    pub use agentguard_classify::ParseRiskError;
}

pub use agentguard_classify::{classify, classify_const, Risk};
pub use guard::agent::AgentGuard;
pub use guard::approval::Approval;
#[cfg(feature = "tokio")]
pub use guard::global::aexecute;
pub use guard::global::{execute, install};
pub use request::{ActionDenied, ApprovalRequest, DenyReason, RequestId, Resolution, ResolveOutcome, ToolCall};
pub use tool::definition::Tool;

/// `#[gate]`: route a function through the guard. See the crate docs and README.
pub use agentguard_macros::gate;
/// `#[derive(Tool)]`: an enum of tool calls with parsing, gating and a handler trait.
pub use agentguard_macros::Tool;
