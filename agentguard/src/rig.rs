//! The guard in front of a [rig](https://docs.rs/rig-core) agent's tools (feature `rig`, rig-core 0.40).
//!
//! Every call the agent makes to a wrapped tool goes through [`AgentGuard::aexecute_detailed`]: the arguments the
//! model sent are frozen, a dangerous call waits for a person, and the tool runs with exactly the frozen arguments.
//! A denial is not an error: the tool's output is the denial's text (`Blocked by AgentGuard (user_denied)`), which
//! the model reads as the result of its call, so it does not retry.
//!
//! ```no_run
//! # use agentguard::AgentGuard;
//! # fn tools<A, B>(guard: &AgentGuard, delete_file: A, get_weather: B) -> rig_core::tool::ToolSet
//! # where A: rig_core::tool::Tool + 'static, B: rig_core::tool::Tool + 'static {
//! use agentguard::rig::GuardedToolSet;
//!
//! GuardedToolSet::new(guard)
//!     .guarded(delete_file)      // asks when the guard's rules say so (classify, dangerous_tools, safe_tools)
//!     .unguarded(get_weather)    // never asked by name (audited, policy applies); a dangerous NAME does not compile
//!     .into_tool_set()           // or .into_tools() for `AgentBuilder::tools(...)`
//! # }
//! ```
//!
//! Registering a tool unguarded is checked when the program is compiled: rig tools carry their name as a constant
//! (`Tool::NAME`), and [`classify_const`](crate::classify_const) reads it in a `const` block, so
//! `.unguarded(DeleteFile)` does not compile. The check covers what is registered through this module; a tool given
//! to rig's own `AgentBuilder::tool` directly is not seen by it. The error comes when the code is built (`cargo
//! build`, `cargo test`), not under `cargo check`, which does not evaluate constants of generic functions.

use std::error::Error as StdError;
use std::fmt;

use rig_core::tool::{Tool as RigTool, ToolCallExtensions, ToolDyn, ToolError, ToolSet};
use rig_core::wasm_compat::WasmBoxedFuture;
use serde_json::Value;

use crate::guard::Gating;
use crate::{ActionDenied, AgentGuard, Risk, ToolCall};

/// Who makes a call, for the approver's card and the audit: the agent and the session (conversation, ticket).
///
/// Give it to a tool set ([`GuardedToolSet::context`]) as the default of its tools, or per prompt through rig's
/// tool extensions, which win over the default field by field:
///
/// ```no_run
/// # fn doc(ext: &mut rig_core::tool::ToolCallExtensions) {
/// use agentguard::rig::CallContext;
/// ext.insert(CallContext::new().agent_id("support-bot").session_id("ticket-4821"));
/// // agent.prompt("…").tool_extensions(ext)
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    agent_id: Option<String>,
    session_id: Option<String>,
}

impl CallContext {
    /// No agent or session.
    pub fn new() -> Self {
        CallContext::default()
    }

    /// The agent making the calls.
    pub fn agent_id(mut self, agent_id: impl Into<String>) -> Self {
        self.agent_id = Some(agent_id.into());
        self
    }

    /// The run or conversation the calls belong to.
    pub fn session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// `call` with this context's agent and session, those of `per_call` first.
    fn apply(&self, call: ToolCall, per_call: Option<&CallContext>) -> ToolCall {
        let agent = per_call.and_then(|c| c.agent_id.as_ref()).or(self.agent_id.as_ref());
        let session = per_call
            .and_then(|c| c.session_id.as_ref())
            .or(self.session_id.as_ref());
        let call = match agent {
            Some(agent) => call.agent_id(agent.clone()),
            None => call,
        };
        match session {
            Some(session) => call.session_id(session.clone()),
            None => call,
        }
    }
}

/// A rig [`Tool`](RigTool) whose every call goes through the guard. It is a rig tool itself, with the same name,
/// description and parameter schema, so it registers anywhere the tool did (`AgentBuilder::tool`, a `ToolSet`).
///
/// Its `Args` are the JSON the model sent: they are checked against the tool's own `Args` type before anyone is
/// asked (a call that cannot run is an error, not a request), frozen by the guard, and parsed again from the frozen
/// snapshot for the call, so the tool runs with what was approved. Its `Output` is text: the tool's output as rig
/// would show it (a string as is, anything else as JSON), or the denial's text.
pub struct Guarded<T> {
    tool: T,
    guard: AgentGuard,
    gating: Gating,
    context: CallContext,
}

impl<T> fmt::Debug for Guarded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("gating", &self.gating)
            .finish_non_exhaustive()
    }
}

