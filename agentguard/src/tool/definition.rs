//! The [`Tool`] trait that `#[derive(Tool)]` implements: names, gating, params and parsing of an enum of tool calls.

use serde_json::Value;

use super::ToolParseError;
use crate::guard::Gating;
use crate::request::ToolCall;
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

    /// A [`ToolCall`] of this value, for [`AgentGuard::execute`](crate::AgentGuard::execute) or an audit.
    fn to_call(&self) -> Result<ToolCall, serde_json::Error> {
        Ok(ToolCall::new(self.name(), self.params()?))
    }
}
