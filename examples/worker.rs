//! An agent process that gates its calls through a shared SQLite store, so a person can approve them from another
//! terminal with the `agentguard` CLI.
//!
//! ```text
//! # terminal 1: the agent
//! cargo run --example worker --features sqlite
//! # terminal 2: the person
//! cargo run -p agentguard-cli -- --store sqlite:agentguard.db pending
//! cargo run -p agentguard-cli -- --store sqlite:agentguard.db approve <REQUEST-ID>
//! ```
//!
//! The store URL comes from `AGENTGUARD_STORE` (default `sqlite:agentguard.db`). The `sqlite` feature of this
//! examples package turns on agentguard's SQLite store (bundled SQLite, compiled from C), which the other examples
//! do not need.

use std::time::Duration;

use agentguard::{AgentGuard, ToolCall};
use serde_json::{json, Value};

fn run_tool(name: &str, params: Value) -> String {
    format!("ran {name} with {params}")
}

fn main() {
    let url = std::env::var("AGENTGUARD_STORE").unwrap_or_else(|_| "sqlite:agentguard.db".into());
    let store = match agentguard::store::open_store(&url) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("worker: cannot open the store {url}: {e}");
            std::process::exit(1);
        }
    };
    let guard = AgentGuard::external()
        .shared_store(store)
        .on_request(move |req| {
            println!("waiting for approval of {} {}", req.tool(), req.params());
            println!("  approve: agentguard --store {url} approve {}", req.request_id());
            println!(
                "  deny:    agentguard --store {url} deny {} --reason \"...\"",
                req.request_id()
            );
        })
        .timeout(Duration::from_secs(120))
        .build();

    for (name, params) in [
        ("read_customer", json!({"id": 7})),
        ("delete_customer", json!({"id": 7})),
    ] {
        let call = ToolCall::new(name, params).agent_id("worker").session_id("ticket-4821");
        match guard.execute(call, run_tool) {
            Ok(out) => println!("{out}"),
            Err(denied) => println!("{denied}"),
        }
    }
}
