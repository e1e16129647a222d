//! `install` sets the process-wide guard once; the free functions then route through it.

use agentguard::{AgentGuard, DenyReason, ToolCall};
use serde_json::json;

#[test]
fn the_installed_guard_gates_free_function_calls_and_cannot_be_replaced() {
    agentguard::install(
        AgentGuard::callback(|req| req.tool() != "drop_table")
            .no_audit()
            .build(),
    )
    .unwrap();
    assert!(agentguard::execute(ToolCall::new("delete_file", json!({})), |_, _| ()).is_ok());
    let denied = agentguard::execute(ToolCall::new("drop_table", json!({})), |_, _| ()).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::UserDenied);
    // A second install is refused and hands its guard back; the first stays in charge.
    let second = agentguard::install(AgentGuard::callback(|_| true).no_audit().build()).unwrap_err();
    assert!(second.to_string().contains("already installed"));
    assert!(agentguard::execute(ToolCall::new("drop_table", json!({})), |_, _| ()).is_err());
}
