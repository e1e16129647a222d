//! Typed tools: the [`Tool`] trait that `#[derive(Tool)]` implements ([`Dispatch`] and [`AsyncDispatch`] call its
//! handler methods), and dispatch through the guard.

use std::fmt;
use std::future::Future;

pub(crate) mod definition;

use crate::guard::{AgentGuard, Approval};
use crate::request::ActionDenied;
use definition::Tool;

/// An LLM's tool call could not be parsed into a [`Tool`] enum.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolParseError {
    /// No tool has this name.
    UnknownTool {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: &'static [&'static str],
    },
    /// The params do not fit the tool's fields.
    BadParams {
        /// The tool.
        tool: &'static str,
        /// Where in the params (`id`, `items[2].sku`; `.` for the whole object).
        path: String,
        /// serde's message.
        message: String,
    },
}

impl fmt::Display for ToolParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolParseError::UnknownTool { name, known } => {
                write!(f, "unknown tool {name:?}; known tools: {}", known.join(", "))
            }
            ToolParseError::BadParams { tool, path, message } => {
                write!(f, "bad params for tool {tool:?} at `{path}`: {message}")
            }
        }
    }
}

impl std::error::Error for ToolParseError {}

/// Calls the handler method of a [`Tool`] value. Implemented by `#[derive(Tool)]` for every `H` that implements
/// the generated `<Enum>Handler` trait; use it through [`AgentGuard::dispatch`].
pub trait Dispatch<H: ?Sized>: Tool {
    /// What the handler returns.
    type Output;

    /// Runs the handler method for this value. Gated variants' methods receive the `approval`.
    fn call(self, approval: Approval, handler: &mut H) -> Self::Output;
}

/// The async twin of [`Dispatch`], for the generated `<Enum>AsyncHandler` trait; use it through
/// [`AgentGuard::adispatch`].
pub trait AsyncDispatch<H: ?Sized>: Tool {
    /// What the handler's futures resolve to.
    type Output;

    /// Runs the handler method for this value.
    fn call(self, approval: Approval, handler: &mut H) -> impl Future<Output = Self::Output> + Send + '_;
}

impl AgentGuard {
    /// Gates a typed tool call and runs its handler method if allowed.
    ///
    /// The call is gated as the enum declares ([`Tool::gating`]); the params are the variant's fields, frozen. A
    /// gated variant's handler method gets the [`Approval`].
    pub fn dispatch<T, H>(&self, tool: T, handler: &mut H) -> Result<T::Output, ActionDenied>
    where
        T: Dispatch<H>,
        H: ?Sized,
    {
        let call = tool
            .to_call()
            .map_err(|e| ActionDenied::invalid_params(tool.name(), e))?;
        let recheck = || tool.params().map_err(|e| e.to_string());
        let approval = self.decide_blocking(call, tool.gating(), Some(&recheck))?;
        Ok(self.run_approved(approval, |approval| tool.call(approval, handler)))
    }

    /// The async twin of [`dispatch`](Self::dispatch), for `<Enum>AsyncHandler` implementations.
    #[cfg(feature = "tokio")]
    pub async fn adispatch<T, H>(&self, tool: T, handler: &mut H) -> Result<T::Output, ActionDenied>
    where
        T: AsyncDispatch<H>,
        H: ?Sized,
    {
        let call = tool
            .to_call()
            .map_err(|e| ActionDenied::invalid_params(tool.name(), e))?;
        let decided = self.decide(call, tool.gating()).await?;
        let recheck = || tool.params().map_err(|e| e.to_string());
        let approval = decided.finish(Some(&recheck))?;
        Ok(self
            .arun_approved(approval, |approval| tool.call(approval, handler))
            .await)
    }
}
