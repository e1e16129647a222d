//! The guard's behaviour with the blocking `execute`: every documented behaviour and every fail-closed path.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentguard::store::{ApprovalStore, InMemoryStore};
use agentguard::{AgentGuard, ApprovalRequest, DenyReason, Resolution, ResolveOutcome, Risk, ToolCall};
use common::{audit_lines, audit_path};
use serde_json::{json, Value};

fn call(name: &str) -> ToolCall {
    ToolCall::new(name, json!({"path": "notes.txt"}))
}

fn echo(name: &str, params: Value) -> String {
    format!("ran {name} with {params}")
}

#[test]
fn safe_tool_runs_at_once_without_asking() {
    let asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    let guard = AgentGuard::callback(move |_| {
        a.fetch_add(1, Ordering::SeqCst);
        false
    })
    .no_audit()
    .build();
    let out = guard.execute(ToolCall::new("read_customer", json!({"id": 7})), echo);
    assert_eq!(out.unwrap(), r#"ran read_customer with {"id":7}"#);
    assert_eq!(asked.load(Ordering::SeqCst), 0);
}

#[test]
fn dangerous_tool_asks_and_runs_when_approved() {
    let seen = Arc::new(Mutex::new(Vec::<ApprovalRequest>::new()));
    let s = seen.clone();
    let guard = AgentGuard::callback(move |req| {
        s.lock().unwrap().push(req.clone());
        true
    })
    .no_audit()
    .build();
    let out = guard.execute(call("delete_file"), echo).unwrap();
    assert_eq!(out, r#"ran delete_file with {"path":"notes.txt"}"#);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].tool(), "delete_file");
    assert_eq!(seen[0].risk(), Risk::Irreversible);
    assert_eq!(seen[0].params(), &json!({"path": "notes.txt"}));
}

#[test]
fn denied_call_returns_user_denied_and_never_runs() {
    let ran = AtomicUsize::new(0);
    let guard = AgentGuard::callback(|_| false).no_audit().build();
    let denied = guard
        .execute(call("delete_file"), |_, _| ran.fetch_add(1, Ordering::SeqCst))
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::UserDenied);
    assert_eq!(denied.tool(), "delete_file");
    assert!(denied.request_id().is_some());
    assert_eq!(denied.to_string(), "Blocked by AgentGuard (user_denied)");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn panicking_callback_blocks_with_approver_failed() {
    let guard = AgentGuard::callback(|_| panic!("slack is down")).no_audit().build();
    let denied = guard.execute(call("send_email"), echo).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApproverFailed);
    assert!(denied.detail().unwrap().contains("slack is down"), "{denied}");
}

#[test]
fn callback_answer_after_the_deadline_is_a_timeout() {
    let guard = AgentGuard::callback(|_| {
        std::thread::sleep(Duration::from_millis(60));
        true
    })
    .timeout(Duration::from_millis(10))
    .no_audit()
    .build();
    let denied = guard.execute(call("delete_file"), echo).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApprovalTimeout);
}

#[test]
fn dangerous_tools_gate_innocent_names_as_manually_flagged() {
    let risks = Arc::new(Mutex::new(Vec::new()));
    let r = risks.clone();
    let guard = AgentGuard::callback(move |req| {
        r.lock().unwrap().push(req.risk());
        true
    })
    .dangerous_tools(["reconcile_ledger", "grant_admin"])
    .no_audit()
    .build();
    guard
        .execute(ToolCall::new("reconcile_ledger", json!({})), echo)
        .unwrap();
    assert_eq!(*risks.lock().unwrap(), [Risk::ManuallyFlagged]);
    assert_eq!(
        Risk::ManuallyFlagged.label(),
        "MANUALLY FLAGGED - always requires approval"
    );
    assert_eq!(guard.risk_of("weather"), None);
}

#[test]
fn tool_both_listed_and_classified_is_gated_once_logged_once_with_classify_label() {
    let (_dir, log) = audit_path();
    let asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    let guard = AgentGuard::callback(move |req| {
        a.fetch_add(1, Ordering::SeqCst);
        assert_eq!(req.risk(), Risk::Irreversible);
        true
    })
    .dangerous_tools(["delete_file"])
    .audit_file(&log)
    .build();
    guard.execute(call("delete_file"), echo).unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    let lines = audit_lines(&log);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["risk"], "IRREVERSIBLE - cannot be undone");
    assert_eq!(lines[0]["decision"], "approved");
}

