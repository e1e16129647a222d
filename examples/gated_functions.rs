//! `#[gate]` on a free function, a method and an async function, with a callback approver.
//!
//! ```text
//! cargo run --example gated_functions
//! ```
//!
//! The bodies below cannot be reached except through the guard: each wrapper freezes its arguments into the params
//! snapshot, asks, and only then runs the body. The return type `R` becomes `Result<R, ActionDenied>`.

use agentguard::{gate, AgentGuard, ApprovalRequest};

/// Deletes a file (pretend). Always asks (`MANUALLY FLAGGED`), through the installed guard.
#[gate]
fn delete_file(path: String) -> std::io::Result<String> {
    Ok(format!("deleted {path}"))
}

struct Mailer {
    sent: usize,
}

impl Mailer {
    /// The receiver is not part of the params; `smtp_password` is masked in what the approver sees.
    #[gate(risk = "external_send", redact(smtp_password))]
    fn send(&mut self, to: String, body: String, smtp_password: String) -> usize {
        let _ = (body, smtp_password);
        self.sent += 1;
        println!("  (mail to {to} sent)");
        self.sent
    }
}

/// Async bodies use the guard's async path: no thread is parked while waiting.
#[gate(name = "deploy", risk = "system_execution")]
async fn deploy_service(service: String, version: String) -> String {
    tokio::task::yield_now().await;
    format!("{service} is now at {version}")
}

/// Shows each request and approves everything except deleting anything under /etc.
fn approve(req: &ApprovalRequest) -> bool {
    let ok = !req.params()["path"].as_str().is_some_and(|p| p.starts_with("/etc"));
    println!(
        "  [ask] {} {} ({}) -> {}",
        req.tool(),
        req.params(),
        req.risk(),
        if ok { "yes" } else { "no" }
    );
    ok
}

/// What the agent gets back: the value, or the denial as text.
fn show<T: std::fmt::Debug>(result: Result<T, agentguard::ActionDenied>) -> String {
    match result {
        Ok(value) => format!("ran: {value:?}"),
        Err(denied) => denied.to_string(),
    }
}

#[tokio::main]
async fn main() {
    agentguard::install(AgentGuard::callback(approve).no_audit().build()).expect("installed once");

    println!("{}", show(delete_file("notes.txt".into())));
    println!("{}", show(delete_file("/etc/passwd".into())));

    let mut mailer = Mailer { sent: 0 };
    println!(
        "{}",
        show(mailer.send("ops@example.com".into(), "hi".into(), "hunter2".into()))
    );

    println!("{}", show(deploy_service("billing".into(), "1.4.2".into()).await));
}
