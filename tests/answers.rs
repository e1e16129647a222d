//! Richer answers in one process (the in-memory store): edit, respond, standing grants and quorum, end to end through
//! a real external guard, with the audit each writes.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentguard::answer::{AnswerKind, GrantScope, GrantSpec};
use agentguard::guard::Gating;
use agentguard::policy::Policy;
use agentguard::{AgentGuard, ApprovalRequest, DenyReason, Resolution, ResolveOutcome, ToolCall};
use common::{audit_lines, audit_path};
use serde_json::{json, Value};

fn wait_for_pending(guard: &AgentGuard, n: usize) -> Vec<ApprovalRequest> {
    let start = Instant::now();
    loop {
        let p = guard.pending();
        if p.len() >= n {
            return p;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "requests never parked");
        std::thread::yield_now();
    }
}

/// The thread running a parked call, and the params its executor got (if it ran).
type Parked = (
    std::thread::JoinHandle<Result<String, agentguard::ActionDenied>>,
    Arc<Mutex<Option<Value>>>,
);

/// Runs `call` on another thread; the executor records the params it got.
fn park(guard: &AgentGuard, call: ToolCall) -> Parked {
    let got = Arc::new(Mutex::new(None));
    let (g, seen) = (guard.clone(), got.clone());
    let worker = std::thread::spawn(move || {
        g.execute(call, move |_, params| {
            *seen.lock().unwrap() = Some(params.clone());
            format!("sent {params}")
        })
    });
    (worker, got)
}

fn email(to: &str) -> ToolCall {
    ToolCall::new(
        "send_email",
        json!({"to": to, "subject": "refund", "api_key": "sk-live-123"}),
    )
    .agent_id("support-bot")
    .session_id("ticket-1")
}

#[test]
fn an_edit_runs_the_edited_params_and_the_audit_keeps_both_digests_and_the_editor() {
    let (_dir, log) = audit_path();
    let guard = AgentGuard::external().audit_file(&log).build();
    let (worker, got) = park(&guard, email("mallory@evil.test"));
    let req = wait_for_pending(&guard, 1).remove(0);
    // The approver saw the key masked and left it so: the real key still goes out.
    let mut edited = req.params().clone();
    assert_eq!(edited["api_key"], "[REDACTED]");
    edited["to"] = json!("alice@example.com");
    let answer = Resolution::edit(req.request_id().clone(), edited).actor("carol");
    assert_eq!(guard.resolve_with(&answer), ResolveOutcome::Resolved);
    let out = worker.join().unwrap().unwrap();
    let ran = got.lock().unwrap().clone().unwrap();
    assert_eq!(ran["to"], "alice@example.com");
    assert_eq!(ran["api_key"], "sk-live-123", "a masked secret keeps its real value");
    assert!(out.contains("alice@example.com"));

    let lines = audit_lines(&log);
    let line = lines
        .iter()
        .find(|l| l["decision"] == "edited")
        .expect("an edited line");
    assert_eq!(line["actor"], "carol");
    assert_eq!(line["params_digest"], req.params_digest().as_str());
    let new_digest = line["edit"]["params_digest"].as_str().unwrap();
    assert_ne!(new_digest, req.params_digest().as_str());
    assert_eq!(line["edit"]["params"]["to"], "alice@example.com");
    assert_eq!(line["edit"]["params"]["api_key"], "[REDACTED]");
    assert!(!std::fs::read_to_string(&log).unwrap().contains("sk-live-123"));
}

#[test]
fn execute_detailed_says_the_call_ran_with_edited_arguments() {
    let guard = AgentGuard::external().no_audit().build();
    let g = guard.clone();
    let worker =
        std::thread::spawn(move || g.execute_detailed(email("x@evil.test"), Gating::Auto, |_, p| p["to"].clone()));
    let req = wait_for_pending(&guard, 1).remove(0);
    let answer = Resolution::edit(req.request_id().clone(), json!({"to": "y@example.com"})).actor("carol");
    assert_eq!(guard.resolve_with(&answer), ResolveOutcome::Resolved);
    let ran = worker.join().unwrap().unwrap();
    assert_eq!(ran.value, "y@example.com");
    let edit = ran.edited.expect("the edit is reported");
    assert_eq!(edit.by(), Some("carol"));
    assert_eq!(edit.original_digest(), req.params_digest());
    assert!(
        edit.notice().contains("carol") && edit.notice().contains("y@example.com"),
        "{}",
        edit.notice()
    );
}

