//! Why a call did not run: [`DenyReason`] and the [`ActionDenied`] value the agent reads.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::RequestId;

/// Why a call did not run. The `reason` code of [`ActionDenied`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DenyReason {
    /// A person said no.
    UserDenied,
    /// Nobody answered before the deadline.
    ApprovalTimeout,
    /// The approver panicked, failed, or cannot be used from here.
    ApproverFailed,
    /// The params changed between approval and execution.
    ParamsChanged,
    /// The params were larger than the limit, so they could not be shown whole.
    ParamsTooLarge,
    /// The params were nested too deep to show (more than 64 levels of objects and arrays).
    ParamsTooDeep,
    /// The audit record of a gated call could not be written.
    AuditUnavailable,
    /// The approval store could not be reached.
    StoreUnavailable,
    /// No guard was installed for a gated function.
    NoGuard,
    /// Terminal approval was needed but there is no interactive terminal (or its input ended).
    NoTerminal,
    /// The approved request was already executed once (at-most-once per request id).
    AlreadyExecuted,
    /// The params could not be built (a `#[gate]` argument failed to serialize).
    InvalidParams,
    /// The call itself was refused before any check: an empty or over-long tool name, or a reason, agent id or
    /// session id over its limit ([`ToolCall::MAX_NAME_CHARS`](crate::ToolCall::MAX_NAME_CHARS),
    /// [`ToolCall::MAX_TEXT_BYTES`](crate::ToolCall::MAX_TEXT_BYTES)).
    InvalidCall,
    /// A handler's [`Approval`](crate::Approval) was asked for a call that was not approved: another tool, other
    /// arguments, or a call its own tool declared safe.
    NotApproved,
    /// A [policy](crate::policy) rule refused the call (its message is the detail), or the policy's default is
    /// `deny` and no rule allowed it.
    PolicyDenied,
    /// An approver's edited params could not run: they do not fit the tool's arguments, are too large, or the
    /// policy denies the edited call. The detail says which.
    EditRejected,
    /// Not a denial: a person answered for the tool. It did not run, and their text is its result
    /// ([`ActionDenied::response`]).
    Responded,
}

impl DenyReason {
    /// The snake_case code, e.g. `user_denied`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DenyReason::UserDenied => "user_denied",
            DenyReason::ApprovalTimeout => "approval_timeout",
            DenyReason::ApproverFailed => "approver_failed",
            DenyReason::ParamsChanged => "params_changed",
            DenyReason::ParamsTooLarge => "params_too_large",
            DenyReason::ParamsTooDeep => "params_too_deep",
            DenyReason::AuditUnavailable => "audit_unavailable",
            DenyReason::StoreUnavailable => "store_unavailable",
            DenyReason::NoGuard => "no_guard",
            DenyReason::NoTerminal => "no_terminal",
            DenyReason::AlreadyExecuted => "already_executed",
            DenyReason::InvalidParams => "invalid_params",
            DenyReason::NotApproved => "not_approved",
            DenyReason::InvalidCall => "invalid_call",
            DenyReason::PolicyDenied => "policy_denied",
            DenyReason::EditRejected => "edit_rejected",
            DenyReason::Responded => "responded",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value a blocked call returns instead of running: `Err(ActionDenied)`.
///
/// Denial is an answer for the agent to read, not a fault to retry. Serializes to
/// `{"denied": true, "reason": "user_denied", "tool": "delete_file", "request_id": "…"}` (plus `detail` when there
/// is one) and displays as `Blocked by AgentGuard (user_denied)`.
///
/// One `Err` is not a denial: when a person answers for the tool ([`DenyReason::Responded`]), the call did not run
/// and their text is its result. It displays as that text, [`response`](Self::response) returns it,
/// [`is_denial`](Self::is_denial) is `false`, and it serializes as
/// `{"denied": false, "reason": "responded", "response": "…", "tool": …, "request_id": …}`. (The executor's `T`
/// cannot be made from text, so it travels on this side of the `Result`; the adapters — rig, MCP — hand it to the
/// model as the tool's successful output.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionDenied {
    reason: DenyReason,
    tool: String,
    request_id: Option<RequestId>,
    detail: Option<String>,
}

impl ActionDenied {
    pub(crate) fn new(reason: DenyReason, tool: impl Into<String>) -> Self {
        ActionDenied {
            reason,
            tool: tool.into(),
            request_id: None,
            detail: None,
        }
    }

