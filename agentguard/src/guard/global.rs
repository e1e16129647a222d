//! The process-wide guard used by `#[gate]` functions that name no guard, and the free functions that use it.

use std::fmt;
use std::sync::OnceLock;

use serde_json::Value;

use super::AgentGuard;
use crate::request::{ActionDenied, ToolCall};

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

pub(crate) fn no_guard(tool: String) -> ActionDenied {
    ActionDenied::no_guard(
        tool,
        "no AgentGuard is installed: call agentguard::install(guard) at startup (or name one with #[gate(guard = \
         ...)]); nothing ran",
    )
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
pub fn aexecute<T, F, Fut>(call: ToolCall, executor: F) -> impl std::future::Future<Output = Result<T, ActionDenied>>
where
    F: FnOnce(String, Value) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    // Looked up at the first poll, as an async fn would; see `AgentGuard::aexecute` for why the call is boxed.
    super::agent::arun_call::<T, super::agent::Plain, F, Fut>(
        super::agent::Through::Installed,
        Box::new(call),
        super::Gating::Auto,
        executor,
    )
}