#[test]
fn an_edit_the_policy_denies_never_runs() {
    let policy = Policy::from_toml(
        r#"
        [[rule]]
        name = "no refunds over 1000"
        tools = ["refund"]
        when = { amount = { gt = 1000 } }
        action = "deny"
        message = "refunds over 1000 need finance"

        [[rule]]
        name = "refunds ask"
        tools = ["refund"]
        action = "ask"
        "#,
    )
    .unwrap();
    let guard = AgentGuard::external().policy(policy).no_audit().build();
    let (worker, got) = park(&guard, ToolCall::new("refund", json!({"amount": 50})));
    let req = wait_for_pending(&guard, 1).remove(0);
    let answer = Resolution::edit(req.request_id().clone(), json!({"amount": 5000})).actor("carol");
    assert_eq!(guard.resolve_with(&answer), ResolveOutcome::Resolved);
    let denied = worker.join().unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::PolicyDenied);
    assert!(
        denied.detail().unwrap().contains("refunds over 1000 need finance"),
        "{denied}"
    );
    assert!(got.lock().unwrap().is_none(), "the executor never ran");
    let stored = guard.store().get(req.request_id()).unwrap().unwrap();
    assert_eq!(stored.decision.state, agentguard::store::RequestState::Expired);
}

#[test]
fn an_edit_that_is_not_an_object_or_of_a_tool_refusing_edits_is_not_allowed_here() {
    let guard = AgentGuard::external().no_audit().build();
    let (worker, _) = park(
        &guard,
        ToolCall::new("delete_file", json!({"path": "a"})).refuse_edits("argument `path` is a `&str`"),
    );
    let req = wait_for_pending(&guard, 1).remove(0);
    assert_eq!(req.edit_refused(), Some("argument `path` is a `&str`"));
    let id = req.request_id().clone();
    assert_eq!(
        guard.resolve_with(&Resolution::edit(id.clone(), json!({"path": "b"}))),
        ResolveOutcome::NotAllowedHere
    );
    assert_eq!(guard.pending().len(), 1, "nothing was decided");
    assert_eq!(guard.resolve_with(&Resolution::deny(id)), ResolveOutcome::Resolved);
    assert!(worker.join().unwrap().is_err());

    let (worker, _) = park(&guard, ToolCall::new("delete_file", json!({"path": "a"})));
    let id = wait_for_pending(&guard, 1).remove(0).request_id().clone();
    assert_eq!(
        guard.resolve_with(&Resolution::edit(id.clone(), json!(["b"]))),
        ResolveOutcome::NotAllowedHere
    );
    assert_eq!(guard.resolve_with(&Resolution::approve(id)), ResolveOutcome::Resolved);
    assert!(worker.join().unwrap().is_ok());
}

#[test]
fn an_edit_the_tools_reader_refuses_is_edit_rejected_and_audited() {
    fn only_numbers(v: &Value) -> Result<(), String> {
        match v.get("id") {
            Some(Value::Number(_)) => Ok(()),
            _ => Err("`id` must be a number".to_owned()),
        }
    }
    let (_dir, log) = audit_path();
    let guard = AgentGuard::external().audit_file(&log).build();
    let (worker, got) = park(
        &guard,
        ToolCall::new("delete_customer", json!({"id": 7})).check_edits(only_numbers),
    );
    let id = wait_for_pending(&guard, 1).remove(0).request_id().clone();
    let answer = Resolution::edit(id, json!({"id": "seven"})).actor("carol");
    assert_eq!(guard.resolve_with(&answer), ResolveOutcome::Resolved);
    let denied = worker.join().unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::EditRejected);
    assert!(denied.detail().unwrap().contains("`id` must be a number"), "{denied}");
    assert!(got.lock().unwrap().is_none());
    let lines = audit_lines(&log);
    let last = lines.last().unwrap();
    assert_eq!(last["decision"], "blocked");
    assert_eq!(last["reason"], "edit_rejected");
    assert_eq!(last["actor"], "carol");
}

