//! What the guard hands out once a call may run: the internal [`Allowed`] decision, the public [`Approval`]
//! capability a `#[derive(Tool)]` handler receives, and the one ending every allowed call shares (run it, then record
//! how it ended).

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;

use super::trace::{CallSpan, RunTrace};
use super::{AgentGuard, Inner};
use crate::params::{canonical_json, ParamsDigest};
use crate::request::{ActionDenied, DenyReason, RequestId};
use crate::store::{ApprovalStore, ExecOutcome};
use crate::tool::ToolArgs;

/// How a call came to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// An approver (a person, a callback) approved this request.
    Asked,
    /// The guard's own rules (its lists, the classifier) found the call safe.
    GuardRules,
    /// The caller declared the call safe (`Gating::Never`): nothing about it was checked.
    Declared,
    /// A policy allowed it: an `allow` rule (one naming the tool exactly, for a tool declared to always ask) or the
    /// policy's `default = "allow"`.
    Policy,
    /// A standing grant a person made let it through (judged on its arguments).
    Grant,
}

/// How an allowed call differs from what the agent asked for: an approver edited its arguments. The agent's result
/// should say so ([`notice`](Self::notice)); the adapters (rig, MCP) add it to the tool's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    pub(crate) by: Option<String>,
    pub(crate) original_digest: ParamsDigest,
    pub(crate) digest: ParamsDigest,
    pub(crate) shown: Value,
}

impl Edited {
    /// Who edited.
    pub fn by(&self) -> Option<&str> {
        self.by.as_deref()
    }
    /// The digest of the params the agent asked with.
    pub fn original_digest(&self) -> &ParamsDigest {
        &self.original_digest
    }
    /// The digest of the params that ran.
    pub fn params_digest(&self) -> &ParamsDigest {
        &self.digest
    }
    /// The params that ran, redacted.
    pub fn params(&self) -> &Value {
        &self.shown
    }
    /// One line for the agent: `agentguard: an approver (alice) edited the arguments; the call ran with {…}`.
    pub fn notice(&self) -> String {
        format!(
            "agentguard: an approver ({}) edited the arguments; the call ran with {}",
            self.by.as_deref().unwrap_or("unnamed"),
            self.shown
        )
    }
}

/// The guard's decision that a call may run: its tool, the frozen params and how it was allowed.
///
/// Internal: generated code passes it back to the guard (`#[gate]`), and `dispatch` turns it into a
/// [`Grant`](crate::tool::Grant). It is not a capability: nothing outside the guard can turn it into an [`Approval`].
#[derive(Debug)]
#[must_use = "an allowed call is consumed by running it"]
pub struct Allowed {
    tool: String,
    params: Value,
    /// The request and the approved params' digest, when someone was asked. Boxed: a safe call has neither, and a
    /// decision held inline (`Deciding`, a dispatch's future) keeps room for them.
    asked: Option<Box<Asked>>,
    actor: Option<String>,
    /// Parked in the store (external mode): its execution outcome is recorded there.
    parked: bool,
    /// Parked and not claimed yet: the claim is made when the handler's `Approval` is minted (`dispatch`).
    unclaimed: Arc<AtomicBool>,
    route: Route,
    /// The approver's edit, when the params are not the ones the agent asked with.
    /// Boxed: most calls are not edited, and a parked call's future keeps room for an approval (88 bytes inline).
    edited: Option<Box<Edited>>,
    /// The call's span (feature `tracing`; nothing without it).
    span: CallSpan,
}

/// What an [`Allowed`] that someone was asked about knows of its request.
#[derive(Debug)]
struct Asked {
    request_id: RequestId,
    digest: ParamsDigest,
}

/// A call that runs without asking anyone, by the guard's rules or by the caller's declaration. (Free functions, not
/// associated ones, so the compiler never suggests them to code outside the guard.)
pub(super) fn unasked(tool: String, params: Value, route: Route) -> Allowed {
    Allowed {
        tool,
        params,
        asked: None,
        actor: None,
        parked: false,
        unclaimed: Arc::new(AtomicBool::new(false)),
        route,
        edited: None,
        span: CallSpan::default(),
    }
}

/// A request an approver approved.
pub(super) fn asked(
    tool: String,
    params: Value,
    request_id: RequestId,
    digest: ParamsDigest,
    actor: Option<String>,
    parked: bool,
    unclaimed: bool,
) -> Allowed {
    Allowed {
        tool,
        params,
        asked: Some(Box::new(Asked { request_id, digest })),
        actor,
        parked,
        unclaimed: Arc::new(AtomicBool::new(unclaimed)),
        route: Route::Asked,
        edited: None,
        span: CallSpan::default(),
    }
}

impl Allowed {
    /// The tool that was allowed.
    pub fn tool(&self) -> &str {
        &self.tool
    }

