//! The full integration pattern: real tools behind one dispatcher, routed through an external-mode guard, with a
//! scripted "person" on another thread answering from an approval queue (a web page or chat bot in a real app).
//!
//! ```text
//! cargo run --example support_desk
//! ```

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use agentguard::{AgentGuard, ApprovalRequest, Resolution, ToolCall};
use serde_json::{json, Value};

// 1. Your real tool implementations. Each takes its params and does its work.
fn read_customer(p: &Value) -> Value {
    json!({"id": p["id"], "name": "Jane Doe", "plan": "pro"})
}
fn update_email(p: &Value) -> Value {
    json!(format!(
        "Email for #{} set to {}",
        p["id"],
        p["email"].as_str().unwrap_or("?")
    ))
}
fn delete_customer(p: &Value) -> Value {
    json!(format!("Customer #{} deleted", p["id"]))
}
fn loyalty_bonus(p: &Value) -> Value {
    json!(format!("Credited {} points to #{}", p["points"], p["id"]))
}

type Tool = fn(&Value) -> Value;

fn main() {
    // 2. One dispatcher mapping a tool name to its implementation.
    let tools: HashMap<&str, Tool> = HashMap::from([
        ("read_customer", read_customer as Tool),
        ("update_email", update_email),
        ("delete_customer", delete_customer),
        ("loyalty_bonus", loyalty_bonus),
    ]);
    let run_tool = |name: &str, params: Value| match tools.get(name) {
        Some(tool) => tool(&params),
        None => json!(format!("unknown tool {name}")),
    };

    // 3. Create the guard: external mode pushes each request to the approval queue and waits for an answer.
    let (queue, inbox) = mpsc::channel::<ApprovalRequest>();
    let guard = AgentGuard::external()
        .on_request(move |req| {
            let _ = queue.send(req.clone()); // push_to_ui(req) in a real app: keep it quick
        })
        .timeout(Duration::from_secs(120)) // finite; the default is 300 s
        .dangerous_tools(["loyalty_bonus"]) // innocently named, but it gives away money
        .build();

    // The approver: a person reading cards. Here a script: approve everything except deletions. It holds the store
    // (not the guard, whose notifier holds the queue), so the queue closes when the guard is dropped.
    let store = guard.store().clone();
    let person = std::thread::spawn(move || {
        for req in inbox {
            println!(
                "  [card] {} {} risk=\"{}\" agent={} session={}",
                req.tool(),
                req.params(),
                req.risk().label(),
                req.agent_id().unwrap_or("-"),
                req.session_id().unwrap_or("-")
            );
            let approve = !req.tool().starts_with("delete");
            let answer = Resolution::new(req.request_id().clone(), approve)
                .actor("alice")
                .params_digest(req.params_digest().clone()) // "I approve exactly what I was shown"
                .note(if approve { "ok" } else { "deletions need a ticket" });
            let outcome = store.resolve(&answer).expect("in-memory store");
            println!(
                "  [card] alice {} -> {outcome}",
                if approve { "approves" } else { "denies" }
            );
        }
    });

    // 4. Anywhere your code runs a tool, route it through the guard instead.
    let handle_tool_call = |name: &str, params: Value| -> String {
        let call = ToolCall::new(name, params)
            .agent_id("support-bot") // who is acting
            .session_id("ticket-4821"); // which run this belongs to
        match guard.execute(call, run_tool) {
            Ok(result) => result.to_string(),
            // Blocked: hand the agent a plain message; do NOT retry automatically.
            Err(denied) => format!("Action blocked: {denied}"),
        }
    };

    // 5. Use it.
    println!("{}", handle_tool_call("read_customer", json!({"id": 7}))); // safe name -> runs, no card
    println!(
        "{}",
        handle_tool_call("update_email", json!({"id": 7, "email": "a@b.com"}))
    ); // asks first
    println!("{}", handle_tool_call("delete_customer", json!({"id": 7}))); // asks first
    println!("{}", handle_tool_call("loyalty_bonus", json!({"id": 7, "points": 500}))); // listed -> asks

    drop(guard); // closes the queue so the approver thread ends
    person.join().expect("approver thread");

    let log = std::env::var("AGENTGUARD_LOG").unwrap_or_else(|_| "agentguard.log".into());
    match agentguard::audit::verify(&log) {
        Ok(report) => println!("audit {log}: chain intact, {} lines", report.lines),
        Err(e) => println!("audit {log}: {e}"),
    }
}
