//! An MCP server written with [rmcp](https://docs.rs/rmcp) (feature `rmcp`): the guard in front of its tools with
//! one line, and each tool's `readOnlyHint` / `destructiveHint` advertised from the guard's view of it.
//!
//! ```no_run
//! # #[derive(Clone)] struct Desk;
//! # impl rmcp::ServerHandler for Desk {}
//! use agentguard::rmcp::GuardedExt;
//! use agentguard::AgentGuard;
//! use rmcp::ServiceExt;
//!
//! # async fn run(stdio: tokio::io::DuplexStream) -> Result<(), Box<dyn std::error::Error>> {
//! let guard = AgentGuard::external().build(); // answered on the approval page, by the CLI, ...
//! // The one line; `stdio` is any rmcp transport, e.g. `rmcp::transport::stdio()`.
//! let server = Desk.guarded(guard).serve(stdio).await?;
//! server.waiting().await?;
//! # Ok(()) }
//! ```
//!
//! [`Guarded`] wraps any [`ServerHandler`] (a `#[tool_router(server_handler)]` impl, or a hand-written one) as an
//! rmcp [`Service`]: every `tools/call` goes through [`AgentGuard::aexecute_gated`] first, and the server's tool runs
//! only if the guard allows it, with exactly the arguments that were frozen and shown to the approver. A denied call
//! answers the client with a tool result marked `isError: true` whose text is the denial
//! (`Blocked by AgentGuard (user_denied)`), not a protocol error, so the model reads it and does not retry. Every
//! other request (initialize, prompts, resources, …) goes to the server unchanged.
//!
//! How a tool is gated: by the guard's rules (its lists and [`classify`](crate::classify)) on the tool's name; a
//! tool the server itself declares `destructiveHint: true` always asks ([`Gating::Always`] with
//! [`Risk::Irreversible`]). A server's `readOnlyHint: true` never makes a tool safe: only the guard's rules do.
//!
//! What `tools/list` advertises: for a tool the guard gates, `readOnlyHint: false` and `destructiveHint: true` (a
//! client that runs non-destructive tools without asking must not run it unasked either); for a tool that runs
//! without asking, `readOnlyHint: true` and `destructiveHint: false`. The other annotations stay as the server
//! declared them.
//!
//! The call's `agent_id` is the client's name from its `initialize` request, and its `server` is this server's name
//! ([`Guarded::server_name`] to choose another).

use std::borrow::Cow;

use ::rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest, ContentBlock, ServerResult, Tool,
};
use ::rmcp::service::{NotificationContext, RequestContext, RoleServer, Service, ServiceRole};
use ::rmcp::{ErrorData, ServerHandler};
use serde_json::Value;

use crate::guard::Gating;
use crate::{AgentGuard, Risk, ToolCall};

/// An rmcp server whose tools run only through an [`AgentGuard`]. Made by [`GuardedExt::guarded`] or
/// [`Guarded::new`]; serve it like the server itself (`.serve(transport)`).
#[derive(Debug, Clone)]
pub struct Guarded<S> {
    inner: S,
    guard: AgentGuard,
    server_name: Option<String>,
}

/// `.guarded(guard)` on any rmcp [`ServerHandler`].
pub trait GuardedExt: ServerHandler {
    /// This server with `guard` in front of its tools.
    fn guarded(self, guard: AgentGuard) -> Guarded<Self> {
        Guarded::new(self, guard)
    }
}

impl<S: ServerHandler> GuardedExt for S {}

impl<S: ServerHandler> Guarded<S> {
    /// `inner` with `guard` in front of its tools.
    pub fn new(inner: S, guard: AgentGuard) -> Self {
        Guarded {
            inner,
            guard,
            server_name: None,
        }
    }

    /// The name recorded as each call's [`server`](ToolCall::server) (default: the server's own name from its
    /// `get_info`).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The wrapped server.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The guard.
    pub fn guard(&self) -> &AgentGuard {
        &self.guard
    }

    /// How a call of `tool` is gated: by the guard's rules, and always when the server declares the tool
    /// `destructiveHint: true`.
    pub fn gating(&self, tool: &str) -> Gating {
        gating_of(self.inner.get_tool(tool).as_ref())
    }

