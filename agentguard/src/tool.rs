//! Typed tools: the [`Tool`] trait that `#[derive(Tool)]` implements, and dispatch through the guard.

use std::fmt;
use std::future::Future;

use serde_json::Value;

use crate::guard::{AgentGuard, Approval, Gating};
use crate::request::{ActionDenied, ToolCall};
use agentguard_classify::Risk;

/// An enum of tool calls, usually from `#[derive(agentguard::Tool)]`: each variant is one tool, its fields the
/// params.
pub trait Tool: Sized {
    /// Every tool name, in declaration order.
    const NAMES: &'static [&'static str];

    /// This call's tool name.
    fn name(&self) -> &'static str;

    /// How this call is gated, as declared: `#[tool(risk = "...")]` and `#[tool(dangerous)]` always ask,
    /// `#[tool(safe)]` never asks, an unmarked variant follows the guard's rules (`classify` and its lists).
    fn gating(&self) -> Gating;

    /// The risk the declaration or the classifier gives this call (`None` when it is safe by its name).
    fn risk(&self) -> Option<Risk> {
        match self.gating() {
            Gating::Always(risk) => Some(risk),
            Gating::Never => None,
            Gating::Auto => agentguard_classify::classify(self.name()),
        }
    }

    /// The params snapshot: a JSON object of the variant's fields.
    fn params(&self) -> Result<Value, serde_json::Error>;

    /// Parses an LLM's tool call (`name` and JSON `params`) into the enum.
    fn parse(name: &str, params: Value) -> Result<Self, ToolParseError>;

    /// A [`ToolCall`] of this value, for [`AgentGuard::execute`] or an audit.
    fn to_call(&self) -> Result<ToolCall, serde_json::Error> {
        Ok(ToolCall::new(self.name(), self.params()?))
    }
}

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
            .map_err(|e| crate::__private::invalid_params(tool.name(), e))?;
        let recheck = || tool.params().map_err(|e| e.to_string());
        let approval = self.approve_as(call, tool.gating(), Some(&recheck))?;
        let record = self.inner().outcome_recorder(&approval);
        let out = tool.call(approval, handler);
        Ok(record.finish(out))
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
            .map_err(|e| crate::__private::invalid_params(tool.name(), e))?;
        let decided = self.adecide(call, tool.gating()).await?;
        let recheck = || tool.params().map_err(|e| e.to_string());
        let approval = decided.finish(Some(&recheck))?;
        let record = self.inner().outcome_recorder(&approval);
        let out = tool.call(approval, handler).await;
        Ok(record.finish(out))
    }
}
