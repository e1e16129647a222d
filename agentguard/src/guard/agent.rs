//! [`AgentGuard`]: its state, and the calls an agent and an approver make on it.

use std::collections::HashSet;
use std::fmt;
#[cfg(feature = "tokio")]
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::approver::Approver;
use crate::audit::AuditSink;
use crate::params::Redactor;
use crate::policy::{Policy, PolicyError, PolicySlot};
use crate::request::{ActionDenied, ApprovalRequest, RequestId, Resolution, ResolveOutcome, ToolCall};
use crate::store::{ApprovalStore, StoreError};
use agentguard_classify::Risk;

/// The checkpoint in front of an agent's tool calls.
///
/// A call whose tool looks dangerous ([`classify`](crate::classify)), or is listed in
/// [`dangerous_tools`](super::GuardBuilder::dangerous_tools), is shown to a person and runs only if they approve before the
/// deadline. Every call, gated or not, is written to the audit log. Denial is a value: `Err(ActionDenied)`.
///
/// Create one with the constructor of the approval mode you want — [`terminal`](Self::terminal),
/// [`callback`](Self::callback), [`async_callback`](Self::async_callback) or [`external`](Self::external) — so two
/// modes can never be configured at once. Cloning is cheap (an `Arc`); clones share everything.
///
/// ```
/// use agentguard::{AgentGuard, ToolCall};
/// use serde_json::json;
///
/// let guard = AgentGuard::callback(|req| req.tool() != "delete_everything").no_audit().build();
/// let out = guard.execute(ToolCall::new("delete_file", json!({"path": "a.txt"})), |name, params| {
///     format!("ran {name} with {params}")
/// });
/// assert_eq!(out.unwrap(), r#"ran delete_file with {"path":"a.txt"}"#);
/// ```
#[derive(Clone)]
pub struct AgentGuard {
    pub(super) inner: Arc<Inner>,
}

/// Everything a guard is, shared by its clones.
pub(crate) struct Inner {
    // Fields are read by the sibling modules that make up the guard (builder, decide, ask, wait, approval).
    pub(super) approver: Approver,
    pub(super) timeout: Duration,
    pub(super) dangerous: HashSet<String>,
    pub(super) safe: HashSet<String>,
    /// The store as the guard calls it: its I/O kept off the runtime's workers (`store::offload`).
    pub(super) store: Arc<dyn ApprovalStore>,
    /// The store as it was given, for [`AgentGuard::store`].
    pub(super) given_store: Arc<dyn ApprovalStore>,
    /// The same store when it is the in-memory one: an async wait on it is held inline in the parked call's box
    /// instead of in a box of its own (`Inner::park_async`).
    #[cfg(feature = "tokio")]
    pub(super) in_memory: Option<Arc<crate::store::InMemoryStore>>,
    pub(super) audit: Option<Arc<dyn AuditSink>>,
    pub(super) redactor: Redactor,
    pub(super) max_params_bytes: usize,
    pub(super) policy: Option<Arc<PolicySlot>>,
}

impl fmt::Debug for AgentGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("AgentGuard")
            .field("approver", &i.approver)
            .field("timeout", &i.timeout)
            .field("dangerous_tools", &i.dangerous)
            .field("safe_tools", &i.safe)
            .field("store", &i.store)
            .field("audit", &i.audit)
            .field("max_params_bytes", &i.max_params_bytes)
            .field("policy", &i.policy.as_ref().map(|p| p.current()))
            .finish()
    }
}

/// How a call is gated: by the guard's rules, or as its declaration says (`#[gate]`, `#[tool(...)]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gating {
    /// By the guard's rules: `dangerous_tools`, then `safe_tools`, then [`classify`](crate::classify).
    Auto,
    /// Always asks, with this risk.
    Always(Risk),
    /// Never asks (still audited, as allowed).
    Never,
}

/// What [`AgentGuard::execute_detailed`] returns: the executor's value, and the approver's edit when it ran with
/// arguments an approver wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed<T> {
    /// What the executor returned.
    pub value: T,
    /// The approver's edit, when the arguments that ran are not the agent's.
    pub edited: Option<super::approval::Edited>,
}

