//! The `agentguard` binary against a SQLite store shared with an agent (a guard in this test process): every
//! command, every exit code, and the messages a person reads.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use agentguard::store::SqliteStore;
use agentguard::{AgentGuard, ApprovalRequest, DenyReason, ToolCall};
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

/// A store file as an agent's guard leaves it (the CLI opens existing stores only).
fn db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    SqliteStore::open(&db).unwrap();
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
fn an_unreachable_store_exits_7_and_an_unknown_url_2_with_what_to_do() {
    let out = Command::new(BIN)
        .args(["--store", "sqlite:/nonexistent-dir/x/store.db", "pending"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(
        text(&out)
            .1
            .contains("no agentguard store at /nonexistent-dir/x/store.db"),
        "{:?}",
        text(&out)
    );
    // A URL that names no store is bad usage (2), not an unreachable store.
    for url in ["mysql://db", "bogus:x", "postgres:/app@h/db"] {
        let out = Command::new(BIN).args(["--store", url, "pending"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{url}: {:?}", text(&out));
        assert!(text(&out).1.contains("postgres://"), "{url}: {:?}", text(&out));
    }
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
fn a_mistyped_store_path_is_refused_with_exit_7_and_never_created() {
    let (dir, db) = db();
    let typo = dir.path().join("stroe.db");
    for args in [
        &["pending"][..],
        &["show", "3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d"],
        &["approve", "3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d"],
        &["deny", "3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d"],
        &["watch"],
        &["serve", "--token", "alice=alice-token-0123456789"],
    ] {
        let out = cli(&typo, args);
        assert_eq!(out.status.code(), Some(7), "{args:?}: {:?}", text(&out));
        let err = text(&out).1;
        assert!(
            err.contains(&format!("no agentguard store at {}", typo.display())) && err.contains("check the path"),
            "{args:?}: {err}"
        );
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
    // An empty file (SQLite reads it as an empty database): refused, and left empty. (A foreign SQLite database
    // with tables of its own: tests/sqlite.rs.)
    let empty = dir.path().join("empty.db");
    std::fs::File::create(&empty).unwrap();
    let out = cli(&empty, &["pending"]);
    assert_eq!(out.status.code(), Some(7), "{:?}", text(&out));
    assert!(text(&out).1.contains("not an agentguard store"), "{:?}", text(&out));
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "the empty file was written to"
    );
    // The real store still works.
    assert_eq!(cli(&db, &["pending"]).status.code(), Some(0));
}

/// Parks, next to `req`, a copy whose params are nested 200 levels deep, as an older agentguard (before intake
/// refused params deeper than 64 levels) would have written it: serde_json cannot read it back (limit 128).
fn park_too_deep(db: &Path, req: &ApprovalRequest) -> String {
    let mut deep = json!("bottom");
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let id = agentguard::RequestId::new();
    let mut value = serde_json::to_value(req).unwrap();
    value["request_id"] = json!(id);
    value["params"] = deep;
    let deep_req: ApprovalRequest = serde_json::from_value(value).unwrap();
    agentguard::store::ApprovalStore::insert(&SqliteStore::open(db).unwrap(), &deep_req).unwrap();
    id.to_string()
}

#[test]
fn one_deep_or_damaged_row_does_not_hide_the_other_pending_requests_from_pending_or_watch() {
    let (_d, db) = db();
    let (req, agent) = agent(&db, Duration::from_secs(30));
    let deep = park_too_deep(&db, &req);
    let good = req.request_id().as_str();
    for args in [&["pending"][..], &["pending", "--json"]] {
        let out = cli(&db, args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stdout.contains(good) && !stdout.contains(&deep), "{args:?}: {stdout}");
        assert!(
            stderr.contains(&format!("warning: request {deep} cannot be read"))
                && stderr.contains("recursion limit")
                && stderr.contains(&format!("agentguard deny {deep}")),
            "{args:?}: {stderr}"
        );
    }
    let mut watch = Command::new(BIN)
        .arg("--store")
        .arg(format!("sqlite:{}", db.display()))
        .args(["watch", "--interval-ms", "20", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    let parked: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(parked["request"]["request_id"], good, "{parked}");
    let out = cli(&db, &["show", &deep]);
    assert_eq!(out.status.code(), Some(7));
    assert!(
        text(&out).1.contains(&format!("request {deep} cannot be read")) && !text(&out).1.contains("unreachable"),
        "{:?}",
        text(&out)
    );
    // The unreadable row can still be answered: denied, it leaves the list.
    assert_eq!(cli(&db, &["deny", &deep]).status.code(), Some(0));
    cli(&db, &["approve", good]);
    assert_eq!(agent.join().unwrap().unwrap(), "ran");
    let left: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(
        matches!(left["event"].as_str(), Some("approved" | "executed")) && left["request_id"] == good,
        "{left}"
    );
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("cannot be read").count(), 1, "named once: {stderr}");
    assert_eq!(text(&cli(&db, &["pending"])).1, "", "no warning once it is denied");
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
    let store = std::sync::Arc::new(agentguard::store::PostgresStore::connect(&server, Some(&schema)).unwrap());
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

/// One HTTP/1.1 request over a plain TCP connection; returns the status code and the body.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A server process, stopped when the test ends, even by a failed assertion. `script(1)` does not pass its kill on to
/// the server under it, so processes serving the test's store are stopped by name too.
struct Server {
    child: std::process::Child,
    db: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("pkill")
            .args(["-f", &format!("sqlite:{} serve", self.db.display())])
            .status();
    }
}

/// `agentguard serve` in its own process; returns it and the address it printed.
fn serve(db: &Path, extra: &[&str]) -> (Server, String) {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .arg("--store")
        .arg(format!("sqlite:{}", db.display()))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(extra)
        .env_remove("AGENTGUARD_STORE")
        .env_remove("AGENTGUARD_TOKENS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("serve prints its address first, got {line:?}"))
        .to_owned();
    (
        Server {
            child,
            db: db.to_owned(),
        },
        addr,
    )
}

#[test]
fn serve_lets_a_browser_in_another_process_approve_an_agents_call() {
    let (_dir, db) = db();
    let (_server, addr) = serve(&db, &["--token", "alice=alice-token-0123456789"]);
    let (req, agent) = agent(&db, Duration::from_secs(60));

    let auth = ("Authorization", "Bearer alice-token-0123456789");
    let (status, body) = http(&addr, "GET", "/agentguard/pending", &[auth], "");
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["request_id"], req.request_id().as_str());
    assert_eq!(list[0]["params"]["password"], "[REDACTED]");

    let (status, page) = http(&addr, "GET", "/agentguard/", &[], "");
    assert_eq!(status, 200);
    assert!(page.contains("agentguard approvals"));

    let answer = json!({"request_id": req.request_id(), "approved": true, "params_digest": req.params_digest()});
    let json_type = ("Content-Type", "application/json");
    let (status, body) = http(&addr, "POST", "/agentguard/resolve", &[json_type], &answer.to_string());
    assert_eq!(status, 401, "no token: {body}");
    let (status, body) = http(
        &addr,
        "POST",
        "/agentguard/resolve",
        &[auth, json_type],
        &answer.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent.join().unwrap().unwrap(), "ran");
    let (shown, _) = text(&cli(&db, &["show", req.request_id().as_str()]));
    assert!(shown.contains("alice"), "the token's actor is recorded: {shown}");
}

#[test]
fn serve_under_ulimit_64_answers_a_real_request_past_70_idle_connections() {
    use std::io::BufRead;
    let (_dir, db) = db();
    // The server gets 64 file descriptors; 70 clients connect and send nothing.
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\"", BIN, "--store"])
        .arg(format!("sqlite:{}", db.display()))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--token",
            "alice=alice-token-0123456789",
        ])
        .env_remove("AGENTGUARD_STORE")
        .env_remove("AGENTGUARD_TOKENS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Server { child, db: db.clone() };
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("serve prints its address first, got {line:?}"))
        .to_owned();
    let idle: Vec<std::net::TcpStream> = (0..70).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();

    let since = std::time::Instant::now();
    let auth = ("Authorization", "Bearer alice-token-0123456789");
    let (status, body) = http(&addr, "GET", "/agentguard/pending", &[auth], "");
    let took = since.elapsed();
    eprintln!(
        "a real request past {} idle connections under ulimit -n 64: answered in {took:?}",
        idle.len()
    );
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn serve_answers_a_path_outside_the_api_with_a_json_404() {
    let (_dir, db) = db();
    let (_server, addr) = serve(&db, &["--token", "alice=alice-token-0123456789"]);
    let (status, body) = http(&addr, "GET", "/elsewhere", &[], "");
    assert_eq!(status, 404);
    let out: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
    assert_eq!(out["error"], "not_found", "{out}");
}

#[test]
fn serve_refuses_a_short_token_and_a_malformed_one_with_exit_2() {
    let (_dir, db) = db();
    for (arg, says) in [
        ("alice=short", "at least 16"),
        ("no-actor-here-0123456789", "ACTOR=TOKEN"),
    ] {
        let out = cli(&db, &["serve", "--bind", "127.0.0.1:0", "--token", arg]);
        assert_eq!(out.status.code(), Some(2), "{arg}");
        let (_, err) = text(&out);
        assert!(err.contains(says), "{arg}: {err}");
        assert!(
            !err.contains("0123456789") && !err.contains("9f8e7d6c"),
            "the token is not echoed: {err}"
        );
    }
}

#[test]
fn serve_without_a_token_and_without_a_terminal_refuses_to_start() {
    let (_dir, db) = db();
    let out = cli(&db, &["serve", "--bind", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let (_, err) = text(&out);
    assert!(err.contains("AGENTGUARD_TOKENS=alice="), "says what to do: {err}");
}

#[test]
fn serve_without_a_token_at_a_terminal_makes_one_and_prints_it_once() {
    use std::io::BufRead;
    // script(1) runs the server on a pseudo-terminal, as a person starting it by hand would.
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "script(1) from util-linux is needed in CI"
        );
        eprintln!("skipped: no script(1) to provide a terminal");
        return;
    }
    let (_dir, db) = db();
    let command = format!("{BIN} --store sqlite:{} serve --bind 127.0.0.1:0", db.display());
    let child = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env_remove("AGENTGUARD_TOKENS")
        .env_remove("AGENTGUARD_STORE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server { child, db: db.clone() };
    let mut out = std::io::BufReader::new(server.child.stdout.take().unwrap());
    let (mut token, mut addr) = (String::new(), String::new());
    let mut line = String::new();
    while token.is_empty() || addr.is_empty() {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the server stopped early");
        let t = line.trim();
        if t.len() == 32 && t.chars().all(|c| c.is_ascii_hexdigit()) {
            token = t.to_owned();
        } else if let Some(rest) = t.split("http://").nth(1) {
            addr = rest.split('/').next().unwrap().to_owned();
        }
    }
    let (status, _) = http(
        &addr,
        "GET",
        "/agentguard/pending",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    );
    assert_eq!(status, 200);
}

#[test]
fn serve_help_never_shows_the_tokens_from_the_environment() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .env("AGENTGUARD_TOKENS", "alice=supersecret0123456789")
        .output()
        .unwrap();
    assert!(out.status.success());
    let (help, _) = text(&out);
    assert!(help.contains("AGENTGUARD_TOKENS"), "{help}");
    assert!(!help.contains("supersecret"), "{help}");
}

#[test]
fn a_store_password_is_masked_in_messages_and_help() {
    let out = Command::new(BIN)
        .args([
            "--store",
            "postgres://app:hunter2-secret@127.0.0.1:1/agentguard",
            "pending",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let (_, err) = text(&out);
    assert!(err.contains("postgres://app:***@127.0.0.1:1/agentguard"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
    for url in [
        "postgres://app@127.0.0.1:1/agentguard?password=hunter2-secret&sslmode=disable",
        "postgres://app:hun/ter2-secret@127.0.0.1:1/agentguard",
    ] {
        let out = Command::new(BIN).args(["--store", url, "pending"]).output().unwrap();
        let (_, err) = text(&out);
        assert!(!err.contains("ter2-secret") && err.contains("***"), "{url}: {err}");
    }
    let out = Command::new(BIN)
        .arg("--help")
        .env("AGENTGUARD_STORE", "postgres://app:hunter2-secret@db/x")
        .output()
        .unwrap();
    assert!(!text(&out).0.contains("hunter2-secret"));
}

/// Parks one call whose reason, agent and params carry what a model could write to fake the display.
fn hostile_agent(
    db: &Path,
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
        .timeout(Duration::from_secs(30))
        .no_audit()
        .build();
    let handle = std::thread::spawn(move || {
        guard.execute(
            ToolCall::new(
                "delete_file",
                json!({"path": "report\u{202E}fdp.exe", "note": "a\u{E0041}\u{FE0F}b"}),
            )
            .agent_id("bot\u{1b}[31m")
            .reason("\x1b[2A\r\x1b[2KTool      : read_file\u{2066}"),
            |_, _| "ran",
        )
    });
    (rx.recv_timeout(Duration::from_secs(30)).unwrap(), handle)
}

fn assert_no_raw_hidden(what: &str, out: &str) {
    for c in out.chars() {
        assert!(
            c == '\n' || !agentguard::text::is_hidden(c),
            "{what} printed U+{:04X} raw:\n{out}",
            c as u32
        );
    }
}

#[test]
fn show_pending_and_watch_never_print_the_models_escape_sequences_or_bidi_controls() {
    let (_d, db) = db();
    let mut watch = Command::new(BIN)
        .arg("--store")
        .arg(format!("sqlite:{}", db.display()))
        .args(["watch", "--interval-ms", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    SqliteStore::open(&db).unwrap();
    let (req, agent) = hostile_agent(&db);
    let id = req.request_id().as_str();

    let (shown, _) = text(&cli(&db, &["show", id]));
    assert_no_raw_hidden("show", &shown);
    assert!(shown.contains("Tool      : delete_file"), "{shown}");
    assert_eq!(
        shown.lines().filter(|l| l.starts_with("Tool")).count(),
        1,
        "no second Tool line can be faked:\n{shown}"
    );
    assert!(
        shown.contains("\\u{001B}[2A\\u{000D}\\u{001B}[2KTool      : read_file\\u{2066}"),
        "the reason is shown with visible marks:\n{shown}"
    );
    assert!(
        shown.contains("report\\u{202E}fdp.exe") && shown.contains("a\\u{E0041}\\u{FE0F}b"),
        "{shown}"
    );

    let (table, _) = text(&cli(&db, &["pending"]));
    assert_no_raw_hidden("pending", &table);
    assert!(table.contains("bot\\u{001B}[31m"), "{table}");

    for args in [&["pending", "--json"][..], &["show", id, "--json"][..]] {
        let (json_text, _) = text(&cli(&db, args));
        assert_no_raw_hidden("--json", &json_text);
        // The same data for a program: the escapes are JSON's own.
        let v: Value = serde_json::from_str(&json_text).unwrap();
        let params = if args[0] == "pending" {
            &v[0]["params"]
        } else {
            &v["request"]["params"]
        };
        assert_eq!(params["path"], "report\u{202E}fdp.exe");
    }

    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    let _header = lines.next().unwrap().unwrap();
    let parked = lines.next().unwrap().unwrap();
    assert_no_raw_hidden("watch", &parked);
    assert!(parked.contains("report\\u{202E}fdp.exe"), "{parked}");
    watch.kill().unwrap();
    watch.wait().unwrap();

    cli(&db, &["deny", id]);
    agent.join().unwrap().unwrap_err();
}

#[test]
fn a_closed_stdout_ends_the_command_quietly_instead_of_panicking() {
    let (_d, db) = db();
    let (req, agent) = agent(&db, Duration::from_secs(30));
    for args in [&["show", req.request_id().as_str()][..], &["pending"][..]] {
        // `agentguard show ID | head -0`: the reader is gone before the first line is written.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN)
            .arg("--store")
            .arg(format!("sqlite:{}", db.display()))
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {:?}", text(&out));
        assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out).1);
    }
    cli(&db, &["deny", req.request_id().as_str()]);
    agent.join().unwrap().unwrap_err();
}

#[test]
fn a_deny_reason_with_control_characters_is_refused_before_anything_is_decided() {
    let (_d, db) = db();
    let (req, agent) = agent(&db, Duration::from_secs(30));
    let id = req.request_id().as_str();
    let out = cli(&db, &["deny", id, "--reason", "wrong\x1b[2K customer"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("control character (U+001B)"), "{:?}", text(&out));
    let out = cli(&db, &["deny", id, "--reason", "wrong customer\nsee ticket 4821"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let denied = agent.join().unwrap().unwrap_err();
    assert_eq!(denied.detail(), Some("wrong customer\nsee ticket 4821"));
}
