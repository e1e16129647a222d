//! [`AgentGuard`]: the checkpoint in front of tool calls, and its builder.

use std::collections::HashSet;
use std::fmt;
use std::io::{BufRead, Write};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::approver::{self, Approver, Notifier, TerminalPrompt, Verdict};
use crate::audit::{AuditDecision, AuditRecord, AuditSink, JsonlAudit};
use crate::params::{canonical_json, FrozenParams, ParamsDigest, Redactor, DEFAULT_MAX_PARAMS_BYTES};
use crate::request::{ActionDenied, ApprovalRequest, DenyReason, RequestId, Resolution, ResolveOutcome, ToolCall};
use crate::store::{ApprovalStore, Decision, ExecOutcome, InMemoryStore, RequestState, StoreError};
use agentguard_classify::{classify, Risk};

/// Default time a gated call waits for an answer: 300 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest timeout accepted; longer ones are clamped to it (one year).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Marker types naming a builder's approval mode. Options that only make sense in one mode exist only on that
/// mode's builder.
pub mod mode {
    /// A y/n prompt on the terminal.
    #[derive(Debug)]
    pub struct Terminal;
    /// A function decides.
    #[derive(Debug)]
    pub struct Callback;
    /// The request is parked until something calls [`resolve`](crate::AgentGuard::resolve).
    #[derive(Debug)]
    pub struct External;
}

/// The checkpoint in front of an agent's tool calls.
///
/// A call whose tool looks dangerous ([`classify`]), or is listed in
/// [`dangerous_tools`](GuardBuilder::dangerous_tools), is shown to a person and runs only if they approve before the
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
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    approver: Approver,
    timeout: Duration,
    dangerous: HashSet<String>,
    safe: HashSet<String>,
    store: Arc<dyn ApprovalStore>,
    audit: Option<Arc<dyn AuditSink>>,
    redactor: Redactor,
    max_params_bytes: usize,
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
            .finish()
    }
}

/// Configures an [`AgentGuard`]. `M` is the approval mode ([`mode`]).
pub struct GuardBuilder<M> {
    approver: Approver,
    timeout: Duration,
    dangerous: HashSet<String>,
    safe: HashSet<String>,
    store: Option<Arc<dyn ApprovalStore>>,
    audit: AuditChoice,
    redactor: Redactor,
    max_params_bytes: usize,
    _mode: PhantomData<M>,
}

enum AuditChoice {
    Default,
    Sink(Arc<dyn AuditSink>),
    Off,
}

impl<M> fmt::Debug for GuardBuilder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardBuilder")
            .field("approver", &self.approver)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AgentGuard {
    /// A guard that asks on the terminal (`Allow? (y/n)`), the default mode of agentguard-hitl.
    ///
    /// Without an interactive terminal on stdin every gated call is denied (`no_terminal`): it fails closed.
    pub fn terminal() -> GuardBuilder<mode::Terminal> {
        GuardBuilder::new(Approver::Terminal(TerminalPrompt::stdio()))
    }

    /// A guard that asks `decide`: `true` approves, `false` denies, a panic denies (`approver_failed`).
    ///
    /// `decide` runs on the calling thread (in [`aexecute`](Self::aexecute), on tokio's blocking pool). An answer
    /// that arrives after the deadline is a denial (`approval_timeout`).
    pub fn callback<F>(decide: F) -> GuardBuilder<mode::Callback>
    where
        F: Fn(&ApprovalRequest) -> bool + Send + Sync + 'static,
    {
        GuardBuilder::new(Approver::Callback(Arc::new(decide)))
    }

    /// A guard that asks an async function, e.g. one that posts to chat and awaits a click.
    ///
    /// The future is bounded by the deadline (`approval_timeout`) and a panic in it denies (`approver_failed`).
    /// Use it from [`aexecute`](Self::aexecute). From the blocking [`execute`](Self::execute) it runs on a private
    /// single-thread runtime, except inside a tokio runtime, where blocking would stall it: there the call is
    /// denied (`approver_failed`) with a message saying to use `aexecute`.
    #[cfg(feature = "tokio")]
    pub fn async_callback<F, Fut>(decide: F) -> GuardBuilder<mode::Callback>
    where
        F: Fn(ApprovalRequest) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = bool> + Send + 'static,
    {
        GuardBuilder::new(Approver::AsyncCallback(Arc::new(move |req| Box::pin(decide(req)))))
    }

    /// A guard that parks gated calls until something answers them with [`resolve`](Self::resolve) — a web page,
    /// a chat bot, the `agentguard` CLI through a shared store — or the deadline passes.
    pub fn external() -> GuardBuilder<mode::External> {
        GuardBuilder::new(Approver::External { on_request: None })
    }
}

