//! The gateway's side as a client: one connection per upstream server, and what the server sends unasked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

#[allow(deprecated)] // LoggingMessageNotificationParam: see on_logging_message.
use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, LoggingMessageNotificationParam, ProgressNotificationParam,
    ProgressToken, ResourceUpdatedNotificationParam, ServerPeerInfo, Tool,
};
use rmcp::service::{NotificationContext, Peer, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, RoleServer, ServiceExt as _};
use tokio_util::sync::CancellationToken;

use crate::config::{ServerSpec, UpstreamSpec};
use crate::error::GatewayError;

/// Where progress notifications of a forwarded call go: the client's session and the token the client gave.
#[derive(Clone)]
pub(crate) struct ProgressRoute {
    pub(crate) peer: Peer<RoleServer>,
    pub(crate) token: ProgressToken,
    /// Progress the gateway already reported on this token while the call waited: the server's values are shifted
    /// by it, so the client sees progress only increase.
    pub(crate) offset: f64,
}

/// The client sessions the gateway serves now, shared by the upstream connections (to relay notifications).
#[derive(Default)]
pub(crate) struct Sessions {
    peers: Mutex<Vec<Peer<RoleServer>>>,
}

impl Sessions {
    pub(crate) fn add(&self, peer: Peer<RoleServer>) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.retain(|p| !p.is_transport_closed());
        peers.push(peer);
    }

    pub(crate) fn live(&self) -> Vec<Peer<RoleServer>> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.retain(|p| !p.is_transport_closed());
        peers.clone()
    }
}

/// One connected upstream server.
pub(crate) struct Upstream {
    pub(crate) name: String,
    pub(crate) spec: UpstreamSpec,
    pub(crate) peer: Peer<RoleClient>,
    pub(crate) info: ServerPeerInfo,
    /// The server's tools by name, as last listed (annotations decide the gating).
    pub(crate) tools: RwLock<HashMap<String, Tool>>,
    /// Cancelled when the connection ends (the process exited, the HTTP session ended, or the gateway stopped it).
    pub(crate) closed: CancellationToken,
    /// Stops the connection (and a child process) when the gateway shuts down.
    stop: CancellationToken,
    pub(crate) progress: Arc<Mutex<HashMap<ProgressToken, ProgressRoute>>>,
}

impl Upstream {
    pub(crate) fn tool(&self, name: &str) -> Option<Tool> {
        self.tools.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    pub(crate) fn set_tools(&self, tools: &[Tool]) {
        let mut map = self.tools.write().unwrap_or_else(|p| p.into_inner());
        map.clear();
        for tool in tools {
            map.insert(tool.name.to_string(), tool.clone());
        }
    }

    pub(crate) fn add_tools(&self, tools: &[Tool]) {
        let mut map = self.tools.write().unwrap_or_else(|p| p.into_inner());
        for tool in tools {
            map.insert(tool.name.to_string(), tool.clone());
        }
    }

    /// Stops the connection: a child process is killed.
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }
}

/// The gateway as an MCP client of one upstream server: relays what the server sends unasked (progress of a
/// forwarded call to the client that made it; logging, list-changed and resource-updated notifications to every
/// client session).
#[derive(Clone)]
struct Relay {
    server: String,
    sessions: Weak<Sessions>,
    progress: Arc<Mutex<HashMap<ProgressToken, ProgressRoute>>>,
    /// Set once connected, so a list-changed notification refreshes the cached tools.
    upstream: Arc<Mutex<Weak<Upstream>>>,
}

impl Relay {
    fn sessions(&self) -> Vec<Peer<RoleServer>> {
        self.sessions.upgrade().map(|s| s.live()).unwrap_or_default()
    }
}

impl ClientHandler for Relay {
    async fn on_progress(&self, params: ProgressNotificationParam, _context: NotificationContext<RoleClient>) {
        let route = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&params.progress_token)
            .cloned();
        if let Some(route) = route {
            let mut params = params;
            params.progress_token = route.token;
            params.progress += route.offset;
            params.total = params.total.map(|t| t + route.offset);
            let _ = route.peer.notify_progress(params).await;
        }
    }

    #[allow(deprecated)] // Logging is deprecated by SEP-2577; servers on earlier protocol versions still send it.
    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        for peer in self.sessions() {
            let _ = peer.notify_logging_message(params.clone()).await;
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        for peer in self.sessions() {
            let _ = peer.notify_resource_updated(params.clone()).await;
        }
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        for peer in self.sessions() {
            let _ = peer.notify_resource_list_changed().await;
        }
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let upstream = self.upstream.lock().unwrap_or_else(|p| p.into_inner()).upgrade();
        if let Some(upstream) = upstream {
            if let Ok(tools) = upstream.peer.list_all_tools().await {
                upstream.set_tools(&tools);
            }
        }
        for peer in self.sessions() {
            let _ = peer.notify_tool_list_changed().await;
        }
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        for peer in self.sessions() {
            let _ = peer.notify_prompt_list_changed().await;
        }
    }

    fn get_info(&self) -> ClientConfig {
        // No sampling, roots or elicitation: the gateway does not relay requests from the server to the client.
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("agentguard-mcp", env!("CARGO_PKG_VERSION")),
        )
    }
}