impl<T: RigTool> Guarded<T> {
    /// `tool` behind `guard`, gated by the guard's rules: `dangerous_tools`, `safe_tools`, then the name's
    /// [`classify`](crate::classify).
    pub fn new(tool: T, guard: &AgentGuard) -> Self {
        Guarded {
            tool,
            guard: guard.clone(),
            gating: Gating::Auto,
            context: CallContext::default(),
        }
    }

    /// `tool` behind `guard`, always asking with `risk`, whatever its name says.
    pub fn always_ask(tool: T, guard: &AgentGuard, risk: Risk) -> Self {
        Guarded {
            tool,
            guard: guard.clone(),
            gating: Gating::Always(risk),
            context: CallContext::default(),
        }
    }

    /// The agent and session its calls are made for, unless a call's tool extensions carry a [`CallContext`].
    pub fn context(mut self, context: CallContext) -> Self {
        self.context = context;
        self
    }

    /// The wrapped tool.
    pub fn inner(&self) -> &T {
        &self.tool
    }
}

/// Why a [`Guarded`] tool call failed (a denial is not a failure: it is the call's output).
#[derive(Debug)]
#[non_exhaustive]
pub enum GuardedToolError {
    /// The model's arguments do not fit the tool's `Args`: nothing was asked, nothing ran.
    BadArgs {
        /// The tool.
        tool: &'static str,
        /// serde's message.
        error: serde_json::Error,
    },
    /// The tool ran and returned an error.
    Tool(Box<dyn StdError + Send + Sync>),
    /// The tool's output could not be turned into JSON text.
    Output(serde_json::Error),
}

impl fmt::Display for GuardedToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardedToolError::BadArgs { tool, error } => {
                write!(
                    f,
                    "bad arguments for tool {tool:?}: {error}; nothing ran, fix the arguments and call again"
                )
            }
            GuardedToolError::Tool(error) => write!(f, "{error}"),
            GuardedToolError::Output(error) => write!(f, "the tool's output is not JSON: {error}"),
        }
    }
}

impl StdError for GuardedToolError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            GuardedToolError::BadArgs { error, .. } | GuardedToolError::Output(error) => Some(error),
            GuardedToolError::Tool(error) => Some(&**error),
        }
    }
}

/// What the model reads when a call is denied: the denial's text, `Blocked by AgentGuard (<reason>[: <note>])`; when a
/// person answered for the tool instead, their text (the tool's result).
pub fn denial_text(denied: &ActionDenied) -> String {
    denied.to_string()
}

/// A tool's output, followed by a line saying so when an approver edited its arguments.
fn with_edit_notice<E>(ran: crate::guard::Executed<Result<String, E>>) -> Result<String, E> {
    let text = ran.value?;
    Ok(match ran.edited {
        Some(edit) => format!("{text}\n\n{}", edit.notice()),
        None => text,
    })
}

/// A tool output as rig shows it to the model: a string as is, anything else as JSON.
fn output_text(output: impl serde::Serialize) -> Result<String, serde_json::Error> {
    Ok(match serde_json::to_value(output)? {
        Value::String(text) => text,
        value => value.to_string(),
    })
}

impl<T> RigTool for Guarded<T>
where
    T: RigTool,
{
    const NAME: &'static str = T::NAME;
    type Error = GuardedToolError;
    type Args = Value;
    type Output = String;

    fn description(&self) -> String {
        self.tool.description()
    }

    fn parameters(&self) -> Value {
        self.tool.parameters()
    }

    async fn call(&self, args: Value) -> Result<String, GuardedToolError> {
        RigTool::call_with_extensions(self, args, &ToolCallExtensions::new()).await
    }

    async fn call_with_extensions(
        &self,
        args: Value,
        extensions: &ToolCallExtensions,
    ) -> Result<String, GuardedToolError> {
        // Models send `null` for a tool without arguments; rig reads it as `{}` when the args type refuses `null`.
        let args = match args {
            Value::Null if <T::Args as serde::Deserialize>::deserialize(&Value::Null).is_err() => {
                Value::Object(serde_json::Map::new())
            }
            args => args,
        };
        // A call that cannot run is refused before anyone is asked to approve it.
        if let Err(error) = <T::Args as serde::Deserialize>::deserialize(&args) {
            return Err(GuardedToolError::BadArgs { tool: T::NAME, error });
        }
        let call = self
            .context
            .apply(ToolCall::new(T::NAME, args), extensions.get::<CallContext>());
        let ran = self
            .guard
            .aexecute_detailed(call, self.gating, |_, params| async move {
                // The frozen snapshot, exactly as approved (or as an approver edited it).
                let args: T::Args = serde_json::from_value(params)
                    .map_err(|error| GuardedToolError::BadArgs { tool: T::NAME, error })?;
                let output = self
                    .tool
                    .call_with_extensions(args, extensions)
                    .await
                    .map_err(|e| GuardedToolError::Tool(Box::new(e)))?;
                output_text(output).map_err(GuardedToolError::Output)
            })
            .await;
        match ran {
            Ok(ran) => with_edit_notice(ran),
            Err(denied) => Ok(denial_text(&denied)),
        }
    }
}

