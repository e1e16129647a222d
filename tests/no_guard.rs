//! With no guard installed, the free functions and generated wrappers deny (`no_guard`) and never run the call.
//! This test binary never installs a guard.

use agentguard::{DenyReason, ToolCall};
use serde_json::json;

#[test]
fn nothing_installed_means_denied_with_no_guard_and_nothing_runs() {
    assert!(agentguard::guard::installed().is_none());
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

static BODY_RAN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[agentguard::gate]
fn purge_cache(region: String) -> usize {
    let _ = region;
    BODY_RAN.store(true, std::sync::atomic::Ordering::SeqCst);
    1
}

#[test]
fn a_gated_function_with_no_guard_named_or_installed_is_denied_and_never_runs() {
    let denied = purge_cache("eu".into()).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::NoGuard);
    assert_eq!(denied.tool(), "purge_cache");
    assert!(!BODY_RAN.load(std::sync::atomic::Ordering::SeqCst));
}