/// Which guard an async call goes through.
#[cfg(feature = "tokio")]
#[derive(Clone, Copy)]
pub(crate) enum Through<'g> {
    /// This one.
    Guard(&'g AgentGuard),
    /// The one [installed](super::global::install) process-wide, looked up at the first poll.
    Installed,
}

/// What the async entry points run (the guard's and the process-wide `aexecute`). The call comes boxed and is
/// unboxed at the first poll: an async fn keeps its arguments for its whole life, and a parked call's future lives
/// for the whole wait, so the call inline (224 bytes) would stay beside what [`decide`](AgentGuard::decide) took
/// from it; boxed, 8 bytes stay. Each entry point returns this future itself rather than awaiting it in another
/// (which would keep more room again), and `K` keeps what the entry point returns besides the value
/// (`aexecute_detailed`'s edit), so the others keep nothing more.
#[cfg(feature = "tokio")]
pub(crate) async fn arun_call<T, K, F, Fut>(
    through: Through<'_>,
    call: Box<ToolCall>,
    gating: Gating,
    executor: F,
) -> Result<K::Output, ActionDenied>
where
    K: Keep<T>,
    F: FnOnce(String, Value) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let guard = match through {
        Through::Guard(guard) => guard,
        Through::Installed => match super::global::installed() {
            Some(guard) => guard,
            None => return Err(super::global::no_guard(unboxed(call).name)),
        },
    };
    // A call decided at once goes straight to its run, and `started` ends before any await: the approval (or the
    // denial) is never kept in this future, which a parked call holds for its whole wait; the parked call itself
    // waits in a box (`Waiting`). The approval is handed on, never borrowed here: a local borrowed in an async fn
    // keeps its room in the future across every later await, even once moved (the edit it may carry is taken in
    // `boxed_run`).
    let next = {
        let started = guard.decide(unboxed(call), gating);
        match started {
            super::Started::Done(decided) => {
                Next::Run(guard.boxed_run::<T, K, F, Fut>(decided?.finish(None, super::Claim::Now)?, executor))
            }
            super::Started::Waiting(waiting) => Next::Ask(waiting, executor),
        }
    };
    let (kept, run) = match next {
        Next::Run(run) => run,
        Next::Ask(waiting, executor) => {
            let approval = waiting.await?.finish(None, super::Claim::Now)?;
            guard.boxed_run::<T, K, F, Fut>(approval, executor)
        }
    };
    Ok(kept.done(run.await))
}

/// [`arun_call`]'s next step once the call is taken in: run it, or wait for its verdict first.
#[cfg(feature = "tokio")]
enum Next<'g, K, R, F> {
    Run((K, R)),
    Ask(super::Waiting<'g>, F),
}

/// What an async entry point keeps of an approval while its executor runs, and what it returns.
#[cfg(feature = "tokio")]
pub(crate) trait Keep<T> {
    /// What the entry point returns.
    type Output;
    /// Keeps what is needed of the approval.
    fn keep(approval: &super::approval::Allowed) -> Self;
    /// The return value.
    fn done(self, value: T) -> Self::Output;
}

/// Keeps nothing: the executor's value.
#[cfg(feature = "tokio")]
pub(crate) struct Plain;

#[cfg(feature = "tokio")]
impl<T> Keep<T> for Plain {
    type Output = T;
    fn keep(_: &super::approval::Allowed) -> Self {
        Plain
    }
    fn done(self, value: T) -> T {
        value
    }
}

/// Keeps the approver's edit: an [`Executed`].
#[cfg(feature = "tokio")]
struct Detailed(Option<super::approval::Edited>);

#[cfg(feature = "tokio")]
impl<T> Keep<T> for Detailed {
    type Output = Executed<T>;
    fn keep(approval: &super::approval::Allowed) -> Self {
        Detailed(approval.edited().cloned())
    }
    fn done(self, value: T) -> Executed<T> {
        Executed { value, edited: self.0 }
    }
}

