//! The audit key named by `AGENTGUARD_AUDIT_KEY_FILE` keys the default audit log, and one that cannot be loaded
//! denies gated calls rather than logging them without the key. One test in its own binary: it sets environment
//! variables, which no other test in the process may read at the same time.

use agentguard::audit::{AuditKey, Verify, KEY_FILE_ENV, LOG_ENV};
use agentguard::{AgentGuard, DenyReason, ToolCall};
use serde_json::json;

#[test]
fn the_key_file_named_by_the_environment_keys_the_default_log_and_a_missing_one_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agentguard.log");
    let key_path = dir.path().join("audit.key");
    std::fs::write(&key_path, "9".repeat(64)).unwrap();
    std::env::set_var(LOG_ENV, &log);

    std::env::set_var(KEY_FILE_ENV, &key_path);
    let guard = AgentGuard::callback(|_| true).build(); // the default sink: JsonlAudit::from_env()
    guard
        .execute(ToolCall::new("delete_file", json!({})), |_, _| ())
        .unwrap();
    let report = Verify::new(&log)
        .key(AuditKey::from_file(&key_path).unwrap())
        .run()
        .unwrap();
    assert_eq!((report.lines, report.keyed), (1, true));

    std::env::set_var(KEY_FILE_ENV, dir.path().join("no-such.key"));
    let guard = AgentGuard::callback(|_| true).build();
    let ran = std::sync::atomic::AtomicBool::new(false);
    let denied = guard
        .execute(ToolCall::new("delete_file", json!({})), |_, _| {
            ran.store(true, std::sync::atomic::Ordering::SeqCst)
        })
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::AuditUnavailable);
    assert!(
        denied.detail().unwrap().contains("AGENTGUARD_AUDIT_KEY_FILE"),
        "{denied}"
    );
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
}
