//! Approvals from a web page: a scripted support-desk agent (no LLM needed) whose dangerous calls wait for you on the
//! built-in approval page.
//!
//! ```text
//! cargo run --example web_approvals --features web
//! ```
//!
//! (The `web` feature of this examples package turns on agentguard's `http` feature and axum, which the other
//! examples do not need.)
//!
//! Open the URL it prints, paste the token it prints, and approve or deny the cards as they arrive. Two agents work
//! at once, so several cards can wait together; each waits at most two minutes, then it is denied.
//!
//! Settings: `AGENTGUARD_BIND` (default `127.0.0.1:8787`; if that port is taken, any free port),
//! `AGENTGUARD_TOKEN` (default: a random one), `AGENTGUARD_LOG` (the audit log, default `agentguard.log`).

use std::time::Duration;

use agentguard::http::ApprovalApi;
use agentguard::{AgentGuard, RequestId, ToolCall};
use serde_json::{json, Value};

/// The real tools, behind one dispatcher.
async fn run_tool(name: String, params: Value) -> String {
    match name.as_str() {
        "read_customer" => format!("customer #{}: Jane Doe, plan pro", params["id"]),
        "update_email" => format!("email of #{} set to {}", params["id"], params["email"]),
        "send_email" => format!("sent {:?} to {}", params["subject"], params["to"]),
        "loyalty_bonus" => format!("credited {} points to #{}", params["points"], params["id"]),
        "delete_customer" => format!("customer #{} deleted", params["id"]),
        "refund_payment" => format!("refunded {} EUR on order {}", params["amount_eur"], params["order"]),
        other => format!("unknown tool {other}"),
    }
}

/// What each scripted agent does, in order: (tool, params, why the agent wants it).
fn script(agent: &str) -> Vec<(&'static str, Value, &'static str)> {
    match agent {
        "support-bot" => vec![
            ("read_customer", json!({"id": 7}), "look up the customer on ticket 4821"),
            (
                "update_email",
                json!({"id": 7, "email": "jane@new-domain.example"}),
                "the customer asked to change their address",
            ),
            (
                "delete_customer",
                json!({"id": 7, "api_key": "sk-live-4f9a"}),
                "the customer asked to close their account",
            ),
        ],
        _ => vec![
            (
                "refund_payment",
                json!({"order": "A-1009", "amount_eur": 249.0}),
                "the parcel never arrived",
            ),
            (
                "loyalty_bonus",
                json!({"id": 7, "points": 500}),
                "apologise for the lost parcel",
            ),
            (
                "send_email",
                json!({"to": "jane@new-domain.example", "subject": "Your refund"}),
                "tell the customer",
            ),
        ],
    }
}

#[tokio::main]
async fn main() {
    let token = std::env::var("AGENTGUARD_TOKEN").unwrap_or_else(|_| RequestId::new().as_str().replace('-', ""));
    let guard = AgentGuard::external()
        .timeout(Duration::from_secs(120))
        .dangerous_tools(["loyalty_bonus"]) // innocently named, but it gives away money
        .on_request(|req| {
            println!(
                "[{}] {}: waiting for you on the page",
                req.agent_id().unwrap_or("-"),
                req.tool()
            )
        })
        .build();

    let app = match ApprovalApi::for_guard(&guard).token(&token, "you").router() {
        Ok(app) => app,
        Err(e) => {
            eprintln!("web_approvals: {e}");
            std::process::exit(2);
        }
    };
    let listener = match std::env::var("AGENTGUARD_BIND") {
        Ok(addr) => tokio::net::TcpListener::bind(&addr).await,
        Err(_) => match tokio::net::TcpListener::bind("127.0.0.1:8787").await {
            Ok(l) => Ok(l),
            Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await, // 8787 is taken: any free port
        },
    };
    let listener = listener.unwrap_or_else(|e| {
        eprintln!("web_approvals: cannot listen: {e} (set AGENTGUARD_BIND to a free address)");
        std::process::exit(1);
    });
    let addr = listener.local_addr().expect("a bound address");
    // Shut down gracefully at the end, so the answer to the last card still gets its HTTP response.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    println!("approval page: http://{addr}/agentguard/");
    println!("token:         {token}");
    println!("(paste the token into the page; it stays in that browser tab and is sent in a header, never in a URL)");
    println!();

    let agents = ["support-bot", "billing-bot"].map(|agent| {
        let guard = guard.clone();
        tokio::spawn(async move {
            for (tool, params, why) in script(agent) {
                let call = ToolCall::new(tool, params)
                    .agent_id(agent)
                    .session_id(if agent == "support-bot" {
                        "ticket-4821"
                    } else {
                        "ticket-4822"
                    })
                    .reason(why);
                let line = match guard.aexecute(call, run_tool).await {
                    Ok(result) => result,
                    Err(denied) => format!("blocked: {denied}"),
                };
                println!("[{agent}] {tool}: {line}");
            }
        })
    });
    for agent in agents {
        let _ = agent.await;
    }
    let _ = stop.send(());
    // An open page keeps its event stream (and so the server) alive: give in-flight answers a moment, then go.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;

    let log = std::env::var("AGENTGUARD_LOG").unwrap_or_else(|_| "agentguard.log".into());
    match agentguard::audit::verify(&log) {
        Ok(report) => println!(
            "\nall calls answered; audit {log}: chain intact, {} lines",
            report.lines
        ),
        Err(e) => println!("\naudit {log}: {e}"),
    }
}