impl<M> GuardBuilder<M> {
    fn new(approver: Approver) -> Self {
        GuardBuilder {
            approver,
            timeout: DEFAULT_TIMEOUT,
            dangerous: HashSet::new(),
            safe: HashSet::new(),
            store: None,
            audit: AuditChoice::Default,
            redactor: Redactor::new(),
            max_params_bytes: DEFAULT_MAX_PARAMS_BYTES,
            _mode: PhantomData,
        }
    }

    /// How long a gated call waits for an answer before it is denied (`approval_timeout`). Default
    /// [`DEFAULT_TIMEOUT`] (300 s); values above [`MAX_TIMEOUT`] are clamped to it. Every request carries its
    /// deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.min(MAX_TIMEOUT);
        self
    }

    /// Tools that always need approval, whatever their name (matched in any case or separator style:
    /// `loyalty_bonus` also covers `loyaltyBonus` and `Loyalty-Bonus`). Their risk is [`Risk::ManuallyFlagged`] unless
    /// [`classify`] also finds one, which then wins; either way the call is gated once and logged once.
    ///
    /// A name in both `dangerous_tools` and [`safe_tools`](Self::safe_tools) is dangerous: the guard fails closed.
    pub fn dangerous_tools<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.dangerous.extend(
            names
                .into_iter()
                .map(|n| agentguard_classify::normalize_name(&n.into())),
        );
        self
    }

    /// Tools that never need approval even though their name looks dangerous (e.g. `reset_view`). They still get
    /// an audit line, marked as allowed by `safe_tools`.
    pub fn safe_tools<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.safe.extend(
            names
                .into_iter()
                .map(|n| agentguard_classify::normalize_name(&n.into())),
        );
        self
    }

    /// Where parked requests are kept. Default: a fresh [`InMemoryStore`].
    pub fn store(self, store: impl ApprovalStore) -> Self {
        self.shared_store(Arc::new(store))
    }

    /// Like [`store`](Self::store), for a store you also hold (to inspect it, or share it between guards).
    pub fn shared_store(mut self, store: Arc<dyn ApprovalStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Where audit records go. Default: a [`JsonlAudit`] at `$AGENTGUARD_LOG`, else `agentguard.log`.
    pub fn audit(mut self, sink: impl AuditSink) -> Self {
        self.audit = AuditChoice::Sink(Arc::new(sink));
        self
    }

    /// Audit to a hash-chained JSONL file at `path`.
    pub fn audit_file(self, path: impl Into<PathBuf>) -> Self {
        self.audit(JsonlAudit::new(path))
    }

    /// No audit at all. Meant for tests and benchmarks: in production, keep a record of every call.
    pub fn no_audit(mut self) -> Self {
        self.audit = AuditChoice::Off;
        self
    }

    /// Extra param keys to mask in the audit and in what approvers see (in addition to the built-in secret words;
    /// see [`Redactor`]).
    pub fn redact_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.redactor = self.redactor.with_keys(keys);
        self
    }

    /// Largest canonical JSON size of a gated call's params (default 1 MiB). Larger params are denied
    /// (`params_too_large`) rather than shown to a person in part.
    pub fn max_params_bytes(mut self, bytes: usize) -> Self {
        self.max_params_bytes = bytes;
        self
    }

    /// Finishes the guard.
    pub fn build(self) -> AgentGuard {
        let audit = match self.audit {
            AuditChoice::Default => Some(Arc::new(JsonlAudit::from_env()) as Arc<dyn AuditSink>),
            AuditChoice::Sink(s) => Some(s),
            AuditChoice::Off => None,
        };
        AgentGuard {
            inner: Arc::new(Inner {
                approver: self.approver,
                timeout: self.timeout,
                dangerous: self.dangerous,
                safe: self.safe,
                store: self.store.unwrap_or_else(|| Arc::new(InMemoryStore::new())),
                audit,
                redactor: self.redactor,
                max_params_bytes: self.max_params_bytes,
            }),
        }
    }
}

