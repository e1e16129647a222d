//! The one decision core every entry point shares.
//!
//! [`start`](Inner::start) classifies the call: a safe one is audited and allowed at once; a gated one has its params
//! frozen into a request ([`Parked`]). The approver is then asked (blocking or async, `ask.rs`), and
//! [`conclude`](Inner::conclude) rechecks the arguments, writes the audit line and hands out the [`Allowed`] decision only if
//! the call may run. `decide_blocking` and `decide` are the sync and async paths through these same steps.

use std::borrow::Cow;
use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

use super::answers::Edit;
use super::approval::{self, Allowed, Route};
use super::plan::{Asking, Plan};
use super::trace::CallSpan;
use super::{AgentGuard, Gating, Inner, Recheck};
use crate::approver::{self, Approver, Verdict};
use crate::audit::{AuditDecision, AuditRecord};
use crate::params::{
    canonical_json, canonical_sha256, deeper_than, FrozenParams, ParamsDigest, ParamsRejected, MAX_PARAMS_DEPTH,
};
use crate::policy::PolicyStamp;
use crate::request::{ActionDenied, ApprovalRequest, DenyReason, EditCheck, RequestId, ToolCall};
use agentguard_classify::{name_key, Risk};

#[cfg(feature = "tokio")]
#[path = "decide_async.rs"]
mod asynchronous;
#[cfg(feature = "tokio")]
pub(crate) use asynchronous::{Decided, Started, Waiting};

/// When a parked approval is claimed in the store (marked `executed`, at most once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// As the decision ends: the executor or body runs right after (`execute`, `#[gate]`).
    Now,
    /// When the handler's [`Approval`](crate::Approval) is minted (`dispatch`): a refused one is never claimed.
    AtApproval,
}

/// A gated call between its request and its verdict. A parked call keeps this for its whole wait (with a million
/// parked, each byte is a megabyte), so what most calls lack is boxed together ([`Parked::rare`]).
pub(crate) struct Parked {
    pub(super) request: ApprovalRequest,
    /// The frozen params (not redacted): what runs if approved.
    pub(super) params: Value,
    /// The deadline on the monotonic clock.
    pub(super) until: Instant,
    /// The policy's stamp, a check of edits other than "any object", keys to mask: `None` when the call has none.
    rare: Option<Box<RareParked>>,
}

/// What only some parked calls have (see [`Parked`]).
struct RareParked {
    /// What the policy said (its rule asked, or its default), for the verdict's audit line.
    stamp: Option<PolicyStamp>,
    /// How an approver's edit of the params is checked.
    edits: EditCheck,
    /// The keys the call asked to mask (applied to edited params too).
    redact: Vec<String>,
}

impl Parked {
    fn new(
        request: ApprovalRequest,
        params: Value,
        until: Instant,
        stamp: Option<PolicyStamp>,
        edits: EditCheck,
        redact: Vec<String>,
    ) -> Self {
        let plain = stamp.is_none() && edits == EditCheck::Object && redact.is_empty();
        Parked {
            request,
            params,
            until,
            rare: (!plain).then(|| Box::new(RareParked { stamp, edits, redact })),
        }
    }

    /// What the policy said, if a policy judged the call.
    pub(super) fn stamp(&self) -> Option<&PolicyStamp> {
        self.rare.as_ref().and_then(|rare| rare.stamp.as_ref())
    }

    /// How an approver's edit of the params is checked.
    pub(super) fn edits(&self) -> &EditCheck {
        self.rare.as_ref().map_or(&EditCheck::Object, |rare| &rare.edits)
    }

    /// The keys the call asked to mask.
    pub(super) fn redact(&self) -> &[String] {
        self.rare.as_ref().map_or(&[], |rare| &rare.redact)
    }
}

/// Where a call stands after [`Inner::start`].
enum Start {
    /// Safe: nobody is asked.
    Allowed(Allowed),
    /// Gated: the request waits for a verdict.
    Ask(Parked),
}

impl AgentGuard {
    /// The blocking path: decides `call` and returns the approval if it may run. `recheck` rebuilds the params after
    /// approval to catch a change behind the approver's back.
    pub(crate) fn decide_blocking(
        &self,
        call: ToolCall,
        gate: Gating,
        recheck: Option<&Recheck<'_>>,
        claim: Claim,
    ) -> Result<Allowed, ActionDenied> {
        let inner = &*self.inner;
        let span = CallSpan::of(&call);
        let decision = span.in_scope(|| match inner.start(call, gate)? {
            Start::Allowed(approval) => {
                inner.unchanged_since_judged(&approval, recheck)?;
                Ok(approval)
            }
            Start::Ask(parked) => {
                span.parked(&parked.request);
                let verdict = inner.ask_blocking(&parked);
                inner.conclude(parked, verdict, recheck, claim)
            }
        });
        span.decided(decision)
    }
}