#[test]
fn safe_tools_run_unasked_and_are_logged_as_allowed() {
    let (_dir, log) = audit_path();
    let guard = AgentGuard::callback(|_| false)
        .safe_tools(["reset_view"])
        .audit_file(&log)
        .build();
    assert_eq!(guard.risk_of("reset_view"), None);
    guard.execute(ToolCall::new("reset_view", json!({})), echo).unwrap();
    drop(guard); // a safe call's line rides the sink's next batch; dropping the guard writes it
    let lines = audit_lines(&log);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["decision"], "allowed");
    assert_eq!(lines[0]["detail"], "listed in safe_tools");
}

#[test]
fn a_name_in_both_lists_is_dangerous() {
    let guard = AgentGuard::callback(|_| false)
        .safe_tools(["export_report"])
        .dangerous_tools(["export_report"])
        .no_audit()
        .build();
    let denied = guard
        .execute(ToolCall::new("export_report", json!({})), echo)
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::UserDenied);
}

#[test]
fn every_call_is_one_audit_line_with_actor_digest_and_context() {
    let (_dir, log) = audit_path();
    let guard = AgentGuard::callback(|req| req.tool() != "send_email")
        .audit_file(&log)
        .build();
    let ctx = |name: &str| {
        call(name)
            .agent_id("support-bot")
            .session_id("ticket-4821")
            .reason("asked")
    };
    guard.execute(ctx("read_customer"), echo).unwrap();
    guard.execute(ctx("delete_file"), echo).unwrap();
    guard.execute(ctx("send_email"), echo).unwrap_err();
    let lines = audit_lines(&log);
    let decisions: Vec<&str> = lines.iter().map(|l| l["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["allowed", "approved", "denied"]);
    for l in &lines {
        assert_eq!(l["agent_id"], "support-bot");
        assert_eq!(l["session_id"], "ticket-4821");
        assert_eq!(l["params"], json!({"path": "notes.txt"}));
        assert_eq!(l["params_digest"].as_str().unwrap().len(), 64);
    }
    assert_eq!(lines[1]["actor"], "callback");
    assert_eq!(lines[2]["reason"], "user_denied");
    assert!(lines[1]["request_id"].is_string());
    assert_eq!(lines[0]["request_id"], Value::Null);
    agentguard::audit::verify(&log).unwrap();
}

#[test]
fn params_over_the_limit_are_denied_not_shown_in_part() {
    let (_dir, log) = audit_path();
    let asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    let guard = AgentGuard::callback(move |_| {
        a.fetch_add(1, Ordering::SeqCst);
        true
    })
    .max_params_bytes(1024)
    .audit_file(&log)
    .build();
    let big = ToolCall::new("write_file", json!({"content": "x".repeat(5000)}));
    let denied = guard.execute(big, echo).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ParamsTooLarge);
    assert!(denied.detail().unwrap().contains("1024 bytes"), "{denied}");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        0,
        "the approver never saw half the params"
    );
    let lines = audit_lines(&log);
    assert_eq!(lines[0]["decision"], "blocked");
    assert_eq!(lines[0]["reason"], "params_too_large");
    assert!(!std::fs::read_to_string(&log).unwrap().contains("xxxxxxxx"));
}

#[test]
fn gated_call_whose_audit_cannot_be_written_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the log file should be: every write fails.
    let log = dir.path().join("audit.log");
    std::fs::create_dir(&log).unwrap();
    let ran = AtomicUsize::new(0);
    let guard = AgentGuard::callback(|_| true).audit_file(&log).build();
    let denied = guard
        .execute(call("delete_file"), |_, _| ran.fetch_add(1, Ordering::SeqCst))
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::AuditUnavailable);
    assert!(denied.detail().unwrap().contains("audit"), "{denied}");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    // A safe call is not gated and still runs (the failure is reported on stderr).
    assert!(guard.execute(ToolCall::new("read_customer", json!({})), echo).is_ok());
}