#[test]
fn a_response_is_the_agents_result_not_a_denial_and_the_tool_never_runs() {
    let (_dir, log) = audit_path();
    let guard = AgentGuard::external().audit_file(&log).build();
    let (worker, got) = park(&guard, ToolCall::new("refund_order", json!({"order": 42})));
    let id = wait_for_pending(&guard, 1).remove(0).request_id().clone();
    let answer = Resolution::respond(id, "Order 42 was already refunded yesterday.").actor("carol");
    assert_eq!(guard.resolve_with(&answer), ResolveOutcome::Resolved);
    let not_run = worker.join().unwrap().unwrap_err();
    assert!(got.lock().unwrap().is_none(), "the tool never ran");
    assert_eq!(not_run.reason(), DenyReason::Responded);
    assert!(!not_run.is_denial());
    assert_eq!(not_run.response(), Some("Order 42 was already refunded yesterday."));
    assert_eq!(not_run.to_string(), "Order 42 was already refunded yesterday.");
    let wire = serde_json::to_value(&not_run).unwrap();
    assert_eq!(wire["denied"], false);
    assert_eq!(wire["response"], "Order 42 was already refunded yesterday.");
    let last = audit_lines(&log).pop().unwrap();
    assert_eq!(last["decision"], "responded");
    assert_eq!(last["actor"], "carol");
    assert_eq!(last["detail"], "Order 42 was already refunded yesterday.");
}

#[test]
fn an_empty_response_is_not_allowed_here() {
    let guard = AgentGuard::external().no_audit().build();
    let (worker, _) = park(&guard, ToolCall::new("refund_order", json!({"order": 42})));
    let id = wait_for_pending(&guard, 1).remove(0).request_id().clone();
    assert_eq!(
        guard.resolve_with(&Resolution::respond(id.clone(), "  ")),
        ResolveOutcome::NotAllowedHere
    );
    guard.resolve_with(&Resolution::deny(id));
    assert!(worker.join().unwrap().is_err());
}

fn write(path: &str, session: &str) -> ToolCall {
    ToolCall::new("write_file", json!({"path": path, "text": "q3"}))
        .agent_id("report-bot")
        .session_id(session)
}