impl GuardBuilder<mode::Terminal> {
    /// Reads answers from `input` and writes prompts to `output` instead of stdin/stderr. For tests and custom
    /// front ends; end of input denies (`no_terminal`).
    pub fn io(mut self, input: impl BufRead + Send + 'static, output: impl Write + Send + 'static) -> Self {
        self.approver = Approver::Terminal(Arc::new(TerminalPrompt::custom(Box::new(input), Box::new(output))));
        self
    }
}

impl GuardBuilder<mode::External> {
    /// Called once when a request is parked, e.g. to push it to a UI. Keep it quick (send on a channel): it runs on
    /// the calling thread or task. A panic in it is recorded in the audit and the request stays parked until
    /// answered or expired.
    pub fn on_request<F>(mut self, notify: F) -> Self
    where
        F: Fn(&ApprovalRequest) + Send + Sync + 'static,
    {
        self.approver = Approver::External {
            on_request: Some(Arc::new(notify)),
        };
        self
    }
}

/// How a call is gated: by the guard's rules, or as its declaration says (`#[gate]`, `#[tool(...)]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gating {
    /// By the guard's rules: `dangerous_tools`, then `safe_tools`, then [`classify`].
    Auto,
    /// Always asks, with this risk.
    Always(Risk),
    /// Never asks (still audited, as allowed).
    Never,
}

/// Rebuilds a call's params from the live arguments after approval, to detect a change behind the approver's back.
#[doc(hidden)]
pub type Recheck<'a> = dyn Fn() -> Result<Value, String> + 'a;

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

/// Proof that a call was allowed: approved by a person, or safe by the guard's rules.
///
/// Only the guard creates one (its fields are private and it has no public constructor, `Clone` or `Default`), and
/// only after the decision, handing it to the code it lets run (the handler methods generated by `#[derive(Tool)]`).
/// So code that takes an `Approval` cannot be reached without going through the guard. It carries the frozen params
/// the approver saw and is consumed by the call it allows.
#[derive(Debug)]
#[must_use = "an Approval is consumed by the call it allows"]
pub struct Approval {
    tool: String,
    params: Value,
    request_id: Option<RequestId>,
    digest: Option<ParamsDigest>,
    actor: Option<String>,
    /// Parked in the store (external mode): its execution outcome is recorded there.
    parked: bool,
}

/// The approval of a call that was safe: nobody was asked.
fn unasked_approval(tool: String, params: Value) -> Approval {
    Approval {
        tool,
        params,
        request_id: None,
        digest: None,
        actor: None,
        parked: false,
    }
}

impl Approval {
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

    /// The approval request's id; `None` when the call was safe and nobody was asked.
    pub fn request_id(&self) -> Option<&RequestId> {
        self.request_id.as_ref()
    }

    /// The digest of the approved params; `None` when nobody was asked.
    pub fn params_digest(&self) -> Option<&ParamsDigest> {
        self.digest.as_ref()
    }

    /// Who approved (`terminal`, `callback`, or the actor given to `resolve`).
    pub fn actor(&self) -> Option<&str> {
        self.actor.as_deref()
    }

    /// `true` if a person (or approver) was asked; `false` for a safe call.
    pub fn was_asked(&self) -> bool {
        self.request_id.is_some()
    }
}

