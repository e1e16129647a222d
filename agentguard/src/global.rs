//! The process-wide guard used by `#[gate]` functions that name no guard, and the free functions that use it.

use std::fmt;
use std::sync::OnceLock;

use serde_json::Value;

use crate::guard::{AgentGuard, Approval, Gating, Recheck};
use crate::request::{ActionDenied, DenyReason, ToolCall};
use crate::Risk;

static INSTALLED: OnceLock<AgentGuard> = OnceLock::new();

/// [`install`] was called a second time; the first guard stays.
#[derive(Debug)]
pub struct AlreadyInstalled(pub AgentGuard);

impl fmt::Display for AlreadyInstalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a guard is already installed for this process; install one guard once at startup and share clones of it",
        )
    }
}

impl std::error::Error for AlreadyInstalled {}

/// Installs the process-wide guard used by `#[gate]` functions (and [`execute`]) that name no guard of their own.
///
/// Once per process: a second call is refused and gives its guard back, so nothing can swap the guard under
/// running code.
pub fn install(guard: AgentGuard) -> Result<(), AlreadyInstalled> {
    let mut offered = Some(guard);
    INSTALLED.get_or_init(|| offered.take().expect("taken once"));
    match offered {
        None => Ok(()),
        Some(guard) => Err(AlreadyInstalled(guard)),
    }
}

/// The installed guard, if any.
pub fn installed() -> Option<&'static AgentGuard> {
    INSTALLED.get()
}

fn no_guard(tool: String) -> ActionDenied {
    ActionDenied::new(DenyReason::NoGuard, tool).with_detail(Some(
        "no AgentGuard is installed: call agentguard::install(guard) at startup (or name one with #[gate(guard = \
         ...)]); nothing ran"
            .to_owned(),
    ))
}

/// [`AgentGuard::execute`] through the [installed](install) guard. With none installed, the call is denied
/// (`no_guard`) and does not run.
pub fn execute<T, F>(call: ToolCall, executor: F) -> Result<T, ActionDenied>
where
    F: FnOnce(&str, Value) -> T,
{
    match installed() {
        Some(guard) => guard.execute(call, executor),
        None => Err(no_guard(call.name)),
    }
}

/// [`AgentGuard::aexecute`] through the [installed](install) guard. With none installed, the call is denied
/// (`no_guard`) and does not run.
#[cfg(feature = "tokio")]
pub async fn aexecute<T, F, Fut>(call: ToolCall, executor: F) -> Result<T, ActionDenied>
where
    F: FnOnce(String, Value) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    match installed() {
        Some(guard) => guard.aexecute(call, executor).await,
        None => Err(no_guard(call.name)),
    }
}