#[test]
fn executor_receives_the_real_values_while_approver_and_audit_see_them_redacted() {
    let (_dir, log) = audit_path();
    let shown = Arc::new(Mutex::new(Value::Null));
    let s = shown.clone();
    let guard = AgentGuard::callback(move |req| {
        *s.lock().unwrap() = req.params().clone();
        true
    })
    .redact_keys(["customer_note"])
    .audit_file(&log)
    .build();
    let params = json!({"to": "a@b.com", "smtp_password": "hunter2", "api": {"apiKey": "sk-live-123"},
                        "customerNote": "divorce pending"});
    let got = guard
        .execute(ToolCall::new("send_email", params.clone()), |_, p| p)
        .unwrap();
    assert_eq!(got, params, "the executor gets the real values");
    let shown = shown.lock().unwrap().to_string();
    let file = std::fs::read_to_string(&log).unwrap();
    for secret in ["hunter2", "sk-live-123", "divorce pending"] {
        assert!(!shown.contains(secret), "{secret} shown to the approver");
        assert!(!file.contains(secret), "{secret} written to the audit");
    }
    assert!(shown.contains("a@b.com"));
}

#[test]
fn external_mode_parks_until_resolved_and_lists_only_live_requests() {
    let guard = AgentGuard::external().no_audit().build();
    let g = guard.clone();
    let worker = std::thread::spawn(move || g.execute(call("delete_file"), echo));
    let req = wait_for_pending(&guard, 1).remove(0);
    assert_eq!(req.tool(), "delete_file");
    assert_eq!(
        guard.resolve(req.request_id(), true, Some("alice")),
        ResolveOutcome::Resolved
    );
    assert!(worker.join().unwrap().is_ok());
    assert!(guard.pending().is_empty(), "resolved requests leave pending()");
    assert_eq!(
        guard.resolve(req.request_id(), true, Some("bob")),
        ResolveOutcome::AlreadyResolved
    );
    assert_eq!(
        guard.resolve(req.request_id(), false, None),
        ResolveOutcome::AlreadyResolved
    );
}

#[test]
fn resolve_of_an_unknown_id_is_unknown() {
    let guard = AgentGuard::external().no_audit().build();
    assert_eq!(
        guard.resolve(&agentguard::RequestId::new(), true, None),
        ResolveOutcome::Unknown
    );
}

#[test]
fn external_deny_returns_user_denied_with_the_approvers_note() {
    let guard = AgentGuard::external().no_audit().build();
    let g = guard.clone();
    let worker = std::thread::spawn(move || g.execute(call("delete_file"), echo));
    let req = wait_for_pending(&guard, 1).remove(0);
    let answer = Resolution::deny(req.request_id().clone())
        .actor("alice")
        .note("wrong file");
    assert_eq!(guard.resolve_with(&answer), ResolveOutcome::Resolved);
    let denied = worker.join().unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::UserDenied);
    assert_eq!(denied.detail(), Some("wrong file"));
}

#[test]
fn unanswered_request_expires_and_a_late_approval_never_runs_it() {
    let (_dir, log) = audit_path();
    let ran = Arc::new(AtomicUsize::new(0));
    let guard = AgentGuard::external()
        .timeout(Duration::from_millis(50))
        .audit_file(&log)
        .build();
    let (g, r) = (guard.clone(), ran.clone());
    let worker = std::thread::spawn(move || {
        g.execute(call("delete_file"), |_, _| {
            r.fetch_add(1, Ordering::SeqCst);
        })
    });
    let req = wait_for_pending(&guard, 1).remove(0);
    let denied = worker.join().unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApprovalTimeout);
    assert_eq!(
        guard.resolve(req.request_id(), true, Some("late")),
        ResolveOutcome::Expired
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(guard.pending().is_empty());
    assert_eq!(audit_lines(&log)[0]["decision"], "expired");
    assert_eq!(audit_lines(&log)[0]["reason"], "approval_timeout");
}