/// A tool whose name is only known at run time (a `Box<dyn ToolDyn>`, as rig's dynamic and MCP tools are) behind
/// the guard. Gated like [`Guarded`]; its arguments are frozen as the JSON the model sent and handed to the tool as
/// that frozen text.
pub struct GuardedDyn {
    tool: Box<dyn ToolDyn>,
    guard: AgentGuard,
    gating: Gating,
    context: CallContext,
}

impl fmt::Debug for GuardedDyn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedDyn")
            .field("name", &self.tool.name())
            .field("gating", &self.gating)
            .finish_non_exhaustive()
    }
}

impl GuardedDyn {
    /// `tool` behind `guard`, gated by the guard's rules.
    pub fn new(tool: Box<dyn ToolDyn>, guard: &AgentGuard) -> Self {
        GuardedDyn {
            tool,
            guard: guard.clone(),
            gating: Gating::Auto,
            context: CallContext::default(),
        }
    }

    /// `tool` behind `guard`, always asking with `risk`.
    pub fn always_ask(tool: Box<dyn ToolDyn>, guard: &AgentGuard, risk: Risk) -> Self {
        GuardedDyn {
            tool,
            guard: guard.clone(),
            gating: Gating::Always(risk),
            context: CallContext::default(),
        }
    }

    /// The agent and session its calls are made for, unless a call's tool extensions carry a [`CallContext`].
    pub fn context(mut self, context: CallContext) -> Self {
        self.context = context;
        self
    }
}

impl ToolDyn for GuardedDyn {
    fn name(&self) -> String {
        self.tool.name()
    }

    fn description(&self) -> String {
        self.tool.description()
    }

    fn parameters(&self) -> Value {
        self.tool.parameters()
    }

    fn call<'a>(&'a self, args: String) -> WasmBoxedFuture<'a, Result<String, ToolError>> {
        Box::pin(async move { self.run(args, None).await })
    }

    fn call_with_extensions<'a>(
        &'a self,
        args: String,
        extensions: &'a ToolCallExtensions,
    ) -> WasmBoxedFuture<'a, Result<String, ToolError>> {
        Box::pin(async move { self.run(args, Some(extensions)).await })
    }
}

impl GuardedDyn {
    async fn run(&self, args: String, extensions: Option<&ToolCallExtensions>) -> Result<String, ToolError> {
        // Arguments must be JSON; `null` (a call without arguments) is frozen as `{}`, which rig's tools read alike.
        let params = match serde_json::from_str(&args).map_err(ToolError::JsonError)? {
            Value::Null => Value::Object(serde_json::Map::new()),
            params => params,
        };
        let per_call = extensions.and_then(|e| e.get::<CallContext>());
        let call = self.context.apply(ToolCall::new(self.tool.name(), params), per_call);
        let ran = self
            .guard
            .aexecute_detailed(call, self.gating, |_, params| async move {
                let frozen = params.to_string();
                match extensions {
                    Some(extensions) => self.tool.call_with_extensions(frozen, extensions).await,
                    None => self.tool.call(frozen).await,
                }
            })
            .await;
        match ran {
            Ok(ran) => with_edit_notice(ran),
            Err(denied) => Ok(denial_text(&denied)),
        }
    }
}

/// A rig tool set built behind one guard: each tool is registered either [`guarded`](Self::guarded) or, if its
/// name is safe, [`unguarded`](Self::unguarded) — checked at compile time.
pub struct GuardedToolSet {
    guard: AgentGuard,
    context: CallContext,
    tools: Vec<Box<dyn ToolDyn>>,
}

impl fmt::Debug for GuardedToolSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.tools.iter().map(|t| t.name()).collect();
        f.debug_struct("GuardedToolSet")
            .field("tools", &names)
            .finish_non_exhaustive()
    }
}