impl Inner {
    /// A call a policy allowed by its arguments runs only with those arguments: a `#[gate]` body runs with its live
    /// arguments, so they are serialized again and compared with what the policy judged (a value behind a lock or a
    /// cell could have changed in between). A change is a denial, audited after the allowed line.
    fn unchanged_since_judged(&self, approval: &Allowed, recheck: Option<&Recheck<'_>>) -> Result<(), ActionDenied> {
        let (true, Some(recheck)) = (approval.unasked_by_rule(), recheck) else {
            return Ok(());
        };
        let digest = |v: &Value| canonical_json(v, usize::MAX).map(|text| ParamsDigest::of(text.as_bytes()));
        let judged = digest(approval.params());
        if judged.is_some() && recheck().ok().is_some_and(|now| digest(&now) == judged) {
            return Ok(());
        }
        let detail = "the arguments changed after the policy judged them; nothing ran";
        if let Some(audit) = &self.audit {
            let mut rec = AuditRecord::new(approval.tool(), AuditDecision::Blocked);
            rec.reason = Some(DenyReason::ParamsChanged.as_str());
            rec.params_digest = judged.as_ref();
            rec.detail = Some(detail);
            let _ = audit.record(&rec);
        }
        Err(ActionDenied::new(DenyReason::ParamsChanged, approval.tool()).with_detail(Some(detail.to_owned())))
    }

    /// The first step of every decision: a safe call is audited and allowed; a gated one is frozen into a request.
    fn start(&self, call: ToolCall, gate: Gating) -> Result<Start, ActionDenied> {
        if let Some(problem) = call.problem() {
            let shown = call.clipped();
            if let Some(audit) = &self.audit {
                let mut rec = AuditRecord::of_call(&shown, AuditDecision::Blocked);
                rec.reason = Some(DenyReason::InvalidCall.as_str());
                rec.detail = Some(&problem);
                let _ = audit.record(&rec);
            }
            return Err(ActionDenied::new(DenyReason::InvalidCall, shown.name).with_detail(Some(problem)));
        }
        let risk = self.gate_risk(&call.name, gate);
        let (plan, stamp) = self.plan(&call, gate, risk);
        match plan {
            Plan::Allow(route) => {
                self.record_allowed(&call, stamp.as_ref());
                Ok(Start::Allowed(approval::unasked(call.name, call.params, route)))
            }
            Plan::Ask(risk, asking) => {
                if let Some(grant) = self.grant_for(&call, &asking) {
                    // Fail closed as for any gated call: no audit line, no run.
                    if let Err(e) = self.record_granted(&call, stamp.as_ref(), &grant) {
                        return Err(
                            ActionDenied::new(DenyReason::AuditUnavailable, call.name).with_detail(Some(format!(
                                "a standing grant covers this call, but its audit record failed: {e}"
                            ))),
                        );
                    }
                    return Ok(Start::Allowed(approval::unasked(call.name, call.params, Route::Grant)));
                }
                if asking.quorum.is_some() && !matches!(self.approver, Approver::External { .. }) {
                    let rule = asking.rule.as_ref().map_or("a policy rule", |(name, _)| name.as_str());
                    let detail = format!(
                        "policy rule {rule:?} needs a quorum of approvers, which only an external guard can collect \
                         (votes through its store: the page, the HTTP API, `agentguard approve`); this guard's \
                         approver is one person or callback"
                    );
                    if let Some(audit) = &self.audit {
                        let mut rec = AuditRecord::of_call(&call, AuditDecision::Blocked);
                        rec.reason = Some(DenyReason::ApproverFailed.as_str());
                        rec.risk = Some(risk);
                        rec.detail = Some(&detail);
                        rec.policy = stamp.as_ref();
                        let _ = audit.record(&rec);
                    }
                    return Err(ActionDenied::new(DenyReason::ApproverFailed, call.name).with_detail(Some(detail)));
                }
                self.prepare(call, risk, stamp, asking).map(Start::Ask)
            }
            Plan::Deny(detail) => {
                if let Some(audit) = &self.audit {
                    // What was refused, redacted: the record of a denial is worth as much as that of a run.
                    let (shown, digest) = self.params_for_record(&call);
                    let mut rec = AuditRecord::of_call(&call, AuditDecision::Blocked);
                    rec.reason = Some(DenyReason::PolicyDenied.as_str());
                    rec.params = Some(&shown);
                    rec.params_digest = digest.as_ref();
                    rec.risk = risk;
                    rec.detail = Some(&detail);
                    rec.policy = stamp.as_ref();
                    let _ = audit.record(&rec);
                }
                Err(ActionDenied::new(DenyReason::PolicyDenied, call.name).with_detail(Some(detail)))
            }
        }
    }