    async fn call_tool(
        &self,
        params: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let gating = self.gating(&params.name);
        let arguments = params.arguments.clone().map(Value::Object).unwrap_or_default();
        let given = params.arguments.is_some();
        let mut call = ToolCall::new(params.name.to_string(), arguments);
        if let Some(client) = context.peer.peer_info() {
            call = call.agent_id(client.client_info.name.clone());
        }
        let server = match &self.server_name {
            Some(name) => name.clone(),
            None => self.inner.get_info().server_info.name,
        };
        call = call.server(server);
        let inner = &self.inner;
        let run = |_: String, frozen: Value| async move {
            // Exactly the arguments that were frozen (and, if gated, shown and approved) reach the tool.
            let mut params = params;
            params.arguments = match frozen {
                Value::Object(map) if given || !map.is_empty() => Some(map),
                Value::Null => None,
                _ => None,
            };
            let request = ClientRequest::CallToolRequest(::rmcp::model::Request::new(params));
            inner.handle_request(request, context).await
        };
        match self.guard.aexecute_detailed(call, gating, run).await {
            Ok(ran) => match (ran.value, ran.edited) {
                // The model should know it did not run with its own arguments.
                (Ok(ServerResult::CallToolResult(mut result)), Some(edit)) => {
                    result.content.push(ContentBlock::text(edit.notice()));
                    Ok(ServerResult::from(CallToolResponse::from(result)))
                }
                (result, _) => result,
            },
            // A person answered for the tool: that text is its (successful) result.
            Err(answered) if answered.response().is_some() => {
                let result = CallToolResult::success(vec![ContentBlock::text(answered.to_string())]);
                Ok(ServerResult::from(CallToolResponse::from(result)))
            }
            Err(denied) => {
                let result = CallToolResult::error(vec![ContentBlock::text(denied.to_string())]);
                Ok(ServerResult::from(CallToolResponse::from(result)))
            }
        }
    }
}

/// How a tool is gated from what its server declares: [`Gating::Always`] with [`Risk::Irreversible`] for
/// `destructiveHint: true`, otherwise [`Gating::Auto`] (the guard's rules). `readOnlyHint` is never trusted to skip
/// the guard.
pub fn gating_of(tool: Option<&Tool>) -> Gating {
    let destructive = tool
        .and_then(|t| t.annotations.as_ref())
        .and_then(|a| a.destructive_hint)
        .unwrap_or(false);
    if destructive {
        Gating::Always(Risk::Irreversible)
    } else {
        Gating::Auto
    }
}

/// Sets `tool`'s `readOnlyHint` and `destructiveHint` from the guard's view of it (see the [module docs](self)).
/// What [`Guarded`] does to every tool in `tools/list`; public for servers that list tools by other means.
pub fn annotate(tool: &mut Tool, guard: &AgentGuard) {
    let gated = match gating_of(Some(tool)) {
        Gating::Always(_) => true,
        _ => guard.risk_of(&tool.name).is_some(),
    };
    let mut annotations = tool.annotations.take().unwrap_or_default();
    annotations.read_only_hint = Some(!gated);
    annotations.destructive_hint = Some(gated);
    tool.annotations = Some(annotations);
}

impl<S: ServerHandler> Service<RoleServer> for Guarded<S> {
    async fn handle_request(
        &self,
        request: <RoleServer as ServiceRole>::PeerReq,
        context: RequestContext<RoleServer>,
    ) -> Result<<RoleServer as ServiceRole>::Resp, ErrorData> {
        match request {
            ClientRequest::CallToolRequest(request) => self.call_tool(request.params, context).await,
            ClientRequest::ListToolsRequest(request) => {
                let mut result = self
                    .inner
                    .handle_request(ClientRequest::ListToolsRequest(request), context)
                    .await?;
                if let ServerResult::ListToolsResult(list) = &mut result {
                    for tool in &mut list.tools {
                        annotate(tool, &self.guard);
                    }
                }
                Ok(result)
            }
            other => self.inner.handle_request(other, context).await,
        }
    }

    async fn handle_notification(
        &self,
        notification: <RoleServer as ServiceRole>::PeerNot,
        context: NotificationContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.inner.handle_notification(notification, context).await
    }

    fn get_info(&self) -> <RoleServer as ServiceRole>::Info {
        Service::get_info(&self.inner)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [::rmcp::model::ProtocolVersion]> {
        Service::supported_protocol_versions(&self.inner)
    }
}