#[test]
fn on_request_fires_exactly_once_per_parked_request() {
    let fired = Arc::new(Mutex::new(Vec::new()));
    let f = fired.clone();
    let guard = AgentGuard::external()
        .on_request(move |req| f.lock().unwrap().push(req.request_id().clone()))
        .no_audit()
        .build();
    let g = guard.clone();
    let worker = std::thread::spawn(move || g.execute(call("delete_file"), echo));
    let req = wait_for_pending(&guard, 1).remove(0);
    guard.resolve(req.request_id(), true, None);
    worker.join().unwrap().unwrap();
    assert_eq!(*fired.lock().unwrap(), [req.request_id().clone()]);
}

#[test]
fn panicking_notifier_is_audited_and_the_request_still_times_out() {
    let (_dir, log) = audit_path();
    let guard = AgentGuard::external()
        .on_request(|_| panic!("websocket closed"))
        .timeout(Duration::from_millis(50))
        .audit_file(&log)
        .build();
    let denied = guard.execute(call("delete_file"), echo).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApprovalTimeout);
    let lines = audit_lines(&log);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["decision"], "notifier_error");
    assert!(lines[0]["detail"].as_str().unwrap().contains("websocket closed"));
    assert_eq!(lines[1]["decision"], "expired");
    assert_eq!(lines[0]["request_id"], lines[1]["request_id"]);
}

#[test]
fn panicking_notifier_does_not_stop_a_resolve_from_approving() {
    let guard = AgentGuard::external().on_request(|_| panic!("boom")).no_audit().build();
    let g = guard.clone();
    let worker = std::thread::spawn(move || g.execute(call("delete_file"), echo));
    let req = wait_for_pending(&guard, 1).remove(0);
    guard.resolve(req.request_id(), true, None);
    assert!(worker.join().unwrap().is_ok());
}

#[test]
fn approving_one_agent_never_releases_another() {
    let guard = AgentGuard::external()
        .timeout(Duration::from_secs(30))
        .no_audit()
        .build();
    let (ga, gb) = (guard.clone(), guard.clone());
    let a = std::thread::spawn(move || ga.execute(call("delete_file").agent_id("A"), |_, _| "A ran"));
    let b = std::thread::spawn(move || gb.execute(call("delete_file").agent_id("B"), |_, _| "B ran"));
    let parked = wait_for_pending(&guard, 2);
    let req_b = parked.iter().find(|r| r.agent_id() == Some("B")).unwrap();
    let req_a = parked.iter().find(|r| r.agent_id() == Some("A")).unwrap();
    assert_eq!(guard.resolve(req_b.request_id(), true, None), ResolveOutcome::Resolved);
    assert_eq!(b.join().unwrap().unwrap(), "B ran");
    // A is still parked: exactly one pending request, and it is A's.
    let still = guard.pending();
    assert_eq!(still.len(), 1);
    assert_eq!(still[0].request_id(), req_a.request_id());
    assert!(!a.is_finished());
    assert_eq!(guard.resolve(req_a.request_id(), false, None), ResolveOutcome::Resolved);
    assert_eq!(a.join().unwrap().unwrap_err().reason(), DenyReason::UserDenied);
}

#[test]
fn request_carries_its_deadline_and_the_audit_records_the_actor() {
    let (_dir, log) = audit_path();
    let guard = AgentGuard::external()
        .timeout(Duration::from_secs(120))
        .audit_file(&log)
        .build();
    assert_eq!(guard.timeout(), Duration::from_secs(120));
    let g = guard.clone();
    let worker = std::thread::spawn(move || g.execute(call("delete_file"), echo));
    let req = wait_for_pending(&guard, 1).remove(0);
    let span = req.deadline().duration_since(req.timestamp()).unwrap();
    assert_eq!(span, Duration::from_secs(120));
    let wire = serde_json::to_value(&req).unwrap();
    assert!(wire["deadline"].as_f64().unwrap() > wire["timestamp"].as_f64().unwrap());
    guard.resolve(req.request_id(), true, Some("alice"));
    worker.join().unwrap().unwrap();
    assert_eq!(audit_lines(&log)[0]["actor"], "alice");
}

