//! What the MCP gateway adds to an allowed call: `tools/call` of a read-only `echo` tool, straight to a stdio MCP
//! server vs through the gateway (a second process in between, the guard's decision and its audit line), each driven
//! by rmcp's client over stdio. Prints p50/p90/p99 per path and the p50 difference as one JSON line.
//!
//! ```text
//! cargo run --release -p agentguard-bench --bin mcp_overhead             # 3,000 calls per path after 300 warm-up
//! cargo run --release -p agentguard-bench --bin mcp_overhead -- 10000    # more calls
//! ```
//!
//! The program is its own server (`mcp_overhead server`: a minimal rmcp stdio server with one `echo` tool, marked
//! read-only) and its own gateway (`mcp_overhead gateway -- CMD…`: `agentguard_mcp::run`, the function the
//! `agentguard mcp` command runs, with an audit file in a temp dir and the in-memory store). Server and client are
//! the same in both paths, so the difference is the gateway.

use std::time::{Duration, Instant};

use agentguard_mcp::{GatewayOptions, RunOptions, ServerSpec, UpstreamSpec};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::TokioChildProcess;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt as _};
use serde_json::json;

struct Echo;

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = json!({"type": "object", "properties": {"message": {"type": "string"}}});
        let tool = Tool::new("echo", "Echoes the message.", schema.as_object().unwrap().clone())
            .with_annotations(ToolAnnotations::new().read_only(true));
        Ok(ListToolsResult::with_all_items(vec![tool]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let message = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_owned();
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![
            ContentBlock::text(message),
        ])))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn measure(command: tokio::process::Command, warmup: usize, n: usize) -> Vec<Duration> {
    let client = ().serve(TokioChildProcess::new(command).expect("spawn")).await.expect("initialize");
    let args = json!({"message": "hello"}).as_object().unwrap().clone();
    let call = || CallToolRequestParams::new("echo").with_arguments(args.clone());
    for _ in 0..warmup {
        client.call_tool(call()).await.expect("echo");
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let result = client.call_tool(call()).await.expect("echo");
        times.push(start.elapsed());
        assert_ne!(result.is_error, Some(true), "the echo call was not allowed: {result:?}");
    }
    let _ = client.cancel().await;
    times.sort();
    times
}

fn us(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e7).round() / 10.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.get(1).map(String::as_str) {
        Some("server") => runtime.block_on(async {
            let running = Echo.serve(rmcp::transport::stdio()).await.expect("serve");
            let _ = running.waiting().await;
        }),
        Some("gateway") => {
            let audit = tempfile::tempdir().unwrap();
            let me = std::env::current_exe().unwrap().display().to_string();
            let options = RunOptions {
                servers: vec![ServerSpec {
                    name: "echo".into(),
                    upstream: UpstreamSpec::command(me, ["server"]),
                }],
                store: None,
                policy: None,
                serve: None,
                tokens: Vec::new(),
                listen: None,
                allowed_hosts: Vec::new(),
                timeout: Duration::from_secs(60),
                audit: Some(audit.path().join("audit.log")),
                gateway: GatewayOptions::default(),
            };
            runtime.block_on(agentguard_mcp::run(options)).expect("gateway");
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
        _ => {
            let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3000);
            let warmup = (n / 10).max(100);
            let me = std::env::current_exe().unwrap();
            let (direct, gateway) = runtime.block_on(async {
                let mut direct = tokio::process::Command::new(&me);
                direct.arg("server");
                let direct = measure(direct, warmup, n).await;
                let mut gateway = tokio::process::Command::new(&me);
                gateway.arg("gateway");
                let gateway = measure(gateway, warmup, n).await;
                (direct, gateway)
            });
            let row = |t: &[Duration]| json!({"p50_us": us(percentile(t, 0.5)), "p90_us": us(percentile(t, 0.9)), "p99_us": us(percentile(t, 0.99))});
            let added = us(percentile(&gateway, 0.5)) - us(percentile(&direct, 0.5));
            println!(
                "{}",
                json!({
                    "calls": n,
                    "direct": row(&direct),
                    "through_gateway": row(&gateway),
                    "added_p50_us": (added * 10.0).round() / 10.0,
                })
            );
        }
    }
}