/// An async approval with its verdict in, before the params are checked again and the verdict recorded.
#[cfg(feature = "tokio")]
pub(crate) enum Decided<'g> {
    Allowed(Approval),
    Parked(&'g Inner, Parked, Verdict),
}

#[cfg(feature = "tokio")]
impl Decided<'_> {
    /// Checks the params again (if `recheck` is given), records the verdict, and hands out the approval.
    pub(crate) fn finish(self, recheck: Option<&Recheck<'_>>) -> Result<Approval, ActionDenied> {
        match self {
            Decided::Allowed(approval) => Ok(approval),
            Decided::Parked(inner, parked, verdict) => inner.conclude(parked, verdict, recheck),
        }
    }
}

/// Records how the executor of a parked approval ended: `ok` when it returns, `error: …` when it panics or its
/// future is dropped mid-run.
#[derive(Debug)]
pub(crate) struct OutcomeRecorder<'a> {
    store: &'a dyn ApprovalStore,
    id: Option<RequestId>,
}

impl OutcomeRecorder<'_> {
    /// The executor returned `out`: record `ok` and pass it on.
    pub(crate) fn finish<T>(mut self, out: T) -> T {
        if let Some(id) = self.id.take() {
            let _ = self.store.finish(&id, &ExecOutcome::Ok);
        }
        out
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
            let _ = self.store.finish(&id, &ExecOutcome::Error(why.to_owned()));
        }
    }
}

/// A gated call between its request and its verdict.
pub(crate) struct Parked {
    request: ApprovalRequest,
    params: Value,
    until: Instant,
}

impl AgentGuard {
    /// Gates one call and runs `executor(name, params)` only if it is allowed.
    ///
    /// Safe calls run at once. Gated calls block the calling thread until a person answers or the deadline passes.
    /// The executor receives exactly the params that were frozen and shown (their digest is in the audit).
    pub fn execute<T, F>(&self, call: ToolCall, executor: F) -> Result<T, ActionDenied>
    where
        F: FnOnce(&str, Value) -> T,
    {
        let approval = self.approve_as(call, Gating::Auto, None)?;
        let record = self.inner.outcome_recorder(&approval);
        let out = executor(&approval.tool, approval.params);
        Ok(record.finish(out))
    }