/// Connects to one upstream server: starts it (or opens the HTTP session), runs the handshake, and lists its tools,
/// all within `list_timeout`. `on_exit` runs once when the connection ends by itself (not at [`Upstream::stop`]).
pub(crate) async fn connect(
    spec: &ServerSpec,
    sessions: &Arc<Sessions>,
    list_timeout: Duration,
    on_exit: impl FnOnce(Arc<Upstream>) + Send + 'static,
) -> Result<Arc<Upstream>, GatewayError> {
    let name = spec.name.clone();
    let relay = Relay {
        server: name.clone(),
        sessions: Arc::downgrade(sessions),
        progress: Arc::default(),
        upstream: Arc::default(),
    };
    let progress = relay.progress.clone();
    let slot = relay.upstream.clone();
    let start = async {
        match &spec.upstream {
            UpstreamSpec::Command { command, args, env } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args).envs(env);
                // The server's stderr is its log: it goes to the gateway's stderr, never into the MCP stream.
                let (transport, _stderr) = TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::inherit())
                    .spawn()
                    .map_err(|e| GatewayError::Spawn {
                        server: name.clone(),
                        command: spec.upstream.to_string(),
                        error: e.to_string(),
                    })?;
                relay
                    .clone()
                    .serve(transport)
                    .await
                    .map_err(|e| GatewayError::Handshake {
                        server: name.clone(),
                        error: e.to_string(),
                    })
            }
            UpstreamSpec::Url(url) => {
                let transport = StreamableHttpClientTransport::from_uri(url.as_str());
                relay
                    .clone()
                    .serve(transport)
                    .await
                    .map_err(|e| GatewayError::Handshake {
                        server: name.clone(),
                        error: e.to_string(),
                    })
            }
        }
    };
    let running: RunningService<RoleClient, Relay> =
        tokio::time::timeout(list_timeout, start)
            .await
            .map_err(|_| GatewayError::NoAnswer {
                server: name.clone(),
                what: "initialize",
                after: list_timeout,
            })??;
    let peer = running.peer().clone();
    let info = peer
        .peer_info()
        .map(|i| (*i).clone())
        .ok_or_else(|| GatewayError::Handshake {
            server: name.clone(),
            error: "the server sent no initialize result".into(),
        })?;
    let has_tools = info.capabilities.tools.is_some();
    let tools = if has_tools {
        match tokio::time::timeout(list_timeout, peer.list_all_tools()).await {
            Ok(Ok(tools)) => tools,
            Ok(Err(e)) => {
                return Err(GatewayError::Handshake {
                    server: name.clone(),
                    error: format!("tools/list failed: {e}"),
                })
            }
            Err(_) => {
                return Err(GatewayError::NoAnswer {
                    server: name.clone(),
                    what: "tools/list",
                    after: list_timeout,
                })
            }
        }
    } else {
        Vec::new()
    };
    if let Some(dup) = crate::config::first_duplicate(tools.iter().map(|t| t.name.as_ref())) {
        let _ = running.cancel().await;
        return Err(GatewayError::Collision {
            tool: format!("{dup}` (listed twice by server `{name}`)"),
        });
    }
    let closed = CancellationToken::new();
    let stop = CancellationToken::new();
    let upstream = Arc::new(Upstream {
        name: name.clone(),
        spec: spec.upstream.clone(),
        peer,
        info,
        tools: RwLock::default(),
        closed: closed.clone(),
        stop: stop.clone(),
        progress,
    });
    upstream.set_tools(&tools);
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(&upstream);
    let weak = Arc::downgrade(&upstream);
    let cancel = running.cancellation_token();
    let stopping = stop.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        cancel.cancel();
    });
    tokio::spawn(async move {
        let _ = running.waiting().await;
        closed.cancel();
        if !stop.is_cancelled() {
            if let Some(upstream) = weak.upgrade() {
                on_exit(upstream);
            }
        }
    });
    Ok(upstream)
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("spec", &self.spec)
            .field("closed", &self.closed.is_cancelled())
            .finish()
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("server", &self.server).finish()
    }
}