impl GuardedToolSet {
    /// An empty set whose guarded tools go through `guard`.
    pub fn new(guard: &AgentGuard) -> Self {
        GuardedToolSet {
            guard: guard.clone(),
            context: CallContext::default(),
            tools: Vec::new(),
        }
    }

    /// The agent and session of the calls of the tools added after this (a call's tool extensions can still carry
    /// its own [`CallContext`]).
    pub fn context(mut self, context: CallContext) -> Self {
        self.context = context;
        self
    }

    /// Adds `tool` behind the guard, gated by the guard's rules ([`Guarded::new`]). A tool whose name looks
    /// dangerous but is not goes here too, with its name in the guard's `safe_tools`.
    pub fn guarded<T>(mut self, tool: T) -> Self
    where
        T: RigTool + 'static,
    {
        self.tools
            .push(Box::new(Guarded::new(tool, &self.guard).context(self.context.clone())));
        self
    }

    /// Adds `tool` behind the guard, always asking with `risk` ([`Guarded::always_ask`]): for a tool whose name
    /// looks innocent but is not.
    pub fn always_ask<T>(mut self, tool: T, risk: Risk) -> Self
    where
        T: RigTool + 'static,
    {
        self.tools.push(Box::new(
            Guarded::always_ask(tool, &self.guard, risk).context(self.context.clone()),
        ));
        self
    }

    /// Adds a tool whose name is only known at run time behind the guard ([`GuardedDyn`]).
    pub fn guarded_dyn(mut self, tool: Box<dyn ToolDyn>) -> Self {
        self.tools.push(Box::new(
            GuardedDyn::new(tool, &self.guard).context(self.context.clone()),
        ));
        self
    }

    /// Adds every tool of `tools` behind the guard ([`GuardedDyn`]), e.g. the tools of an existing set.
    pub fn guarded_all(mut self, tools: impl IntoIterator<Item = Box<dyn ToolDyn>>) -> Self {
        for tool in tools {
            self = self.guarded_dyn(tool);
        }
        self
    }

    /// Adds `tool` unguarded: its calls are never asked about for their name and run at once. They still go through
    /// the guard: each is one audit line, and a [policy](crate::policy) rule that denies or asks still applies.
    ///
    /// Refused **at compile time** when `T::NAME` classifies as dangerous ([`classify_const`](crate::classify_const)):
    /// the build fails with a message naming the tool and saying to register it with [`guarded`](Self::guarded).
    pub fn unguarded<T>(mut self, tool: T) -> Self
    where
        T: RigTool + 'static,
    {
        const { assert_unguarded_name_is_safe(T::NAME) };
        self.tools.push(Box::new(Guarded {
            tool,
            guard: self.guard.clone(),
            gating: Gating::Never,
            context: self.context.clone(),
        }));
        self
    }

    /// The tools, for rig's `AgentBuilder::tools(...)`.
    pub fn into_tools(self) -> Vec<Box<dyn ToolDyn>> {
        self.tools
    }

    /// The tools as a rig [`ToolSet`].
    pub fn into_tool_set(self) -> ToolSet {
        ToolSet::from_tools_boxed(self.tools)
    }
}

/// The compile-time check of [`GuardedToolSet::unguarded`]: panics (a build error, as it runs in a `const` block)
/// when `name` classifies as dangerous, with a message that names the tool and how to wrap it.
pub const fn assert_unguarded_name_is_safe(name: &str) {
    let Some(risk) = crate::classify_const(name) else {
        return;
    };
    let mut buf = [0u8; 1024];
    let mut n = 0;
    n = append(&mut buf, n, "agentguard: the rig tool `");
    n = append(&mut buf, n, name);
    n = append(&mut buf, n, "` cannot be registered unguarded: its name classifies as ");
    n = append(&mut buf, n, risk.label());
    n = append(
        &mut buf,
        n,
        ". Register it with `.guarded(tool)` (or wrap it: `agentguard::rig::Guarded::new(tool, &guard)`); if the name \
         misleads, keep it guarded and list it in the guard's `safe_tools`",
    );
    let (message, _) = buf.split_at(n);
    match core::str::from_utf8(message) {
        Ok(message) => panic!("{}", message),
        Err(_) => panic!("agentguard: a rig tool whose name classifies as dangerous cannot be registered unguarded"),
    }
}

/// Appends `text` to `buf[..n]`, as much as fits; the new length.
const fn append(buf: &mut [u8; 1024], n: usize, text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && n + i < buf.len() {
        buf[n + i] = bytes[i];
        i += 1;
    }
    n + i
}
