//! Policies in a real guard: every entry point (`execute`, `aexecute`, `#[gate]`, `dispatch`) asks the policy first;
//! deny beats ask beats allow; declared tools are relaxed only by a rule naming them; shadow mode only records; the
//! file reloads; every audit line says what decided.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use agentguard::audit::JsonlAudit;
use agentguard::policy::{Action, Policy};
use agentguard::{gate, AgentGuard, Approval, ApprovalRequest, DenyReason, Tool, ToolCall};
use serde_json::{json, Value};

const POLICY: &str = r#"
base_dir = "/srv/app"

[[rule]]
name = "refunds over 100 EUR need a person"
tools = ["refund_*"]
when = { amount_eur = { gt = 100 } }
action = "ask"

[[rule]]
name = "small refunds run"
tools = ["refund_*"]
action = "allow"

[[rule]]
name = "writes inside the sandbox"
tools = ["write_file"]
when = { path = { under = "./sandbox" } }
action = "allow"

[[rule]]
name = "nothing outside the app"
tools = ["*"]
when = { path = { exists = true, not_under = "/srv/app" } }
action = "deny"
message = "paths outside /srv/app are off limits"

[[rule]]
name = "invoices are checked"
tools = ["view_invoice"]
action = "ask"
"#;

/// A callback guard that records every request it is asked about and approves them all.
fn guard_with(policy: &str, audit: Option<&std::path::Path>) -> (AgentGuard, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let builder = AgentGuard::callback(move |req: &ApprovalRequest| {
        seen.lock().unwrap().push(req.tool().to_owned());
        true
    })
    .policy(Policy::from_toml(policy).unwrap());
    let guard = match audit {
        Some(path) => builder.audit_file(path).build(),
        None => builder.no_audit().build(),
    };
    (guard, asked)
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn an_allow_rule_runs_a_dangerous_name_without_asking() {
    let (guard, asked) = guard_with(POLICY, None);
    let out = guard.execute(
        ToolCall::new("write_file", json!({"path": "sandbox/notes.txt", "content": "hi"})),
        |_, params| params,
    );
    assert_eq!(out.unwrap()["path"], "sandbox/notes.txt");
    assert!(asked.lock().unwrap().is_empty(), "nobody was asked");
    // The same tool outside the sandbox but inside the app falls to the default (classify): asked.
    guard
        .execute(ToolCall::new("write_file", json!({"path": "/srv/app/x"})), |_, _| ())
        .unwrap();
    assert_eq!(*asked.lock().unwrap(), ["write_file"]);
}

#[test]
fn a_deny_rule_refuses_with_its_message_and_never_runs_the_executor() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let (guard, asked) = guard_with(POLICY, Some(&log));
    let ran = AtomicUsize::new(0);
    let denied = guard
        .execute(
            ToolCall::new("write_file", json!({"path": "sandbox/../../../etc/passwd"})),
            |_, _| ran.fetch_add(1, Ordering::SeqCst),
        )
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::PolicyDenied);
    assert_eq!(denied.detail(), Some("paths outside /srv/app are off limits"));
    assert_eq!(
        denied.to_string(),
        "Blocked by AgentGuard (policy_denied: paths outside /srv/app are off limits)"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(asked.lock().unwrap().is_empty());
    let line = &lines(&log)[0];
    assert_eq!(line["decision"], "blocked");
    assert_eq!(line["reason"], "policy_denied");
    assert_eq!(line["policy"]["rule"], "nothing outside the app");
    assert_eq!(line["policy"]["action"], "deny");
    assert_eq!(line["policy"]["version"], guard.policy().unwrap().version());
    assert_eq!(line["params"]["path"], "sandbox/../../../etc/passwd");
    assert_eq!(line["params_digest"].as_str().map(str::len), Some(64));
}