/// Moves a value out of its box and frees the box now (`let v = *boxed` would free it only when `boxed` goes out
/// of scope: in an async fn, when its future ends).
#[cfg(feature = "tokio")]
#[allow(clippy::boxed_local)] // the box is the point: taking it by value frees it here
fn unboxed<T>(boxed: Box<T>) -> T {
    *boxed
}

/// Rebuilds a call's params from the live arguments after approval, to detect a change behind the approver's back.
#[doc(hidden)]
pub type Recheck<'a> = dyn Fn() -> Result<Value, String> + 'a;

impl AgentGuard {
    /// Gates one call and runs `executor(name, params)` only if it is allowed.
    ///
    /// Safe calls run at once. Gated calls block the calling thread until a person answers or the deadline passes.
    /// The executor receives exactly the params that were frozen and shown (their digest is in the audit).
    pub fn execute<T, F>(&self, call: ToolCall, executor: F) -> Result<T, ActionDenied>
    where
        F: FnOnce(&str, Value) -> T,
    {
        self.execute_gated(call, Gating::Auto, executor)
    }

    /// Like [`execute`](Self::execute), gated as `gating` says instead of by the guard's rules alone: what a caller
    /// that knows more about the tool passes on (the MCP gateway maps a server's `destructiveHint` to
    /// `Gating::Always(Risk::Irreversible)`). `Gating::Never` is the caller's word that the tool is safe: the call is
    /// still audited, and a policy still applies.
    pub fn execute_gated<T, F>(&self, call: ToolCall, gating: Gating, executor: F) -> Result<T, ActionDenied>
    where
        F: FnOnce(&str, Value) -> T,
    {
        self.execute_detailed(call, gating, executor).map(|ran| ran.value)
    }

    /// Like [`execute_gated`](Self::execute_gated), and says how the call ran: [`Executed::edited`] is the
    /// approver's edit when the executor ran with arguments an approver wrote instead of the agent's. An agent
    /// framework adds [`Edited::notice`](super::approval::Edited::notice) to the tool's result, so the model knows.
    pub fn execute_detailed<T, F>(
        &self,
        call: ToolCall,
        gating: Gating,
        executor: F,
    ) -> Result<Executed<T>, ActionDenied>
    where
        F: FnOnce(&str, Value) -> T,
    {
        let approval = self.decide_blocking(call, gating, None, super::Claim::Now)?;
        let edited = approval.edited().cloned();
        let value = self.run_approved(approval, |a| {
            let (tool, params) = a.into_parts();
            executor(&tool, params)
        });
        Ok(Executed { value, edited })
    }

