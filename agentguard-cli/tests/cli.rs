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
fn pending_with_a_limit_prints_one_page_and_the_command_for_the_next() {
    let (_d, db) = db();
    let agents: Vec<_> = (0..3).map(|_| agent(&db, Duration::from_secs(30))).collect();
    // In the store's pending order: creation time in milliseconds, then id (two agents can park within one).
    let mut order: Vec<(u128, &str)> = agents
        .iter()
        .map(|(r, _)| {
            let ms = r.timestamp().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
            (ms, r.request_id().as_str())
        })
        .collect();
    order.sort();
    let ids: Vec<&str> = order.into_iter().map(|(_, id)| id).collect();

    let (first, _) = text(&cli(&db, &["pending", "--limit", "2"]));
    let rows = |out: &str| ids.iter().filter(|id| out.contains(**id)).count();
    assert_eq!(rows(&first), 2, "{first}");
    assert!(
        first.contains(ids[0]) && first.contains(ids[1]),
        "the oldest two: {first}"
    );
    let hint = first
        .lines()
        .find_map(|l| l.strip_prefix("more are waiting: the next page is `"))
        .unwrap_or_else(|| panic!("no next-page hint: {first}"));
    let after = hint.trim_end_matches('`').rsplit(' ').next().unwrap().to_owned();
    assert!(hint.starts_with("agentguard pending --limit 2 --after "), "{hint}");

    let (second, _) = text(&cli(&db, &["pending", "--limit", "2", "--after", &after]));
    assert!(second.contains(ids[2]) && rows(&second) == 1, "{second}");
    assert!(!second.contains("more are waiting"), "the last page: {second}");

    let page: Value = serde_json::from_str(&text(&cli(&db, &["pending", "--limit", "2", "--json"])).0).unwrap();
    assert_eq!(page["requests"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], after.as_str(), "--json gives the same cursor");

    for (args, words) in [
        (&["pending", "--after", after.as_str()][..], "--limit"),
        (&["pending", "--limit", "2", "--after", "yesterday"][..], "`next`"),
        (&["pending", "--limit", "0"][..], "1..=1000"),
        (&["pending", "--limit", "1001"][..], "1..=1000"),
    ] {
        let out = cli(&db, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out).1.contains(words), "{args:?}: {}", text(&out).1);
    }
    for (req, handle) in agents {
        cli(&db, &["deny", req.request_id().as_str()]);
        handle.join().unwrap().unwrap_err();
    }
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

// ---- Richer answers: edit, respond, remember (standing grants), quorum ----
//
// The agent is a real process: this test binary run again as `agent_process` (below), with a guard in external
// mode over the same store, parking its calls one after another. It prints `parked ID` when a call parks and one
// `result {…}` line per call, each line after a marker (libtest prints its own lines around them).

const AGENT_MARK: &str = "@@agent@@ ";

/// What the agent process does: its store, audit file, policy and calls.
#[derive(serde::Serialize, serde::Deserialize)]
struct AgentScript {
    store: String,
    audit: PathBuf,
    policy: Option<PathBuf>,
    timeout_ms: u64,
    calls: Vec<AgentCall>,
}

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct AgentCall {
    tool: String,
    params: Value,
    agent: Option<String>,
    session: Option<String>,
    /// `ToolCall::refuse_edits(why)`.
    refuse_edits: Option<String>,
}

fn call(tool: &str, params: Value) -> AgentCall {
    AgentCall {
        tool: tool.to_owned(),
        params,
        agent: Some("support-bot".to_owned()),
        session: Some("s-42".to_owned()),
        refuse_edits: None,
    }
}

/// Not a test of its own: the agent process's body, run when `AGENTGUARD_CLI_TEST_AGENT` holds its script.
#[test]
fn agent_process() {
    let Ok(script) = std::env::var("AGENTGUARD_CLI_TEST_AGENT") else {
        return;
    };
    let script: AgentScript = serde_json::from_str(&script).unwrap();
    let say = |line: String| println!("\n{AGENT_MARK}{line}");
    let mut builder = AgentGuard::external()
        .shared_store(agentguard::store::open_store(&script.store).unwrap())
        .on_request(move |req| println!("\n{AGENT_MARK}parked {}", req.request_id()))
        .timeout(Duration::from_millis(script.timeout_ms))
        .audit_file(&script.audit);
    if let Some(policy) = &script.policy {
        builder = builder.policy_file(policy).unwrap();
    }
    let guard = builder.build();
    for c in script.calls {
        let mut tc = ToolCall::new(c.tool, c.params);
        if let Some(a) = c.agent {
            tc = tc.agent_id(a);
        }
        if let Some(s) = c.session {
            tc = tc.session_id(s);
        }
        if let Some(why) = c.refuse_edits {
            tc = tc.refuse_edits(why);
        }
        let result = match guard.execute(tc, |_, params| params) {
            Ok(params) => json!({"ran": params}),
            Err(denied) => json!({
                "reason": denied.reason().as_str(),
                "is_denial": denied.is_denial(),
                "detail": denied.detail(),
                "response": denied.response(),
                "display": denied.to_string(),
            }),
        };
        say(format!("result {result}"));
    }
}

