//! A policy decides by the call's arguments: sandbox writes run, writes outside the app are refused, small refunds
//! run, large ones ask a person, huge ones are refused, internal email runs and external email asks.
//!
//! ```text
//! cargo run --example policy
//! ```
//!
//! The rules are in `examples/agentguard.toml`; try `agentguard policy explain examples/agentguard.toml --tool
//! refund_order --params '{"amount_eur": 250}'` to see why a call is decided as it is. Here a callback plays the
//! person who is asked (it approves refunds up to 1,000 EUR and nothing else), so the example runs without a
//! keyboard; swap in `AgentGuard::terminal()` to be asked yourself.

use agentguard::{AgentGuard, ApprovalRequest, ToolCall};
use serde_json::{json, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/agentguard.toml");
    let log = std::env::temp_dir().join(format!("agentguard-policy-example-{}.log", std::process::id()));

    let guard = AgentGuard::callback(|req: &ApprovalRequest| {
        let yes = req.tool().starts_with("refund_") && req.params()["amount_eur"].as_f64() <= Some(1000.0);
        println!(
            "    [person asked] {} {} -> {}",
            req.tool(),
            req.params(),
            if yes { "yes" } else { "no" }
        );
        yes
    })
    .policy_file(policy)? // a policy that cannot be read refuses to build the guard
    .audit_file(&log)
    .build();

    let calls = [
        ("write_file", json!({"path": "sandbox/notes.md", "content": "hello"})),
        (
            "write_file",
            json!({"path": "sandbox/../../../etc/passwd", "content": "x"}),
        ),
        ("write_file", json!({"path": "/srv/app/config.toml", "content": "x"})),
        ("refund_order", json!({"order": 1042, "amount_eur": 40})),
        ("refund_order", json!({"order": 1043, "amount_eur": 250})),
        ("refund_order", json!({"order": 1044, "amount_eur": 25_000})),
        (
            "send_email",
            json!({"to": ["ann@example.com"], "subject": "Your refund"}),
        ),
        ("send_email", json!({"to": ["someone@elsewhere.org"], "subject": "Hi"})),
        ("read_customer", json!({"id": 7})),
    ];
    for (tool, params) in calls {
        println!("{tool} {params}");
        let out = guard.execute(ToolCall::new(tool, params), |name, _params: Value| {
            format!("{name} ran")
        });
        match out {
            Ok(text) => println!("  -> {text}"),
            Err(denied) => println!("  -> {denied}"),
        }
    }

    println!("\nWhat decided each call (from the audit log {}):", log.display());
    for line in std::fs::read_to_string(&log)?.lines() {
        let line: Value = serde_json::from_str(line)?;
        println!(
            "  {:<14} {:<9} rule: {} ({})",
            line["tool"].as_str().unwrap_or_default(),
            line["decision"].as_str().unwrap_or_default(),
            line["policy"]["rule"].as_str().unwrap_or("-"),
            line["policy"]["action"].as_str().unwrap_or("-"),
        );
    }
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(log.with_extension("log.checkpoint"));
    let _ = std::fs::remove_file(log.with_extension("log.lock"));
    Ok(())
}