#[test]
fn an_ask_rule_asks_about_a_safe_name_and_the_audit_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let (guard, asked) = guard_with(POLICY, Some(&log));
    assert_eq!(agentguard::classify("view_invoice"), None, "a safe name by itself");
    guard
        .execute(ToolCall::new("view_invoice", json!({"q": 3})), |_, _| ())
        .unwrap();
    guard
        .execute(ToolCall::new("refund_order", json!({"amount_eur": 40})), |_, _| ())
        .unwrap();
    guard
        .execute(ToolCall::new("refund_order", json!({"amount_eur": 400})), |_, _| ())
        .unwrap();
    guard
        .execute(ToolCall::new("read_customer", json!({"id": 1})), |_, _| ())
        .unwrap();
    assert_eq!(*asked.lock().unwrap(), ["view_invoice", "refund_order"]);
    drop(guard); // a safe call's line rides the sink's next batch; dropping the guard writes it
    let lines = lines(&log);
    let stamp = |i: usize| {
        (
            lines[i]["decision"].clone(),
            lines[i]["policy"]["rule"].clone(),
            lines[i]["policy"]["action"].clone(),
        )
    };
    assert_eq!(
        stamp(0),
        (json!("approved"), json!("invoices are checked"), json!("ask"))
    );
    assert_eq!(lines[0]["risk"], "MANUALLY FLAGGED - always requires approval");
    assert_eq!(stamp(1), (json!("allowed"), json!("small refunds run"), json!("allow")));
    assert_eq!(
        stamp(2),
        (
            json!("approved"),
            json!("refunds over 100 EUR need a person"),
            json!("ask")
        )
    );
    assert_eq!(stamp(3), (json!("allowed"), json!("default"), json!("allow")));
}

#[test]
fn defaults_ask_allow_and_deny_cover_what_no_rule_matches() {
    let rule = "[[rule]]\nname = \"reads\"\ntools = [\"read_*\"]\naction = \"allow\"\n";
    let (ask, asked) = guard_with(&format!("default = \"ask\"\n{rule}"), None);
    ask.execute(ToolCall::new("list_things", json!({})), |_, _| ()).unwrap();
    ask.execute(ToolCall::new("read_thing", json!({})), |_, _| ()).unwrap();
    assert_eq!(*asked.lock().unwrap(), ["list_things"]);

    let (allow, asked) = guard_with(&format!("default = \"allow\"\n{rule}"), None);
    allow
        .execute(ToolCall::new("delete_thing", json!({})), |_, _| ())
        .unwrap();
    assert!(
        asked.lock().unwrap().is_empty(),
        "default allow runs a dangerous name unasked"
    );

    let (deny, _) = guard_with(&format!("default = \"deny\"\n{rule}"), None);
    let denied = deny
        .execute(ToolCall::new("list_things", json!({})), |_, _| ())
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::PolicyDenied);
    assert!(denied.detail().unwrap().contains("default is deny"));
    deny.execute(ToolCall::new("read_thing", json!({})), |_, _| ()).unwrap();
}

#[test]
fn listed_dangerous_tools_and_declared_ones_need_a_rule_naming_them() {
    let policy = "default = \"allow\"\n[[rule]]\nname = \"everything\"\ntools = [\"*\"]\naction = \"allow\"\n";
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let guard = AgentGuard::callback(move |req: &ApprovalRequest| {
        seen.lock().unwrap().push(req.tool().to_owned());
        true
    })
    .dangerous_tools(["loyalty_bonus"])
    .policy(Policy::from_toml(policy).unwrap())
    .no_audit()
    .build();
    guard
        .execute(ToolCall::new("loyalty_bonus", json!({})), |_, _| ())
        .unwrap();
    guard
        .execute_gated(
            ToolCall::new("wire_money", json!({})),
            agentguard::guard::Gating::Always(agentguard::Risk::ExternalSend),
            |_, _| (),
        )
        .unwrap();
    assert_eq!(*asked.lock().unwrap(), ["loyalty_bonus", "wire_money"]);

    let naming = "[[rule]]\nname = \"bonus runs\"\ntools = [\"loyalty_bonus\", \"wire_money\"]\naction = \"allow\"\n";
    asked.lock().unwrap().clear();
    let seen = asked.clone();
    let guard = AgentGuard::callback(move |req: &ApprovalRequest| {
        seen.lock().unwrap().push(req.tool().to_owned());
        true
    })
    .dangerous_tools(["loyalty_bonus"])
    .policy(Policy::from_toml(naming).unwrap())
    .no_audit()
    .build();
    guard
        .execute(ToolCall::new("loyalty_bonus", json!({})), |_, _| ())
        .unwrap();
    guard
        .execute_gated(
            ToolCall::new("wire_money", json!({})),
            agentguard::guard::Gating::Always(agentguard::Risk::ExternalSend),
            |_, _| (),
        )
        .unwrap();
    assert!(asked.lock().unwrap().is_empty());
}

