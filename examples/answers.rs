//! Richer answers than yes or no, in one program: an approver (played here by a thread, as the page, the HTTP API or
//! `agentguard approve` would) edits a call, answers for a tool, remembers an approval for the session, and two
//! people approve a large payment under a policy's quorum.
//!
//! Run it with `cargo run --example answers`. It needs no keyboard: the answers are scripted.

use std::time::{Duration, Instant};

use agentguard::answer::{GrantScope, GrantSpec};
use agentguard::guard::Gating;
use agentguard::policy::Policy;
use agentguard::{AgentGuard, ApprovalRequest, Resolution, ResolveOutcome, ToolCall};
use serde_json::json;

const POLICY: &str = r#"
[groups]
finance = ["alice", "bob", "carol"]

[[rule]]
name = "payments over 1000 need two of finance"
tools = ["pay_invoice"]
when = { amount = { gt = 1000 } }
action = "ask"
approvers = ["@finance"]
quorum = 2
"#;

/// The one request waiting (the approver's view of it).
fn waiting(guard: &AgentGuard) -> ApprovalRequest {
    let start = Instant::now();
    loop {
        if let Some(req) = guard.pending().pop() {
            return req;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "nothing was parked");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    let policy = Policy::from_toml(POLICY).expect("the policy compiles");
    let guard = AgentGuard::external()
        .policy(policy)
        .timeout(Duration::from_secs(30))
        .build();
    let send = |to: &str| {
        ToolCall::new("send_email", json!({"to": to, "body": "Your refund is on its way."}))
            .agent_id("support-bot")
            .session_id("ticket-4821")
    };

    // 1. Edit: "send it, but to the right address".
    let approver = {
        let guard = guard.clone();
        std::thread::spawn(move || {
            let req = waiting(&guard);
            let mut fixed = req.params().clone();
            fixed["to"] = json!("jane@example.com");
            guard.resolve_with(&Resolution::edit(req.request_id().clone(), fixed).actor("alice"))
        })
    };
    let ran = guard.execute_detailed(send("jane@exmaple.com"), Gating::Auto, |_, p| {
        format!("sent to {}", p["to"].as_str().unwrap_or("?"))
    });
    assert_eq!(approver.join().unwrap(), ResolveOutcome::Resolved);
    let ran = ran.expect("the edited call ran");
    println!("edit:     {}", ran.value);
    println!("          {}", ran.edited.expect("it was edited").notice());

    // 2. Respond: "tell the agent the refund was already done".
    let approver = {
        let guard = guard.clone();
        std::thread::spawn(move || {
            let req = waiting(&guard);
            let answer = Resolution::respond(req.request_id().clone(), "Order 42 was refunded yesterday; do nothing.");
            guard.resolve_with(&answer.actor("alice"))
        })
    };
    let out = guard.execute(ToolCall::new("refund_order", json!({"order": 42})), |_, _| "refunded");
    approver.join().unwrap();
    let answered = out.expect_err("the tool did not run");
    println!(
        "respond:  the agent reads {:?} (a denial? {})",
        answered.to_string(),
        answered.is_denial()
    );

    // 3. Remember: "allow sending mail for this session, twice more".
    let approver = {
        let guard = guard.clone();
        std::thread::spawn(move || {
            let req = waiting(&guard);
            let remember = GrantSpec::new(GrantScope::Session)
                .uses(2)
                .ttl(Duration::from_secs(2 * 3600));
            guard.resolve_with(
                &Resolution::approve(req.request_id().clone())
                    .actor("alice")
                    .remember(remember),
            )
        })
    };
    guard.execute(send("jane@example.com"), |_, _| ()).expect("approved");
    approver.join().unwrap();
    for n in 1..=2 {
        guard
            .execute(send("jane@example.com"), |_, _| ())
            .expect("the session's grant lets it run");
        println!("remember: call {n} ran without asking (a standing grant)");
    }
    let grant = &guard.store().grants().unwrap()[0];
    println!(
        "          grant {} by {}: used {}, {} now",
        &grant.id[..8],
        grant.created_by.as_deref().unwrap_or("?"),
        grant.used,
        grant.status_now()
    );

    // 4. Quorum: two of finance approve a large payment; the first vote alone does not run it.
    let approver = {
        let guard = guard.clone();
        std::thread::spawn(move || {
            let req = waiting(&guard);
            let id = req.request_id().clone();
            let first = guard.resolve_with(&Resolution::approve(id.clone()).actor("alice"));
            let votes = guard.store().get(&id).unwrap().unwrap().decision.votes;
            let progress = req.quorum().unwrap().progress(&votes, req.excluded());
            let second = guard.resolve_with(&Resolution::approve(id).actor("carol"));
            (first, progress.to_string(), second)
        })
    };
    let paid = guard.execute(
        ToolCall::new("pay_invoice", json!({"invoice": "INV-7", "amount": 4200})).agent_id("billing-bot"),
        |_, p| format!("paid {}", p["amount"]),
    );
    let (first, progress, second) = approver.join().unwrap();
    println!(
        "quorum:   alice → {first} ({progress}); carol → {second}; {}",
        paid.expect("approved by two")
    );
}