    /// The arguments could not be turned into the params snapshot: denied before anyone is asked.
    pub(crate) fn invalid_params(tool: impl Into<String>, error: impl fmt::Display) -> Self {
        ActionDenied::new(DenyReason::InvalidParams, tool).with_detail(Some(format!(
            "the arguments could not be serialized into the params snapshot: {error}"
        )))
    }

    /// No guard to ask: denied, with what to do.
    pub(crate) fn no_guard(tool: impl Into<String>, detail: &str) -> Self {
        ActionDenied::new(DenyReason::NoGuard, tool).with_detail(Some(detail.to_owned()))
    }

    pub(crate) fn with_request(mut self, id: Option<RequestId>) -> Self {
        self.request_id = id;
        self
    }

    pub(crate) fn with_detail(mut self, detail: Option<String>) -> Self {
        self.detail = detail;
        self
    }

    /// Why the call did not run.
    pub fn reason(&self) -> DenyReason {
        self.reason
    }
    /// The tool that was blocked.
    pub fn tool(&self) -> &str {
        &self.tool
    }
    /// The approval request's id, when one was made.
    pub fn request_id(&self) -> Option<&RequestId> {
        self.request_id.as_ref()
    }
    /// More about the reason: the approver's note, the failure's message (for a response, its text).
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// A person's answer for the tool.
    pub(crate) fn responded(tool: impl Into<String>, request_id: RequestId, text: String) -> Self {
        ActionDenied::new(DenyReason::Responded, tool)
            .with_request(Some(request_id))
            .with_detail(Some(text))
    }

    /// `false` when a person answered for the tool ([`response`](Self::response)): the call did not run, but that is
    /// an answer, not a refusal.
    pub fn is_denial(&self) -> bool {
        self.reason != DenyReason::Responded
    }

    /// The text a person answered for the tool with, instead of running it: what the agent should read as the tool's
    /// result. `None` for a denial.
    ///
    /// ```
    /// # fn run(guard: &agentguard::AgentGuard, call: agentguard::ToolCall) -> String {
    /// match guard.execute(call, |_, _| "refunded".to_owned()) {
    ///     Ok(out) => out,
    ///     Err(not_run) => match not_run.response() {
    ///         Some(answer) => answer.to_owned(), // the approver answered for the tool
    ///         None => not_run.to_string(),       // "Blocked by AgentGuard (…)"
    ///     },
    /// }
    /// # }
    /// ```
    pub fn response(&self) -> Option<&str> {
        match self.reason {
            DenyReason::Responded => self.detail.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for ActionDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(text) = self.response() {
            // What the agent reads as the tool's result.
            return f.write_str(text);
        }
        match &self.detail {
            Some(detail) => write!(f, "Blocked by AgentGuard ({}: {})", self.reason, detail),
            None => write!(f, "Blocked by AgentGuard ({})", self.reason),
        }
    }
}

impl std::error::Error for ActionDenied {}

#[derive(Serialize, Deserialize)]
struct DeniedWire {
    denied: bool,
    reason: DenyReason,
    tool: String,
    request_id: Option<RequestId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response: Option<String>,
}

impl Serialize for ActionDenied {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let response = self.response().map(str::to_owned);
        DeniedWire {
            denied: response.is_none(),
            reason: self.reason,
            tool: self.tool.clone(),
            request_id: self.request_id.clone(),
            detail: if response.is_some() { None } else { self.detail.clone() },
            response,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ActionDenied {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = DeniedWire::deserialize(d)?;
        Ok(ActionDenied {
            reason: w.reason,
            tool: w.tool,
            request_id: w.request_id,
            detail: w.response.or(w.detail),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn action_denied_serializes_and_displays_as_designed() {
        let d = ActionDenied::new(DenyReason::UserDenied, "delete_file")
            .with_request(Some("3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d".parse().unwrap()));
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            json!({"denied": true, "reason": "user_denied", "tool": "delete_file",
                   "request_id": "3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d"})
        );
        assert_eq!(d.to_string(), "Blocked by AgentGuard (user_denied)");
        let with_note = d.clone().with_detail(Some("wrong customer".into()));
        assert_eq!(
            with_note.to_string(),
            "Blocked by AgentGuard (user_denied: wrong customer)"
        );
        let back: ActionDenied = serde_json::from_value(serde_json::to_value(&with_note).unwrap()).unwrap();
        assert_eq!(back, with_note);
    }
}
