//! `#[derive(Tool)]`: an LLM's JSON tool call parsed into an enum and dispatched through an external-mode guard.
//! A reviewer thread answers the parked requests (a web page would, in a real app).
//!
//! ```text
//! cargo run --example tool_enum
//! ```

use std::sync::mpsc;
use std::time::Duration;

use agentguard::{AgentGuard, Approval, ApprovalRequest, Tool};
use serde_json::{json, Value};

/// The support desk's tools. Unmarked variants are gated by their names (`read_customer` is safe,
/// `update_email` is a data mutation); the options override that.
#[derive(Tool, Debug)]
enum SupportTool {
    ReadCustomer {
        id: u64,
    },
    UpdateEmail {
        id: u64,
        email: String,
    },
    #[tool(risk = "irreversible")]
    DeleteCustomer {
        id: u64,
    },
    #[tool(name = "loyalty_bonus", dangerous)]
    Bonus {
        id: u64,
        points: u32,
    },
}

/// The real implementations. A gated tool's method takes the `Approval` of its call, which carries the approved
/// arguments (`SupportToolUpdateEmail { id, email }`, generated): only the guard can make one, so calling
/// `desk.delete_customer(..)` without going through `guard.dispatch` does not compile, and neither does keeping an
/// approval for later or using it for another tool.
struct Desk;

impl SupportToolHandler for Desk {
    type Output = Value;

    fn read_customer(&mut self, id: u64) -> Value {
        json!({"id": id, "name": "Jane Doe", "plan": "pro"})
    }
    fn update_email(&mut self, approval: Approval<'_, SupportToolUpdateEmail>) -> Value {
        json!(format!(
            "#{} email set to {} (approved by {})",
            approval.id,
            approval.email,
            approval.actor().unwrap_or("?")
        ))
    }
    fn delete_customer(&mut self, approval: Approval<'_, SupportToolDeleteCustomer>) -> Value {
        json!(format!("#{} deleted", approval.id))
    }
    fn bonus(&mut self, approval: Approval<'_, SupportToolBonus>) -> Value {
        let SupportToolBonus { id, points } = approval.into_args();
        json!(format!("#{id} credited {points} points"))
    }
}

fn main() {
    let (queue, inbox) = mpsc::channel::<ApprovalRequest>();
    let guard = AgentGuard::external()
        .on_request(move |req| {
            let _ = queue.send(req.clone());
        })
        .timeout(Duration::from_secs(60))
        .no_audit()
        .build();

    // The reviewer: approves everything but deletions, and says exactly which params it approved.
    let store = guard.store().clone();
    let reviewer = std::thread::spawn(move || {
        for req in inbox {
            let ok = req.tool() != "delete_customer";
            println!(
                "  [review] {} {} -> {}",
                req.tool(),
                req.params(),
                if ok { "approve" } else { "deny" }
            );
            let answer = agentguard::Resolution::new(req.request_id().clone(), ok)
                .actor("alice")
                .params_digest(req.params_digest().clone());
            store.resolve(&answer).expect("in-memory store");
        }
    });

    // What an LLM sends back: a tool name and JSON arguments.
    let llm_calls = [
        ("read_customer", json!({"id": 7})),
        ("update_email", json!({"id": 7, "email": "jane@example.com"})),
        ("delete_customer", json!({"id": 7})),
        ("loyalty_bonus", json!({"id": 7, "points": 500})),
        ("drop_database", json!({})),
        ("loyalty_bonus", json!({"id": 7, "points": "lots"})),
    ];
    let mut desk = Desk;
    for (name, params) in llm_calls {
        let reply = match SupportTool::parse(name, params) {
            Err(bad_call) => format!("tool error: {bad_call}"), // tell the model what went wrong
            Ok(tool) => match guard.dispatch(tool, &mut desk) {
                Ok(result) => result.to_string(),
                Err(denied) => serde_json::to_string(&denied).expect("serializable"), // a value for the model
            },
        };
        println!("{name}: {reply}");
    }

    drop(guard);
    reviewer.join().expect("reviewer thread");
}
