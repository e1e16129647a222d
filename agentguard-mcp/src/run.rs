//! Serving the gateway: over stdio, over streamable HTTP, and the whole `agentguard mcp` command ([`run`]).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentguard::http::{ApprovalApi, ServeLimits};
use agentguard::store::StoreUrl;
use agentguard::AgentGuard;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt as _;

use crate::config::ServerSpec;
use crate::error::GatewayError;
use crate::gateway::{Gateway, GatewayOptions};

/// Serves the gateway to one client over this process's stdin and stdout until the client closes stdin or the
/// process gets SIGTERM or SIGINT. Calls still waiting for approval are then denied at once ("the MCP client went
/// away"), so they never run later.
pub async fn serve_stdio(gateway: Gateway) -> Result<(), GatewayError> {
    // Non-blocking pipes when the client launched us with pipes (as MCP clients do): each message is read and
    // written on tokio's reactor, not handed to a blocking thread and back (about 100 µs a call here).
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let stdin = EofSignal {
        inner: stdin,
        eof: gateway.clone(),
    };
    let running = gateway
        .clone()
        .serve((stdin, stdout))
        .await
        .map_err(|e| GatewayError::Serve(format!("the MCP client's initialize failed: {e}")))?;
    // The session stays alive (pinned here) while waiting calls are denied, so their answers are still sent.
    let waiting = running.waiting();
    tokio::pin!(waiting);
    tokio::select! {
        _ = &mut waiting => {}
        () = stop_signal() => {}
    }
    gateway.client_gone();
    gateway.drain(Duration::from_secs(2)).await;
    Ok(())
}

/// The client's end of stdio: tells the gateway the moment it reads end-of-file, so parked calls expire at once
/// (rmcp's own loop first waits for in-flight answers, which a parked call would hold up).
struct EofSignal {
    inner: rmcp::transport::StdioReader,
    eof: Gateway,
}

impl tokio::io::AsyncRead for EofSignal {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(result) = &poll {
            if result.is_err() || buf.filled().len() == before {
                self.eof.client_gone();
            }
        }
        poll
    }
}