/// Runs `call` expecting it to run without asking (a grant covers it); fails if it parks.
fn runs_unasked(guard: &AgentGuard, call: ToolCall) -> bool {
    let ran = Arc::new(AtomicUsize::new(0));
    let (g, r) = (guard.clone(), ran.clone());
    let worker = std::thread::spawn(move || g.execute(call, move |_, _| r.fetch_add(1, Ordering::SeqCst)));
    let start = Instant::now();
    loop {
        if worker.is_finished() {
            return worker.join().unwrap().is_ok() && ran.load(Ordering::SeqCst) == 1;
        }
        if let Some(req) = guard.pending().pop() {
            guard.resolve_with(&Resolution::deny(req.request_id().clone()));
            let _ = worker.join();
            return false;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::yield_now();
    }
}

#[test]
fn a_session_grant_lets_that_sessions_calls_run_for_its_uses_and_audits_each_with_its_id() {
    let (_dir, log) = audit_path();
    let guard = AgentGuard::external().audit_file(&log).build();
    let (worker, _) = park(&guard, write("reports/q3.csv", "s1"));
    let id = wait_for_pending(&guard, 1).remove(0).request_id().clone();
    let answer = Resolution::approve(id)
        .actor("carol")
        .remember(GrantSpec::new(GrantScope::Session).uses(2));
    assert_eq!(guard.resolve_with(&answer), ResolveOutcome::Resolved);
    assert!(worker.join().unwrap().is_ok());
    let grants = guard.store().grants().unwrap();
    assert_eq!(grants.len(), 1);
    let grant = &grants[0];
    assert_eq!((grant.tool.as_str(), grant.scope), ("write_file", GrantScope::Session));
    assert_eq!(grant.created_by.as_deref(), Some("carol"));

    assert!(
        !runs_unasked(&guard, write("reports/q4.csv", "s2")),
        "another session is asked"
    );
    assert!(runs_unasked(&guard, write("reports/q4.csv", "s1")));
    assert!(runs_unasked(&guard, write("reports/q5.csv", "s1")));
    assert!(
        !runs_unasked(&guard, write("reports/q6.csv", "s1")),
        "two uses, then asked again"
    );

    let lines = audit_lines(&log);
    let made = lines
        .iter()
        .find(|l| l["decision"] == "approved")
        .expect("the approval's line");
    assert_eq!(made["grant"]["id"], grant.id.as_str());
    assert_eq!(made["grant"]["made"], true);
    let used: Vec<&Value> = lines.iter().filter(|l| l["grant"]["by"] == "carol").collect();
    assert_eq!(used.len(), 2, "each call a grant let through is audited with it");
    for line in used {
        assert_eq!(line["decision"], "allowed");
        assert_eq!(line["grant"]["id"], grant.id.as_str());
    }
    assert_eq!(guard.store().grants().unwrap()[0].used, 2);
}

#[test]
fn a_grant_narrowed_by_a_condition_covers_only_the_calls_that_pass_it() {
    let guard = AgentGuard::external().no_audit().build();
    let (worker, _) = park(&guard, write("reports/q3.csv", "s1"));
    let id = wait_for_pending(&guard, 1).remove(0).request_id().clone();
    let spec = GrantSpec::new(GrantScope::Agent).when(r#"path = { under = "reports" }"#);
    assert_eq!(
        guard.resolve_with(&Resolution::approve(id).actor("carol").remember(spec)),
        ResolveOutcome::Resolved
    );
    assert!(worker.join().unwrap().is_ok());
    assert!(runs_unasked(&guard, write("reports/q4.csv", "other-session")));
    assert!(!runs_unasked(&guard, write("reports/../etc/passwd", "s1")));
    assert!(!runs_unasked(&guard, write("/etc/passwd", "s1")));
    let mut other_agent = write("reports/q5.csv", "s1");
    other_agent = other_agent.agent_id("another-bot");
    assert!(
        !runs_unasked(&guard, other_agent),
        "scope agent: another agent is asked"
    );
}

#[test]
fn a_grant_never_beats_a_policy_deny_and_a_rule_can_forbid_grants() {
    let policy = Policy::from_toml(
        r#"
        [[rule]]
        name = "never outside the sandbox"
        tools = ["write_file"]
        when = { path = { not_under = "reports" } }
        action = "deny"

        [[rule]]
        name = "payments always ask"
        tools = ["pay"]
        action = "ask"
        remember = false
        "#,
    )
    .unwrap();
    let guard = AgentGuard::external().policy(policy).no_audit().build();
    let (worker, _) = park(&guard, write("reports/q3.csv", "s1"));
    let id = wait_for_pending(&guard, 1).remove(0).request_id().clone();
    let everyone = GrantSpec::new(GrantScope::Everyone);
    assert_eq!(
        guard.resolve_with(&Resolution::approve(id).actor("carol").remember(everyone.clone())),
        ResolveOutcome::Resolved
    );
    assert!(worker.join().unwrap().is_ok());
    let denied = guard.execute(write("/etc/passwd", "s1"), |_, _| ()).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::PolicyDenied);

    let (worker, _) = park(&guard, ToolCall::new("pay", json!({"amount": 5})));
    let req = wait_for_pending(&guard, 1).remove(0);
    assert!(req.remember_refused().unwrap().contains("payments always ask"));
    let id = req.request_id().clone();
    assert_eq!(
        guard.resolve_with(&Resolution::approve(id.clone()).remember(everyone)),
        ResolveOutcome::NotAllowedHere
    );
    assert_eq!(guard.resolve_with(&Resolution::approve(id)), ResolveOutcome::Resolved);
    assert!(worker.join().unwrap().is_ok());
}

#[test]
fn a_revoked_grant_lets_nothing_through_and_reports_its_final_use_count() {
    let guard = AgentGuard::external().no_audit().build();
    let (worker, _) = park(&guard, write("reports/q3.csv", "s1"));
    let id = wait_for_pending(&guard, 1).remove(0).request_id().clone();
    guard.resolve_with(
        &Resolution::approve(id)
            .actor("carol")
            .remember(GrantSpec::new(GrantScope::Everyone)),
    );
    assert!(worker.join().unwrap().is_ok());
    assert!(runs_unasked(&guard, write("reports/q4.csv", "s9")));
    let grant_id = guard.store().grants().unwrap()[0].id.clone();
    let revoked = guard.store().revoke_grant(&grant_id, Some("dave")).unwrap().unwrap();
    assert_eq!(revoked.used, 1);
    assert_eq!(revoked.revoked_by.as_deref(), Some("dave"));
    assert!(!runs_unasked(&guard, write("reports/q5.csv", "s9")));
    assert!(guard.store().revoke_grant("no-such-grant", None).unwrap().is_none());
}

#[test]
fn a_grant_spec_is_checked_before_it_is_sent() {
    assert!(GrantSpec::new(GrantScope::Session).uses(0).check().is_err());
    assert!(GrantSpec::new(GrantScope::Session)
        .ttl(Duration::from_secs(90 * 86_400))
        .check()
        .is_err());
    let err = GrantSpec::new(GrantScope::Session)
        .when("amount = { gt = \"100\" }")
        .check()
        .unwrap_err();
    assert!(err.contains("gt = 100"), "{err}");
    assert_eq!(GrantScope::parse("call"), Ok(None));
    assert!(GrantScope::parse("forever").unwrap_err().contains("session"));
    let lasting = GrantSpec::new(GrantScope::Agent);
    assert_eq!(lasting.effective_ttl(), Some(GrantSpec::DEFAULT_TTL), "never unbounded");
}

fn quorum_policy() -> Policy {
    Policy::from_toml(
        r#"
        [groups]
        finance = ["alice", "bob", "carol"]

        [principals]
        "billing-bot" = ["dave"]

        [[rule]]
        name = "large payments need two of finance"
        tools = ["pay"]
        when = { amount = { gt = 1000 } }
        action = "ask"
        approvers = ["@finance", "dave"]
        quorum = 2
        "#,
    )
    .unwrap()
}

#[test]
fn a_quorum_counts_distinct_approvers_and_runs_once_when_reached() {
    let (_dir, log) = audit_path();
    let guard = AgentGuard::external().policy(quorum_policy()).audit_file(&log).build();
    let ran = Arc::new(AtomicUsize::new(0));
    let (g, r) = (guard.clone(), ran.clone());
    let worker = std::thread::spawn(move || {
        g.execute(
            ToolCall::new("pay", json!({"amount": 5000})).agent_id("billing-bot"),
            move |_, _| r.fetch_add(1, Ordering::SeqCst),
        )
    });
    let req = wait_for_pending(&guard, 1).remove(0);
    let quorum = req.quorum().expect("the rule's quorum");
    assert_eq!(quorum.needed, 2);
    assert_eq!(req.excluded(), ["billing-bot", "dave"]);
    let id = req.request_id().clone();
    let vote = |actor: &str| guard.resolve_with(&Resolution::approve(id.clone()).actor(actor));
    assert_eq!(
        vote("dave"),
        ResolveOutcome::OwnRequest,
        "mapped to the requesting agent"
    );
    assert_eq!(vote("mallory"), ResolveOutcome::NotAnApprover);
    assert_eq!(
        guard.resolve_with(&Resolution::approve(id.clone())),
        ResolveOutcome::NotAnApprover,
        "a quorum counts named people"
    );
    assert_eq!(vote("alice"), ResolveOutcome::VoteRecorded);
    assert_eq!(vote("alice"), ResolveOutcome::AlreadyVoted);
    let stored = guard.store().get(&id).unwrap().unwrap();
    let progress = quorum.progress(&stored.decision.votes, req.excluded());
    assert_eq!(progress.to_string(), "1 of 2 approvals, waiting for bob or carol");
    assert_eq!(
        guard.resolve_with(&Resolution::edit(id.clone(), json!({"amount": 1})).actor("bob")),
        ResolveOutcome::NotAllowedHere,
        "one person cannot edit a quorum request"
    );
    assert_eq!(
        guard.resolve_with(
            &Resolution::approve(id.clone())
                .actor("bob")
                .remember(GrantSpec::new(GrantScope::Everyone))
        ),
        ResolveOutcome::NotAllowedHere,
        "nor make a grant from it"
    );
    assert!(!worker.is_finished());
    assert_eq!(vote("bob"), ResolveOutcome::Resolved);
    assert!(worker.join().unwrap().is_ok());
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(vote("carol"), ResolveOutcome::AlreadyResolved);

    let lines = audit_lines(&log);
    let votes: Vec<&Value> = lines.iter().filter(|l| l["event"] == "vote").collect();
    assert_eq!(votes.len(), 2, "each vote is audited");
    assert_eq!(
        (votes[0]["actor"].as_str(), votes[1]["actor"].as_str()),
        (Some("alice"), Some("bob"))
    );
    let approved = lines.iter().find(|l| l["decision"] == "approved").unwrap();
    assert_eq!(approved["actor"], "alice, bob");
}

#[test]
fn one_denial_ends_a_quorum_request() {
    let guard = AgentGuard::external().policy(quorum_policy()).no_audit().build();
    let (worker, got) = park(&guard, ToolCall::new("pay", json!({"amount": 5000})));
    let id = wait_for_pending(&guard, 1).remove(0).request_id().clone();
    assert_eq!(
        guard.resolve_with(&Resolution::approve(id.clone()).actor("alice")),
        ResolveOutcome::VoteRecorded
    );
    assert_eq!(
        guard.resolve_with(&Resolution::deny(id).actor("carol").note("not budgeted")),
        ResolveOutcome::Resolved
    );
    let denied = worker.join().unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::UserDenied);
    assert_eq!(denied.detail(), Some("not budgeted"));
    assert!(got.lock().unwrap().is_none());
}

