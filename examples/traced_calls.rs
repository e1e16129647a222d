//! agentguard's `tracing` spans and events (feature `tracing` of agentguard): one `execute_tool` span per call, with
//! OpenTelemetry GenAI attribute names, and one event per decision. Printed here by tracing-subscriber's fmt layer;
//! in production, send them to an OpenTelemetry collector (tracing-opentelemetry) like any other span.
//!
//! ```text
//! cargo run --example traced_calls --features tracing
//! ```

use agentguard::{AgentGuard, ToolCall};
use serde_json::{json, Value};

fn run_tool(name: &str, params: Value) -> String {
    format!("{name} ran with {params}")
}

fn main() {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false)
        .with_writer(std::io::stdout)
        .init();

    // The approver: a callback standing in for a person, who refuses deletions.
    let guard = AgentGuard::callback(|req| req.tool() != "delete_customer")
        .no_audit()
        .build();

    for (i, (tool, params)) in [
        ("read_customer", json!({"id": 7})),
        ("update_email", json!({"id": 7, "email": "jane@new.example"})),
        ("delete_customer", json!({"id": 7})),
    ]
    .into_iter()
    .enumerate()
    {
        let call = ToolCall::new(tool, params)
            .agent_id("support-bot")
            .session_id("ticket-4821")
            .call_id(format!("call_{i}")); // the model's tool-call id, if it gave one
        match guard.execute(call, run_tool) {
            Ok(out) => println!("-> {out}"),
            Err(denied) => println!("-> {denied}"),
        }
    }
}