    /// The frozen params: exactly what the approver was shown (before redaction).
    pub fn params(&self) -> &Value {
        &self.params
    }

    /// Takes the params.
    pub fn into_params(self) -> Value {
        self.params
    }

    /// This decision, with the approver's edit.
    pub(super) fn with_edit(mut self, edited: Option<Edited>) -> Self {
        self.edited = edited.map(Box::new);
        self
    }

    /// The approver's edit, when the params that run are not the ones the agent asked with.
    pub fn edited(&self) -> Option<&Edited> {
        self.edited.as_deref()
    }

    /// This decision, carrying the call's span for its run.
    pub(super) fn traced(mut self, span: CallSpan) -> Self {
        self.span = span;
        self
    }

    /// The call's span.
    pub(super) fn span(&self) -> &CallSpan {
        &self.span
    }

    /// The tool's name and the frozen params.
    pub(crate) fn into_parts(self) -> (String, Value) {
        (self.tool, self.params)
    }

    /// The approval request's id; `None` when the call was safe and nobody was asked.
    pub fn request_id(&self) -> Option<&RequestId> {
        self.asked.as_ref().map(|asked| &asked.request_id)
    }

    /// The digest of the approved params; `None` when nobody was asked.
    pub fn params_digest(&self) -> Option<&ParamsDigest> {
        self.asked.as_ref().map(|asked| &asked.digest)
    }

    /// Who approved (`terminal`, `callback`, or the actor given to `resolve`).
    pub fn actor(&self) -> Option<&str> {
        self.actor.as_deref()
    }

    /// Whether a rule judging its arguments let it run unasked (a policy rule, a standing grant): a `#[gate]` body's
    /// live arguments must then still be the ones judged.
    pub(super) fn unasked_by_rule(&self) -> bool {
        matches!(self.route, Route::Policy | Route::Grant)
    }

    /// `true` if a person (or approver) was asked; `false` for a safe call.
    pub fn was_asked(&self) -> bool {
        self.route == Route::Asked
    }

    /// Mints the [`Approval`] of this very call for the handler that runs it: only when an approver approved it or
    /// the guard's own rules found it safe (never on the caller's word alone), only for the tool `A` names, and only
    /// with the arguments that were approved (their canonical JSON must be the approved params').
    pub(crate) fn approval_for<'a, A: ToolArgs>(
        &'a self,
        args: A,
        store: &dyn ApprovalStore,
    ) -> Result<Approval<'a, A>, ActionDenied> {
        let refuse = |why: String| {
            Err(ActionDenied::new(DenyReason::NotApproved, self.tool.clone())
                .with_request(self.request_id().cloned())
                .with_detail(Some(why)))
        };
        if self.route == Route::Declared {
            return refuse(format!(
                "tool `{}` was declared safe by its caller (Gating::Never), so nobody approved it: no Approval is \
                 made for it",
                self.tool
            ));
        }
        if A::NAME != self.tool {
            return refuse(format!(
                "an Approval for tool `{}` was asked for, but tool `{}` is what was approved",
                A::NAME,
                self.tool
            ));
        }
        if A::ALWAYS_ASK && !matches!(self.route, Route::Asked | Route::Policy | Route::Grant) {
            return refuse(format!(
                "tool `{}` is declared to always ask, but nobody was asked about this call: no Approval is made for it",
                self.tool
            ));
        }
        let shown = serde_json::to_value(&args)
            .ok()
            .and_then(|v| canonical_json(&v, usize::MAX))
            .map(|text| ParamsDigest::of(text.as_bytes()));
        // The caller's arguments are the ones the agent asked with: after an edit, the original's digest.
        let asked = match (&self.edited, self.params_digest()) {
            (Some(edit), _) => Some(edit.original_digest.clone()),
            (None, Some(d)) => Some(d.clone()),
            (None, None) => canonical_json(&self.params, usize::MAX).map(|text| ParamsDigest::of(text.as_bytes())),
        };
        let approved = match self.params_digest() {
            Some(d) => Some(d.clone()),
            None => asked.clone(),
        };
        // The handler gets the arguments read back from the approved snapshot, not the caller's value: a field the
        // snapshot does not show (`#[serde(skip_serializing)]`, a lossy `serialize_with`) cannot carry anything the
        // approver did not see. A field that cannot be read back refuses the call.
        let from_snapshot = serde_json::from_value::<A>(self.params.clone());
        match (shown, approved, from_snapshot) {
            (Some(shown), Some(approved), Ok(args)) if Some(&shown) == asked.as_ref() => {
                self.claim(store)?;
                Ok(Approval {
                    args,
                    request_id: self.request_id().cloned(),
                    digest: approved,
                    actor: self.actor.clone(),
                    edited: self.edited.as_deref().cloned(),
                    _scope: PhantomData,
                })
            }
            (Some(shown), Some(_), Err(e)) if Some(&shown) == asked.as_ref() => refuse(format!(
                "the approved params of tool `{}` do not hold all its arguments ({e}): a field the approver was \
                 not shown cannot run",
                self.tool
            )),
            _ => refuse(format!(
                "the arguments given for tool `{}` are not the ones that were approved: nothing ran",
                self.tool
            )),
        }
    }
}