#[test]
fn default_timeout_is_finite_300_seconds() {
    let guard = AgentGuard::external().no_audit().build();
    assert_eq!(guard.timeout(), Duration::from_secs(300));
    let huge = AgentGuard::external().timeout(Duration::MAX).no_audit().build();
    assert_eq!(huge.timeout(), agentguard::guard::MAX_TIMEOUT);
}

#[test]
fn digest_mismatch_is_refused_and_the_request_stays_pending() {
    let guard = AgentGuard::external().no_audit().build();
    let g = guard.clone();
    let worker = std::thread::spawn(move || g.execute(call("delete_file"), echo));
    let req = wait_for_pending(&guard, 1).remove(0);
    let other = agentguard::params::ParamsDigest::of(b"something else");
    let answer = Resolution::approve(req.request_id().clone()).params_digest(other);
    assert_eq!(guard.resolve_with(&answer), ResolveOutcome::DigestMismatch);
    assert_eq!(guard.pending().len(), 1, "nothing was decided");
    let right = Resolution::approve(req.request_id().clone()).params_digest(req.params_digest().clone());
    assert_eq!(guard.resolve_with(&right), ResolveOutcome::Resolved);
    assert!(worker.join().unwrap().is_ok());
}

/// A store whose backend is down: every operation fails.
#[derive(Debug)]
struct DownStore;

impl ApprovalStore for DownStore {
    fn insert(&self, _: &ApprovalRequest) -> Result<(), agentguard::store::StoreError> {
        Err(agentguard::store::StoreError::new("connection refused"))
    }
    fn resolve(&self, _: &Resolution) -> Result<ResolveOutcome, agentguard::store::StoreError> {
        Err(agentguard::store::StoreError::new("connection refused"))
    }
    fn expire(
        &self,
        _: &agentguard::RequestId,
    ) -> Result<Option<agentguard::store::Decision>, agentguard::store::StoreError> {
        Err(agentguard::store::StoreError::new("connection refused"))
    }
    fn claim(&self, _: &agentguard::RequestId) -> Result<bool, agentguard::store::StoreError> {
        Err(agentguard::store::StoreError::new("connection refused"))
    }
    fn get(
        &self,
        _: &agentguard::RequestId,
    ) -> Result<Option<agentguard::store::StoredRequest>, agentguard::store::StoreError> {
        Err(agentguard::store::StoreError::new("connection refused"))
    }
    fn pending(&self) -> Result<Vec<ApprovalRequest>, agentguard::store::StoreError> {
        Err(agentguard::store::StoreError::new("connection refused"))
    }
    fn wait<'a>(&'a self, _: &'a agentguard::RequestId) -> agentguard::store::WaitFuture<'a> {
        Box::pin(async { Err(agentguard::store::StoreError::new("connection refused")) })
    }
    fn wait_blocking(
        &self,
        _: &agentguard::RequestId,
        _: std::time::Instant,
    ) -> Result<Option<agentguard::store::Decision>, agentguard::store::StoreError> {
        Err(agentguard::store::StoreError::new("connection refused"))
    }
}

#[test]
fn unreachable_store_denies_with_store_unavailable() {
    let guard = AgentGuard::external().store(DownStore).no_audit().build();
    let denied = guard.execute(call("delete_file"), echo).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::StoreUnavailable);
    assert!(denied.detail().unwrap().contains("connection refused"));
    assert_eq!(
        guard.resolve(&agentguard::RequestId::new(), true, None),
        ResolveOutcome::Unavailable
    );
    assert!(guard.pending().is_empty());
    assert!(guard.try_pending().is_err());
}

#[test]
fn a_shared_in_memory_store_is_visible_to_the_holder() {
    let store = Arc::new(InMemoryStore::new());
    let guard = AgentGuard::external().shared_store(store.clone()).no_audit().build();
    let g = guard.clone();
    let worker = std::thread::spawn(move || g.execute(call("delete_file"), echo));
    let req = wait_for_pending(&guard, 1).remove(0);
    assert_eq!(store.pending().unwrap().len(), 1);
    store.resolve(&Resolution::approve(req.request_id().clone())).unwrap();
    assert!(worker.join().unwrap().is_ok());
    assert_eq!(
        store.get(req.request_id()).unwrap().unwrap().decision.state,
        agentguard::store::RequestState::Executed
    );
}

