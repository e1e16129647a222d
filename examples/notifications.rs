//! Webhook notifications (feature `webhook` of agentguard): when a call is parked, a signed POST tells people. Both
//! sides are here: the guard's webhook, and a receiver (what your chat bot or ntfy relay would be) that checks the
//! signature, shows the message with its link to the request's card, and — standing in for the person who follows
//! the link — answers the request.
//!
//! ```text
//! cargo run --example notifications --features notify
//! ```
//!
//! For Slack or ntfy, point the webhook at them instead: `.format(WebhookFormat::Slack)` with a Slack incoming-webhook
//! URL, or `.format(WebhookFormat::Ntfy { topic })` with `https://ntfy.sh/`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agentguard::notify::{verify_signature, Webhook, SIGNATURE_HEADER};
use agentguard::{AgentGuard, RequestId, ToolCall};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

const SECRET: &str = "a-shared-secret-from-your-config";

/// The receiver: checks the signature on the raw body, then reads the message.
async fn receive(State(guard): State<Arc<OnceLock<AgentGuard>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Err(e) = verify_signature(SECRET.as_bytes(), signature, &body, Duration::from_secs(300)) {
        println!("receiver: refused: {e}");
        return StatusCode::UNAUTHORIZED;
    }
    let message: Value = serde_json::from_slice(&body).unwrap_or_default();
    let request = &message["request"];
    println!("receiver: signature ok");
    println!(
        "receiver: {} wants {} {} (risk: {})",
        request["agent_id"].as_str().unwrap_or("an agent"),
        request["tool"].as_str().unwrap_or("?"),
        request["params"],
        request["risk"].as_str().unwrap_or("?"),
    );
    println!(
        "receiver: open {}",
        message["link"].as_str().unwrap_or("(no page URL set)")
    );

    // The person follows the link and approves on the page; here, the receiver answers for them.
    let id: Option<RequestId> = request["request_id"].as_str().and_then(|id| id.parse().ok());
    if let (Some(guard), Some(id)) = (guard.get(), id) {
        let outcome = guard.resolve(&id, true, Some("alice"));
        println!("receiver: alice approves -> {outcome:?}");
    }
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() {
    let slot = Arc::new(OnceLock::new());
    let app = axum::Router::new()
        .route("/hooks/agentguard", axum::routing::post(receive))
        .with_state(Arc::clone(&slot));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let hook = Webhook::builder(format!("http://{addr}/hooks/agentguard"))
        .secret(SECRET)
        .page_url("http://127.0.0.1:8787/agentguard/") // where `agentguard serve` or your app serves the page
        .build()
        .expect("a valid webhook");
    let guard = AgentGuard::external()
        .notify_webhook(hook.clone())
        .timeout(Duration::from_secs(30))
        .no_audit()
        .build();
    let _ = slot.set(guard.clone());

    let call = ToolCall::new(
        "delete_customer",
        serde_json::json!({"id": 7, "api_key": "sk-live-4f9a"}),
    )
    .agent_id("support-bot")
    .reason("the customer asked to close their account");
    let out = guard
        .aexecute(call, |name, params| async move { format!("{name} ran with {params}") })
        .await;
    match out {
        Ok(result) => println!("agent: {result}"),
        Err(denied) => println!("agent: {denied}"),
    }
    // Before exiting, let the webhook finish (its POST got its answer after the approval above).
    let stats = tokio::task::spawn_blocking(move || {
        hook.wait_idle(Duration::from_secs(10));
        hook.stats()
    })
    .await
    .expect("the wait ends");
    println!(
        "webhook: {} delivered, {} failed, {} dropped",
        stats.delivered, stats.failed, stats.dropped
    );
}