#[test]
fn shadow_mode_records_what_it_would_do_and_the_name_rules_decide() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let (guard, asked) = guard_with(&format!("mode = \"shadow\"\n{POLICY}"), Some(&log));
    // The policy would deny this; in shadow mode the name rules ask, and the approver says yes.
    let ran = guard.execute(ToolCall::new("write_file", json!({"path": "/etc/passwd"})), |_, _| {
        "ran"
    });
    assert_eq!(ran.unwrap(), "ran");
    // The policy would allow this without asking; the name rules ask.
    guard
        .execute(ToolCall::new("write_file", json!({"path": "sandbox/a"})), |_, _| ())
        .unwrap();
    // The policy would ask; the name rules find the name safe.
    guard
        .execute(ToolCall::new("view_invoice", json!({})), |_, _| ())
        .unwrap();
    assert_eq!(*asked.lock().unwrap(), ["write_file", "write_file"]);
    drop(guard); // a safe call's line rides the sink's next batch; dropping the guard writes it
    let lines = lines(&log);
    let actions: Vec<&str> = lines.iter().map(|l| l["policy"]["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["would_deny", "would_allow", "would_ask"]);
    assert_eq!(lines[0]["policy"]["rule"], "nothing outside the app");
}

// ---- #[gate] ----

static GATE_ASKED: AtomicUsize = AtomicUsize::new(0);

static NAMED: LazyLock<AgentGuard> = LazyLock::new(|| {
    AgentGuard::callback(|_| {
        GATE_ASKED.fetch_add(1, Ordering::SeqCst);
        false
    })
    .policy(
        Policy::from_toml(
            "[[rule]]\nname = \"small archives\"\ntools = [\"archive_logs\"]\nwhen = { days = { le = 7 } }\naction = \"allow\"\n\
             [[rule]]\nname = \"everything else\"\ntools = [\"*\"]\naction = \"allow\"\n",
        )
        .unwrap(),
    )
    .no_audit()
    .build()
});

/// Archives logs (pretend); declared to always ask.
#[gate(guard = NAMED)]
fn archive_logs(days: u32) -> String {
    format!("archived {days} days")
}

/// Declared to always ask; no rule names it.
#[gate(guard = NAMED)]
fn rotate_keys(count: u32) -> u32 {
    count
}

#[test]
fn a_gated_function_runs_unasked_only_under_a_rule_naming_it() {
    let before = GATE_ASKED.load(Ordering::SeqCst);
    assert_eq!(archive_logs(3).unwrap(), "archived 3 days");
    assert_eq!(
        GATE_ASKED.load(Ordering::SeqCst),
        before,
        "not asked: the rule names it"
    );
    // Over 7 days the naming rule does not match; the `*` rule cannot relax a declared tool: asked, and denied.
    assert_eq!(archive_logs(30).unwrap_err().reason(), DenyReason::UserDenied);
    assert_eq!(rotate_keys(2).unwrap_err().reason(), DenyReason::UserDenied);
    assert_eq!(GATE_ASKED.load(Ordering::SeqCst), before + 2);
}

#[test]
fn a_call_whose_arguments_change_after_the_policy_judged_them_does_not_run() {
    let guard = AgentGuard::callback(|_| false)
        .policy(Policy::from_toml("[[rule]]\nname = \"r\"\ntools = [\"t\"]\naction = \"allow\"\n").unwrap())
        .no_audit()
        .build();
    let call = ToolCall::new("t", json!({"n": 1}));
    let same = || Ok(json!({"n": 1}));
    let changed = || Ok(json!({"n": 2}));
    // What `#[gate]`'s expansion calls (the only way to hand the guard a recheck).
    use agentguard::__private::{approve, Which};
    let ok = approve(
        Which::Named(Some(&guard)),
        call.clone(),
        agentguard::guard::Gating::Auto,
        Some(&same),
    );
    assert!(ok.is_ok());
    let refused = approve(
        Which::Named(Some(&guard)),
        call,
        agentguard::guard::Gating::Auto,
        Some(&changed),
    );
    assert_eq!(refused.unwrap_err().reason(), DenyReason::ParamsChanged);
}

// ---- #[derive(Tool)] dispatch ----

#[derive(Tool, Debug, serde::Serialize, serde::Deserialize)]
enum Ops {
    /// Declared: always asks unless a rule names it.
    #[tool(risk = "irreversible")]
    PurgeCache { region: String },
    /// Declared too; no rule names it.
    #[tool(risk = "irreversible")]
    DropIndex { name: String },
}

struct Runner;

impl OpsHandler for Runner {
    type Output = String;
    fn purge_cache(&mut self, approval: Approval<'_, OpsPurgeCache>) -> String {
        format!("purged {} (asked: {})", approval.region, approval.was_asked())
    }
    fn drop_index(&mut self, approval: Approval<'_, OpsDropIndex>) -> String {
        format!("dropped {}", approval.name)
    }
}

#[test]
fn dispatch_gets_an_approval_from_a_naming_rule_and_is_asked_otherwise() {
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    let guard = AgentGuard::callback(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
        false
    })
    .policy(
        Policy::from_toml(
            "[[rule]]\nname = \"eu purges\"\ntools = [\"purge_cache\"]\nwhen = { region = { prefix = \"eu-\" } }\naction = \"allow\"\n\
             [[rule]]\nname = \"any\"\ntools = [\"*\"]\naction = \"allow\"\n",
        )
        .unwrap(),
    )
    .no_audit()
    .build();
    let out = guard
        .dispatch(
            Ops::PurgeCache {
                region: "eu-west".into(),
            },
            &mut Runner,
        )
        .unwrap();
    assert_eq!(out, "purged eu-west (asked: false)");
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    let denied = guard
        .dispatch(
            Ops::PurgeCache {
                region: "us-east".into(),
            },
            &mut Runner,
        )
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::UserDenied);
    let denied = guard
        .dispatch(Ops::DropIndex { name: "ix".into() }, &mut Runner)
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::UserDenied);
    assert_eq!(asked.load(Ordering::SeqCst), 2);
}