    /// Audits a call that runs without asking. An audit failure does not stop a safe call (only gated calls fail
    /// closed on it); it is reported on stderr.
    fn record_allowed(&self, call: &ToolCall, stamp: Option<&PolicyStamp>) {
        let Some(audit) = &self.audit else { return };
        let (shown, digest) = self.params_for_record(call);
        let mut rec = AuditRecord::of_call(call, AuditDecision::Allowed);
        rec.params = Some(&shown);
        rec.params_digest = digest.as_ref();
        rec.policy = stamp;
        if stamp.is_none() && !self.safe.is_empty() && self.safe.contains(&name_key(&call.name)) {
            rec.detail = Some("listed in safe_tools");
        }
        if let Err(e) = audit.record_deferred(&rec) {
            report!("agentguard: audit record for safe call {:?} failed: {e}", call.name);
        }
    }

    /// A call's params as an audit line shows them without freezing them: redacted, with the digest of their
    /// canonical text (no copy of the params is made); params too deep or too large to show are a note instead.
    pub(super) fn params_for_record<'c>(&self, call: &'c ToolCall) -> (Cow<'c, Value>, Option<ParamsDigest>) {
        if deeper_than(&call.params, MAX_PARAMS_DEPTH) {
            let refused = ParamsRejected::TooDeep {
                limit: MAX_PARAMS_DEPTH,
            };
            return (Cow::Owned(not_recorded_note(&refused)), None);
        }
        match canonical_sha256(&call.params, self.max_params_bytes) {
            Some(hash) => (
                self.redactor.shown(&call.params, &call.redact),
                Some(ParamsDigest::from_sha256(&hash)),
            ),
            None => {
                let refused = ParamsRejected::TooLarge {
                    limit: self.max_params_bytes,
                };
                (Cow::Owned(not_recorded_note(&refused)), None)
            }
        }
    }

    /// Freezes the params and builds the request; denies (and audits) params over the size limit.
    fn prepare(
        &self,
        mut call: ToolCall,
        risk: Risk,
        stamp: Option<PolicyStamp>,
        asking: Asking,
    ) -> Result<Parked, ActionDenied> {
        let params = std::mem::take(&mut call.params); // moved into the snapshot, not copied
        let frozen = match FrozenParams::freeze(params, self.max_params_bytes) {
            Ok(f) => f,
            Err(rejected) => {
                let detail = rejected.to_string();
                let reason = rejected.deny_reason();
                if let Some(audit) = &self.audit {
                    let note = not_recorded_note(&rejected);
                    let mut rec = AuditRecord::of_call(&call, AuditDecision::Blocked);
                    rec.reason = Some(reason.as_str());
                    rec.risk = Some(risk);
                    rec.params = Some(&note);
                    rec.detail = Some(&detail);
                    rec.policy = stamp.as_ref();
                    let _ = audit.record(&rec);
                }
                return Err(ActionDenied::new(reason, call.name).with_detail(Some(detail)));
            }
        };
        let ToolCall {
            name,
            agent_id,
            session_id,
            server,
            reason,
            redact,
            edits,
            ..
        } = call;
        // Nobody answers their own request: the agent itself, and the people the policy maps to it.
        let mut excluded: Vec<String> = Vec::new();
        if let Some(agent) = &agent_id {
            excluded.push(agent.clone());
            if let Some(slot) = &self.policy {
                excluded.extend(slot.current().principals_of(agent).iter().cloned());
            }
        }
        let remember_refused = match (&asking.no_remember, &asking.quorum) {
            _ if risk == Risk::SuspiciousName => {
                Some("the tool's name is suspicious (hidden or look-alike characters): every call is asked".to_owned())
            }
            (Some(rule), _) => Some(format!(
                "policy rule {rule:?} says remember = false: every call is asked"
            )),
            (None, Some(_)) => Some("a quorum request makes no standing grant: each call needs its quorum".to_owned()),
            (None, None) => None,
        };
        let now = SystemTime::now();
        let until = Instant::now() + self.timeout;
        let shown = self.redactor.redact_with(frozen.value(), &redact);
        let digest = frozen.digest().clone();
        let request = ApprovalRequest::new(
            RequestId::new(),
            name,
            shown,
            digest,
            risk,
            reason,
            agent_id,
            session_id,
            now,
            now + self.timeout,
        )
        .with_server(server)
        .with_answers(
            asking.quorum,
            excluded,
            edits.refused().map(str::to_owned),
            remember_refused,
        );
        let request = match asking.rule {
            Some((rule, message)) => request.with_policy_rule(Some(rule), message),
            None => request,
        };
        Ok(Parked::new(request, frozen.into_value(), until, stamp, edits, redact))
    }

    /// The last step of every gated decision: checks the params again if asked, takes an approver's edit (checked,
    /// frozen, judged by the policy again), records the verdict, and returns the approval only if the call may run (a
    /// gated call whose audit line cannot be written does not run).
    ///
    /// In external mode the store hears the end of it too, and only once it is known: an approval is claimed
    /// (`executed`, at most once) after its audit line is written, just before it runs; one that will not run after
    /// all (arguments changed, edit rejected, audit failed) is abandoned, so the store ends it `expired`, never
    /// `approved` forever or `executed` for a call that never started.
    pub(super) fn conclude(
        &self,
        parked: Parked,
        verdict: Verdict,
        recheck: Option<&Recheck<'_>>,
        claim: Claim,
    ) -> Result<Allowed, ActionDenied> {
        let verdict = self.in_time(verdict, parked.until);
        let verdict = match (verdict, recheck) {
            (verdict @ Verdict::Approved { .. }, Some(recheck)) => match params_unchanged(&parked, recheck) {
                Ok(()) => verdict,
                Err(detail) => Verdict::Denied {
                    reason: DenyReason::ParamsChanged,
                    actor: verdict.actor().map(str::to_owned),
                    detail: Some(detail),
                },
            },
            (verdict, _) => verdict,
        };
        let (verdict, edit) = match verdict {
            Verdict::Approved {
                actor,
                edited: Some(raw),
                grant,
            } => match self.take_edit(&parked, raw) {
                Ok(edit) => (
                    Verdict::Approved {
                        actor,
                        edited: Some(Value::Null),
                        grant,
                    },
                    Some(edit),
                ),
                Err((reason, detail)) => (
                    Verdict::Denied {
                        reason,
                        actor,
                        detail: Some(detail),
                    },
                    None,
                ),
            },
            verdict => (verdict, None),
        };
        let in_store = matches!(self.approver, Approver::External { .. });
        let req = &parked.request;
        let denied = |reason: DenyReason, detail: Option<String>| {
            ActionDenied::new(reason, req.tool())
                .with_request(Some(req.request_id().clone()))
                .with_detail(detail)
        };
        let stamp = parked.stamp();
        let written = self.record_verdict(req, &verdict, stamp, edit.as_ref());
        match verdict {
            Verdict::Responded { text, .. } => Err(ActionDenied::responded(req.tool(), req.request_id().clone(), text)),
            Verdict::Denied { reason, detail, .. } => {
                if in_store
                    && matches!(
                        reason,
                        DenyReason::ParamsChanged | DenyReason::EditRejected | DenyReason::PolicyDenied
                    )
                {
                    // Approved in the store, but it will not run: never leave it claimable.
                    let _ = self.store.abandon(req.request_id());
                }
                Err(denied(reason, detail))
            }
            Verdict::Approved { .. } if written.is_err() => {
                if in_store {
                    let _ = self.store.abandon(req.request_id());
                }
                let e = written.err().map(|e| e.to_string()).unwrap_or_default();
                Err(denied(
                    DenyReason::AuditUnavailable,
                    Some(format!(
                        "the approved call was not run because its audit record failed: {e}"
                    )),
                ))
            }
            Verdict::Approved { actor, .. } => {
                if in_store && claim == Claim::Now {
                    // At most once: the claim is the store's compare-and-set. A claim that fails is audited too, so
                    // the approved line above is followed by the reason it did not run.
                    let claimed = match self.store.claim(req.request_id()) {
                        Ok(true) => None,
                        // Not claimable: run already, or expired meanwhile (the store sweeps an approval its agent
                        // did not claim soon after the deadline). Say which.
                        Ok(false) => Some(match self.store.get(req.request_id()) {
                            Ok(Some(stored)) if stored.decision.state == crate::store::RequestState::Expired => {
                                Verdict::deny(
                                    DenyReason::ApprovalTimeout,
                                    "the approval expired before this agent could start the call".to_owned(),
                                )
                            }
                            _ => Verdict::deny(DenyReason::AlreadyExecuted, None),
                        }),
                        Err(e) => Some(super::wait::store_down(e)),
                    };
                    if let Some(refused @ Verdict::Denied { reason, .. }) = claimed {
                        let _ = self.record_verdict(req, &refused, stamp, None);
                        let detail = match refused {
                            Verdict::Denied { detail, .. } => detail,
                            _ => None,
                        };
                        return Err(denied(reason, detail));
                    }
                }
                let id = req.request_id().clone();
                let original = req.params_digest().clone();
                let (params, digest, edited) = match edit {
                    Some(edit) => (
                        edit.params,
                        edit.digest.clone(),
                        Some(approval::Edited {
                            by: actor.clone(),
                            original_digest: original,
                            digest: edit.digest,
                            shown: edit.shown,
                        }),
                    ),
                    None => (parked.params, original, None),
                };
                Ok(approval::asked(
                    parked.request.into_tool(),
                    params,
                    id,
                    digest,
                    actor,
                    in_store,
                    in_store && claim == Claim::AtApproval,
                )
                .with_edit(edited))
            }
        }
    }

    /// Writes the audit line of a gated request's verdict.
    fn record_verdict(
        &self,
        req: &ApprovalRequest,
        verdict: &Verdict,
        stamp: Option<&PolicyStamp>,
        edit: Option<&Edit>,
    ) -> Result<(), crate::audit::AuditError> {
        let Some(audit) = &self.audit else { return Ok(()) };
        let mut rec = AuditRecord::of_request(req, verdict.audit_decision());
        rec.policy = stamp;
        let edited = edit.map(|e| json!({ "params_digest": e.digest, "params": e.shown }));
        rec.edit = edited.as_ref();
        let made = match verdict {
            Verdict::Approved { grant: Some(id), .. } => Some(json!({ "id": id, "made": true })),
            _ => None,
        };
        rec.grant = made.as_ref();
        match verdict {
            Verdict::Denied { reason, detail, .. } => {
                rec.reason = Some(reason.as_str());
                rec.detail = detail.as_deref();
            }
            Verdict::Responded { text, .. } => {
                rec.reason = Some(DenyReason::Responded.as_str());
                rec.detail = Some(text);
            }
            Verdict::Approved { .. } => {}
        }
        rec.actor = verdict.actor();
        audit.record(&rec)
    }

    /// The one deadline check at the moment of decision: an approval that reaches the guard after the deadline is a
    /// timeout, whichever approver gave it (a terminal prompt, a callback that blocked its thread, an async callback
    /// whose runtime was stalled). In external mode the store already refused an answer given after the deadline,
    /// so an approval it returns was given in time, even if the waiting agent wakes late.
    fn in_time(&self, verdict: Verdict, until: Instant) -> Verdict {
        let late = Instant::now() > until;
        match verdict {
            Verdict::Approved { .. } if late && !matches!(self.approver, Approver::External { .. }) => Verdict::deny(
                DenyReason::ApprovalTimeout,
                "the approver answered after the deadline".to_owned(),
            ),
            verdict => verdict,
        }
    }

    /// Tells the external mode's `on_request` (if any) about a parked request; a panic in it is audited, not
    /// propagated.
    pub(super) fn notify(&self, request: &ApprovalRequest) {
        let Approver::External {
            on_request: Some(notifier),
        } = &self.approver
        else {
            return;
        };
        if let Err(panic) = approver::call_notifier(notifier, request) {
            let detail = format!("on_request panicked: {panic}");
            let Some(audit) = &self.audit else { return };
            let mut rec = AuditRecord::of_request(request, AuditDecision::NotifierError);
            rec.event = "notifier";
            rec.params = None;
            rec.detail = Some(&detail);
            if let Err(e) = audit.record(&rec) {
                report!("agentguard: {detail}; and its audit record failed: {e}");
            }
        }
    }
}

fn params_unchanged(parked: &Parked, recheck: &Recheck<'_>) -> Result<(), String> {
    let now = recheck().map_err(|e| format!("the arguments could not be serialized again after approval: {e}"))?;
    let same = canonical_json(&now, usize::MAX)
        .is_some_and(|text| ParamsDigest::of(text.as_bytes()) == *parked.request.params_digest());
    if same {
        Ok(())
    } else {
        Err("the arguments changed after they were shown to the approver; nothing ran".to_owned())
    }
}

/// What the audit records instead of params it refused to show.
fn not_recorded_note(rejected: &ParamsRejected) -> Value {
    let why = match rejected {
        ParamsRejected::TooLarge { limit } => format!("params larger than {limit} bytes are not recorded"),
        ParamsRejected::TooDeep { limit } => format!("params nested deeper than {limit} levels are not recorded"),
    };
    json!({ "omitted": why })
}