/// Internals for generated code. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    use super::*;

    pub use serde;
    pub use serde_json;
    pub use serde_path_to_error;

    /// The named guard, else the installed one.
    fn pick(guard: Option<&AgentGuard>) -> Option<&AgentGuard> {
        match guard {
            Some(g) => Some(g),
            None => installed(),
        }
    }

    /// `#[gate]`'s rule: always ask, with the declared risk or `MANUALLY FLAGGED`.
    pub fn always(risk: Option<Risk>) -> Gating {
        Gating::Always(risk.unwrap_or(Risk::ManuallyFlagged))
    }

    /// The arguments of a gated function could not be turned into JSON: denied before anyone is asked.
    pub fn invalid_params(tool: &str, error: impl std::fmt::Display) -> ActionDenied {
        ActionDenied::new(DenyReason::InvalidParams, tool).with_detail(Some(format!(
            "the arguments could not be serialized into the params snapshot: {error}"
        )))
    }

    /// What a `skip`ped argument shows in the snapshot.
    pub const SKIPPED: &str = "[skipped: not part of the approved params]";

    /// Compile-time check that a `#[gate]` argument can be frozen; the error names `skip`.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be frozen into the approved params: it does not implement `serde::Serialize`",
        label = "this argument is not `Serialize`",
        note = "derive or implement `serde::Serialize` for it, or leave this argument out of the approved params with `#[gate(skip(<argument name>))]` (a skipped argument is not covered by the approval)"
    )]
    pub trait GateArg {
        /// The argument as JSON.
        fn to_json(&self) -> Result<Value, String>;
    }
    impl<T: ?Sized + serde::Serialize> GateArg for T {
        fn to_json(&self) -> Result<Value, String> {
            serde_json::to_value(self).map_err(|e| e.to_string())
        }
    }

    /// Something that names a guard in `#[gate(guard = ...)]`.
    pub trait AsGuard {
        /// The guard, if there is one now.
        fn as_guard(&self) -> Option<&AgentGuard>;
    }
    impl AsGuard for AgentGuard {
        fn as_guard(&self) -> Option<&AgentGuard> {
            Some(self)
        }
    }
    impl<T: AsGuard + ?Sized> AsGuard for &T {
        fn as_guard(&self) -> Option<&AgentGuard> {
            (**self).as_guard()
        }
    }
    impl<T: AsGuard> AsGuard for Option<T> {
        fn as_guard(&self) -> Option<&AgentGuard> {
            self.as_ref().and_then(AsGuard::as_guard)
        }
    }
    impl<T: AsGuard, F: FnOnce() -> T> AsGuard for std::sync::LazyLock<T, F> {
        fn as_guard(&self) -> Option<&AgentGuard> {
            std::sync::LazyLock::force(self).as_guard()
        }
    }
    impl<T: AsGuard> AsGuard for std::sync::OnceLock<T> {
        fn as_guard(&self) -> Option<&AgentGuard> {
            self.get().and_then(AsGuard::as_guard)
        }
    }
    impl<T: AsGuard + ?Sized> AsGuard for std::sync::Arc<T> {
        fn as_guard(&self) -> Option<&AgentGuard> {
            (**self).as_guard()
        }
    }

    /// The guard named in `#[gate(guard = ...)]`.
    pub fn named_guard<G: AsGuard + ?Sized>(guard: &G) -> Option<&AgentGuard> {
        guard.as_guard()
    }

    /// Approves a call through `guard`, or the installed guard when `None`; `recheck` rebuilds the params after
    /// approval to catch changes.
    pub fn approve(
        guard: Option<&AgentGuard>,
        call: ToolCall,
        gate: Gating,
        recheck: Option<&Recheck<'_>>,
    ) -> Result<Approval, ActionDenied> {
        match pick(guard) {
            Some(guard) => guard.approve_as(call, gate, recheck),
            None => Err(no_guard(call.name)),
        }
    }

    /// The async half of [`approve`]: everything up to the verdict. Finish with [`Pending::finish`], which
    /// rechecks the arguments; the recheck closure is never held across the await.
    #[cfg(feature = "tokio")]
    pub async fn adecide(
        guard: Option<&AgentGuard>,
        call: ToolCall,
        gate: Gating,
    ) -> Result<Pending<'_>, ActionDenied> {
        match pick(guard) {
            Some(guard) => Ok(Pending(guard.adecide(call, gate).await?)),
            None => Err(no_guard(call.name)),
        }
    }

    /// An async approval whose verdict is in.
    #[cfg(feature = "tokio")]
    pub struct Pending<'g>(crate::guard::Decided<'g>);

    #[cfg(feature = "tokio")]
    impl std::fmt::Debug for Pending<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Pending")
        }
    }

    #[cfg(feature = "tokio")]
    impl Pending<'_> {
        /// Rechecks the arguments, records the verdict, and hands out the approval.
        pub fn finish(self, recheck: Option<&Recheck<'_>>) -> Result<Approval, ActionDenied> {
            self.0.finish(recheck)
        }
    }

    /// Gives an async block its output type, so `?` inside it can infer the error type.
    pub fn typed_future<R, F: std::future::Future<Output = R>>(future: F) -> F {
        future
    }

    /// Records how a gated body ends in the guard's store (a no-op unless the approval was parked there).
    #[derive(Debug)]
    pub struct Recorder<'a>(Option<crate::guard::OutcomeRecorder<'a>>);

    /// Starts recording the body run under `approval`, through `guard` or the installed guard.
    pub fn recorder<'a>(guard: Option<&'a AgentGuard>, approval: &Approval) -> Recorder<'a> {
        Recorder(pick(guard).map(|g| g.inner().outcome_recorder(approval)))
    }

    impl Recorder<'_> {
        /// The body returned `out`: record `ok` and pass it on.
        pub fn finish<T>(self, out: T) -> T {
            match self.0 {
                Some(r) => r.finish(out),
                None => out,
            }
        }
    }

    /// Parses a tool's params into its generated args struct, with the path of a bad field.
    pub fn parse_args<T: serde::de::DeserializeOwned>(
        tool: &'static str,
        params: Value,
    ) -> Result<T, crate::ToolParseError> {
        let params = if params.is_null() {
            Value::Object(Default::default())
        } else {
            params
        };
        serde_path_to_error::deserialize(params).map_err(|e| crate::ToolParseError::BadParams {
            tool,
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }
}