impl Allowed {
    /// Claims a parked approval for a handler that takes no `Approval` (`Grant::proceed`).
    pub(crate) fn claim_now(&self, store: &dyn ApprovalStore) -> Result<(), ActionDenied> {
        self.claim(store)
    }

    /// Claims a parked approval whose claim was left for this moment (at most once: the store's compare-and-set).
    fn claim(&self, store: &dyn ApprovalStore) -> Result<(), ActionDenied> {
        if !self.unclaimed.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let Some(id) = self.request_id() else { return Ok(()) };
        let refuse = |reason: DenyReason, detail: Option<String>| {
            Err(ActionDenied::new(reason, self.tool.clone())
                .with_request(Some(id.clone()))
                .with_detail(detail))
        };
        match store.claim(id) {
            Ok(true) => Ok(()),
            Ok(false) => match store.get(id) {
                Ok(Some(stored)) if stored.decision.state == crate::store::RequestState::Expired => refuse(
                    DenyReason::ApprovalTimeout,
                    Some("the approval expired before this agent could start the call".to_owned()),
                ),
                _ => refuse(DenyReason::AlreadyExecuted, None),
            },
            Err(e) => refuse(DenyReason::StoreUnavailable, Some(e.to_string())),
        }
    }
}

/// Proof that one call was approved, handed to the `#[derive(Tool)]` handler method that runs it: the approved
/// arguments `A` (the tool's generated args struct, e.g. `SupportToolDeleteCustomer`), who approved, and the request.
///
/// The guard mints one only for an approved request (or a call its own rules found safe), only for the tool `A`
/// names and only with the arguments that were approved; its fields are private and it has no public constructor,
/// `Clone` or `Default`. Its lifetime `'a` is the dispatch call's: it cannot be kept in a static or a struct that
/// outlives the call, and being moved into the method that runs, it is used once. So a handler method that takes
/// `Approval<'_, SupportToolDeleteCustomer>` cannot be reached without the guard, with other arguments, for another
/// tool, or later.
///
/// It dereferences to the arguments: `approval.id`; [`into_args`](Self::into_args) takes them.
#[must_use = "an Approval is consumed by the call it allows"]
pub struct Approval<'a, A> {
    args: A,
    request_id: Option<RequestId>,
    digest: ParamsDigest,
    actor: Option<String>,
    edited: Option<Edited>,
    _scope: PhantomData<&'a ()>,
}

impl<A> Approval<'_, A> {
    /// The approved arguments.
    pub fn args(&self) -> &A {
        &self.args
    }

    /// Takes the approved arguments.
    pub fn into_args(self) -> A {
        self.args
    }

    /// The approval request's id; `None` when the guard's own rules found the call safe and nobody was asked.
    pub fn request_id(&self) -> Option<&RequestId> {
        self.request_id.as_ref()
    }

    /// The digest of the approved params (the canonical JSON of the arguments).
    pub fn params_digest(&self) -> &ParamsDigest {
        &self.digest
    }

    /// Who approved (`terminal`, `callback`, or the actor given to `resolve`); `None` when nobody was asked.
    pub fn actor(&self) -> Option<&str> {
        self.actor.as_deref()
    }

    /// `true` if an approver was asked; `false` when the guard's own rules found the call safe.
    pub fn was_asked(&self) -> bool {
        self.request_id.is_some()
    }

    /// The approver's edit: the arguments are not the ones the agent asked with, but the ones an approver wrote
    /// (checked, frozen, judged by the policy). The handler's result should say so ([`Edited::notice`]).
    pub fn edited(&self) -> Option<&Edited> {
        self.edited.as_ref()
    }
}

impl<A> std::ops::Deref for Approval<'_, A> {
    type Target = A;

    fn deref(&self) -> &A {
        &self.args
    }
}

impl<A: fmt::Debug> fmt::Debug for Approval<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Approval")
            .field("args", &self.args)
            .field("request_id", &self.request_id)
            .field("params_digest", &self.digest)
            .field("actor", &self.actor)
            .field("edited", &self.edited)
            .finish()
    }
}

