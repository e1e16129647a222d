//! The smallest working example: a terminal prompt before `delete_file` runs.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Type `y` and the tool runs; type `n` (or run it without a keyboard, e.g. `< /dev/null`) and the call is blocked
//! and you get an `ActionDenied` value instead. Every call is recorded in `agentguard.log` (or `$AGENTGUARD_LOG`).

use agentguard::{AgentGuard, ToolCall};
use serde_json::{json, Value};

/// Your tool runner: the guard calls it only after approval.
fn run_tool(name: &str, params: Value) -> String {
    format!("ran {name} with {params}")
}

// `pub` because a bare `cargo run` at the root (src/main.rs) runs it too.
pub fn main() {
    let guard = AgentGuard::terminal().build(); // approval happens in the terminal

    // "delete_file" has the word "delete", so this asks before running:
    let result = guard.execute(ToolCall::new("delete_file", json!({"path": "notes.txt"})), run_tool);

    match result {
        Ok(output) => println!("{output}"),
        Err(denied) => println!("{denied}"), // e.g. "Blocked by AgentGuard (user_denied)"
    }
}