    /// The async twin of [`execute`](Self::execute): `executor(name, params)` returns a future.
    ///
    /// Waiting costs no thread: a parked call is a future woken by [`resolve`](Self::resolve) or by a tokio timer
    /// at its deadline. Needs a tokio runtime with the time driver enabled. Dropping the future while it is parked
    /// expires the request, so it can never run later.
    #[cfg(feature = "tokio")]
    pub async fn aexecute<T, F, Fut>(&self, call: ToolCall, executor: F) -> Result<T, ActionDenied>
    where
        F: FnOnce(String, Value) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let approval = self.adecide(call, Gating::Auto).await?.finish(None)?;
        let record = self.inner.outcome_recorder(&approval);
        let out = executor(approval.tool, approval.params).await;
        Ok(record.finish(out))
    }

    pub(crate) fn approve_as(
        &self,
        call: ToolCall,
        gate: Gating,
        recheck: Option<&Recheck<'_>>,
    ) -> Result<Approval, ActionDenied> {
        let inner = &*self.inner;
        let Some(risk) = inner.gate_risk(&call.name, gate) else {
            inner.record_allowed(&call);
            return Ok(unasked_approval(call.name, call.params));
        };
        let parked = inner.prepare(call, risk)?;
        let verdict = match &inner.approver {
            Approver::Terminal(prompt) => prompt.ask(&parked.request, parked.until),
            Approver::Callback(cb) => within_deadline(approver::call_sync(cb, &parked.request), parked.until),
            #[cfg(feature = "tokio")]
            Approver::AsyncCallback(cb) => block_on_async_callback(cb, &parked),
            #[cfg(not(feature = "tokio"))]
            Approver::AsyncCallback(_) => unreachable!("async callbacks need the tokio feature"),
            Approver::External { on_request } => inner.park_blocking_anywhere(&parked, on_request.as_ref()),
        };
        inner.conclude(parked, verdict, recheck)
    }

    /// The async half of an approval: everything up to the verdict. The recheck happens in [`Decided::finish`], so
    /// the (possibly non-`Sync`) recheck closure is never held across an await.
    #[cfg(feature = "tokio")]
    pub(crate) async fn adecide(&self, call: ToolCall, gate: Gating) -> Result<Decided<'_>, ActionDenied> {
        let inner = &*self.inner;
        let Some(risk) = inner.gate_risk(&call.name, gate) else {
            inner.record_allowed(&call);
            return Ok(Decided::Allowed(unasked_approval(call.name, call.params)));
        };
        let parked = inner.prepare(call, risk)?;
        let verdict = if tokio::runtime::Handle::try_current().is_err() {
            Verdict::deny(
                DenyReason::ApproverFailed,
                "aexecute needs a tokio runtime (with its time driver: enable_time or enable_all); use execute() \
                 elsewhere"
                    .to_owned(),
            )
        } else {
            // A panic while waiting (e.g. a runtime built without its time driver) denies instead of unwinding into
            // the agent; a parked request is expired by the wait's drop guard.
            match approver::CatchUnwind(Box::pin(inner.verdict_async(&parked))).await {
                Ok(verdict) => verdict,
                Err(panic) => Verdict::deny(
                    DenyReason::ApproverFailed,
                    format!("waiting for the approval failed: {panic} (does the tokio runtime have enable_time?)"),
                ),
            }
        };
        Ok(Decided::Parked(inner, parked, verdict))
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
        let mut r = Resolution::new(request_id.clone(), approved);
        r.actor = actor.map(str::to_owned);
        self.resolve_with(&r)
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

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The store parked requests are kept in.
    pub fn store(&self) -> &Arc<dyn ApprovalStore> {
        &self.inner.store
    }

    /// The timeout given to each gated call.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }
}

/// An answer that came after the deadline does not count.
fn within_deadline(verdict: Verdict, until: Instant) -> Verdict {
    if Instant::now() > until {
        Verdict::deny(
            DenyReason::ApprovalTimeout,
            "the approver answered after the deadline".to_owned(),
        )
    } else {
        verdict
    }
}

#[cfg(feature = "tokio")]
fn block_on_async_callback(cb: &approver::AsyncCallback, parked: &Parked) -> Verdict {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Verdict::deny(
            DenyReason::ApproverFailed,
            "an async_callback guard was called through the blocking execute() inside a tokio runtime; use \
             aexecute().await there"
                .to_owned(),
        );
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(rt) => rt,
        Err(e) => {
            return Verdict::deny(
                DenyReason::ApproverFailed,
                format!("cannot start a runtime for the async callback: {e}"),
            )
        }
    };
    runtime.block_on(async_callback_verdict(cb, parked))
}

#[cfg(feature = "tokio")]
async fn async_callback_verdict(cb: &approver::AsyncCallback, parked: &Parked) -> Verdict {
    let fut = approver::CatchUnwind(Box::pin(cb(parked.request.clone())));
    match tokio::time::timeout_at(parked.until.into(), fut).await {
        Ok(Ok(true)) => Verdict::Approved {
            actor: Some("callback".into()),
        },
        Ok(Ok(false)) => Verdict::Denied {
            reason: DenyReason::UserDenied,
            actor: Some("callback".into()),
            detail: None,
        },
        Ok(Err(panic)) => Verdict::deny(
            DenyReason::ApproverFailed,
            format!("the approval callback panicked: {panic}"),
        ),
        Err(_) => Verdict::deny(DenyReason::ApprovalTimeout, None),
    }
}