/// The gateway as a streamable-HTTP MCP endpoint (a tower service), one MCP session per client, sharing the
/// upstream connections. Mount it with axum's `Router::nest_service("/mcp", …)`. Requests must name a loopback
/// `Host` (rmcp's DNS-rebinding protection) unless `allowed_hosts` lists others.
pub fn http_service(
    gateway: Gateway,
    allowed_hosts: Vec<String>,
) -> StreamableHttpService<Gateway, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default();
    if !allowed_hosts.is_empty() {
        config = config.with_allowed_hosts(allowed_hosts);
    }
    StreamableHttpService::new(
        move || Ok(gateway.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// Everything `agentguard mcp` is given.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The upstream servers.
    pub servers: Vec<ServerSpec>,
    /// Where calls wait for approval: a store URL (`sqlite:PATH`, `postgres://…`); default in memory (then only
    /// `--serve` can answer them).
    pub store: Option<String>,
    /// A policy file ([`agentguard::policy`]): rules can match the server's name with `servers = [...]`.
    pub policy: Option<PathBuf>,
    /// Serve the approval page and API from the gateway at this address.
    pub serve: Option<SocketAddr>,
    /// API tokens for `serve`, as (actor, token).
    pub tokens: Vec<(String, String)>,
    /// Serve MCP over streamable HTTP at this address (path `/mcp`) instead of stdio.
    pub listen: Option<SocketAddr>,
    /// With `listen`: the `Host` names requests may carry besides the loopback ones (rmcp refuses others, against
    /// DNS rebinding). Empty: loopback only.
    pub allowed_hosts: Vec<String>,
    /// How long a call waits for a person before it is denied.
    pub timeout: Duration,
    /// The audit file (default: agentguard's default audit file).
    pub audit: Option<PathBuf>,
    /// Waiting and naming.
    pub gateway: GatewayOptions,
}

/// Builds the guard the gateway uses: external mode (calls park until answered from the store, the page or the
/// CLI), the timeout, the store, the audit file and the policy.
pub fn build_guard(options: &RunOptions) -> Result<AgentGuard, GatewayError> {
    let mut builder = AgentGuard::external().timeout(options.timeout);
    if let Some(url) = &options.store {
        let url = StoreUrl::parse(url).map_err(|e| GatewayError::Serve(format!("--store: {e}")))?;
        let store = url
            .open()
            .map_err(|e| GatewayError::Serve(format!("--store {url}: {e}")))?;
        builder = builder.shared_store(store);
    }
    if let Some(path) = &options.audit {
        builder = builder.audit_file(path.clone());
    }
    let builder = apply_policy(builder, options.policy.as_deref())?;
    Ok(builder.build())
}

/// The policy file, read now (an error is the gateway refusing to start, never a gateway without its policy) and
/// again whenever it changes (agentguard's reload: a broken edit keeps the policy in force and says why).
fn apply_policy(
    builder: agentguard::guard::GuardBuilder<agentguard::guard::mode::External>,
    policy: Option<&std::path::Path>,
) -> Result<agentguard::guard::GuardBuilder<agentguard::guard::mode::External>, GatewayError> {
    match policy {
        None => Ok(builder),
        Some(path) => builder
            .policy_file(path)
            .map_err(|e| GatewayError::Serve(format!("--policy {}: {e}", path.display()))),
    }
}

/// Runs `agentguard mcp`: connects to the servers, serves the approval page if asked, and serves MCP over stdio
/// (until the client closes it) or over HTTP (until the process is stopped). Messages go to stderr: in stdio mode
/// stdout is the MCP stream.
pub async fn run(options: RunOptions) -> Result<(), GatewayError> {
    // reqwest (streamable-HTTP upstreams) is built without a default TLS crypto provider: install ring's, the one
    // agentguard's PostgreSQL TLS already uses. An error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let guard = {
        let options = options.clone();
        tokio::task::spawn_blocking(move || build_guard(&options))
            .await
            .map_err(|e| GatewayError::Serve(format!("opening the store failed: {e}")))??
    };
    if let Some(addr) = options.serve {
        if options.tokens.is_empty() {
            return Err(GatewayError::Serve(
                "--serve needs an API token: pass --token ACTOR=TOKEN or set AGENTGUARD_TOKENS, e.g. \
                 AGENTGUARD_TOKENS=alice=$(openssl rand -hex 16)"
                    .into(),
            ));
        }
        let mut api = ApprovalApi::for_guard(&guard).standalone();
        for (actor, token) in &options.tokens {
            api = api.token(token.clone(), actor.clone());
        }
        let app = api.router().map_err(|e| GatewayError::Serve(format!("--serve: {e}")))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| GatewayError::Serve(format!("--serve: cannot listen on {addr}: {e}")))?;
        let bound = listener.local_addr().unwrap_or(addr);
        let _ = writeln!(
            std::io::stderr(),
            "agentguard mcp: approval page at http://{bound}/agentguard/"
        );
        tokio::spawn(agentguard::http::serve(listener, app, ServeLimits::default()));
    }
    let gateway = Gateway::start(guard, options.servers.clone(), options.gateway.clone()).await?;
    let result = match options.listen {
        None => serve_stdio(gateway.clone()).await,
        Some(addr) => {
            let mut hosts = options.allowed_hosts.clone();
            if !hosts.is_empty() {
                hosts.extend(["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()]);
            }
            let service = http_service(gateway.clone(), hosts);
            let router = axum::Router::new().nest_service("/mcp", service);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| GatewayError::Serve(format!("--listen: cannot listen on {addr}: {e}")))?;
            let bound = listener.local_addr().unwrap_or(addr);
            let _ = writeln!(
                std::io::stderr(),
                "agentguard mcp: MCP over streamable HTTP at http://{bound}/mcp"
            );
            let stopped = gateway.clone();
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    stop_signal().await;
                    stopped.client_gone();
                })
                .await
                .map_err(|e| GatewayError::Serve(format!("--listen: {e}")));
            gateway.drain(Duration::from_secs(2)).await;
            served
        }
    };
    gateway.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(3), gateway.upstreams_closed()).await;
    result
}

/// SIGINT or SIGTERM (how MCP clients stop a stdio server that does not exit when its stdin closes).
async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
