//! The richer answers' steps of the decision core: an approver's edit taken (checked, masked secrets restored,
//! frozen, judged again), a standing grant found and used, and the audit lines of grants and votes. `decide.rs`
//! calls them at their place in the one flow.

use serde_json::{json, Value};

use super::decide::Parked;
use super::plan::{Asking, Plan};
use super::{Gating, Inner};
use crate::audit::{AuditDecision, AuditRecord};
use crate::params::{FrozenParams, ParamsDigest, REDACTED};
use crate::policy::{GrantCondition, PolicyStamp};
use crate::request::{ApprovalRequest, DenyReason, ToolCall, Vote};
use crate::store::Grant;
use agentguard_classify::{classify, Risk};

impl Inner {
    /// Takes an approver's edited params: masked secrets restored from the original, checked by the tool's reader,
    /// frozen (size and depth limits) and judged by the policy again. `Err` carries the reason and what to tell the
    /// agent.
    pub(super) fn take_edit(&self, parked: &Parked, mut raw: Value) -> Result<Edit, (DenyReason, String)> {
        let tool = parked.request.tool();
        restore_masked(&mut raw, &parked.params);
        parked.edits().check(&raw).map_err(|why| {
            (
                DenyReason::EditRejected,
                format!("the approver's edit of `{tool}` does not fit its arguments: {why}; nothing ran"),
            )
        })?;
        let frozen = FrozenParams::freeze(raw, self.max_params_bytes).map_err(|rejected| {
            (
                DenyReason::EditRejected,
                format!("the approver's edit of `{tool}` cannot be used: {rejected}; nothing ran"),
            )
        })?;
        if self.policy.is_some() {
            let req = &parked.request;
            let mut call = ToolCall::new(tool, frozen.value().clone());
            call.agent_id = req.agent_id().map(str::to_owned);
            call.session_id = req.session_id().map(str::to_owned);
            call.server = req.server().map(str::to_owned);
            if let (Plan::Deny(why), _) = self.plan(&call, Gating::Always(req.risk()), Some(req.risk())) {
                return Err((
                    DenyReason::PolicyDenied,
                    format!("the policy denies the call as edited by the approver: {why}; nothing ran"),
                ));
            }
        }
        let shown = self.redactor.redact_with(frozen.value(), parked.redact());
        let digest = frozen.digest().clone();
        Ok(Edit {
            params: frozen.into_value(),
            digest,
            shown,
        })
    }

    /// A standing grant that lets `call` through now, used once (atomically, in the store); `None` when none does,
    /// when the rules that ask forbid grants, or when the store cannot be read (then a person is asked).
    pub(super) fn grant_for(&self, call: &ToolCall, asking: &Asking) -> Option<Grant> {
        if asking.quorum.is_some() || asking.no_remember.is_some() {
            return None;
        }
        if classify(&call.name) == Some(Risk::SuspiciousName) {
            return None;
        }
        let candidates = self.store.grants_for(&call.name).ok()?;
        candidates.into_iter().find(|grant| {
            grant.covers(call)
                && grant.when.as_deref().is_none_or(|when| {
                    GrantCondition::compile(when).is_ok_and(|condition| condition.matches(&call.params))
                })
                && self.store.use_grant(&grant.id).unwrap_or(false)
        })
    }

    /// Audits a call a standing grant let through: the grant's id and who made it.
    /// A gated call: if its line cannot be written, it does not run (the grant's use is spent).
    pub(super) fn record_granted(
        &self,
        call: &ToolCall,
        stamp: Option<&PolicyStamp>,
        grant: &Grant,
    ) -> Result<(), crate::audit::AuditError> {
        let Some(audit) = &self.audit else { return Ok(()) };
        let (shown, digest) = self.params_for_record(call);
        let granted = json!({ "id": grant.id, "by": grant.created_by, "scope": grant.scope });
        let mut rec = AuditRecord::of_call(call, AuditDecision::Allowed);
        rec.params = Some(&shown);
        rec.params_digest = digest.as_ref();
        rec.policy = stamp;
        rec.grant = Some(&granted);
        rec.actor = grant.created_by.as_deref();
        rec.detail = Some("a standing grant let it run");
        audit.record(&rec)
    }

    /// Audits each vote cast on a quorum request, before its verdict's line.
    pub(super) fn record_votes(&self, request: &ApprovalRequest, votes: &[Vote]) {
        let Some(audit) = &self.audit else { return };
        for vote in votes {
            let mut rec = AuditRecord::of_request(request, AuditDecision::Vote);
            rec.event = "vote";
            rec.params = None;
            rec.actor = Some(&vote.actor);
            rec.detail = Some(if vote.approve { "approve" } else { "deny" });
            if let Err(e) = audit.record(&rec) {
                report!("agentguard: audit record of a vote failed: {e}");
            }
        }
    }
}

/// An approver's edit, taken: the frozen params that run, their digest, and how they are shown (redacted).
pub(super) struct Edit {
    pub(super) params: Value,
    pub(super) digest: ParamsDigest,
    pub(super) shown: Value,
}

/// Puts back the original value wherever an edit kept the redaction mask of a secret the approver was not shown.
fn restore_masked(edited: &mut Value, original: &Value) {
    if edited.as_str() == Some(REDACTED) {
        *edited = original.clone();
        return;
    }
    match (edited, original) {
        (Value::Object(e), Value::Object(o)) => {
            for (key, value) in e.iter_mut() {
                if let Some(was) = o.get(key) {
                    restore_masked(value, was);
                }
            }
        }
        (Value::Array(e), Value::Array(o)) => {
            for (value, was) in e.iter_mut().zip(o) {
                restore_masked(value, was);
            }
        }
        _ => {}
    }
}