/// A running agent process.
struct AgentProcess {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl AgentProcess {
    fn start(script: &AgentScript) -> AgentProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "agent_process", "--nocapture", "--test-threads=1"])
            .env("AGENTGUARD_CLI_TEST_AGENT", serde_json::to_string(script).unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        AgentProcess { child, lines }
    }

    /// The agent's next line (without the marker).
    fn next(&mut self) -> String {
        loop {
            let line = self.lines.next().expect("the agent process ended early").unwrap();
            if let Some(at) = line.find(AGENT_MARK) {
                return line[at + AGENT_MARK.len()..].to_owned();
            }
        }
    }

    /// The id of the call it just parked.
    fn parked(&mut self) -> String {
        let line = self.next();
        line.strip_prefix("parked ")
            .unwrap_or_else(|| panic!("expected a parked call, got {line:?}"))
            .to_owned()
    }

    /// The result of its current call.
    fn result(&mut self) -> Value {
        let line = self.next();
        let json = line
            .strip_prefix("result ")
            .unwrap_or_else(|| panic!("expected a result, got {line:?}"));
        serde_json::from_str(json).unwrap()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An agent process over the SQLite file `db`, auditing to `dir/audit.log`.
fn start_agent(dir: &Path, db: &Path, policy: Option<&str>, calls: Vec<AgentCall>) -> AgentProcess {
    let policy = policy.map(|text| {
        let path = dir.join("policy.toml");
        std::fs::write(&path, text).unwrap();
        path
    });
    AgentProcess::start(&AgentScript {
        store: format!("sqlite:{}", db.display()),
        audit: dir.join("audit.log"),
        policy,
        timeout_ms: 60_000,
        calls,
    })
}

/// `agentguard --store sqlite:DB ARGS` with `input` on stdin.
fn cli_stdin(db: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .arg("--store")
        .arg(format!("sqlite:{}", db.display()))
        .args(args)
        .env_remove("AGENTGUARD_STORE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The audit file's lines, parsed.
fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Asserts the CLI exited with `code`; returns (stdout, stderr).
#[track_caller]
fn exits(out: &Output, code: i32) -> (String, String) {
    let t = text(out);
    assert_eq!(out.status.code(), Some(code), "{t:?}");
    t
}

#[test]
fn approve_edit_runs_the_agents_call_with_the_edited_arguments_and_keeps_a_masked_secret() {
    // Expected to pass once the SQLite store keeps answer kinds (branch ans-stores).
    let (dir, db) = db();
    let mut agent = start_agent(
        dir.path(),
        &db,
        None,
        vec![
            call(
                "send_email",
                json!({"to": "alice@exampel.com", "body": "hi", "password": "hunter2"}),
            ),
            call("send_email", json!({"to": "bob@exampel.com", "body": "hello"})),
        ],
    );
    // Literal JSON; the secret left as the mask keeps the original.
    let id = agent.parked();
    let edit = r#"{"to": "alice@example.com", "body": "hi", "password": "[REDACTED]"}"#;
    let (out, _) = exits(&cli(&db, &["approve", &id, "--edit", edit, "--actor", "alice"]), 0);
    assert_eq!(
        out.trim(),
        format!("approved {id} with your edit: the call runs with the edited arguments")
    );
    let result = agent.result();
    assert_eq!(
        result["ran"],
        json!({"to": "alice@example.com", "body": "hi", "password": "hunter2"}),
        "{result}"
    );
    let (shown, _) = exits(&cli(&db, &["show", &id]), 0);
    assert!(shown.contains("Answer    : edit"), "{shown}");
    assert!(
        shown.contains("Edited    : {") && shown.contains("\"to\": \"alice@example.com\""),
        "the edit as the approver typed it: {shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");

    // From stdin, as JSON output.
    let id = agent.parked();
    let out = cli_stdin(
        &db,
        &["approve", &id, "--edit", "-", "--actor", "alice", "--json"],
        "{\n  \"to\": \"bob@example.com\",\n  \"body\": \"hello\"\n}\n",
    );
    let (out, _) = exits(&out, 0);
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["outcome"], "RESOLVED");
    assert_eq!(
        out["message"],
        "approved with your edit: the agent's call runs now with the edited arguments"
    );
    assert_eq!(agent.result()["ran"], json!({"to": "bob@example.com", "body": "hello"}));

    let lines = audit_lines(&dir.path().join("audit.log"));
    let edited: Vec<&Value> = lines.iter().filter(|l| l["decision"] == "edited").collect();
    assert_eq!(edited.len(), 2, "{lines:?}");
    assert_eq!(edited[0]["actor"], "alice", "{:?}", edited[0]);
    assert_eq!(edited[0]["edit"]["params"]["password"], "[REDACTED]", "{:?}", edited[0]);
}

#[test]
fn respond_gives_the_agent_the_text_as_its_result_and_the_tool_never_runs() {
    // Expected to pass once the SQLite store keeps answer kinds (branch ans-stores).
    let (dir, db) = db();
    let mut agent = start_agent(
        dir.path(),
        &db,
        None,
        vec![
            call("refund_order", json!({"order": 4821})),
            call("refund_order", json!({"order": 4822})),
        ],
    );
    let id = agent.parked();
    let text_ = "the refund was already made on Monday; nothing to do";
    let (out, _) = exits(&cli(&db, &["respond", &id, text_, "--actor", "alice"]), 0);
    assert_eq!(
        out.trim(),
        format!("responded to {id}: the tool does not run; the agent reads your text as its result")
    );
    let result = agent.result();
    assert!(result.get("ran").is_none(), "{result}");
    assert_eq!(result["reason"], "responded", "{result}");
    assert_eq!(result["is_denial"], false, "{result}");
    assert_eq!(result["response"], text_, "{result}");
    assert_eq!(result["display"], text_, "{result}");
    let (shown, _) = exits(&cli(&db, &["show", &id]), 0);
    assert!(
        shown.contains("State     : responded")
            && shown.contains("Answer    : respond")
            && shown.contains(&format!("Response  : {text_}")),
        "{shown}"
    );

    // Several lines, from stdin: the newline that ends the input is not part of the answer.
    let id = agent.parked();
    let out = cli_stdin(
        &db,
        &["respond", &id, "-", "--actor", "alice"],
        "refunded already.\nsee ticket 4821\n",
    );
    exits(&out, 0);
    assert_eq!(agent.result()["response"], "refunded already.\nsee ticket 4821");
    let (shown, _) = exits(&cli(&db, &["show", &id]), 0);
    assert!(
        shown.contains("Response  : refunded already.\n            see ticket 4821\n"),
        "{shown}"
    );
    let lines = audit_lines(&dir.path().join("audit.log"));
    assert_eq!(
        lines.iter().filter(|l| l["decision"] == "responded").count(),
        2,
        "{lines:?}"
    );
}

#[test]
fn remember_session_for_two_uses_lets_two_later_calls_run_unasked_then_asks_again() {
    // Expected to pass once the SQLite store keeps grants (branch ans-stores).
    let (dir, db) = db();
    let calls = (0..4)
        .map(|i| call("delete_file", json!({"path": format!("tmp/{i}.txt")})))
        .collect();
    let mut agent = start_agent(dir.path(), &db, None, calls);
    let id = agent.parked();
    let (out, _) = exits(
        &cli(
            &db,
            &[
                "approve",
                &id,
                "--actor",
                "alice",
                "--remember",
                "session",
                "--for",
                "2h",
                "--uses",
                "2",
            ],
        ),
        0,
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(format!("approved {id}").as_str()), "{out}");
    let remembered = lines.next().unwrap_or_default();
    // The grant as made, even when the agent has used it by the time it is printed.
    assert!(
        remembered.starts_with("  remembered as grant ")
            && remembered.ends_with(
                "later calls of delete_file by session s-42 run without asking, for 2h 0m or 2 uses, whichever ends \
                 first"
            ),
        "{out}"
    );
    let grant_id = remembered
        .strip_prefix("  remembered as grant ")
        .and_then(|r| r.split(':').next())
        .unwrap()
        .to_owned();
    assert_eq!(agent.result()["ran"]["path"], "tmp/0.txt");
    // The next two run without parking.
    assert_eq!(agent.result()["ran"]["path"], "tmp/1.txt");
    assert_eq!(agent.result()["ran"]["path"], "tmp/2.txt");
    // The grant is used up: the fourth is asked.
    let last = agent.parked();
    let (list, _) = exits(&cli(&db, &["grants", "list"]), 0);
    assert_eq!(
        list.trim(),
        "no active grants (--all lists the expired, used up and revoked ones too)"
    );
    let (all, _) = exits(&cli(&db, &["grants", "list", "--all"]), 0);
    let row = all
        .lines()
        .find(|l| l.starts_with(&grant_id))
        .unwrap_or_else(|| panic!("{all}"));
    for part in [
        "delete_file",
        "session s-42",
        "0 left / 2 used",
        "alice",
        &id,
        "used up",
    ] {
        assert!(row.contains(part), "{part:?} in {row}");
    }
    exits(&cli(&db, &["deny", &last]), 0);
    assert_eq!(agent.result()["reason"], "user_denied");

    // The audit names the grant and who made it on the calls it let through.
    let audit = audit_lines(&dir.path().join("audit.log"));
    let by_grant: Vec<&Value> = audit.iter().filter(|l| l["grant"]["by"] == "alice").collect();
    assert_eq!(by_grant.len(), 2, "{audit:?}");
    assert!(by_grant
        .iter()
        .all(|l| l["grant"]["id"] == grant_id.as_str() && l["decision"] == "allowed"));
    let (shown, _) = exits(&cli(&db, &["show", &id]), 0);
    assert!(
        shown.contains(&format!(
            "Grant     : {grant_id} (session s-42, used up; 2 used, 0 left)"
        )),
        "{shown}"
    );
}

#[test]
fn grants_list_shows_a_narrowed_grant_and_revoke_ends_it_printing_its_final_use_count() {
    // Expected to pass once the SQLite store keeps grants (branch ans-stores).
    let (dir, db) = db();
    let calls = vec![
        call("write_file", json!({"path": "reports/a.csv"})),
        call("write_file", json!({"path": "reports/b.csv"})),
        call("write_file", json!({"path": "secrets/c.csv"})),
        call("write_file", json!({"path": "reports/d.csv"})),
    ];
    let mut agent = start_agent(dir.path(), &db, None, calls);
    let id = agent.parked();
    exits(
        &cli(
            &db,
            &[
                "approve",
                &id,
                "--actor",
                "alice",
                "--remember",
                "agent",
                "--when",
                r#"path = { under = "reports" }"#,
            ],
        ),
        0,
    );
    assert_eq!(agent.result()["ran"]["path"], "reports/a.csv");
    assert_eq!(agent.result()["ran"]["path"], "reports/b.csv", "covered by the grant");
    let outside = agent.parked();
    // One active grant, as a table and as JSON.
    let (list, _) = exits(&cli(&db, &["grants", "list"]), 0);
    assert!(list.starts_with("GRANT "), "{list}");
    let row = list.lines().nth(1).unwrap();
    for part in [
        "write_file",
        "agent support-bot",
        "1 used",
        "in 59m",
        "alice",
        &id,
        "active",
        r#"path = { under = "reports" }"#,
    ] {
        assert!(row.contains(part), "{part:?} in {row}");
    }
    let (json_list, _) = exits(&cli(&db, &["grants", "list", "--json"]), 0);
    let json_list: Value = serde_json::from_str(&json_list).unwrap();
    let grant = &json_list[0];
    assert_eq!(grant["status"], "active");
    assert_eq!(grant["used"], 1);
    assert_eq!(grant["scope"], "agent");
    assert_eq!(grant["from_request"], id.as_str());
    let grant_id = grant["id"].as_str().unwrap().to_owned();

    let (out, _) = exits(&cli(&db, &["grants", "revoke", &grant_id, "--actor", "bob"]), 0);
    assert_eq!(
        out.trim(),
        format!(
            "revoked grant {grant_id} (write_file for agent support-bot): used 1 time; it lets nothing through from now on"
        )
    );
    let (out, _) = exits(&cli(&db, &["grants", "revoke", &grant_id]), 0);
    assert!(
        out.contains("was already revoked by bob") && out.contains("it was used 1 time"),
        "{out}"
    );
    let (list, _) = exits(&cli(&db, &["grants", "list"]), 0);
    assert!(list.starts_with("no active grants"), "{list}");
    let (all, _) = exits(&cli(&db, &["grants", "list", "--all"]), 0);
    assert!(all.contains(&grant_id) && all.contains("revoked"), "{all}");

    // Revoked: a call it would have covered is asked again.
    exits(&cli(&db, &["deny", &outside]), 0);
    assert_eq!(agent.result()["reason"], "user_denied");
    let again = agent.parked();
    exits(&cli(&db, &["approve", &again]), 0);
    assert_eq!(agent.result()["ran"]["path"], "reports/d.csv");
}

#[test]
fn grants_list_on_a_store_without_grants_and_revoke_of_an_unknown_grant_exits_3() {
    let (_d, db) = db();
    let (list, _) = exits(&cli(&db, &["grants", "list"]), 0);
    assert_eq!(
        list.trim(),
        "no active grants (--all lists the expired, used up and revoked ones too)"
    );
    let (list, _) = exits(&cli(&db, &["grants", "list", "--all"]), 0);
    assert_eq!(list.trim(), "no grants");
    let (list, _) = exits(&cli(&db, &["grants", "list", "--json"]), 0);
    assert_eq!(list.trim(), "[]");
    let (_, err) = exits(
        &cli(&db, &["grants", "revoke", "6d0f5c4a-1b2e-4c3d-9e8f-7a6b5c4d3e2f"]),
        3,
    );
    assert!(
        err.contains("unknown grant 6d0f5c4a-1b2e-4c3d-9e8f-7a6b5c4d3e2f: not in this store")
            && err.contains("agentguard grants list --all"),
        "{err}"
    );
}

const QUORUM_POLICY: &str = r#"
[principals]
"billing-bot" = ["dave"]

[[rule]]
name = "payments need two"
tools = ["charge_card"]
action = "ask"
approvers = ["alice", "bob", "carol", "dave"]
quorum = 2
"#;

#[test]
fn quorum_votes_from_the_cli_show_progress_and_the_second_approval_runs_the_call() {
    // Expected to pass once the SQLite store keeps votes (branch ans-stores).
    let (dir, db) = db();
    let mut charge = call("charge_card", json!({"amount_eur": 900}));
    charge.agent = Some("billing-bot".to_owned());
    let mut agent = start_agent(dir.path(), &db, Some(QUORUM_POLICY), vec![charge]);
    let id = agent.parked();

    let (out, _) = exits(&cli(&db, &["approve", &id, "--actor", "alice"]), 0);
    assert_eq!(
        out.trim(),
        format!("request {id}: vote recorded: 1 of 2 approvals, waiting for bob or carol")
    );
    let (_, err) = exits(&cli(&db, &["approve", &id, "--actor", "alice"]), 10);
    assert!(
        err.contains("already voted") && err.contains("here: 1 of 2 approvals"),
        "{err}"
    );
    for actor in ["dave", "billing-bot"] {
        let (_, err) = exits(&cli(&db, &["approve", &id, "--actor", actor]), 12);
        assert!(err.contains("own request"), "{actor}: {err}");
    }
    let (_, err) = exits(&cli(&db, &["approve", &id, "--actor", "dave"]), 12);
    assert!(err.contains("dave is mapped to the agent billing-bot"), "{err}");
    let (_, err) = exits(&cli(&db, &["approve", &id, "--actor", "mallory"]), 11);
    assert!(
        err.contains("not an approver") && err.contains("mallory is not one of its approvers: alice, bob, carol, dave"),
        "{err}"
    );
    let out = Command::new(BIN)
        .arg("--store")
        .arg(format!("sqlite:{}", db.display()))
        .args(["approve", &id])
        .env_remove("USER")
        .env_remove("AGENTGUARD_STORE")
        .output()
        .unwrap();
    let (_, err) = exits(&out, 11);
    assert!(err.contains("no actor given: pass --actor NAME"), "{err}");
    let (_, err) = exits(
        &cli(
            &db,
            &["approve", &id, "--actor", "bob", "--edit", r#"{"amount_eur": 9}"#],
        ),
        13,
    );
    assert!(
        err.contains("it needs a quorum: approve (without --edit) or deny only"),
        "{err}"
    );
    let (_, err) = exits(&cli(&db, &["respond", &id, "paid already", "--actor", "bob"]), 13);
    assert!(err.contains("not allowed for this request"), "{err}");
    let (_, err) = exits(
        &cli(&db, &["approve", &id, "--actor", "bob", "--remember", "agent"]),
        13,
    );
    assert!(
        err.contains("no standing grant: a quorum request makes no standing grant"),
        "{err}"
    );

    // Progress where a person looks.
    let (pending, _) = exits(&cli(&db, &["pending"]), 0);
    assert!(
        pending.contains("quorum: 1 of 2 approvals, waiting for bob or carol"),
        "{pending}"
    );
    let (pending, _) = exits(&cli(&db, &["pending", "--json"]), 0);
    let pending: Value = serde_json::from_str(&pending).unwrap();
    assert_eq!(pending[0]["progress"]["approvals"], 1, "{pending}");
    assert_eq!(
        pending[0]["progress_text"],
        "1 of 2 approvals, waiting for bob or carol"
    );
    let (shown, _) = exits(&cli(&db, &["show", &id]), 0);
    assert!(
        shown.contains(
            "Quorum    : 1 of 2 approvals, waiting for bob or carol (approvers: alice, bob, carol, dave; 1 denial ends it)"
        ) && shown.contains("Vote      : alice approved "),
        "{shown}"
    );
    assert!(agent.child.try_wait().unwrap().is_none(), "one vote runs nothing");

    let (out, _) = exits(&cli(&db, &["approve", &id, "--actor", "bob"]), 0);
    assert_eq!(
        out,
        format!("approved {id}\n  quorum: 2 of 2 approvals; decided by alice, bob\n"),
    );
    assert_eq!(agent.result()["ran"]["amount_eur"], 900);
    let audit = audit_lines(&dir.path().join("audit.log"));
    let votes: Vec<&Value> = audit.iter().filter(|l| l["event"] == "vote").collect();
    assert_eq!(votes.len(), 2, "{audit:?}");
}

#[test]
fn an_answer_the_request_does_not_allow_exits_13_saying_why_and_decides_nothing() {
    // Expected to pass once the SQLite store applies the shared transition (branch ans-stores).
    let (dir, db) = db();
    let policy = r#"
[[rule]]
name = "deploys are always asked"
tools = ["deploy"]
action = "ask"
remember = false
"#;
    let mut fixed = call("delete_record", json!({"id": 7}));
    fixed.refuse_edits = Some("its arguments are read from the ticket".to_owned());
    let mut no_session = call("delete_record", json!({"id": 8}));
    no_session.session = None;
    let mut agent = start_agent(
        dir.path(),
        &db,
        Some(policy),
        vec![call("deploy", json!({"env": "prod"})), fixed, no_session],
    );
    let id = agent.parked();
    let (_, err) = exits(&cli(&db, &["approve", &id, "--remember", "session"]), 13);
    assert!(
        err.contains("nothing was decided")
            && err.contains("here: no standing grant: policy rule \"deploys are always asked\" says remember = false"),
        "{err}"
    );
    let (shown, _) = exits(&cli(&db, &["show", &id]), 0);
    assert!(
        shown.contains("State     : pending") && shown.contains("Remember  : refused: policy rule"),
        "{shown}"
    );
    exits(&cli(&db, &["approve", &id]), 0);
    assert_eq!(agent.result()["ran"]["env"], "prod");

    let id = agent.parked();
    let (_, err) = exits(&cli(&db, &["approve", &id, "--edit", r#"{"id": 9}"#]), 13);
    assert!(
        err.contains("here: it takes no edited arguments: its arguments are read from the ticket"),
        "{err}"
    );
    let (shown, _) = exits(&cli(&db, &["show", &id]), 0);
    assert!(
        shown.contains("Edits     : refused: its arguments are read from the ticket"),
        "{shown}"
    );
    exits(&cli(&db, &["approve", &id]), 0);
    assert_eq!(agent.result()["ran"]["id"], 7);

    let id = agent.parked();
    let (_, err) = exits(&cli(&db, &["approve", &id, "--remember", "session"]), 13);
    assert!(
        err.contains("the call has no session id, so --remember session covers nothing"),
        "{err}"
    );
    exits(&cli(&db, &["deny", &id]), 0);
    assert_eq!(agent.result()["reason"], "user_denied");
}

#[test]
fn approve_refuses_bad_edit_json_naming_the_line_and_column_before_anything_is_decided() {
    let (dir, db) = db();
    let (req, agent) = agent(&db, Duration::from_secs(30));
    let id = req.request_id().as_str();
    let (_, err) = exits(&cli(&db, &["approve", id, "--edit", r#"{"id" 7}"#]), 2);
    assert!(
        err.contains("--edit: not valid JSON at line 1, column 7: expected `:`")
            && err.contains("\n  {\"id\" 7}\n        ^\n")
            && err.contains("as one JSON object, e.g. --edit"),
        "{err}"
    );
    let (_, err) = exits(&cli(&db, &["approve", id, "--edit", "[7]"]), 2);
    assert!(
        err.contains("must be a JSON object") && err.contains("not an array"),
        "{err}"
    );
    let file = dir.path().join("edit.json");
    std::fs::write(&file, "{\n  \"id\": 7,\n  \"note\": tru\n}\n").unwrap();
    let at = format!("@{}", file.display());
    let (_, err) = exits(&cli(&db, &["approve", id, "--edit", &at]), 2);
    assert!(
        err.contains(&format!("--edit {at}: not valid JSON at line 3, column"))
            && err.contains("\n    \"note\": tru\n"),
        "{err}"
    );
    let (_, err) = exits(&cli(&db, &["approve", id, "--edit", "@/nonexistent/edit.json"]), 2);
    assert!(err.contains("cannot read /nonexistent/edit.json"), "{err}");
    let (_, err) = exits(&cli_stdin(&db, &["approve", id, "--edit", "-"], ""), 2);
    assert!(err.contains("--edit - (stdin): no arguments given"), "{err}");
    // Nothing was decided: the call is still waiting.
    let (pending, _) = exits(&cli(&db, &["pending"]), 0);
    assert!(pending.contains(id), "{pending}");
    exits(&cli(&db, &["deny", id]), 0);
    agent.join().unwrap().unwrap_err();
}

#[test]
fn approve_refuses_a_bad_standing_grant_before_anything_is_decided() {
    let (_d, db) = db();
    let (req, agent) = agent(&db, Duration::from_secs(30));
    let id = req.request_id().as_str();
    let cases: [(&[&str], &str); 10] = [
        (
            &["--remember", "session", "--for", "2x"],
            "unknown unit `x` in `2x`: use ms, s, m, h or d",
        ),
        (&["--remember", "session", "--for", "soon"], "`soon` is not a duration"),
        (
            &["--remember", "session", "--for", "500ms"],
            "a grant lasts whole seconds; give at least 1s",
        ),
        (
            &["--remember", "session", "--for", "31d"],
            "--for: a grant lasts at most 30 days",
        ),
        (
            &["--remember", "session", "--uses", "0"],
            "--uses: uses must be at least 1",
        ),
        (
            &["--remember", "session", "--uses=-1"],
            "invalid value '-1' for '--uses <N>'",
        ),
        (
            &["--remember", "sometimes"],
            "--remember: unknown scope \"sometimes\": write call (this call only), session, agent or everyone",
        ),
        (
            &["--for", "2h", "--uses", "3"],
            "--for, --uses shape a standing grant, but no --remember given: add --remember session, agent or everyone",
        ),
        (
            &["--remember", "call", "--when", "a = { le = 1 }"],
            "--remember call makes no standing grant",
        ),
        (
            &["--remember", "session", "--when", r#"amount = { gt = "100" }"#],
            "line 1, column",
        ),
    ];
    for (flags, says) in cases {
        let mut args = vec!["approve", id];
        args.extend_from_slice(flags);
        let (_, err) = exits(&cli(&db, &args), 2);
        assert!(err.contains(says), "{flags:?}: {err}");
    }
    // A condition over several lines names the line at fault.
    let when = "path = { under = \"./reports\" }\namount = { gt = \"100\" }";
    let (_, err) = exits(&cli(&db, &["approve", id, "--remember", "session", "--when", when]), 2);
    assert!(
        err.starts_with("agentguard: --when: ") && err.contains("line 2") && err.contains("gt = 100"),
        "{err}"
    );
    let (pending, _) = exits(&cli(&db, &["pending"]), 0);
    assert!(pending.contains(id), "nothing was decided: {pending}");
    exits(&cli(&db, &["deny", id]), 0);
    agent.join().unwrap().unwrap_err();
}

#[test]
fn respond_refuses_an_empty_text_or_control_characters_with_exit_2() {
    let (_d, db) = db();
    let (req, agent) = agent(&db, Duration::from_secs(30));
    let id = req.request_id().as_str();
    for (text_, says) in [
        ("", "the response is empty"),
        ("   ", "the response is empty"),
        ("done\x1b[2K", "control character (U+001B)"),
    ] {
        let (_, err) = exits(&cli(&db, &["respond", id, text_]), 2);
        assert!(err.contains(says), "{text_:?}: {err}");
    }
    let (_, err) = exits(&cli_stdin(&db, &["respond", id, "-"], "\n"), 2);
    assert!(err.contains("the response is empty"), "{err}");
    let (_, err) = exits(&cli(&db, &["respond", "not-an-id", "done"]), 2);
    assert!(err.contains("expected a UUID"), "{err}");
    let (_, err) = exits(
        &cli(&db, &["respond", "3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d", "done"]),
        3,
    );
    assert!(err.contains("unknown request"), "{err}");
    let (pending, _) = exits(&cli(&db, &["pending"]), 0);
    assert!(pending.contains(id), "nothing was decided: {pending}");
    exits(&cli(&db, &["deny", id]), 0);
    agent.join().unwrap().unwrap_err();
}

#[test]
fn approve_with_a_reason_records_it_as_the_note() {
    let (_d, db) = db();
    let (req, agent) = agent(&db, Duration::from_secs(30));
    let id = req.request_id().as_str();
    let (_, err) = exits(&cli(&db, &["approve", id, "--reason", "ok\x07"]), 2);
    assert!(err.contains("--reason: a control character (U+0007)"), "{err}");
    exits(
        &cli(&db, &["approve", id, "--actor", "alice", "--reason", "ticket 4821"]),
        0,
    );
    assert_eq!(agent.join().unwrap().unwrap(), "ran");
    let (shown, _) = exits(&cli(&db, &["show", id]), 0);
    assert!(
        shown.contains("Note      : ticket 4821") && shown.contains("Actor     : alice"),
        "{shown}"
    );
}

#[test]
fn the_cli_edits_remembers_responds_and_revokes_through_postgres() {
    // Expected to pass once the PostgreSQL store keeps answer kinds and grants (branch ans-stores).
    let Ok(server) = std::env::var("AGENTGUARD_TEST_POSTGRES_URL") else {
        eprintln!("skipped: AGENTGUARD_TEST_POSTGRES_URL is not set; .ci/run sets it");
        return;
    };
    let schema = format!("cli_{}", agentguard::RequestId::new().as_str().replace('-', ""));
    let url = format!("{server}?schema={schema}");
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentProcess::start(&AgentScript {
        store: url.clone(),
        audit: dir.path().join("audit.log"),
        policy: None,
        timeout_ms: 60_000,
        calls: vec![
            call("delete_file", json!({"path": "tmp/a.txt"})),
            call("delete_file", json!({"path": "tmp/b.txt"})),
            call("delete_file", json!({"path": "tmp/c.txt"})),
        ],
    });
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(["--store", &url])
            .args(args)
            .env_remove("AGENTGUARD_STORE")
            .output()
            .unwrap()
    };
    let id = agent.parked();
    let edit = dir.path().join("edit.json");
    std::fs::write(&edit, r#"{"path": "tmp/a2.txt"}"#).unwrap();
    let at = format!("@{}", edit.display());
    let (out, _) = exits(
        &run(&[
            "approve",
            &id,
            "--edit",
            &at,
            "--actor",
            "alice",
            "--remember",
            "everyone",
            "--uses",
            "1",
        ]),
        0,
    );
    assert!(
        out.contains("remembered as grant") && out.contains("by everyone run without asking, for 1 use"),
        "{out}"
    );
    assert_eq!(agent.result()["ran"]["path"], "tmp/a2.txt");
    assert_eq!(agent.result()["ran"]["path"], "tmp/b.txt", "the one use of the grant");
    let id = agent.parked();
    exits(&run(&["respond", &id, "already gone", "--actor", "alice"]), 0);
    assert_eq!(agent.result()["response"], "already gone");
    let (list, _) = exits(&run(&["grants", "list", "--all", "--json"]), 0);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["status"], "used up", "{list}");
    assert_eq!(list[0]["used"], 1, "{list}");
    let grant_id = list[0]["id"].as_str().unwrap();
    let (out, _) = exits(&run(&["grants", "revoke", grant_id, "--json"]), 0);
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["grant"]["status"], "revoked");
    assert_eq!(out["grant"]["used"], 1);
    assert_eq!(out["already_revoked"], false);
}
