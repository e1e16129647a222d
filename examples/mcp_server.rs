//! An MCP server written with rmcp's tool macros, with agentguard in front of its tools: one line
//! (`Desk.guarded(guard)`). Safe tools answer at once; dangerous ones wait for a person on the approval page, and a
//! denied or expired one answers the client with `isError: true` and the reason.
//!
//! ```text
//! cargo run --example mcp_server --features mcp
//! ```
//!
//! It speaks MCP on stdin/stdout, so start it from an MCP client (Claude Desktop, an IDE, `npx
//! @modelcontextprotocol/inspector cargo run --example mcp_server --features mcp`). On stderr it prints the approval
//! page's address and token: open it and answer the cards. `tools/list` advertises `readOnlyHint: true` for
//! `read_customer` and `destructiveHint: true` for the two tools that ask.
//!
//! Settings: `AGENTGUARD_BIND` (the page, default `127.0.0.1:0`: any free port), `AGENTGUARD_TOKEN` (default: a
//! random one), `AGENTGUARD_TIMEOUT_SECS` (how long a call waits for an answer, default 120), `AGENTGUARD_LOG` (the
//! audit log, default `agentguard.log`).

use std::time::Duration;

use agentguard::http::{ApprovalApi, ServeLimits};
use agentguard::rmcp::GuardedExt;
use agentguard::{AgentGuard, RequestId};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{schemars, tool, tool_router, ServiceExt};
use serde::Deserialize;

/// The support desk's tools: ordinary rmcp tools, written without a thought for approvals.
#[derive(Debug, Clone, Default)]
struct Desk;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct CustomerId {
    /// The customer's number.
    id: u64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct Invoice {
    /// The customer's number.
    id: u64,
    /// The amount, in euros.
    amount_eur: f64,
}

#[tool_router(server_handler)]
impl Desk {
    /// Reads a customer's record.
    #[tool]
    fn read_customer(&self, Parameters(CustomerId { id }): Parameters<CustomerId>) -> String {
        format!("customer #{id}: Jane Doe, plan pro")
    }

    /// Deletes a customer and all their data.
    #[tool]
    fn delete_customer(&self, Parameters(CustomerId { id }): Parameters<CustomerId>) -> String {
        format!("customer #{id} deleted")
    }

    /// Emails an invoice to the customer.
    #[tool]
    fn send_invoice(&self, Parameters(Invoice { id, amount_eur }): Parameters<Invoice>) -> String {
        format!("invoice of {amount_eur:.2} EUR sent to customer #{id}")
    }
}

#[tokio::main]
async fn main() {
    let token = std::env::var("AGENTGUARD_TOKEN").unwrap_or_else(|_| RequestId::new().as_str().replace('-', ""));
    let timeout = std::env::var("AGENTGUARD_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let guard = AgentGuard::external()
        .timeout(Duration::from_secs(timeout))
        .on_request(|req| {
            eprintln!(
                "mcp_server: {} waits for approval on the page ({})",
                req.tool(),
                req.request_id()
            )
        })
        .build();

    // The approval page, on its own port (stdout belongs to MCP, so everything for people goes to stderr).
    let app = ApprovalApi::for_guard(&guard)
        .token(&token, "you")
        .router()
        .unwrap_or_else(|e| fail(&format!("{e}")));
    let bind = std::env::var("AGENTGUARD_BIND").unwrap_or_else(|_| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind).await.unwrap_or_else(|e| {
        fail(&format!(
            "cannot listen on {bind}: {e} (set AGENTGUARD_BIND to a free address)"
        ))
    });
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(agentguard::http::serve(listener, app, ServeLimits::default()));
    eprintln!("mcp_server: approval page: http://{addr}/agentguard/");
    eprintln!("mcp_server: token: {token}");

    // The one line: the guard in front of every tool of the server.
    let server = Desk
        .guarded(guard)
        .serve(rmcp::transport::stdio())
        .await
        .unwrap_or_else(|e| fail(&format!("MCP start-up failed: {e}")));
    if let Err(e) = server.waiting().await {
        fail(&format!("MCP service ended with an error: {e}"));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("mcp_server: {message}");
    std::process::exit(1);
}