/// Polls `pending()` until `n` requests are parked (parking happens on another thread).
fn wait_for_pending(guard: &AgentGuard, n: usize) -> Vec<ApprovalRequest> {
    let start = std::time::Instant::now();
    loop {
        let p = guard.pending();
        if p.len() >= n {
            return p;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "requests never parked");
        std::thread::yield_now();
    }
}

#[test]
fn arguments_changed_after_approval_deny_with_params_changed() {
    // The mechanism #[gate] uses: the params are rebuilt from the live arguments after approval.
    let shared = Arc::new(Mutex::new(String::from("notes.txt")));
    let s = shared.clone();
    let guard = AgentGuard::callback(move |_| {
        // Someone changes the argument behind the approver's back, after it was shown.
        *s.lock().unwrap() = String::from("/etc/passwd");
        true
    })
    .no_audit()
    .build();
    let rebuild = || Ok(json!({"path": *shared.lock().unwrap()}));
    let call = ToolCall::new("delete_file", rebuild().unwrap());
    let denied = agentguard::__private::approve(
        agentguard::__private::Which::Named(Some(&guard)),
        call,
        agentguard::guard::Gating::Auto,
        Some(&rebuild),
    )
    .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ParamsChanged);
    assert!(denied.detail().unwrap().contains("changed"), "{denied}");
}

#[test]
fn unchanged_arguments_pass_the_recheck() {
    let guard = AgentGuard::callback(|_| true).no_audit().build();
    let rebuild = || Ok(json!({"path": "notes.txt"}));
    let approval = agentguard::__private::approve(
        agentguard::__private::Which::Named(Some(&guard)),
        ToolCall::new("delete_file", rebuild().unwrap()),
        agentguard::guard::Gating::Auto,
        Some(&rebuild),
    )
    .unwrap();
    assert!(approval.was_asked());
    assert_eq!(approval.params(), &json!({"path": "notes.txt"}));
    assert_eq!(approval.actor(), Some("callback"));
}

#[test]
fn seeded_secrets_never_appear_in_pending_output_or_the_audit() {
    let (_dir, log) = audit_path();
    let guard = AgentGuard::external()
        .timeout(Duration::from_millis(200))
        .audit_file(&log)
        .build();
    let g = guard.clone();
    let params = json!({"url": "https://api.example", "headers": {"Authorization": "Bearer sk-SEED-1"},
                        "body": {"password": "SEED-2", "items": [{"api_key": "SEED-3"}]}});
    let worker = std::thread::spawn(move || g.execute(ToolCall::new("send_request", params), echo));
    let pending = wait_for_pending(&guard, 1);
    let shown = serde_json::to_string(&pending).unwrap();
    assert!(shown.contains("https://api.example"));
    worker.join().unwrap().unwrap_err();
    let file = std::fs::read_to_string(&log).unwrap();
    for secret in ["SEED-1", "SEED-2", "SEED-3"] {
        assert!(!shown.contains(secret), "{secret} in pending(): {shown}");
        assert!(!file.contains(secret), "{secret} in the audit");
    }
}

#[test]
fn listed_tools_match_in_any_case_or_separator_style() {
    let guard = AgentGuard::callback(|_| false)
        .dangerous_tools(["loyalty_bonus"])
        .safe_tools(["ResetView"])
        .no_audit()
        .build();
    for spelling in ["loyalty_bonus", "loyaltyBonus", "Loyalty-Bonus", "LOYALTY.BONUS"] {
        assert_eq!(guard.risk_of(spelling), Some(Risk::ManuallyFlagged), "{spelling}");
    }
    assert_eq!(guard.risk_of("reset_view"), None);
    assert_eq!(guard.risk_of("reset-view"), None);
}

/// A store whose waiter sees its approval already claimed, as when a duplicated waiter or a retried worker got there
/// first.
#[derive(Debug)]
struct ClaimedElsewhere(InMemoryStore);

