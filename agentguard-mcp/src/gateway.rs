//! The gateway's side as a server: what the client sees. Everything passes through to the upstream server(s),
//! except `tools/call`, which goes through the guard first.

use std::borrow::Cow;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentguard::guard::Gating;
use agentguard::params::{FrozenParams, ParamsDigest};
use agentguard::{ActionDenied, AgentGuard, Resolution, Risk, ToolCall};
#[allow(deprecated)] // SetLevelRequestParams: logging is deprecated by SEP-2577, still spoken by earlier versions.
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest, CompleteRequestParams,
    CompleteResult, ContentBlock, GetPromptRequestParams, GetPromptResponse, Implementation, InitializeResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, Reference,
    ServerCapabilities, ServerConfig, ServerResult, SetLevelRequestParams, SubscribeRequestParams, Tool,
    ToolAnnotations, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestContext, ServiceError};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{check_name, first_duplicate, prefixed, ServerSpec, SEPARATOR};
use crate::error::GatewayError;
use crate::upstream::{connect, ProgressRoute, Sessions, Upstream};

/// How the gateway waits and reports.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// How long an upstream server gets to answer `initialize` and `tools/list` at start (default 30 s).
    pub list_timeout: Duration,
    /// While a call waits for a person, a progress notification is sent this often to a client that gave a
    /// `progressToken` (default 5 s), so that it does not time the call out.
    pub progress_interval: Duration,
    /// Prefix tool and prompt names with the server's name and [`SEPARATOR`]. Default: only with several servers.
    pub prefix: Option<bool>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            list_timeout: Duration::from_secs(30),
            progress_interval: Duration::from_secs(5),
            prefix: None,
        }
    }
}

/// The MCP gateway: one MCP server for the client, fronting one or several upstream MCP servers.
///
/// Cloning is cheap; clones share the upstream connections and the guard. Serve it with
/// [`serve_stdio`](crate::serve_stdio), [`http_service`](crate::http_service), or rmcp's `ServiceExt::serve` on any
/// transport.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

struct Shared {
    guard: AgentGuard,
    upstreams: Vec<Arc<Upstream>>,
    prefixed: bool,
    sessions: Arc<Sessions>,
    options: GatewayOptions,
    /// Cancelled when the client is gone for good (stdin closed, the process told to stop): every waiting call
    /// then drops its wait, which expires its request.
    client_gone: CancellationToken,
    /// Calls being handled now, and a wake-up when one ends (for [`Gateway::drain`]).
    inflight: AtomicUsize,
    idle: Notify,
}

/// Counts one call in flight for as long as it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.inflight.fetch_add(1, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
        self.0.idle.notify_waiters();
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("guard", &self.shared.guard)
            .field("upstreams", &self.shared.upstreams)
            .field("prefixed", &self.shared.prefixed)
            .finish()
    }
}

/// How a call of `tool` is gated, from its name and the server's annotations.
///
/// The annotations are the server's claim, so they can add a question but never remove one a name calls for:
/// - `destructiveHint: true` → always asked, with the risk the name classifies to, or [`Risk::Irreversible`];
/// - `readOnlyHint: true` → never asked, but only when [`classify`](agentguard::classify) finds nothing in the name
///   (a "read-only" `delete_user` is still asked);
/// - otherwise the guard's own rules ([`Gating::Auto`]: `dangerous_tools`, `safe_tools`, then the name).
///
/// `destructiveHint` wins over `readOnlyHint` when a server sets both.
pub fn gating_for(tool: &str, annotations: Option<&ToolAnnotations>) -> Gating {
    let classified = agentguard::classify(tool);
    let destructive = annotations.and_then(|a| a.destructive_hint) == Some(true);
    let read_only = annotations.and_then(|a| a.read_only_hint) == Some(true);
    if destructive {
        Gating::Always(classified.unwrap_or(Risk::Irreversible))
    } else if read_only && classified.is_none() {
        Gating::Never
    } else {
        Gating::Auto
    }
}

/// The text a client (and the model behind it) reads for a denied call: `Blocked by AgentGuard (reason): detail`.
pub fn denial_text(denied: &ActionDenied) -> String {
    let mut text = denied.to_string();
    // A person's reason is already in the Display form; other details (a store error, …) are added.
    if let Some(detail) = denied.detail().filter(|d| !text.contains(*d)) {
        text.push_str(": ");
        text.push_str(detail);
    }
    text.push_str(". The tool did not run.");
    text
}

fn error_result(text: impl Into<String>) -> CallToolResponse {
    CallToolResponse::Complete(CallToolResult::error(vec![ContentBlock::text(text.into())]))
}

fn upstream_error(server: &str, e: ServiceError) -> McpError {
    match e {
        ServiceError::McpError(e) => e,
        other => McpError::internal_error(format!("server `{server}`: {other}"), None),
    }
}