    /// The async twin of [`execute`](Self::execute): `executor(name, params)` returns a future.
    ///
    /// Waiting costs no thread: a parked call is a future woken by [`resolve`](Self::resolve) or by a tokio timer
    /// at its deadline. Needs a tokio runtime with the time driver enabled. Dropping the future while it is parked
    /// expires the request, so it can never run later. Like any future, it does nothing until polled.
    #[cfg(feature = "tokio")]
    pub fn aexecute<'g, T, F, Fut>(
        &'g self,
        call: ToolCall,
        executor: F,
    ) -> impl std::future::Future<Output = Result<T, ActionDenied>> + use<'g, T, F, Fut>
    where
        F: FnOnce(String, Value) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        arun_call::<T, Plain, F, Fut>(Through::Guard(self), Box::new(call), Gating::Auto, executor)
    }

    /// The async twin of [`execute_gated`](Self::execute_gated).
    #[cfg(feature = "tokio")]
    pub fn aexecute_gated<'g, T, F, Fut>(
        &'g self,
        call: ToolCall,
        gating: Gating,
        executor: F,
    ) -> impl std::future::Future<Output = Result<T, ActionDenied>> + use<'g, T, F, Fut>
    where
        F: FnOnce(String, Value) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        arun_call::<T, Plain, F, Fut>(Through::Guard(self), Box::new(call), gating, executor)
    }

    /// The async twin of [`execute_detailed`](Self::execute_detailed).
    #[cfg(feature = "tokio")]
    pub fn aexecute_detailed<'g, T, F, Fut>(
        &'g self,
        call: ToolCall,
        gating: Gating,
        executor: F,
    ) -> impl std::future::Future<Output = Result<Executed<T>, ActionDenied>> + use<'g, T, F, Fut>
    where
        F: FnOnce(String, Value) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        arun_call::<T, Detailed, F, Fut>(Through::Guard(self), Box::new(call), gating, executor)
    }

    /// What the approval keeps for the caller, and its run, boxed: a future is as large as its largest state, and
    /// running is larger than waiting, so unboxed every parked call would carry the room its run needs for its
    /// whole wait.
    #[cfg(feature = "tokio")]
    fn boxed_run<'g, T, K, F, Fut>(
        &'g self,
        approval: super::approval::Allowed,
        executor: F,
    ) -> (
        K,
        Pin<Box<impl std::future::Future<Output = T> + use<'g, T, K, F, Fut>>>,
    )
    where
        K: Keep<T>,
        F: FnOnce(String, Value) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let kept = K::keep(&approval);
        let run = Box::pin(self.arun_approved(approval, |a| {
            let (tool, params) = a.into_parts();
            executor(tool, params)
        }));
        (kept, run)
    }

    /// The requests waiting for an answer now (only live ones: not decided, not past their deadline), oldest
    /// first. Params are redacted. Empty if the store cannot be read; use [`try_pending`](Self::try_pending) to see
    /// the error.
    pub fn pending(&self) -> Vec<ApprovalRequest> {
        self.try_pending().unwrap_or_default()
    }

    /// Like [`pending`](Self::pending), with the store's error.
    pub fn try_pending(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        self.inner.store.pending()
    }

    /// Approves (`true`) or denies (`false`) a parked request. First answer wins: `Resolved` once, then
    /// `AlreadyResolved`; `Unknown` for an id never parked (or forgotten after the retention window); `Expired`
    /// after the deadline, and the late answer never runs the action.
    pub fn resolve(&self, request_id: &RequestId, approved: bool, actor: Option<&str>) -> ResolveOutcome {
        let mut answer = Resolution::new(request_id.clone(), approved);
        if let Some(actor) = actor {
            answer = answer.actor(actor);
        }
        self.resolve_with(&answer)
    }

    /// Answers with everything a [`Resolution`] carries: actor, the digest the approver was shown, a note.
    /// A store error gives [`ResolveOutcome::Unavailable`] (nothing decided).
    pub fn resolve_with(&self, resolution: &Resolution) -> ResolveOutcome {
        self.inner
            .store
            .resolve(resolution)
            .unwrap_or(ResolveOutcome::Unavailable)
    }

    /// Whether a call of `tool` would be gated by this guard, and with what risk.
    pub fn risk_of(&self, tool: &str) -> Option<Risk> {
        self.inner.risk_of(tool)
    }

    /// The policy deciding calls now (the newest good version of a watched file), if the guard has one.
    pub fn policy(&self) -> Option<Policy> {
        self.inner.policy.as_ref().map(|slot| slot.current())
    }

    /// Re-reads the guard's policy file now, whether or not it looks changed, and returns the policy in force.
    /// A file that does not compile is an `Err` (also on stderr and in the audit) and the previous policy stays.
    /// A guard without a policy file returns its policy (or `Ok(None)`).
    pub fn reload_policy(&self) -> Result<Option<Policy>, PolicyError> {
        match &self.inner.policy {
            Some(slot) => slot.reload().map(Some),
            None => Ok(None),
        }
    }

    /// The store parked requests are kept in.
    // The store as given, not the guard's offloading wrapper around it (`Inner::store`).
    #[allow(clippy::misnamed_getters)]
    pub fn store(&self) -> &Arc<dyn ApprovalStore> {
        &self.inner.given_store
    }

    /// The timeout given to each gated call.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }
}