impl ApprovalStore for ClaimedElsewhere {
    fn insert(&self, r: &ApprovalRequest) -> Result<(), agentguard::store::StoreError> {
        self.0.insert(r)
    }
    fn resolve(&self, r: &Resolution) -> Result<ResolveOutcome, agentguard::store::StoreError> {
        self.0.resolve(r)
    }
    fn expire(
        &self,
        id: &agentguard::RequestId,
    ) -> Result<Option<agentguard::store::Decision>, agentguard::store::StoreError> {
        self.0.expire(id)
    }
    fn claim(&self, id: &agentguard::RequestId) -> Result<bool, agentguard::store::StoreError> {
        self.0.claim(id)
    }
    fn get(
        &self,
        id: &agentguard::RequestId,
    ) -> Result<Option<agentguard::store::StoredRequest>, agentguard::store::StoreError> {
        self.0.get(id)
    }
    fn pending(&self) -> Result<Vec<ApprovalRequest>, agentguard::store::StoreError> {
        self.0.pending()
    }
    fn wait<'a>(&'a self, id: &'a agentguard::RequestId) -> agentguard::store::WaitFuture<'a> {
        self.0.wait(id)
    }
    fn wait_blocking(
        &self,
        id: &agentguard::RequestId,
        until: std::time::Instant,
    ) -> Result<Option<agentguard::store::Decision>, agentguard::store::StoreError> {
        let decision = self.0.wait_blocking(id, until)?;
        // The other waiter claims first.
        assert!(self.0.claim(id)?);
        Ok(decision)
    }
}

#[test]
fn an_approval_claimed_by_another_waiter_is_not_run_twice() {
    let store = ClaimedElsewhere(InMemoryStore::new());
    let s = Arc::new(Mutex::new(None::<agentguard::RequestId>));
    let s2 = s.clone();
    let guard = AgentGuard::external()
        .store(store)
        .on_request(move |req| *s2.lock().unwrap() = Some(req.request_id().clone()))
        .no_audit()
        .build();
    let g = guard.clone();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let agent = std::thread::spawn(move || {
        g.execute(call("delete_file"), |_, _| {
            r.fetch_add(1, Ordering::SeqCst);
        })
    });
    let req = wait_for_pending(&guard, 1).remove(0);
    assert_eq!(guard.resolve(req.request_id(), true, None), ResolveOutcome::Resolved);
    let denied = agent.join().unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::AlreadyExecuted);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn oversized_names_and_context_are_refused_before_anything_runs_and_audited_clipped() {
    let (_dir, log) = audit_path();
    let guard = AgentGuard::callback(|_| true).audit_file(&log).build();
    let long_name = format!("read_{}", "x".repeat(300));
    let big = "y".repeat(ToolCall::MAX_TEXT_BYTES + 1);
    let cases = [
        ToolCall::new(long_name.clone(), json!({})),
        ToolCall::new("", json!({})),
        ToolCall::new("delete_file", json!({})).reason(big.clone()),
        ToolCall::new("read_file", json!({})).agent_id(big.clone()),
        ToolCall::new("read_file", json!({})).session_id(big.clone()),
    ];
    for call in cases {
        let denied = guard
            .execute(call, |_, _| -> () { panic!("must not run") })
            .unwrap_err();
        assert_eq!(denied.reason(), DenyReason::InvalidCall, "{denied}");
        assert!(denied.detail().unwrap().contains("at most") || denied.detail().unwrap().contains("empty"));
        assert!(denied.tool().len() <= ToolCall::MAX_NAME_CHARS + "…".len());
    }
    let lines = audit_lines(&log);
    assert_eq!(lines.len(), 5);
    for line in &lines {
        assert_eq!(line["reason"], "invalid_call");
        assert!(line["tool"].as_str().unwrap().len() <= ToolCall::MAX_NAME_CHARS + "…".len());
        assert!(line["agent_id"]
            .as_str()
            .is_none_or(|a| a.len() <= ToolCall::MAX_TEXT_BYTES + "…".len()));
    }
    // At the limits, calls go through.
    let at_limit =
        ToolCall::new("r".repeat(ToolCall::MAX_NAME_CHARS), json!({})).agent_id("a".repeat(ToolCall::MAX_TEXT_BYTES));
    assert_eq!(guard.execute(at_limit, |_, _| "ran").unwrap(), "ran");
}