#[test]
fn the_requesting_agent_never_answers_its_own_request() {
    let guard = AgentGuard::external().no_audit().build();
    let (worker, _) = park(
        &guard,
        ToolCall::new("delete_file", json!({"path": "a"})).agent_id("alice"),
    );
    let id = wait_for_pending(&guard, 1).remove(0).request_id().clone();
    assert_eq!(
        guard.resolve_with(&Resolution::approve(id.clone()).actor("alice")),
        ResolveOutcome::OwnRequest
    );
    assert_eq!(
        guard.resolve_with(&Resolution::approve(id).actor("bob")),
        ResolveOutcome::Resolved
    );
    assert!(worker.join().unwrap().is_ok());
}

#[test]
fn a_quorum_rule_under_a_single_approver_is_refused_not_approved_by_one() {
    let guard = AgentGuard::callback(|_| true)
        .policy(quorum_policy())
        .no_audit()
        .build();
    let denied = guard
        .execute(ToolCall::new("pay", json!({"amount": 5000})), |_, _| ())
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApproverFailed);
    assert!(denied.detail().unwrap().contains("quorum"), "{denied}");
    // Below the rule's threshold the callback decides as usual.
    assert!(guard
        .execute(ToolCall::new("pay", json!({"amount": 5})), |_, _| ())
        .is_ok());
}

