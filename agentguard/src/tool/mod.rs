//! Typed tools: the [`Tool`] trait that `#[derive(Tool)]` implements ([`Dispatch`] and [`AsyncDispatch`] call its
//! handler methods), and dispatch through the guard.

use std::fmt;
use std::future::Future;

pub(crate) mod definition;
#[cfg(feature = "schema")]
pub(crate) mod schema;

#[cfg(feature = "schema")]
pub use schema::{Definitions, ToolDefinition, ToolDefinitions};

use crate::guard::{AgentGuard, Allowed, Claim};
use crate::request::ActionDenied;
use crate::store::ApprovalStore;
use crate::Approval;
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

/// The arguments of one gated tool, as `#[derive(Tool)]` generates them (`SupportToolDeleteCustomer` for the variant
/// `DeleteCustomer` of `SupportTool`): what an [`Approval`] carries to the handler method.
///
/// They serialize exactly as the variant's params do, so the guard can check that they are the arguments that were
/// approved.
pub trait ToolArgs: serde::Serialize + serde::de::DeserializeOwned {
    /// The tool's name.
    const NAME: &'static str;

    /// `true` when the tool's declaration says it always asks (`#[tool(risk = …)]`, `#[tool(dangerous)]`): then only
    /// an approver's yes makes its [`Approval`], never the guard's rules finding its name safe.
    const ALWAYS_ASK: bool;
}

/// What a [`Dispatch`] implementation receives for the one call the guard allowed: the means to get that call's
/// [`Approval`] for its handler method.
///
/// Its lifetime is the dispatch call's, so neither it nor the approval it gives can be kept for later; it is consumed
/// by [`approve`](Self::approve), so it gives one approval at most.
pub struct Grant<'a> {
    allowed: &'a Allowed,
    /// Where a parked approval is claimed once its `Approval` is made.
    store: &'a dyn ApprovalStore,
}

impl fmt::Debug for Grant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant").field("tool", &self.allowed.tool()).finish()
    }
}

/// A grant for the call `allowed`. (A free function, not an associated one, so the compiler never suggests it to
/// code outside the guard that tries to build a `Grant`.)
fn grant<'a>(allowed: &'a Allowed, store: &'a dyn ApprovalStore) -> Grant<'a> {
    Grant { allowed, store }
}

impl<'a> Grant<'a> {
    /// The tool that was allowed.
    pub fn tool(&self) -> &str {
        self.allowed.tool()
    }

    /// The [`Approval`] of this call, for the handler method of tool `A::NAME` with arguments `args`.
    ///
    /// Refused (`not_approved`) unless an approver approved this call or the guard's own rules found it safe (a
    /// tool's own declaration that it is safe, [`Gating::Never`](crate::guard::Gating::Never), is not enough), the
    /// tool is `A`'s, and `args` are the arguments that were approved. The code `#[derive(Tool)]` generates always
    /// passes the approved arguments; a hand-written [`Dispatch`] can get nothing else.
    pub fn approve<A: ToolArgs>(self, args: A) -> Result<Approval<'a, A>, ActionDenied> {
        self.allowed.approval_for(args, self.store)
    }

    /// Lets a handler that takes no [`Approval`] run: claims the parked approval in the store (at most once, as
    /// [`approve`](Self::approve) does), so the store records the call as executed, not abandoned. An error is a
    /// denial (the approval expired, or ran already) and the handler does not run.
    #[doc(hidden)]
    pub fn proceed(self) -> Result<(), ActionDenied> {
        self.allowed.claim_now(self.store)
    }
}

/// Calls the handler method of a [`Tool`] value. Implemented by `#[derive(Tool)]` for every `H` that implements
/// the generated `<Enum>Handler` trait; use it through [`AgentGuard::dispatch`].
pub trait Dispatch<H: ?Sized>: Tool {
    /// What the handler returns.
    type Output;

    /// Runs the handler method for this value. A gated variant's method gets the [`Approval`] made from `grant`;
    /// an error is a denial (`not_approved`) and the method does not run.
    fn call(self, grant: Grant<'_>, handler: &mut H) -> Result<Self::Output, ActionDenied>;
}

/// The async twin of [`Dispatch`], for the generated `<Enum>AsyncHandler` trait; use it through
/// [`AgentGuard::adispatch`].
pub trait AsyncDispatch<H: ?Sized>: Tool {
    /// What the handler's futures resolve to.
    type Output;

    /// Runs the handler method for this value.
    fn call<'a>(
        self,
        grant: Grant<'a>,
        handler: &'a mut H,
    ) -> impl Future<Output = Result<Self::Output, ActionDenied>> + Send + 'a;
}

impl AgentGuard {
    /// Gates a typed tool call and runs its handler method if allowed.
    ///
    /// The call is gated as the enum declares ([`Tool::gating`]); the params are the variant's fields, frozen. A
    /// gated variant's handler method gets the [`Approval`] of exactly this call.
    pub fn dispatch<T, H>(&self, tool: T, handler: &mut H) -> Result<T::Output, ActionDenied>
    where
        T: Dispatch<H>,
        H: ?Sized,
    {
        let call = tool
            .to_call()
            .map_err(|e| ActionDenied::invalid_params(tool.name(), e))?;
        let recheck = || tool.params().map_err(|e| e.to_string());
        let allowed = self.decide_blocking(call, tool.gating(), Some(&recheck), Claim::AtApproval)?;
        self.run_approved_fallible(allowed, |allowed| tool.call(grant(&allowed, &**self.store()), handler))
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
        let decided = self.decide(call, tool.gating()).wait().await?;
        // The run is boxed, and the approval lives in a block that ends before it is awaited: a future is as large
        // as its largest state, and a parked call holds it for its whole wait (1,288 bytes for a small enum before,
        // most of it the run's).
        let run = {
            let recheck = || tool.params().map_err(|e| e.to_string());
            let allowed = decided.finish(Some(&recheck), Claim::AtApproval)?;
            Box::pin(self.arun_approved_fallible(allowed, |allowed| async move {
                tool.call(grant(&allowed, &**self.store()), handler).await
            }))
        };
        run.await
    }
}
