//! The `agentguard` binary against a SQLite store shared with an agent (a guard in this test process): every
//! command, every exit code, and the messages a person reads.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use agentguard::{AgentGuard, ApprovalRequest, DenyReason, SqliteStore, ToolCall};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_agentguard");

fn cli(db: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--store")
        .arg(format!("sqlite:{}", db.display()))
        .args(args)
        .env_remove("AGENTGUARD_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An agent thread that makes one gated call through the store at `db`; returns its parked request and the
/// handle giving the call's result.
fn agent(
    db: &Path,
    timeout: Duration,
) -> (
    ApprovalRequest,
    std::thread::JoinHandle<Result<&'static str, agentguard::ActionDenied>>,
) {
    let (tx, rx) = mpsc::channel();
    let guard = AgentGuard::external()
        .store(SqliteStore::open(db).unwrap())
        .on_request(move |req| {
            let _ = tx.send(req.clone());
        })
        .timeout(timeout)
        .no_audit()
        .build();
    let handle = std::thread::spawn(move || {
        guard.execute(
            ToolCall::new("delete_customer", json!({"id": 7, "password": "hunter2"})).agent_id("support-bot"),
            |_, _| "ran",
        )
    });
    (rx.recv_timeout(Duration::from_secs(30)).unwrap(), handle)
}

fn db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    (dir, db)
}

#[test]
fn approve_runs_the_agents_call_and_exits_0() {
    let (_d, db) = db();
    let (req, agent) = agent(&db, Duration::from_secs(30));
    let out = cli(&db, &["approve", req.request_id().as_str(), "--actor", "alice"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(text(&out).0.trim(), format!("approved {}", req.request_id()));
    assert_eq!(agent.join().unwrap().unwrap(), "ran");
}

#[test]
fn deny_with_a_reason_reaches_the_agent() {
    let (_d, db) = db();
    let (req, agent) = agent(&db, Duration::from_secs(30));
    let out = cli(&db, &["deny", req.request_id().as_str(), "--reason", "wrong customer"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let denied = agent.join().unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::UserDenied);
    assert_eq!(denied.detail(), Some("wrong customer"));
}

#[test]
fn a_second_answer_exits_4_already_resolved() {
    let (_d, db) = db();
    let (req, agent) = agent(&db, Duration::from_secs(30));
    assert_eq!(cli(&db, &["approve", req.request_id().as_str()]).status.code(), Some(0));
    agent.join().unwrap().unwrap();
    let out = cli(&db, &["deny", req.request_id().as_str()]);
    assert_eq!(out.status.code(), Some(4));
    assert!(text(&out).1.contains("already answered"), "{:?}", text(&out));
}

#[test]
fn a_late_approval_exits_5_expired_and_the_call_never_ran() {
    let (_d, db) = db();
    let (req, agent) = agent(&db, Duration::from_millis(300));
    assert_eq!(agent.join().unwrap().unwrap_err().reason(), DenyReason::ApprovalTimeout);
    let out = cli(&db, &["approve", req.request_id().as_str()]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        text(&out).1.contains("expired") && text(&out).1.contains("will never run"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn an_unknown_id_exits_3_and_a_malformed_one_exits_2() {
    let (_d, db) = db();
    let out = cli(&db, &["approve", "3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).1.contains("unknown request"), "{:?}", text(&out));
    let out = cli(&db, &["approve", "not-an-id"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("expected a UUID"), "{:?}", text(&out));
}

#[test]
fn a_digest_that_does_not_match_exits_6_and_decides_nothing() {
    let (_d, db) = db();
    let (req, agent) = agent(&db, Duration::from_secs(30));
    let wrong = "0".repeat(64);
    let out = cli(&db, &["approve", req.request_id().as_str(), "--digest", &wrong]);
    assert_eq!(out.status.code(), Some(6), "{:?}", text(&out));
    let right = req.params_digest().to_string();
    let out = cli(&db, &["approve", req.request_id().as_str(), "--digest", &right]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    agent.join().unwrap().unwrap();
}

#[test]
fn an_unreachable_or_unknown_store_exits_7_with_what_to_do() {
    let out = Command::new(BIN)
        .args(["--store", "sqlite:/nonexistent-dir/x/store.db", "pending"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(text(&out).1.contains("directory exist"), "{:?}", text(&out));
    let out = Command::new(BIN)
        .args(["--store", "mysql://db", "pending"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(text(&out).1.contains("expected sqlite:PATH"), "{:?}", text(&out));
    let out = Command::new(BIN)
        .arg("pending")
        .env_remove("AGENTGUARD_STORE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("--store sqlite:PATH or set AGENTGUARD_STORE"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn pending_and_show_list_requests_redacted_as_tables_or_json() {
    let (_d, db) = db();
    let (req, agent) = agent(&db, Duration::from_secs(30));
    let (stdout, _) = text(&cli(&db, &["pending"]));
    assert!(stdout.contains("REQUEST") && stdout.contains("delete_customer") && stdout.contains("support-bot"));
    assert!(!stdout.contains("hunter2"));
    let json_out: Value = serde_json::from_str(&text(&cli(&db, &["pending", "--json"])).0).unwrap();
    assert_eq!(json_out[0]["request_id"], req.request_id().as_str());
    assert_eq!(json_out[0]["params"]["password"], "[REDACTED]");
    let (shown, _) = text(&cli(&db, &["show", req.request_id().as_str()]));
    assert!(
        shown.contains("State     : pending") && shown.contains(req.params_digest().as_str()),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"));
    cli(&db, &["deny", req.request_id().as_str()]);
    agent.join().unwrap().unwrap_err();
    let (shown, _) = text(&cli(&db, &["show", req.request_id().as_str(), "--json"]));
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["decision"]["state"], "denied");
    assert_eq!(text(&cli(&db, &["pending"])).0.trim(), "no pending requests");
}

#[test]
fn watch_prints_requests_as_they_park_and_leave() {
    let (_d, db) = db();
    SqliteStore::open(&db).unwrap();
    let mut watch = Command::new(BIN)
        .arg("--store")
        .arg(format!("sqlite:{}", db.display()))
        .args(["watch", "--interval-ms", "20", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    let (req, agent) = agent(&db, Duration::from_secs(30));
    let parked: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(parked["event"], "parked");
    assert_eq!(parked["request"]["request_id"], req.request_id().as_str());
    cli(&db, &["approve", req.request_id().as_str()]);
    agent.join().unwrap().unwrap();
    let left: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(left["request_id"], req.request_id().as_str());
    assert!(left["event"] == "executed" || left["event"] == "approved", "{left}");
    watch.kill().unwrap();
    watch.wait().unwrap();
}

#[test]
fn audit_verify_exits_0_for_an_intact_chain_and_8_naming_the_broken_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let guard = AgentGuard::callback(|_| true).audit_file(&log).build();
    for i in 0..3 {
        guard
            .execute(ToolCall::new("delete_row", json!({"row": i})), |_, _| ())
            .unwrap();
    }
    let out = Command::new(BIN).args(["audit", "verify"]).arg(&log).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("chain intact: 3 lines"));
    let tampered = std::fs::read_to_string(&log).unwrap().replace("\"row\":1", "\"row\":9");
    std::fs::write(&log, tampered).unwrap();
    let out = Command::new(BIN).args(["audit", "verify"]).arg(&log).output().unwrap();
    assert_eq!(out.status.code(), Some(8));
    assert!(text(&out).1.contains("audit.log:2:"), "{:?}", text(&out));
}

#[test]
fn the_cli_answers_through_postgres_and_verifies_its_audit_table() {
    let Ok(server) = std::env::var("AGENTGUARD_TEST_POSTGRES_URL") else {
        eprintln!("skipped: AGENTGUARD_TEST_POSTGRES_URL is not set; .ci/run sets it");
        return;
    };
    let schema = format!("cli_{}", agentguard::RequestId::new().as_str().replace('-', ""));
    let url = format!("{server}?schema={schema}");
    let store = std::sync::Arc::new(agentguard::PostgresStore::connect(&server, Some(&schema)).unwrap());
    let (tx, rx) = mpsc::channel();
    let guard = AgentGuard::external()
        .shared_store(store.clone())
        .on_request(move |req| {
            let _ = tx.send(req.clone());
        })
        .audit(store.audit())
        .timeout(Duration::from_secs(30))
        .build();
    let agent =
        std::thread::spawn(move || guard.execute(ToolCall::new("delete_customer", json!({"id": 7})), |_, _| "ran"));
    let req: ApprovalRequest = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let run = |args: &[&str]| Command::new(BIN).args(["--store", &url]).args(args).output().unwrap();
    let out = run(&["pending", "--json"]);
    assert!(text(&out).0.contains(req.request_id().as_str()), "{:?}", text(&out));
    let out = run(&["approve", req.request_id().as_str(), "--actor", "alice"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(agent.join().unwrap().unwrap(), "ran");
    let out = run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("chain intact: 1 lines"), "{:?}", text(&out));
}