impl Gateway {
    /// Connects to every server (starting the command ones), lists their tools, and returns the gateway ready to
    /// serve. Fails if a server cannot be started, does not answer `initialize` or `tools/list` within
    /// [`GatewayOptions::list_timeout`], lists one tool name twice, or two servers share a name.
    ///
    /// When a server's connection ends later (its process exits or crashes), the calls waiting for approval on it
    /// are denied with a note saying so, and every later call to it returns an error result.
    pub async fn start(
        guard: AgentGuard,
        servers: Vec<ServerSpec>,
        options: GatewayOptions,
    ) -> Result<Gateway, GatewayError> {
        if servers.is_empty() {
            return Err(GatewayError::Serve("no upstream server given".into()));
        }
        for s in &servers {
            check_name(&s.name)?;
        }
        if let Some(dup) = first_duplicate(servers.iter().map(|s| s.name.as_str())) {
            return Err(GatewayError::Serve(format!("two servers are named `{dup}`")));
        }
        let prefixed = options.prefix.unwrap_or(servers.len() > 1);
        let sessions = Arc::new(Sessions::default());
        let mut upstreams: Vec<Arc<Upstream>> = Vec::new();
        for spec in &servers {
            let started = connect(spec, &sessions, options.list_timeout, |up| upstream_exited(&up)).await;
            let upstream = match started {
                Ok(u) => u,
                Err(e) => {
                    for u in &upstreams {
                        u.stop();
                    }
                    return Err(e);
                }
            };
            upstreams.push(upstream);
        }
        Ok(Gateway {
            shared: Arc::new(Shared {
                guard,
                upstreams,
                prefixed,
                sessions,
                options,
                client_gone: CancellationToken::new(),
                inflight: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        })
    }

    /// The guard every `tools/call` goes through.
    pub fn guard(&self) -> &AgentGuard {
        &self.shared.guard
    }

    /// Whether tool and prompt names carry the server's name (`fs__write_file`).
    pub fn is_prefixed(&self) -> bool {
        self.shared.prefixed
    }

    /// Stops every upstream connection (child processes are killed).
    pub fn shutdown(&self) {
        for u in &self.shared.upstreams {
            u.stop();
        }
    }

    /// Ends every call still waiting for approval, as if each client had gone away: the waits are dropped, so their
    /// requests expire and can never run later. For the end of a stdio session and for a stop signal; then
    /// [`drain`](Self::drain) waits for the calls to finish.
    pub fn client_gone(&self) {
        self.shared.client_gone.cancel();
    }

    /// Waits (at most `limit`) until no call is being handled.
    pub async fn drain(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let idle = self.shared.idle.notified();
                if self.shared.inflight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await;
    }

    /// Waits until every upstream connection has ended.
    pub async fn upstreams_closed(&self) {
        for u in &self.shared.upstreams {
            u.closed.cancelled().await;
        }
    }

    fn single(&self) -> Option<&Arc<Upstream>> {
        if self.shared.prefixed {
            None
        } else {
            self.shared.upstreams.first()
        }
    }

    /// The server and the upstream's own name for a name the client used.
    fn route<'a>(&self, name: &'a str) -> Option<(&Arc<Upstream>, &'a str)> {
        if let Some(up) = self.single() {
            return Some((up, name));
        }
        let (server, rest) = name.split_once(SEPARATOR)?;
        self.shared
            .upstreams
            .iter()
            .find(|u| u.name == server)
            .map(|u| (u, rest))
    }

    fn live(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.shared.upstreams.iter().filter(|u| !u.is_closed())
    }

    async fn gated_call(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let _inflight = InFlight::new(&self.shared);
        let Some((up, tool_name)) = self.route(&request.name) else {
            return Err(McpError::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        };
        let up = up.clone();
        let tool_name = tool_name.to_owned();
        if up.is_closed() {
            return Ok(error_result(format!(
                "The MCP server `{}` behind the agentguard gateway has exited; the tool did not run. Restart the \
                 gateway.",
                up.name
            )));
        }
        let mut tool = up.tool(&tool_name);
        if tool.is_none() {
            if let Ok(Ok(tools)) =
                tokio::time::timeout(self.shared.options.list_timeout, up.peer.list_all_tools()).await
            {
                up.set_tools(&tools);
                tool = up.tool(&tool_name);
            }
        }
        let gating = gating_for(&tool_name, tool.as_ref().and_then(|t| t.annotations.as_ref()));
        let arguments_given = request.arguments.is_some();
        let args = request
            .arguments
            .take()
            .map(Value::Object)
            .unwrap_or_else(|| Value::Object(Default::default()));
        // What identifies this call's request in the store, should its wait be ended from outside: a copy of the
        // arguments (their digest is computed only then), the tool, the server and the agent id.
        let args_copy = args.clone();
        let mut call = ToolCall::new(tool_name.clone(), args).server(up.name.clone());
        let mut agent_id = None;
        if let Some(client) = context.client_info() {
            let name: String = client.name.chars().take(64).collect();
            if !name.trim().is_empty() {
                agent_id = Some(name.clone());
                call = call.agent_id(name);
            }
        }
        let client_token = context.meta.get_progress_token();
        let running = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU32::new(0));
        let forward = {
            let up = up.clone();
            let running = running.clone();
            let sent = sent.clone();
            let peer = context.peer.clone();
            let client_token = client_token.clone();
            let meta = request.meta.clone();
            move |name: String, params: Value| async move {
                running.store(true, Ordering::SeqCst);
                let mut forwarded = CallToolRequestParams::new(name);
                forwarded.arguments = match params {
                    Value::Object(map) if map.is_empty() && !arguments_given => None,
                    Value::Object(map) => Some(map),
                    // The snapshot of an object is an object; anything else is refused rather than reshaped.
                    _ => return Err(ServiceError::UnexpectedResponse),
                };
                forwarded.meta = meta;
                let offset = f64::from(sent.load(Ordering::SeqCst));
                let route = client_token.map(|token| ProgressRoute { peer, token, offset });
                forward_call(&up, forwarded, route).await
            }
        };
        let guard = self.shared.guard.clone();
        let gated = guard.aexecute_detailed(call, gating, forward);
        tokio::pin!(gated);
        let interval = self.shared.options.progress_interval;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        // Set when the call's wait is being ended from outside (the server exited, the client cancelled or went
        // away): its own request is denied with a note saying why, so the store, the page and the audit say so, and
        // the wait ends with that denial; if it has not ended by this deadline (the call was not parked yet), the
        // wait is dropped, which expires the request.
        let mut ending: Option<(tokio::time::Instant, Ending)> = None;
        let outcome = loop {
            tokio::select! {
                outcome = &mut gated => break outcome,
                _ = context.ct.cancelled(), if ending.is_none() => {
                    if running.load(Ordering::SeqCst) {
                        // Already approved and forwarded: dropping it cancels the forwarded request.
                        return Err(McpError::internal_error("the call was cancelled by the client", None));
                    }
                    ending = Some(self.end_wait(Ending::Cancelled, &up, &tool_name, &args_copy, &agent_id).await);
                }
                _ = self.shared.client_gone.cancelled(), if ending.is_none() && !running.load(Ordering::SeqCst) => {
                    ending = Some(self.end_wait(Ending::ClientGone, &up, &tool_name, &args_copy, &agent_id).await);
                }
                _ = up.closed.cancelled(), if ending.is_none() && !running.load(Ordering::SeqCst) => {
                    ending = Some(self.end_wait(Ending::ServerExited, &up, &tool_name, &args_copy, &agent_id).await);
                }
                () = sleep_until_opt(ending.as_ref().map(|(deadline, _)| *deadline)) => {
                    let why = ending.map(|(_, why)| why).unwrap_or(Ending::ServerExited);
                    return match why {
                        Ending::ServerExited => Ok(error_result(format!(
                            "The MCP server `{}` behind the agentguard gateway exited before the call could run; it \
                             did not run. Restart the gateway.",
                            up.name
                        ))),
                        Ending::Cancelled => Err(McpError::internal_error(
                            "the call was cancelled by the client; it did not run",
                            None,
                        )),
                        Ending::ClientGone => {
                            Err(McpError::internal_error("the client went away; the call did not run", None))
                        }
                    };
                }
                _ = ticks.tick(), if client_token.is_some() => {
                    if !running.load(Ordering::SeqCst) {
                        if let Some(token) = &client_token {
                            let n = sent.fetch_add(1, Ordering::SeqCst) + 1;
                            let mut note = ProgressNotificationParam::new(token.clone(), f64::from(n));
                            note.message = Some(format!(
                                "waiting for a person to approve `{tool_name}` (agentguard)"
                            ));
                            let _ = context.peer.notify_progress(note).await;
                        }
                    }
                }
            }
        };
        let (outcome, edited) = match outcome {
            Ok(ran) => (Ok(ran.value), ran.edited),
            Err(denied) => (Err(denied), None),
        };
        match outcome {
            Ok(Ok(mut response)) => {
                // The model should know it did not run with its own arguments.
                if let (Some(edit), CallToolResponse::Complete(result)) = (edited, &mut response) {
                    result.content.push(ContentBlock::text(edit.notice()));
                }
                Ok(response)
            }
            Ok(Err(ServiceError::McpError(e))) => Err(e),
            Ok(Err(ServiceError::TransportClosed)) => Ok(error_result(format!(
                "The call was allowed, but the MCP server `{}` exited before answering; it may or may not have run. \
                 Restart the gateway.",
                up.name
            ))),
            Ok(Err(e)) => Ok(error_result(format!(
                "The call was allowed, but the MCP server `{}` failed: {e}",
                up.name
            ))),
            // A person answered for the tool: that text is its (successful) result.
            Err(denied) if denied.response().is_some() => {
                Ok(CallToolResponse::Complete(CallToolResult::success(vec![
                    ContentBlock::text(denied.to_string()),
                ])))
            }
            Err(denied) => Ok(error_result(denial_text(&denied))),
        }
    }
}

/// Why a waiting call's wait is ended from outside.
#[derive(Debug, Clone, Copy)]
enum Ending {
    ServerExited,
    Cancelled,
    ClientGone,
}

impl Gateway {
    /// Denies this call's own request with a note saying why, and returns the deadline for the wait to end.
    async fn end_wait(
        &self,
        why: Ending,
        up: &Upstream,
        tool: &str,
        args: &Value,
        agent_id: &Option<String>,
    ) -> (tokio::time::Instant, Ending) {
        let digest = FrozenParams::freeze(args.clone(), usize::MAX)
            .ok()
            .map(|f| f.digest().clone());
        let note = match why {
            Ending::ServerExited => format!("the MCP server `{}` exited before the call could run", up.name),
            Ending::Cancelled => "the MCP client cancelled the call".to_owned(),
            Ending::ClientGone => "the MCP client went away".to_owned(),
        };
        let mine = OwnRequest {
            server: up.name.clone(),
            tool: tool.to_owned(),
            digest,
            agent_id: agent_id.clone(),
        };
        let guard = self.shared.guard.clone();
        let _ = tokio::task::spawn_blocking(move || mine.deny(&guard, note)).await;
        (tokio::time::Instant::now() + Duration::from_secs(1), why)
    }
}

/// Sends one approved call upstream, relaying its progress notifications to the client's token.
async fn forward_call(
    up: &Upstream,
    params: CallToolRequestParams,
    route: Option<ProgressRoute>,
) -> Result<CallToolResponse, ServiceError> {
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let handle = up
        .peer
        .send_request_with_option(request, PeerRequestOptions::no_options())
        .await?;
    let token = handle.progress_token.clone();
    if let Some(route) = route {
        up.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.clone(), route);
    }
    let result = handle.await_response().await;
    up.progress.lock().unwrap_or_else(|p| p.into_inner()).remove(&token);
    match result? {
        ServerResult::CallToolResult(r) => Ok(CallToolResponse::Complete(r)),
        ServerResult::InputRequiredResult(r) => Ok(CallToolResponse::InputRequired(r)),
        ServerResult::CreateTaskResult(r) => Ok(CallToolResponse::Task(r)),
        _ => Err(ServiceError::UnexpectedResponse),
    }
}