// ---- async ----

#[tokio::test]
async fn aexecute_asks_the_policy_first() {
    let (guard, asked) = guard_with(POLICY, None);
    let denied = guard
        .aexecute(ToolCall::new("write_file", json!({"path": "/etc/x"})), |_, _| async {})
        .await
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::PolicyDenied);
    guard
        .aexecute(
            ToolCall::new("write_file", json!({"path": "sandbox/y"})),
            |_, _| async {},
        )
        .await
        .unwrap();
    assert!(asked.lock().unwrap().is_empty());
}

// ---- the file ----

fn wait_for(mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            Instant::now() < until,
            "timed out waiting for the policy file to reload"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_policy_file_that_cannot_be_read_refuses_to_build_the_guard() {
    let dir = tempfile::tempdir().unwrap();
    let missing = AgentGuard::external()
        .policy_file(dir.path().join("nope.toml"))
        .unwrap_err();
    assert!(missing.to_string().starts_with("cannot read policy file"), "{missing}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[rule]]\nname = \"r\"\naction = \"perhaps\"\n").unwrap();
    let e = AgentGuard::external().policy_file(&bad).unwrap_err();
    assert_eq!(e.diagnostics()[0].line, 3);
    assert!(e.to_string().contains("bad.toml:line 3"), "{e}");
}

#[test]
fn a_changed_file_is_swapped_in_and_a_bad_one_keeps_the_old_policy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agentguard.toml");
    let log = dir.path().join("audit.log");
    let deny = "[[rule]]\nname = \"no invoices\"\ntools = [\"view_invoice\"]\naction = \"deny\"\n";
    let allow = "[[rule]]\nname = \"invoices run\"\ntools = [\"view_invoice\"]\naction = \"allow\"\n";
    std::fs::write(&file, deny).unwrap();
    let guard = AgentGuard::callback(|_| true)
        .policy_file(&file)
        .unwrap()
        .policy_reload_interval(None)
        .audit(JsonlAudit::new(&log))
        .build();
    let call = || ToolCall::new("view_invoice", json!({}));
    assert!(guard.execute(call(), |_, _| ()).is_err());
    let first = guard.policy().unwrap().version().to_owned();

    std::fs::write(&file, allow).unwrap();
    let now = guard.reload_policy().unwrap().unwrap();
    assert_ne!(now.version(), first);
    assert!(guard.execute(call(), |_, _| ()).is_ok());

    std::fs::write(&file, "[[rule]]\nname = \"broken\"\naction = \"allow\"\nwhen = 5\n").unwrap();
    let e = guard.reload_policy().unwrap_err();
    assert_eq!(e.diagnostics()[0].line, 4);
    assert_eq!(guard.policy().unwrap().version(), now.version(), "the old policy stays");
    assert!(guard.execute(call(), |_, _| ()).is_ok());

    let decisions: Vec<String> = lines(&log)
        .iter()
        .filter(|l| l["event"] == "policy")
        .map(|l| l["decision"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(decisions, ["policy_loaded", "policy_rejected"]);
}

#[test]
fn the_watcher_reloads_a_changed_file_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agentguard.toml");
    std::fs::write(&file, "default = \"deny\"\n").unwrap();
    let guard = AgentGuard::callback(|_| true)
        .policy_file(&file)
        .unwrap()
        .policy_reload_interval(Some(Duration::from_millis(20)))
        .no_audit()
        .build();
    assert_eq!(
        guard.policy().unwrap().default_action(),
        agentguard::policy::DefaultAction::Deny
    );
    // Replace the file the way editors do: write a new one and rename it over the old.
    let tmp = dir.path().join("agentguard.toml.new");
    std::fs::write(&tmp, "default = \"allow\"\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    wait_for(|| guard.policy().unwrap().default_action() == agentguard::policy::DefaultAction::Allow);
    assert!(guard
        .execute(ToolCall::new("list_things", json!({})), |_, _| ())
        .is_ok());
}

#[test]
fn evaluation_is_exposed_for_tools_that_only_want_the_answer() {
    let p = Policy::from_toml(POLICY).unwrap();
    let call = ToolCall::new("refund_order", json!({"amount_eur": 400}));
    assert_eq!(p.evaluate(&call, None).action(), Some(Action::Ask));
}

#[test]
fn a_parked_request_names_the_rule_that_asked_for_it() {
    let guard = AgentGuard::external()
        .policy(Policy::from_toml(POLICY).unwrap())
        .timeout(Duration::from_secs(30))
        .no_audit()
        .build();
    let agent = guard.clone();
    let call = std::thread::spawn(move || {
        agent.execute(
            ToolCall::new("refund_order", json!({"amount_eur": 400})).server("payments"),
            |_, _| "refunded",
        )
    });
    let req = loop {
        if let Some(r) = guard.pending().pop() {
            break r;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(req.policy_rule(), Some("refunds over 100 EUR need a person"));
    assert_eq!(req.policy_message(), None);
    assert_eq!(req.server(), Some("payments"));
    let shown = serde_json::to_value(&req).unwrap();
    assert_eq!(shown["policy_rule"], "refunds over 100 EUR need a person");
    assert_eq!(shown["server"], "payments");
    // A request the name rules asked for carries no rule.
    guard.resolve(req.request_id(), true, Some("alice"));
    assert_eq!(call.join().unwrap().unwrap(), "refunded");
}

#[test]
fn an_emptied_policy_file_keeps_the_policy_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agentguard.toml");
    std::fs::write(
        &file,
        "[[rule]]\nname = \"no deletes\"\ntools = [\"delete_*\"]\naction = \"deny\"\n",
    )
    .unwrap();
    let guard = AgentGuard::callback(|_| true)
        .policy_file(&file)
        .unwrap()
        .policy_reload_interval(None)
        .no_audit()
        .build();
    // Truncated in place, as `> file` or an editor mid-write would leave it.
    std::fs::write(&file, "").unwrap();
    let e = guard.reload_policy().unwrap_err();
    assert!(e.to_string().contains("the file is empty"), "{e}");
    let denied = guard
        .execute(ToolCall::new("delete_user", json!({"id": 1})), |_, _| ())
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::PolicyDenied);
}

#[test]
fn a_suspicious_name_declared_safe_is_still_asked_under_default_allow() {
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    let guard = AgentGuard::callback(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
        false
    })
    .policy(Policy::from_toml("default = \"allow\"\n").unwrap())
    .no_audit()
    .build();
    let never = agentguard::guard::Gating::Never;
    guard
        .execute_gated(ToolCall::new("list_users", json!({})), never, |_, _| ())
        .unwrap();
    let denied = guard
        .execute_gated(ToolCall::new("d\u{0435}lete_user", json!({})), never, |_, _| ())
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::UserDenied);
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}
