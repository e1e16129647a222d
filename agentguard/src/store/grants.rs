//! Standing grants ("remember this"): what a store keeps of them ([`Grant`]), and how a grant is matched to a call.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::request::{ApprovalRequest, GrantScope, GrantSpec, RequestId, ToolCall};

/// A standing grant: later calls of `tool` within its scope run without asking, until it expires, runs out of uses
/// or is revoked. Made by an approval that asked to be remembered ([`Resolution::remember`](crate::Resolution::remember)),
/// kept in the store so every process sharing it honours it, listed and revoked with `agentguard grants`, the HTTP
/// API and the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The grant's id (a UUID): what `agentguard grants revoke` takes, and what the audit line of every call it lets
    /// through names.
    pub id: String,
    /// The tool it covers, exactly as the approved request named it.
    pub tool: String,
    /// The tool server, when the request named one: the grant covers that server's tool only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Who it covers.
    pub scope: GrantScope,
    /// The agent it covers (scope `agent`), or the agent that asked (for the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The session it covers (scope `session`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Its tests on the arguments (the body of a policy `when` table), if narrowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Who made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// When (Unix milliseconds).
    pub created_at_ms: u64,
    /// The request whose approval made it.
    pub from_request: RequestId,
    /// When it ends (Unix milliseconds), if bounded by time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// Uses left, if bounded by count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<u32>,
    /// Calls it has let through.
    #[serde(default)]
    pub used: u32,
    /// When it was revoked (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<u64>,
    /// Who revoked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Grant {
    /// The grant an approval of `request` by `actor` makes from `spec`, at `now_ms`.
    pub fn from_spec(request: &ApprovalRequest, spec: &GrantSpec, actor: Option<&str>, now_ms: u64) -> Grant {
        Grant {
            id: uuid::Uuid::new_v4().hyphenated().to_string(),
            tool: request.tool().to_owned(),
            server: request.server().map(str::to_owned),
            scope: spec.get_scope(),
            agent_id: request.agent_id().map(str::to_owned),
            session_id: request.session_id().map(str::to_owned),
            when: spec.get_when().map(str::to_owned),
            created_by: actor.map(str::to_owned),
            created_at_ms: now_ms,
            from_request: request.request_id().clone(),
            expires_at_ms: spec
                .effective_ttl()
                .map(|ttl| now_ms.saturating_add(ttl.as_millis() as u64)),
            uses_left: spec.get_uses(),
            used: 0,
            revoked_at_ms: None,
            revoked_by: None,
        }
    }

    /// `true` while it can let a call through: not revoked, not expired, uses left.
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.revoked_at_ms.is_none()
            && self.expires_at_ms.is_none_or(|t| now_ms < t)
            && self.uses_left.is_none_or(|n| n > 0)
    }

    /// Why it no longer lets calls through, if it does not: `revoked`, `expired`, `used up`.
    pub fn status(&self, now_ms: u64) -> &'static str {
        if self.revoked_at_ms.is_some() {
            "revoked"
        } else if self.expires_at_ms.is_some_and(|t| now_ms >= t) {
            "expired"
        } else if self.uses_left == Some(0) {
            "used up"
        } else {
            "active"
        }
    }

    /// [`status`](Self::status) now.
    pub fn status_now(&self) -> &'static str {
        self.status(now_ms())
    }

    /// Time left, if bounded by time.
    pub fn remaining(&self, now_ms: u64) -> Option<Duration> {
        self.expires_at_ms
            .map(|t| Duration::from_millis(t.saturating_sub(now_ms)))
    }

    /// Whether it covers `call` by tool, server and scope (its tests on the arguments aside). The tool name must
    /// be the very one approved: a grant never widens to another spelling.
    pub fn covers(&self, call: &ToolCall) -> bool {
        if self.tool != call.name || self.server.as_deref() != call.server.as_deref() {
            return false;
        }
        match self.scope {
            GrantScope::Everyone => true,
            GrantScope::Agent => self.agent_id.is_some() && self.agent_id.as_deref() == call.agent_id.as_deref(),
            GrantScope::Session => {
                self.session_id.is_some() && self.session_id.as_deref() == call.session_id.as_deref()
            }
        }
    }
}