#[test]
fn quorum_policy_mistakes_are_errors_with_what_to_write() {
    let err = Policy::from_toml(
        r#"
        [[rule]]
        name = "x"
        tools = ["pay"]
        action = "ask"
        approvers = ["alice"]
        quorum = 2
        "#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("quorum = 2 but only 1 approver"), "{err}");
    let err = Policy::from_toml(
        r#"
        [[rule]]
        name = "x"
        tools = ["pay"]
        action = "allow"
        approvers = ["@ops"]
        "#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("need action = \"ask\""), "{err}");
    assert!(err.contains("no group \"ops\""), "{err}");
    let err = Policy::from_toml(
        r#"
        [[rule]]
        name = "x"
        action = "ask"
        remember = "no"
        quorum = 0
        "#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("remember is true or false"), "{err}");
    assert!(err.contains("quorum is a whole number"), "{err}");
}

#[test]
fn answer_kinds_and_outcomes_have_their_documented_names() {
    assert_eq!(serde_json::to_value(AnswerKind::Respond).unwrap(), "respond");
    assert_eq!(ResolveOutcome::VoteRecorded.as_str(), "VOTE_RECORDED");
    assert!(ResolveOutcome::NotAllowedHere
        .explain(AnswerKind::Edit)
        .contains("not allowed"));
    assert!(ResolveOutcome::Resolved
        .explain(AnswerKind::Respond)
        .contains("does not run"));
}

#[test]
fn a_call_a_grant_covers_does_not_run_when_its_audit_line_cannot_be_written() {
    let store: Arc<dyn agentguard::store::ApprovalStore> = Arc::new(agentguard::store::InMemoryStore::new());
    let approving = AgentGuard::external().shared_store(store.clone()).no_audit().build();
    let (worker, _) = park(&approving, write("reports/q3.csv", "s1"));
    let id = wait_for_pending(&approving, 1).remove(0).request_id().clone();
    approving.resolve_with(
        &Resolution::approve(id)
            .actor("carol")
            .remember(GrantSpec::new(GrantScope::Everyone)),
    );
    assert!(worker.join().unwrap().is_ok());

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    std::fs::create_dir(&log).unwrap(); // every write fails
    let broken = AgentGuard::external().shared_store(store).audit_file(&log).build();
    let ran = AtomicUsize::new(0);
    let denied = broken
        .execute(write("reports/q4.csv", "s1"), |_, _| ran.fetch_add(1, Ordering::SeqCst))
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::AuditUnavailable);
    assert!(denied.detail().unwrap().contains("standing grant"), "{denied}");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}
