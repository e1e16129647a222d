//! With no guard installed, the free functions and generated wrappers deny (`no_guard`) and never run the call.
//! This test binary never installs a guard.

use agentguard::{DenyReason, ToolCall};
use serde_json::json;

#[test]
fn nothing_installed_means_denied_with_no_guard_and_nothing_runs() {
    assert!(agentguard::installed().is_none());
    let mut ran = false;
    let denied = agentguard::execute(ToolCall::new("read_customer", json!({})), |_, _| ran = true).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::NoGuard);
    assert!(denied.detail().unwrap().contains("agentguard::install"), "{denied}");
    assert!(!ran);
}

#[tokio::test]
async fn nothing_installed_means_denied_with_no_guard_in_async_code_too() {
    let denied = agentguard::aexecute(ToolCall::new("delete_file", json!({})), |_, _| async {})
        .await
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::NoGuard);
}
