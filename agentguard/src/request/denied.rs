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
    /// More about the reason: the approver's note, the failure's message.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

impl fmt::Display for ActionDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
}

impl Serialize for ActionDenied {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        DeniedWire {
            denied: true,
            reason: self.reason,
            tool: self.tool.clone(),
            request_id: self.request_id.clone(),
            detail: self.detail.clone(),
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
            detail: w.detail,
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
