//! Building a guard: one constructor per approval mode ([`AgentGuard::terminal`], [`callback`](AgentGuard::callback),
//! [`async_callback`](AgentGuard::async_callback), [`external`](AgentGuard::external)), then [`GuardBuilder`]'s options.

use std::collections::HashSet;
use std::fmt;
use std::io::{BufRead, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{AgentGuard, Inner};
use crate::approver::{Approver, TerminalPrompt};
use crate::audit::{AuditSink, JsonlAudit};
use crate::params::{Redactor, DEFAULT_MAX_PARAMS_BYTES};
use crate::policy::{Loaded, Policy, PolicyError, PolicySlot, DEFAULT_RELOAD_INTERVAL};
use crate::request::ApprovalRequest;
use crate::store::{ApprovalStore, InMemoryStore};

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
    policy: Option<PolicySource>,
    policy_reload: Option<Duration>,
    _mode: PhantomData<M>,
}

enum PolicySource {
    Fixed(Policy),
    File(PathBuf, Loaded),
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
    /// A guard that asks on the terminal (`Allow? (y/n)`): the mode of the README's quickstart.
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
            policy: None,
            policy_reload: Some(DEFAULT_RELOAD_INTERVAL),
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

    /// Tools that always need approval, whatever their name. A name matches in any case, separator or Unicode
    /// compatibility spelling (`loyalty_bonus` also covers `loyaltyBonus`, `LOYALTYBONUS`, `Loyalty-Bonus` and
    /// fullwidth `ｌｏｙａｌｔｙ_ｂｏｎｕｓ`), and in look-alike letters (a Cyrillic `о` for the `o`: names are compared
    /// by their UTS #39 confusable skeleton, `agentguard_classify::confusable_key`). Their risk is
    /// [`Risk::ManuallyFlagged`](crate::Risk::ManuallyFlagged) unless [`classify`](crate::classify) also finds one,
    /// which then wins; either way the call is gated once and logged once.
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
                .map(|n| agentguard_classify::confusable_key(&n.into())),
        );
        self
    }

    /// Tools that never need approval even though their name looks dangerous (e.g. `reset_view`). They still get
    /// an audit line, marked as allowed by `safe_tools`. A name matches in any case, separator or Unicode
    /// compatibility spelling (`agentguard_classify::name_key`), never in look-alike letters, and never when
    /// [`classify`](crate::classify) finds the name suspicious (hidden or edge-whitespace characters, mixed
    /// scripts): such a call is gated.
    pub fn safe_tools<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.safe
            .extend(names.into_iter().map(|n| agentguard_classify::name_key(&n.into())));
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

    /// Where audit records go. Default: a [`JsonlAudit`] at [`default_log_path`](crate::audit::default_log_path)
    /// (`$AGENTGUARD_LOG`, else `agentguard.log`).
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

    /// Decides calls by `policy`'s rules before any approver is asked (see [`crate::policy`]). Replaces a policy
    /// given before.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(PolicySource::Fixed(policy));
        self
    }

    /// Reads the policy file at `path` now, and again whenever it changes (checked every second by default; see
    /// [`policy_reload_interval`](Self::policy_reload_interval)). A file that cannot be read or has errors is an
    /// `Err` here, so a guard never starts without the policy it was given; a later change that does not compile
    /// keeps the policy in force and says why (stderr and an audit line).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), agentguard::policy::PolicyError> {
    /// let guard = agentguard::AgentGuard::external().policy_file("agentguard.toml")?.build();
    /// # Ok(()) }
    /// ```
    pub fn policy_file(mut self, path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let loaded = Loaded::read(path)?;
        self.policy = Some(PolicySource::File(path.to_path_buf(), loaded));
        Ok(self)
    }

    /// How often a [`policy_file`](Self::policy_file) is checked for changes: default
    /// [`DEFAULT_RELOAD_INTERVAL`](crate::policy::DEFAULT_RELOAD_INTERVAL) (1 s); `None` to re-read it only when
    /// [`AgentGuard::reload_policy`] is called (from a signal handler, say).
    pub fn policy_reload_interval(mut self, interval: Option<Duration>) -> Self {
        self.policy_reload = interval.map(|i| i.max(Duration::from_millis(10)));
        self
    }

    /// Finishes the guard.
    pub fn build(self) -> AgentGuard {
        let audit = match self.audit {
            AuditChoice::Default => Some(Arc::new(JsonlAudit::from_env()) as Arc<dyn AuditSink>),
            AuditChoice::Sink(s) => Some(s),
            AuditChoice::Off => None,
        };
        let policy = self.policy.map(|source| match source {
            PolicySource::Fixed(policy) => PolicySlot::fixed(policy, audit.clone()),
            PolicySource::File(path, loaded) => PolicySlot::watched(path, loaded, self.policy_reload, audit.clone()),
        });
        let given_store = self.store.unwrap_or_else(|| Arc::new(InMemoryStore::new()));
        #[cfg(feature = "tokio")]
        let in_memory = (given_store.clone() as Arc<dyn std::any::Any + Send + Sync>)
            .downcast::<InMemoryStore>()
            .ok();
        AgentGuard {
            inner: Arc::new(Inner {
                approver: self.approver,
                timeout: self.timeout,
                dangerous: self.dangerous,
                safe: self.safe,
                store: crate::store::offload::offloaded(given_store.clone()),
                #[cfg(feature = "tokio")]
                in_memory,
                given_store,
                audit,
                redactor: self.redactor,
                max_params_bytes: self.max_params_bytes,
                policy,
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
    ///
    /// Notifiers add up: each `on_request` (and `notify_webhook`, with the `webhook` feature) adds one, and all run,
    /// in the order given, even if an earlier one panics.
    pub fn on_request<F>(mut self, notify: F) -> Self
    where
        F: Fn(&ApprovalRequest) + Send + Sync + 'static,
    {
        let Approver::External { on_request } = &mut self.approver else {
            unreachable!("an external builder has the external approver")
        };
        *on_request = Some(crate::approver::chain_notifiers(on_request.take(), Arc::new(notify)));
        self
    }

    /// Posts each parked request to `webhook` (feature `webhook`): a signed JSON, Slack or ntfy message linking to
    /// the request's card, sent from a background thread. It never blocks or fails the agent's call. Composes with
    /// [`on_request`](Self::on_request).
    #[cfg(feature = "webhook")]
    pub fn notify_webhook(self, webhook: crate::notify::Webhook) -> Self {
        self.on_request(move |req| webhook.notify(req))
    }
}
