//! The README's examples run as documented (cargo builds them before the tests run).

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/examples-<hash> → target/<profile>/examples/<name> (one target dir for the workspace)
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built: `cargo test --workspace` builds every example; with `-p agentguard-tests`, build them first \
         with `cargo build --examples --all-features` (add `--release` for a release test run)",
        path.display()
    );
    path
}

/// Runs an example with no stdin and its audit log in `dir`; returns its stdout.
fn run_in(name: &str, dir: &std::path::Path) -> String {
    let out = Command::new(example(name))
        .env("AGENTGUARD_LOG", dir.join("audit.log"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn run(name: &str) -> String {
    run_in(name, tempfile::tempdir().unwrap().path())
}

#[test]
fn quickstart_without_a_keyboard_is_blocked_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = run_in("quickstart", dir.path());
    assert!(stdout.starts_with("Blocked by AgentGuard (no_terminal"), "{stdout}");
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(audit.contains("\"reason\":\"no_terminal\""));
}

#[test]
fn support_desk_runs_safe_calls_asks_for_the_rest_and_keeps_an_intact_chain() {
    let stdout = run("support_desk");
    for expected in [
        r#"{"id":7,"name":"Jane Doe","plan":"pro"}"#,
        "Email for #7 set to a@b.com",
        "Action blocked: Blocked by AgentGuard (user_denied: deletions need a ticket)",
        "MANUALLY FLAGGED - always requires approval",
        "Credited 500 points to #7",
        "chain intact, 4 lines",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert_eq!(
        stdout.matches("[card] ").count(),
        6,
        "three cards, each shown and answered:\n{stdout}"
    );
}

#[test]
fn gated_functions_example_runs_approved_bodies_and_blocks_the_denied_one() {
    let stdout = run("gated_functions");
    for expected in [
        "ran: Ok(\"deleted notes.txt\")",
        "Blocked by AgentGuard (user_denied)",
        "\"smtp_password\":\"[REDACTED]\"",
        "ran: 1",
        "ran: \"billing is now at 1.4.2\"",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("hunter2"));
}

#[test]
fn tool_enum_example_parses_dispatches_and_reports_bad_calls() {
    let stdout = run("tool_enum");
    for expected in [
        "read_customer: {\"id\":7,\"name\":\"Jane Doe\",\"plan\":\"pro\"}",
        "(approved by alice)",
        "delete_customer: {\"denied\":true,\"reason\":\"user_denied\"",
        "loyalty_bonus: \"#7 credited 500 points\"",
        "unknown tool \"drop_database\"; known tools: read_customer, update_email, delete_customer, loyalty_bonus",
        "bad params for tool \"loyalty_bonus\" at `points`",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}

#[test]
fn worker_example_parks_in_the_shared_store_until_another_process_approves() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let mut child = Command::new(example("worker"))
        .env("AGENTGUARD_STORE", format!("sqlite:{}", db.display()))
        .env("AGENTGUARD_LOG", dir.path().join("audit.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), r#"ran read_customer with {"id":7}"#);
    assert!(lines
        .next()
        .unwrap()
        .unwrap()
        .starts_with("waiting for approval of delete_customer"));
    let approve_line = lines.next().unwrap().unwrap();
    let id: agentguard::RequestId = approve_line.rsplit(' ').next().unwrap().parse().unwrap();
    // The person, in this (other) process, answers through the same file.
    let store = agentguard::store::SqliteStore::open(&db).unwrap();
    let answer = agentguard::Resolution::approve(id).actor("alice");
    assert_eq!(
        agentguard::store::ApprovalStore::resolve(&store, &answer).unwrap(),
        agentguard::ResolveOutcome::Resolved
    );
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(
        rest.iter().any(|l| l == r#"ran delete_customer with {"id":7}"#),
        "{rest:?}"
    );
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn web_approvals_example_serves_the_page_and_its_agents_wait_for_the_answers() {
    use std::io::BufRead;
    const TOKEN: &str = "example-test-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(example("web_approvals"))
        .env("AGENTGUARD_BIND", "127.0.0.1:0")
        .env("AGENTGUARD_TOKEN", TOKEN)
        .env("AGENTGUARD_LOG", dir.path().join("audit.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let first = lines.recv_timeout(std::time::Duration::from_secs(60)).unwrap();
    let page = first
        .strip_prefix("approval page: ")
        .expect("the URL comes first")
        .to_owned();
    assert!(
        page.starts_with("http://127.0.0.1:") && page.ends_with("/agentguard/"),
        "{first}"
    );

    // A person at the page: approve everything but the deletion, until the five gated calls are answered.
    let client = reqwest::Client::new();
    let mut answered = std::collections::HashSet::new();
    while answered.len() < 5 {
        let pending: Vec<serde_json::Value> = client
            .get(format!("{page}pending"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for req in pending {
            let id = req["request_id"].as_str().unwrap().to_owned();
            if answered.insert(id.clone()) {
                let approve = req["tool"] != "delete_customer";
                let res = client
                    .post(format!("{page}resolve"))
                    .bearer_auth(TOKEN)
                    .json(&serde_json::json!({"request_id": id, "approved": approve, "params_digest": req["params_digest"]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(child.wait().unwrap().success());
    let out: Vec<String> = lines.try_iter().collect();
    let out = out.join("\n");
    for expected in [
        "[support-bot] read_customer: customer #7: Jane Doe, plan pro",
        "[support-bot] delete_customer: blocked: Blocked by AgentGuard (user_denied)",
        "[billing-bot] loyalty_bonus: credited 500 points to #7",
        "[billing-bot] refund_payment: refunded 249.0 EUR on order \"A-1009\"",
        "chain intact, 6 lines",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

#[test]
fn traced_calls_prints_one_execute_tool_span_per_call_with_its_decisions_and_no_params() {
    let stdout = run("traced_calls");
    for expected in [
        "gen_ai.operation.name=\"execute_tool\"",
        "gen_ai.tool.name=\"read_customer\"",
        "gen_ai.tool.call.id=\"call_0\"",
        "agentguard.decision=\"allowed\"",
        "agentguard.decision=\"parked\"",
        "agentguard.decision=\"approved\"",
        "agentguard.decision=\"executed\"",
        "agentguard.decision=\"denied\"",
        "error.type=\"user_denied\"",
        "-> Blocked by AgentGuard (user_denied)",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    // Params are in the executor's output lines only, never in a span or an event.
    let traced: Vec<&str> = stdout.lines().filter(|l| l.contains("execute_tool{")).collect();
    assert!(traced.len() >= 7, "{stdout}");
    assert!(traced.iter().all(|l| !l.contains("jane@new.example")), "{stdout}");
}

#[test]
fn notifications_example_verifies_the_signature_and_the_approval_runs_the_call() {
    let stdout = run("notifications");
    for expected in [
        "receiver: signature ok",
        "receiver: support-bot wants delete_customer {\"api_key\":\"[REDACTED]\",\"id\":7}",
        "receiver: open http://127.0.0.1:8787/agentguard/#",
        "receiver: alice approves -> Resolved",
        "agent: delete_customer ran with",
        "webhook: 1 delivered, 0 failed, 0 dropped",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}

#[test]
fn rig_agent_runs_the_safe_call_the_approved_one_and_reads_the_denial() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = run_in("rig_agent", dir.path());
    for expected in [
        r#"model reads: {"celsius":21,"city":"Lisbon","sky":"clear"}"#,
        "[card] delete_file {\"path\":\"notes.txt\"} risk=\"IRREVERSIBLE - cannot be undone\" -> approved",
        "model reads: deleted notes.txt",
        "-> denied",
        "model reads: Blocked by AgentGuard (user_denied)",
        "agent answers: Done.",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert_eq!(
        stdout.matches("[card] ").count(),
        2,
        "two calls asked, the weather never:\n{stdout}"
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert_eq!(audit.lines().count(), 3, "every call is an audit line:\n{audit}");
}

#[test]
fn policy_example_decides_by_arguments_and_the_audit_names_each_rule() {
    let stdout = run("policy");
    assert!(
        stdout.contains("Blocked by AgentGuard (policy_denied: paths outside /srv/app are off limits)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("refund_order   approved  rule: refunds over 100 EUR need a person (ask)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("write_file     allowed   rule: writes inside the sandbox (allow)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("send_email     denied    rule: default (ask)"),
        "{stdout}"
    );
}

#[test]
fn answers_edits_responds_remembers_and_collects_a_quorum() {
    let stdout = run("answers");
    for expected in [
        "edit:     sent to jane@example.com",
        "agentguard: an approver (alice) edited the arguments",
        "respond:  the agent reads \"Order 42 was refunded yesterday; do nothing.\" (a denial? false)",
        "remember: call 2 ran without asking (a standing grant)",
        "by alice: used 2, used up now",
        "alice → VOTE_RECORDED (1 of 2 approvals, waiting for bob or carol); carol → RESOLVED; paid 4200",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}
