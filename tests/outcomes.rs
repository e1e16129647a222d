//! The store tells the truth about what ran: `executed` only for a call that was started, `expired` for an approval
//! that did not run after all (its arguments changed, or its audit line could not be written).

use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

use agentguard::audit::{AuditError, AuditRecord, AuditSink};
use agentguard::store::{RequestState, SqliteStore};
use agentguard::{AgentGuard, ApprovalRequest, DenyReason, ToolCall};
use serde_json::json;

/// An external guard over a fresh SQLite store; its `on_request` runs `on_park` and forwards the request.
fn guard_over_sqlite(
    dir: &tempfile::TempDir,
    audit: Option<Failing>,
    on_park: impl Fn() + Send + Sync + 'static,
) -> (AgentGuard, mpsc::Receiver<ApprovalRequest>) {
    let (tx, rx) = mpsc::channel();
    let builder = AgentGuard::external()
        .store(SqliteStore::open(dir.path().join("store.db")).unwrap())
        .on_request(move |req| {
            on_park();
            let _ = tx.send(req.clone());
        })
        .timeout(Duration::from_secs(30));
    let guard = match audit {
        Some(sink) => builder.audit(sink).build(),
        None => builder.no_audit().build(),
    };
    (guard, rx)
}

/// An audit sink whose approved lines fail, as a full disk would.
#[derive(Debug)]
struct Failing;

impl AuditSink for Failing {
    fn record(&self, record: &AuditRecord<'_>) -> Result<(), AuditError> {
        match record.decision.as_str() {
            "approved" => Err(AuditError::new("no space left on device")),
            _ => Ok(()),
        }
    }
}

static CHANGED_GUARD: OnceLock<AgentGuard> = OnceLock::new();
static TARGET: Mutex<String> = Mutex::new(String::new());

#[agentguard::gate(guard = CHANGED_GUARD)]
fn delete_path(path: &Mutex<String>) -> String {
    format!("deleted {}", path.lock().unwrap())
}

#[test]
fn a_call_whose_arguments_changed_after_approval_ends_expired_not_executed() {
    let dir = tempfile::tempdir().unwrap();
    *TARGET.lock().unwrap() = "notes.txt".into();
    // Behind the approver's back: the argument changes once the request has been shown.
    let (guard, rx) = guard_over_sqlite(&dir, None, || *TARGET.lock().unwrap() = "/etc/passwd".into());
    CHANGED_GUARD.set(guard.clone()).unwrap();
    let agent = std::thread::spawn(|| delete_path(&TARGET));
    let req = rx.recv().unwrap();
    assert_eq!(req.params(), &json!({"path": "notes.txt"}));
    guard.resolve(req.request_id(), true, Some("alice"));
    let denied = agent.join().unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ParamsChanged);
    let stored = guard.store().get(req.request_id()).unwrap().unwrap();
    assert_eq!(stored.decision.state, RequestState::Expired, "{stored:?}");
}

#[test]
fn an_approved_call_whose_audit_line_fails_ends_expired_not_executed() {
    let dir = tempfile::tempdir().unwrap();
    let (guard, rx) = guard_over_sqlite(&dir, Some(Failing), || {});
    let g = guard.clone();
    let agent = std::thread::spawn(move || {
        g.execute(ToolCall::new("delete_file", json!({"path": "a"})), |_, _| -> () {
            panic!("must not run")
        })
    });
    let req = rx.recv().unwrap();
    guard.resolve(req.request_id(), true, Some("alice"));
    let denied = agent.join().unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::AuditUnavailable);
    let stored = guard.store().get(req.request_id()).unwrap().unwrap();
    assert_eq!(stored.decision.state, RequestState::Expired, "{stored:?}");
}

#[test]
fn a_call_that_ran_is_executed_with_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (guard, rx) = guard_over_sqlite(&dir, None, || {});
    let g = guard.clone();
    let agent = std::thread::spawn(move || g.execute(ToolCall::new("delete_file", json!({})), |_, _| "ran"));
    let req = rx.recv().unwrap();
    guard.resolve(req.request_id(), true, Some("alice"));
    assert_eq!(agent.join().unwrap().unwrap(), "ran");
    let stored = guard.store().get(req.request_id()).unwrap().unwrap();
    assert_eq!(stored.decision.state, RequestState::Executed);
    assert_eq!(stored.outcome.as_deref(), Some("ok"));
}