impl AgentGuard {
    /// The one ending of every allowed call (`execute`, `dispatch`, `#[gate]` bodies): runs `run` with the approval
    /// and records in the store how it ended — `ok` when it returns, an error when it panics.
    pub(crate) fn run_approved<T>(&self, approval: Allowed, run: impl FnOnce(Allowed) -> T) -> T {
        let record = self.inner.outcome_recorder(&approval);
        let trace = RunTrace::of(&approval);
        let out = record.finish(trace.in_scope(|| run(approval)));
        trace.executed();
        out
    }

    /// The async twin of [`run_approved`](Self::run_approved); a future dropped mid-run is recorded as cancelled.
    #[cfg(feature = "tokio")]
    pub(crate) async fn arun_approved<T, Fut>(&self, approval: Allowed, run: impl FnOnce(Allowed) -> Fut) -> T
    where
        Fut: std::future::Future<Output = T>,
    {
        let record = self.inner.outcome_recorder(&approval);
        let trace = RunTrace::of(&approval);
        let out = record.finish(trace.instrument(run(approval)).await);
        trace.executed();
        out
    }
}

impl AgentGuard {
    /// [`run_approved`](Self::run_approved) for a run that can still be refused (a handler's approval not made): a
    /// refusal is recorded as `error: not run: …`, never as `ok`.
    pub(crate) fn run_approved_fallible<T>(
        &self,
        approval: Allowed,
        run: impl FnOnce(Allowed) -> Result<T, ActionDenied>,
    ) -> Result<T, ActionDenied> {
        let record = self.inner.outcome_recorder(&approval);
        let trace = RunTrace::of(&approval);
        match trace.in_scope(|| run(approval)) {
            Ok(out) => {
                trace.executed();
                Ok(record.finish(out))
            }
            Err(denied) => {
                trace.refused(&denied);
                Err(record.refused(denied))
            }
        }
    }

    /// The async twin of [`run_approved_fallible`](Self::run_approved_fallible).
    #[cfg(feature = "tokio")]
    pub(crate) async fn arun_approved_fallible<T, Fut>(
        &self,
        approval: Allowed,
        run: impl FnOnce(Allowed) -> Fut,
    ) -> Result<T, ActionDenied>
    where
        Fut: std::future::Future<Output = Result<T, ActionDenied>>,
    {
        let record = self.inner.outcome_recorder(&approval);
        let trace = RunTrace::of(&approval);
        match trace.instrument(run(approval)).await {
            Ok(out) => {
                trace.executed();
                Ok(record.finish(out))
            }
            Err(denied) => {
                trace.refused(&denied);
                Err(record.refused(denied))
            }
        }
    }
}

impl Inner {
    /// Starts recording the execution of `approval` (a no-op unless it was parked in the store).
    fn outcome_recorder(&self, approval: &Allowed) -> OutcomeRecorder<'_> {
        OutcomeRecorder {
            store: &*self.store,
            id: approval.parked.then(|| approval.request_id().cloned()).flatten(),
            unclaimed: Arc::clone(&approval.unclaimed),
        }
    }
}

/// Records how the executor of a parked approval ended: `ok` when it returns, `error: …` when it panics or its
/// future is dropped mid-run.
struct OutcomeRecorder<'a> {
    store: &'a dyn ApprovalStore,
    id: Option<RequestId>,
    /// Still set when the run ends: the approval was never claimed (no `Approval` was made from it), so it is
    /// abandoned rather than recorded as run.
    unclaimed: Arc<AtomicBool>,
}

impl OutcomeRecorder<'_> {
    /// The executor returned `out`: record `ok` and pass it on.
    fn finish<T>(mut self, out: T) -> T {
        if let Some(id) = self.id.take() {
            if self.unclaimed.load(Ordering::SeqCst) {
                let _ = self.store.abandon(&id);
            } else {
                let _ = self.store.finish(&id, &ExecOutcome::Ok);
            }
        }
        out
    }
}

impl OutcomeRecorder<'_> {
    /// The run was refused before anything ran: record that, and pass the denial on. A parked approval that was
    /// never claimed (its `Approval` refused) is abandoned, so the store ends it `expired`, not `executed`.
    fn refused(mut self, denied: ActionDenied) -> ActionDenied {
        if let Some(id) = self.id.take() {
            let _ = self.store.abandon(&id);
            let _ = self
                .store
                .finish(&id, &ExecOutcome::Error(format!("not run: {denied}")));
        }
        denied
    }
}

impl Drop for OutcomeRecorder<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let why = if std::thread::panicking() {
                "the executor panicked"
            } else {
                "the executor was cancelled before it finished"
            };
            if self.unclaimed.load(Ordering::SeqCst) {
                // Nothing was claimed, so nothing started: the approval is let go, never left claimable.
                let _ = self.store.abandon(&id);
            } else {
                let _ = self.store.finish(&id, &ExecOutcome::Error(why.to_owned()));
            }
        }
    }
}