/// An upstream connection ended by itself: said on stderr. Each call waiting on it denies its own request (see
/// `gated_call`), so a store shared with other gateways is not touched beyond this process's calls.
fn upstream_exited(up: &Upstream) {
    let _ = writeln!(
        std::io::stderr(),
        "agentguard mcp: server `{}` ({}) exited; its calls waiting for approval are denied",
        up.name,
        up.spec
    );
}

/// The request a waiting call parked, found again by what it was made of (this process does not learn the id).
struct OwnRequest {
    server: String,
    tool: String,
    digest: Option<ParamsDigest>,
    agent_id: Option<String>,
}

impl OwnRequest {
    /// Denies the newest pending request that matches, with `note`.
    fn deny(&self, guard: &AgentGuard, note: String) {
        let mine = guard.pending().into_iter().rev().find(|r| {
            r.server() == Some(self.server.as_str())
                && r.tool() == self.tool
                && Some(r.params_digest()) == self.digest.as_ref()
                && r.agent_id() == self.agent_id.as_deref()
        });
        if let Some(request) = mine {
            let answer = Resolution::deny(request.request_id().clone())
                .actor("agentguard-mcp")
                .note(note);
            guard.resolve_with(&answer);
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn merged_capabilities(upstreams: &[Arc<Upstream>]) -> ServerCapabilities {
    let mut caps = ServerCapabilities::default();
    for up in upstreams {
        let c = &up.info.capabilities;
        caps.tools = caps.tools.or_else(|| c.tools.clone());
        caps.prompts = caps.prompts.or_else(|| c.prompts.clone());
        caps.resources = caps.resources.or_else(|| c.resources.clone());
        caps.logging = caps.logging.or_else(|| c.logging.clone());
        caps.completions = caps.completions.or_else(|| c.completions.clone());
    }
    caps
}

mod handler;

#[cfg(test)]
mod tests;