impl Inner {
    /// Starts recording the execution of `approval` (a no-op unless it was parked in the store).
    pub(crate) fn outcome_recorder(&self, approval: &Approval) -> OutcomeRecorder<'_> {
        OutcomeRecorder {
            store: &*self.store,
            id: approval.parked.then(|| approval.request_id.clone()).flatten(),
        }
    }

    fn gate_risk(&self, tool: &str, gate: Gating) -> Option<Risk> {
        match gate {
            Gating::Auto => self.risk_of(tool),
            Gating::Always(risk) => Some(risk),
            Gating::Never => None,
        }
    }

    fn risk_of(&self, tool: &str) -> Option<Risk> {
        if self.dangerous.is_empty() && self.safe.is_empty() {
            return classify(tool);
        }
        // Lists match names in any case or separator style, like classify does: `loyaltyBonus` is `loyalty_bonus`.
        let name = agentguard_classify::normalize_name(tool);
        if self.dangerous.contains(&name) {
            return Some(classify(tool).unwrap_or(Risk::ManuallyFlagged));
        }
        if self.safe.contains(&name) {
            return None;
        }
        classify(tool)
    }

    /// Audits a call that runs without asking. An audit failure does not stop a safe call (only gated calls fail
    /// closed on it); it is reported on stderr.
    fn record_allowed(&self, call: &ToolCall) {
        let Some(audit) = &self.audit else { return };
        // Digest from the canonical text; no copy of the params is made.
        let digest = canonical_json(&call.params, self.max_params_bytes).map(|text| ParamsDigest::of(text.as_bytes()));
        let shown = match &digest {
            Some(_) => self.redactor.redact_with(&call.params, &call.redact),
            None => too_large_note(self.max_params_bytes),
        };
        let mut rec = AuditRecord::new(&call.name, AuditDecision::Allowed);
        rec.params = Some(&shown);
        rec.params_digest = digest.as_ref();
        rec.agent_id = call.agent_id.as_deref();
        rec.session_id = call.session_id.as_deref();
        if !self.safe.is_empty() && self.safe.contains(&agentguard_classify::normalize_name(&call.name)) {
            rec.detail = Some("listed in safe_tools");
        }
        if let Err(e) = audit.record(&rec) {
            eprintln!("agentguard: audit record for safe call {:?} failed: {e}", call.name);
        }
    }

    /// Freezes the params and builds the request; denies (and audits) params over the size limit.
    fn prepare(&self, call: ToolCall, risk: Risk) -> Result<Parked, ActionDenied> {
        let ToolCall {
            name,
            params,
            agent_id,
            session_id,
            reason,
            redact,
        } = call;
        let frozen = match FrozenParams::freeze(params, self.max_params_bytes) {
            Ok(f) => f,
            Err(too_large) => {
                let detail = too_large.to_string();
                if let Some(audit) = &self.audit {
                    let note = too_large_note(self.max_params_bytes);
                    let mut rec = AuditRecord::new(&name, AuditDecision::Blocked);
                    rec.reason = Some(DenyReason::ParamsTooLarge.as_str());
                    rec.risk = Some(risk);
                    rec.params = Some(&note);
                    rec.agent_id = agent_id.as_deref();
                    rec.session_id = session_id.as_deref();
                    rec.detail = Some(&detail);
                    let _ = audit.record(&rec);
                }
                return Err(ActionDenied::new(DenyReason::ParamsTooLarge, name).with_detail(Some(detail)));
            }
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
        );
        Ok(Parked {
            request,
            params: frozen.into_value(),
            until,
        })
    }

    /// Checks the params again if asked, records the verdict, and returns the approval only if the call may run.
    fn conclude(
        &self,
        parked: Parked,
        verdict: Verdict,
        recheck: Option<&Recheck<'_>>,
    ) -> Result<Approval, ActionDenied> {
        let verdict = match (verdict, recheck) {
            (Verdict::Approved { actor }, Some(recheck)) => match params_unchanged(&parked, recheck) {
                Ok(()) => Verdict::Approved { actor },
                Err(detail) => Verdict::Denied {
                    reason: DenyReason::ParamsChanged,
                    actor,
                    detail: Some(detail),
                },
            },
            (verdict, _) => verdict,
        };
        let req = &parked.request;
        let (decision, reason, actor, detail) = match &verdict {
            Verdict::Approved { actor } => (AuditDecision::Approved, None, actor.as_deref(), None),
            Verdict::Denied { reason, actor, detail } => {
                let decision = match reason {
                    DenyReason::UserDenied => AuditDecision::Denied,
                    DenyReason::ApprovalTimeout => AuditDecision::Expired,
                    _ => AuditDecision::Blocked,
                };
                (decision, Some(*reason), actor.as_deref(), detail.as_deref())
            }
        };
        let written = match &self.audit {
            None => Ok(()),
            Some(audit) => {
                let mut rec = AuditRecord::new(req.tool(), decision);
                rec.reason = reason.map(DenyReason::as_str);
                rec.risk = Some(req.risk());
                rec.params = Some(req.params());
                rec.params_digest = Some(req.params_digest());
                rec.agent_id = req.agent_id();
                rec.session_id = req.session_id();
                rec.request_id = Some(req.request_id());
                rec.actor = actor;
                rec.detail = detail;
                audit.record(&rec)
            }
        };
        let denied = |reason: DenyReason, detail: Option<String>| {
            ActionDenied::new(reason, req.tool())
                .with_request(Some(req.request_id().clone()))
                .with_detail(detail)
        };
        match verdict {
            Verdict::Approved { actor } => match written {
                Ok(()) => Ok(Approval {
                    request_id: Some(req.request_id().clone()),
                    digest: Some(req.params_digest().clone()),
                    parked: matches!(self.approver, Approver::External { .. }),
                    actor,
                    tool: parked.request.into_tool(),
                    params: parked.params,
                }),
                Err(e) => Err(denied(
                    DenyReason::AuditUnavailable,
                    Some(format!(
                        "the approved call was not run because its audit record failed: {e}"
                    )),
                )),
            },
            Verdict::Denied { reason, detail, .. } => Err(denied(reason, detail)),
        }
    }

    fn notify(&self, notifier: Option<&Notifier>, request: &ApprovalRequest) {
        let Some(notifier) = notifier else { return };
        if let Err(panic) = approver::call_notifier(notifier, request) {
            if let Some(audit) = &self.audit {
                let detail = format!("on_request panicked: {panic}");
                let mut rec = AuditRecord::new(request.tool(), AuditDecision::NotifierError);
                rec.event = "notifier";
                rec.risk = Some(request.risk());
                rec.params_digest = Some(request.params_digest());
                rec.agent_id = request.agent_id();
                rec.session_id = request.session_id();
                rec.request_id = Some(request.request_id());
                rec.detail = Some(&detail);
                if let Err(e) = audit.record(&rec) {
                    eprintln!("agentguard: {detail}; and its audit record failed: {e}");
                }
            }
        }
    }

    /// Parks from blocking code. Inside a tokio runtime, a blocked worker could be the one that would run the
    /// `resolve`: on a multi-thread runtime the wait moves off the worker (`block_in_place`); on a current-thread
    /// runtime it cannot, so the call is denied with advice instead of deadlocking until its deadline.
    fn park_blocking_anywhere(&self, parked: &Parked, notifier: Option<&Notifier>) -> Verdict {
        #[cfg(feature = "tokio")]
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            return match handle.runtime_flavor() {
                tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(|| self.park_blocking(parked, notifier))
                }
                _ => Verdict::deny(
                    DenyReason::ApproverFailed,
                    "the blocking execute() of an external guard was called on a current-thread tokio runtime, \
                     where waiting would block the task that answers it; use aexecute().await"
                        .to_owned(),
                ),
            };
        }
        self.park_blocking(parked, notifier)
    }

    fn park_blocking(&self, parked: &Parked, notifier: Option<&Notifier>) -> Verdict {
        let id = parked.request.request_id();
        if let Err(e) = self.store.insert(&parked.request) {
            return store_down(e);
        }
        self.notify(notifier, &parked.request);
        let decision = match self.store.wait_blocking(id, parked.until) {
            Ok(Some(decision)) => Ok(Some(decision)),
            Ok(None) => self.store.expire(id),
            Err(e) => {
                let _ = self.store.expire(id);
                return store_down(e);
            }
        };
        self.verdict_of(id, decision)
    }

    #[cfg(feature = "tokio")]
    async fn verdict_async(&self, parked: &Parked) -> Verdict {
        match &self.approver {
            Approver::Terminal(prompt) => {
                let prompt = Arc::clone(prompt);
                let request = parked.request.clone();
                let until = parked.until;
                match tokio::task::spawn_blocking(move || prompt.ask(&request, until)).await {
                    Ok(v) => v,
                    Err(e) => Verdict::deny(DenyReason::ApproverFailed, format!("terminal prompt failed: {e}")),
                }
            }
            Approver::Callback(cb) => {
                let cb = Arc::clone(cb);
                let request = parked.request.clone();
                let task = tokio::task::spawn_blocking(move || approver::call_sync(&cb, &request));
                match tokio::time::timeout_at(parked.until.into(), task).await {
                    Ok(Ok(v)) => within_deadline(v, parked.until),
                    Ok(Err(e)) => Verdict::deny(DenyReason::ApproverFailed, format!("approval callback failed: {e}")),
                    Err(_) => Verdict::deny(DenyReason::ApprovalTimeout, None),
                }
            }
            Approver::AsyncCallback(cb) => async_callback_verdict(cb, parked).await,
            Approver::External { on_request } => self.park_async(parked, on_request.as_ref()).await,
        }
    }

    #[cfg(feature = "tokio")]
    async fn park_async(&self, parked: &Parked, notifier: Option<&Notifier>) -> Verdict {
        let id = parked.request.request_id();
        if let Err(e) = self.store.insert(&parked.request) {
            return store_down(e);
        }
        // From here on, a dropped future must not leave a request that could still be approved.
        let mut expire_on_drop = ExpireOnDrop {
            store: &*self.store,
            id,
            armed: true,
        };
        self.notify(notifier, &parked.request);
        let decision = match tokio::time::timeout_at(parked.until.into(), self.store.wait(id)).await {
            Ok(Ok(decision)) => Ok(Some(decision)),
            Ok(Err(e)) => return store_down(e), // expire_on_drop expires it
            Err(_elapsed) => self.store.expire(id),
        };
        expire_on_drop.armed = false;
        self.verdict_of(id, decision)
    }

    /// Turns a store decision into a verdict, claiming an approval so it runs at most once.
    fn verdict_of(&self, id: &RequestId, decision: Result<Option<Decision>, StoreError>) -> Verdict {
        let decision = match decision {
            Ok(Some(d)) => d,
            Ok(None) => {
                return Verdict::deny(
                    DenyReason::StoreUnavailable,
                    format!("request {id} vanished from the store while parked"),
                )
            }
            Err(e) => return store_down(e),
        };
        match decision.state {
            RequestState::Approved => match self.store.claim(id) {
                Ok(true) => Verdict::Approved { actor: decision.actor },
                Ok(false) => Verdict::deny(DenyReason::AlreadyExecuted, None),
                Err(e) => store_down(e),
            },
            RequestState::Denied => Verdict::Denied {
                reason: DenyReason::UserDenied,
                actor: decision.actor,
                detail: decision.note,
            },
            RequestState::Executed => Verdict::deny(DenyReason::AlreadyExecuted, None),
            RequestState::Expired | RequestState::Pending => Verdict::deny(DenyReason::ApprovalTimeout, None),
        }
    }
}

fn store_down(e: StoreError) -> Verdict {
    Verdict::deny(DenyReason::StoreUnavailable, e.to_string())
}

fn too_large_note(limit: usize) -> Value {
    json!({ "omitted": format!("params larger than {limit} bytes are not recorded") })
}

#[cfg(feature = "tokio")]
struct ExpireOnDrop<'a> {
    store: &'a dyn ApprovalStore,
    id: &'a RequestId,
    armed: bool,
}

#[cfg(feature = "tokio")]
impl Drop for ExpireOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.store.abandon(self.id);
        }
    }
}
