//! `agentguard mcp` against the real reference MCP servers from npm (`@modelcontextprotocol/server-filesystem`,
//! `@modelcontextprotocol/server-everything`, installed in tests/mcp/node_modules by `.ci/run`), driven by rmcp's
//! client and, in one test, by the official Python SDK. Every gateway is the real `agentguard` binary as a process;
//! approvals go over the real approval API it serves (`--serve`).
//!
//! Under CI=true a missing npm install or Python `mcp` package fails the tests; elsewhere they print a note and pass
//! without running.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, ProgressNotificationParam, Tool};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt as _};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_agentguard");
const TOKEN: &str = "alice-token-0123456789abcdef";

/// Under CI (`CI` set, as in the other tests) a missing dependency fails a test instead of skipping it.
fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// A reference server's executable from tests/mcp/node_modules, or None (outside CI) when npm has not installed it.
fn node_server(name: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/mcp/node_modules/.bin")
        .join(name);
    if path.exists() {
        return Some(path);
    }
    let hint = "run `npm ci --prefix tests/mcp` (as .ci/run does)";
    if in_ci() {
        panic!("{} is missing under CI: {hint}", path.display());
    }
    eprintln!("note: skipping: {} is missing; {hint}", path.display());
    None
}

/// A temp dir holding `root/a.txt` ("hello\n") for the filesystem server, and the store and audit paths.
struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    audit: PathBuf,
    store: String,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    // The server resolves symlinks in its allowed directories; use the canonical path so paths match.
    let root = root.canonicalize().unwrap();
    std::fs::write(root.join("a.txt"), "hello\n").unwrap();
    let audit = tmp.path().join("audit.log");
    let store = format!("sqlite:{}", tmp.path().join("store.db").display());
    Dirs {
        _tmp: tmp,
        root,
        audit,
        store,
    }
}

/// The rmcp client side: records progress notifications.
#[derive(Clone, Default)]
struct Recorder {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl ClientHandler for Recorder {
    async fn on_progress(&self, params: ProgressNotificationParam, _context: NotificationContext<RoleClient>) {
        self.progress.lock().unwrap().push(params);
    }
}

/// A running `agentguard mcp` with the rmcp client connected over its stdio, and where its approval API is.
struct Gateway {
    client: RunningService<RoleClient, Recorder>,
    recorder: Recorder,
    api: String,
    pid: u32,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// Starts `agentguard mcp --serve 127.0.0.1:0 <extra> -- <upstream>` and connects rmcp's client to it.
async fn gateway(extra: &[&str], upstream: &[&str]) -> Gateway {
    let mut cmd = Command::new(BIN);
    cmd.arg("mcp")
        .args(["--serve", "127.0.0.1:0", "--token", &format!("alice={TOKEN}")]);
    cmd.args(extra).arg("--").args(upstream);
    let (transport, stderr) = TokioChildProcess::builder(cmd).stderr(Stdio::piped()).spawn().unwrap();
    let pid = transport.id().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    let mut reader = BufReader::new(stderr.unwrap()).lines();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        while let Ok(Some(line)) = reader.next_line().await {
            eprintln!("[gateway] {line}");
            if let Some(rest) = line.strip_prefix("agentguard mcp: approval page at ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.trim_end_matches('/').to_owned());
                }
            }
            seen.lock().unwrap().push(line);
        }
    });
    let recorder = Recorder::default();
    let client = recorder
        .clone()
        .serve(transport)
        .await
        .expect("the gateway answers initialize");
    let api = tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("the gateway prints its approval page address")
        .unwrap();
    Gateway {
        client,
        recorder,
        api,
        pid,
        stderr: lines,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

impl Gateway {
    async fn pending(&self) -> Vec<Value> {
        let res = http()
            .get(format!("{}/pending", self.api))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.status());
        res.json().await.unwrap()
    }

    /// Waits until exactly one request is pending, and returns it.
    async fn parked(&self) -> Value {
        for _ in 0..400 {
            let list = self.pending().await;
            if let [one] = list.as_slice() {
                return one.clone();
            }
            assert!(list.len() < 2, "more than one request pending: {list:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no request was parked");
    }

    async fn resolve(&self, request: &Value, approved: bool, reason: Option<&str>) -> Value {
        let mut body = json!({ "approved": approved });
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        self.answer(request, body).await
    }

    /// Answers `request` with `body` (`approved`, or a `kind`: edit, respond) through the HTTP API, showing the digest
    /// of the params it was shown.
    async fn answer(&self, request: &Value, mut body: Value) -> Value {
        body["request_id"] = request["request_id"].clone();
        body["params_digest"] = request["params_digest"].clone();
        let res = http()
            .post(format!("{}/resolve", self.api))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        res.json().await.unwrap()
    }

    async fn call(&self, name: &str, args: Value) -> CallToolResult {
        let args = args.as_object().unwrap().clone();
        self.client
            .call_tool(CallToolRequestParams::new(name.to_owned()).with_arguments(args))
            .await
            .expect("a tools/call answer (a denial is a result, not a protocol error)")
    }
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("")
}

fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn fs_gateway_args<'a>(d: &'a Dirs, timeout: &'a str) -> Vec<String> {
    vec![
        "--store".into(),
        d.store.clone(),
        "--audit".into(),
        d.audit.display().to_string(),
        "--timeout".into(),
        timeout.into(),
        "--name".into(),
        "fs".into(),
    ]
}

async fn fs_gateway(d: &Dirs, timeout: &str, extra: &[&str]) -> Option<Gateway> {
    let server = node_server("mcp-server-filesystem")?;
    let mut args = fs_gateway_args(d, timeout);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Some(gateway(&args, &[server.to_str().unwrap(), d.root.to_str().unwrap()]).await)
}

fn sorted_json(tools: &[Tool]) -> Vec<Value> {
    let mut v: Vec<Value> = tools.iter().map(|t| serde_json::to_value(t).unwrap()).collect();
    v.sort_by_key(|t| t["name"].as_str().unwrap().to_owned());
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_list_through_the_gateway_is_the_servers_own() {
    let d = dirs();
    let Some(server) = node_server("mcp-server-filesystem") else {
        return;
    };
    let mut direct = Command::new(&server);
    direct.arg(&d.root);
    let direct = ().serve(TokioChildProcess::new(direct).unwrap()).await.unwrap();
    let want = sorted_json(&direct.list_all_tools().await.unwrap());
    let gw = fs_gateway(&d, "60s", &[]).await.unwrap();
    let got = sorted_json(&gw.client.list_all_tools().await.unwrap());
    assert_eq!(got, want);
    assert!(want.len() >= 10, "{want:?}");
    let info = gw.client.peer_info().unwrap();
    assert_eq!(
        info.server_info.as_ref().unwrap().name,
        direct.peer_info().unwrap().server_info.as_ref().unwrap().name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_call_passes_unasked_and_is_audited_with_the_server() {
    let d = dirs();
    let Some(gw) = fs_gateway(&d, "60s", &[]).await else {
        return;
    };
    let path = d.root.join("a.txt");
    let result = gw.call("read_text_file", json!({"path": path})).await;
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert_eq!(text(&result), "hello\n");
    assert!(gw.pending().await.is_empty());
    // A safe call's line rides the gateway's next audit batch: written just after the call, not before it returns.
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(line) = audit_lines(&d.audit)
            .into_iter()
            .find(|l| l["tool"] == "read_text_file")
        {
            break line;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "no audit line for the call within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(line["decision"], "allowed");
    assert_eq!(line["server"], "fs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_file_parks_until_approved_over_http_then_the_file_exists() {
    let d = dirs();
    let Some(gw) = fs_gateway(&d, "60s", &["--progress-interval", "100ms"]).await else {
        return;
    };
    let gw = Arc::new(gw);
    let target = d.root.join("b.txt");
    let call = {
        let gw = gw.clone();
        let target = target.clone();
        tokio::spawn(async move {
            gw.call("write_file", json!({"path": target, "content": "approved\n"}))
                .await
        })
    };
    let parked = gw.parked().await;
    assert_eq!(parked["tool"], "write_file");
    assert_eq!(parked["server"], "fs");
    assert_eq!(parked["params"]["content"], "approved\n");
    assert!(!target.exists(), "the file was written before approval");
    // While parked, the client (which gave a progress token) hears that the call waits.
    for _ in 0..100 {
        if !gw.recorder.progress.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let progress = gw.recorder.progress.lock().unwrap().clone();
    assert!(
        progress
            .iter()
            .any(|p| p.message.as_deref().is_some_and(|m| m.contains("approve"))),
        "{progress:?}"
    );
    let answer = gw.resolve(&parked, true, None).await;
    assert_eq!(answer["outcome"], "RESOLVED", "{answer}");
    let result = call.await.unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "approved\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_write_file_writes_what_the_approver_wrote_and_the_client_is_told() {
    let d = dirs();
    let Some(gw) = fs_gateway(&d, "60s", &[]).await else {
        return;
    };
    let gw = Arc::new(gw);
    let asked = d.root.join("asked.txt");
    let fixed = d.root.join("fixed.txt");
    let call = {
        let gw = gw.clone();
        let asked = asked.clone();
        tokio::spawn(async move {
            gw.call("write_file", json!({"path": asked, "content": "draft\n"}))
                .await
        })
    };
    let parked = gw.parked().await;
    let answer = gw
        .answer(
            &parked,
            json!({"kind": "edit", "params": {"path": fixed, "content": "final\n"}}),
        )
        .await;
    assert_eq!(answer["outcome"], "RESOLVED", "{answer}");
    let result = call.await.unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert!(!asked.exists(), "the agent's own arguments did not run");
    assert_eq!(std::fs::read_to_string(&fixed).unwrap(), "final\n");
    let said = text(&result);
    assert!(said.contains("edited the arguments"), "the client is told: {said}");
    let lines = audit_lines(&d.audit);
    assert!(lines.iter().any(|l| l["decision"] == "edited"), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_is_the_tools_result_and_nothing_is_written() {
    let d = dirs();
    let Some(gw) = fs_gateway(&d, "60s", &[]).await else {
        return;
    };
    let gw = Arc::new(gw);
    let target = d.root.join("b.txt");
    let call = {
        let gw = gw.clone();
        let target = target.clone();
        tokio::spawn(async move { gw.call("write_file", json!({"path": target, "content": "x\n"})).await })
    };
    let parked = gw.parked().await;
    let answer = gw
        .answer(
            &parked,
            json!({"kind": "respond", "response": "b.txt already has that content"}),
        )
        .await;
    assert_eq!(answer["outcome"], "RESOLVED", "{answer}");
    let result = call.await.unwrap();
    assert_ne!(
        result.is_error,
        Some(true),
        "a response is a result, not an error: {result:?}"
    );
    assert_eq!(text(&result), "b.txt already has that content");
    assert!(!target.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_write_file_leaves_no_file_and_the_client_reads_the_reason() {
    let d = dirs();
    let Some(gw) = fs_gateway(&d, "60s", &[]).await else {
        return;
    };
    let gw = Arc::new(gw);
    let target = d.root.join("b.txt");
    let call = {
        let gw = gw.clone();
        let target = target.clone();
        tokio::spawn(async move { gw.call("write_file", json!({"path": target, "content": "no\n"})).await })
    };
    let parked = gw.parked().await;
    let answer = gw.resolve(&parked, false, Some("not in the notes folder")).await;
    assert_eq!(answer["outcome"], "RESOLVED", "{answer}");
    let result = call.await.unwrap();
    assert_eq!(result.is_error, Some(true), "{result:?}");
    let said = text(&result);
    assert!(said.starts_with("Blocked by AgentGuard (user_denied"), "{said}");
    assert_eq!(said.matches("not in the notes folder").count(), 1, "{said}");
    assert!(said.contains("not in the notes folder"), "{said}");
    assert!(!target.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_write_file_is_denied_at_the_timeout() {
    let d = dirs();
    let Some(gw) = fs_gateway(&d, "1s", &[]).await else {
        return;
    };
    let target = d.root.join("b.txt");
    let result = gw
        .call("write_file", json!({"path": target, "content": "late\n"}))
        .await;
    assert_eq!(result.is_error, Some(true), "{result:?}");
    assert!(text(&result).contains("approval_timeout"), "{}", text(&result));
    assert!(!target.exists());
}

/// The pid of a child of `parent` (Linux /proc).
fn child_of(parent: u32) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()? {
        let entry = entry.ok()?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces, so read after the last ')'.
        let after = &stat[stat.rfind(')')? + 2..];
        let ppid: u32 = after.split(' ').nth(1)?.parse().ok()?;
        if ppid == parent {
            return Some(pid);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_crash_denies_the_pending_call_and_later_calls_error() {
    let d = dirs();
    let Some(gw) = fs_gateway(&d, "60s", &[]).await else {
        return;
    };
    let gw = Arc::new(gw);
    let target = d.root.join("b.txt");
    let call = {
        let gw = gw.clone();
        let target = target.clone();
        tokio::spawn(async move { gw.call("write_file", json!({"path": target, "content": "x"})).await })
    };
    let parked = gw.parked().await;
    let server = child_of(gw.pid).expect("the upstream server is the gateway's child");
    let killed = std::process::Command::new("kill")
        .args(["-9", &server.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let result = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the parked call ends")
        .unwrap();
    assert_eq!(result.is_error, Some(true), "{result:?}");
    assert!(
        text(&result).contains("user_denied") && text(&result).contains("exited"),
        "{}",
        text(&result)
    );
    assert!(gw.pending().await.is_empty());
    // The approval page no longer offers it, and approving it now changes nothing.
    let late = gw.resolve(&parked, true, None).await;
    assert_ne!(late["outcome"], "RESOLVED", "{late}");
    assert!(!target.exists());
    let lines = audit_lines(&d.audit);
    let line = lines
        .iter()
        .find(|l| l["tool"] == "write_file")
        .expect("an audit line for the denied call");
    assert_eq!(line["decision"], "denied", "{line}");
    assert!(line.to_string().contains("agentguard-mcp"), "{line}");
    let later = gw.call("read_text_file", json!({"path": d.root.join("a.txt")})).await;
    assert_eq!(later.is_error, Some(true));
    assert!(text(&later).contains("has exited"), "{}", text(&later));
    assert!(gw
        .stderr
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("server `fs`") && l.contains("exited")));
}

/// A gateway driven over raw stdio lines (no client library), so the test decides how the client goes away.
struct RawGateway {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    api: String,
}

async fn raw_gateway(d: &Dirs, server: &Path) -> RawGateway {
    let mut child = Command::new(BIN)
        .args(["mcp", "--serve", "127.0.0.1:0", "--token", &format!("alice={TOKEN}")])
        .args(fs_gateway_args(d, "60s"))
        .arg("--")
        .arg(server)
        .arg(&d.root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let api = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), err.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(rest) = line.strip_prefix("agentguard mcp: approval page at ") {
            break rest.trim_end_matches('/').to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = err.next_line().await {} });
    let stdout = child.stdout.take().unwrap();
    tokio::spawn(async move {
        let mut out = BufReader::new(stdout).lines();
        while let Ok(Some(_)) = out.next_line().await {}
    });
    let target = d.root.join("b.txt");
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "write_file", "arguments": {"path": target, "content": "x"}}});
    for line in [
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
        call.to_string(),
    ] {
        stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    }
    stdin.flush().await.unwrap();
    RawGateway {
        child,
        stdin: Some(stdin),
        api,
    }
}

/// After the gateway is gone: the request was denied ("the MCP client went away") in the store and the audit, and
/// the file was never written.
async fn assert_denied_and_never_ran(d: &Dirs, gw: &mut RawGateway, parked: &Value) {
    let status = tokio::time::timeout(Duration::from_secs(10), gw.child.wait())
        .await
        .expect("the gateway exits once its client is gone")
        .unwrap();
    assert!(status.success(), "{status}");
    let out = std::process::Command::new(BIN)
        .args([
            "--store",
            &d.store,
            "--json",
            "show",
            parked["request_id"].as_str().unwrap(),
        ])
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        shown["decision"]["state"],
        "denied",
        "{shown} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(shown["decision"]["note"], "the MCP client went away", "{shown}");
    assert_eq!(shown["decision"]["actor"], "agentguard-mcp", "{shown}");
    let lines = audit_lines(&d.audit);
    let line = lines
        .iter()
        .find(|l| l["tool"] == "write_file")
        .expect("an audit line for the call");
    assert_eq!(line["decision"], "denied", "{line}");
    assert!(!d.root.join("b.txt").exists());
}

async fn parked_on(api: &str) -> Value {
    for _ in 0..400 {
        let res = http()
            .get(format!("{api}/pending"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let list: Vec<Value> = res.json().await.unwrap();
        if let [one] = list.as_slice() {
            return one.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no request was parked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_closing_stdin_while_parked_denies_the_request_and_it_never_runs() {
    let d = dirs();
    let Some(server) = node_server("mcp-server-filesystem") else {
        return;
    };
    let mut gw = raw_gateway(&d, &server).await;
    let parked = parked_on(&gw.api).await;
    assert_eq!(parked["tool"], "write_file");
    drop(gw.stdin.take());
    assert_denied_and_never_ran(&d, &mut gw, &parked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_parked_denies_the_request_and_it_never_runs() {
    let d = dirs();
    let Some(server) = node_server("mcp-server-filesystem") else {
        return;
    };
    let mut gw = raw_gateway(&d, &server).await;
    let parked = parked_on(&gw.api).await;
    let pid = gw.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_denied_and_never_ran(&d, &mut gw, &parked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_an_error_and_the_gateway_stays_up() {
    let d = dirs();
    let Some(server) = node_server("mcp-server-filesystem") else {
        return;
    };
    let mut child = Command::new(BIN)
        .args(["mcp", "--audit", d.audit.to_str().unwrap(), "--"])
        .arg(&server)
        .arg(&d.root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    for line in [
        init,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        "this is not json {",
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":"not an object"}"#,
        r#"{"jsonrpc":"2.0","id":6,"method":"no/such/method"}"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"list_allowed_directories","arguments":{}}}"#,
    ] {
        stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    }
    stdin.flush().await.unwrap();
    let mut answers = Vec::new();
    while answers.iter().all(|a: &Value| a["id"] != 7) {
        let line = tokio::time::timeout(Duration::from_secs(20), out.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        answers.push(serde_json::from_str(&line).unwrap());
    }
    let error_codes: Vec<i64> = answers.iter().filter_map(|a| a["error"]["code"].as_i64()).collect();
    assert!(
        error_codes.contains(&-32600),
        "the bad params are an error: {answers:?}"
    );
    assert!(
        error_codes.contains(&-32601),
        "the unknown method is an error: {answers:?}"
    );
    let last = answers.last().unwrap();
    assert!(
        last["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Allowed directories"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_tools_list_is_a_clear_error_within_the_bound() {
    let d = dirs();
    // Answers initialize, then reads and ignores everything: tools/list never comes back.
    let script = r#"
        const rl = require('readline').createInterface({ input: process.stdin });
        rl.on('line', (l) => {
          const m = JSON.parse(l);
          if (m.method === 'initialize') {
            process.stdout.write(JSON.stringify({ jsonrpc: '2.0', id: m.id, result: {
              protocolVersion: '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'mute', version: '1' } } }) + '\n');
          }
        });
    "#;
    if node_server("mcp-server-filesystem").is_none() {
        return;
    }
    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .args([
            "mcp",
            "--list-timeout",
            "1s",
            "--audit",
            d.audit.to_str().unwrap(),
            "--",
            "node",
            "-e",
            script,
        ])
        .stdin(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did not answer tools/list within 1s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_servers_from_a_config_file_get_prefixed_tools_and_keep_their_gating() {
    let d = dirs();
    let (Some(fs), Some(everything)) = (
        node_server("mcp-server-filesystem"),
        node_server("mcp-server-everything"),
    ) else {
        return;
    };
    let config = d.root.parent().unwrap().join("servers.toml");
    std::fs::write(
        &config,
        format!(
            "[server.fs]\ncommand = {:?}\nargs = [{:?}]\n\n[server.everything]\ncommand = {:?}\n",
            fs.display().to_string(),
            d.root.display().to_string(),
            everything.display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("mcp")
        .args(["--serve", "127.0.0.1:0", "--token", &format!("alice={TOKEN}")]);
    cmd.args([
        "--store",
        &d.store,
        "--audit",
        d.audit.to_str().unwrap(),
        "--timeout",
        "60s",
    ]);
    cmd.arg("--config").arg(&config);
    let (transport, stderr) = TokioChildProcess::builder(cmd).stderr(Stdio::piped()).spawn().unwrap();
    let pid = transport.id().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut reader = BufReader::new(stderr.unwrap()).lines();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        while let Ok(Some(line)) = reader.next_line().await {
            if let Some(rest) = line.strip_prefix("agentguard mcp: approval page at ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.trim_end_matches('/').to_owned());
                }
            }
        }
    });
    let recorder = Recorder::default();
    let client = recorder.clone().serve(transport).await.unwrap();
    let api = rx.await.unwrap();
    let gw = Arc::new(Gateway {
        client,
        recorder,
        api,
        pid,
        stderr: Arc::default(),
    });
    let names: Vec<String> = gw
        .client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"fs__write_file".to_owned()), "{names:?}");
    assert!(names.contains(&"everything__echo".to_owned()), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("fs__") || n.starts_with("everything__")),
        "{names:?}"
    );
    // echo is read-only and its name says nothing dangerous: it passes unasked.
    let echoed = gw.call("everything__echo", json!({"message": "hi"})).await;
    assert_ne!(echoed.is_error, Some(true), "{echoed:?}");
    assert!(text(&echoed).contains("hi"), "{}", text(&echoed));
    // write_file of server fs parks, recorded under its own name and server.
    let target = d.root.join("c.txt");
    let call = {
        let gw = gw.clone();
        let target = target.clone();
        tokio::spawn(async move {
            gw.call("fs__write_file", json!({"path": target, "content": "multi\n"}))
                .await
        })
    };
    let parked = gw.parked().await;
    assert_eq!(parked["tool"], "write_file");
    assert_eq!(parked["server"], "fs");
    gw.resolve(&parked, true, None).await;
    let result = call.await.unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "multi\n");
    let unknown = gw
        .client
        .call_tool(CallToolRequestParams::new("nobody__write_file"))
        .await
        .expect_err("a tool of no server is a protocol error");
    assert!(unknown.to_string().contains("unknown tool"), "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_client_sees_the_same_tools_reads_and_a_timeout_denial() {
    let d = dirs();
    let Some(fs) = node_server("mcp-server-filesystem") else {
        return;
    };
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has_sdk = std::process::Command::new(&python)
        .args(["-c", "import mcp"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_sdk {
        let hint = "install the Python MCP SDK: `pip install -r tests/mcp/requirements.txt` (as .ci/run does)";
        assert!(!in_ci(), "{python} cannot import mcp under CI: {hint}");
        eprintln!("note: skipping: {python} cannot import mcp; {hint}");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/mcp/python_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .args([
            BIN,
            fs.to_str().unwrap(),
            d.root.to_str().unwrap(),
            d.audit.to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["server_name"], "secure-filesystem-server");
    assert!(
        seen["tools"].as_array().unwrap().iter().any(|t| t == "write_file"),
        "{seen}"
    );
    assert_eq!(seen["read_is_error"], false);
    assert_eq!(seen["read_text"], "hello\n");
    assert_eq!(seen["write_is_error"], true);
    assert!(
        seen["write_text"].as_str().unwrap().contains("approval_timeout"),
        "{seen}"
    );
    assert!(!d.root.join("b.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_serves_streamable_http_to_an_rmcp_client() {
    let d = dirs();
    let Some(fs) = node_server("mcp-server-filesystem") else {
        return;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(BIN)
        .args([
            "mcp",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--audit",
            d.audit.to_str().unwrap(),
        ])
        .args(["--timeout", "1s", "--"])
        .arg(&fs)
        .arg(&d.root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), err.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if line.contains("MCP over streamable HTTP at") {
            break;
        }
    }
    // reqwest (under rmcp) is built without a default TLS provider; the gateway installs ring's, and so does this.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(format!("http://127.0.0.1:{port}/mcp"));
    let client = ().serve(transport).await.expect("initialize over streamable HTTP");
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "write_file"));
    let read = client
        .call_tool(
            CallToolRequestParams::new("read_text_file")
                .with_arguments(json!({"path": d.root.join("a.txt")}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert_eq!(text(&read), "hello\n");
    let write = client
        .call_tool(
            CallToolRequestParams::new("write_file").with_arguments(
                json!({"path": d.root.join("b.txt"), "content": "x"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(write.is_error, Some(true));
    assert!(text(&write).contains("approval_timeout"), "{}", text(&write));
    assert!(!d.root.join("b.txt").exists());
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_matching_the_server_allows_and_denies_before_anyone_is_asked() {
    let d = dirs();
    let drafts = d.root.join("drafts");
    std::fs::create_dir(&drafts).unwrap();
    let policy = d.root.parent().unwrap().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"
            default = "classify"

            [[rule]]
            name = "drafts are free to write"
            servers = ["fs"]
            tools = ["write_file"]
            when = {{ path = {{ under = {:?} }} }}
            action = "allow"

            [[rule]]
            name = "no moving files"
            servers = ["fs"]
            tools = ["move_file"]
            action = "deny"
            message = "moving files is not allowed here; copy and ask instead"

            [[rule]]
            name = "another server's writes"
            servers = ["elsewhere"]
            tools = ["write_file"]
            action = "allow"
            "#,
            drafts.display().to_string()
        ),
    )
    .unwrap();
    let Some(gw) = fs_gateway(&d, "1s", &["--policy", policy.to_str().unwrap()]).await else {
        return;
    };
    // Allowed by the rule for server fs: runs unasked although the server marks write_file destructive.
    let draft = drafts.join("d.txt");
    let allowed = gw
        .call("write_file", json!({"path": draft, "content": "draft\n"}))
        .await;
    assert_ne!(allowed.is_error, Some(true), "{allowed:?}");
    assert_eq!(std::fs::read_to_string(&draft).unwrap(), "draft\n");
    // Denied by rule, with its message, and nothing moved.
    let moved = gw
        .call(
            "move_file",
            json!({"source": d.root.join("a.txt"), "destination": d.root.join("z.txt")}),
        )
        .await;
    assert_eq!(moved.is_error, Some(true));
    assert!(
        text(&moved).contains("moving files is not allowed here"),
        "{}",
        text(&moved)
    );
    assert!(d.root.join("a.txt").exists() && !d.root.join("z.txt").exists());
    // Outside drafts no rule of server fs allows it (the `elsewhere` rule names another server): asked, and with
    // nobody answering within 1 s, denied.
    let outside = gw
        .call("write_file", json!({"path": d.root.join("b.txt"), "content": "x"}))
        .await;
    assert_eq!(outside.is_error, Some(true));
    assert!(text(&outside).contains("approval_timeout"), "{}", text(&outside));
    assert!(!d.root.join("b.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_file_with_errors_stops_the_gateway_before_it_serves() {
    let d = dirs();
    let policy = d.root.parent().unwrap().join("bad.toml");
    std::fs::write(&policy, "[[rule]]\nname = \"x\"\naction = \"maybe\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["mcp", "--policy", policy.to_str().unwrap(), "--", "true"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--policy") && err.contains("bad.toml"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_prompts_and_the_servers_progress_pass_through_the_everything_server() {
    let d = dirs();
    let Some(server) = node_server("mcp-server-everything") else {
        return;
    };
    let direct = ().serve(TokioChildProcess::new(Command::new(&server)).unwrap()).await.unwrap();
    let args = [
        "--store",
        &d.store,
        "--audit",
        d.audit.to_str().unwrap(),
        "--progress-interval",
        "100ms",
    ];
    let gw = gateway(&args, &[server.to_str().unwrap()]).await;
    let json = |v: &dyn erased::Ser| v.value();
    assert_eq!(
        json(&gw.client.list_all_resources().await.unwrap()),
        json(&direct.list_all_resources().await.unwrap())
    );
    assert_eq!(
        json(&gw.client.list_all_resource_templates().await.unwrap()),
        json(&direct.list_all_resource_templates().await.unwrap())
    );
    assert_eq!(
        json(&gw.client.list_all_prompts().await.unwrap()),
        json(&direct.list_all_prompts().await.unwrap())
    );
    assert_eq!(
        sorted_json(&gw.client.list_all_tools().await.unwrap()),
        sorted_json(&direct.list_all_tools().await.unwrap())
    );
    let first = direct.list_all_resources().await.unwrap()[0].uri.clone();
    let read = |uri: String| rmcp::model::ReadResourceRequestParams::new(uri);
    assert_eq!(
        json(&gw.client.read_resource(read(first.clone())).await.unwrap()),
        json(&direct.read_resource(read(first)).await.unwrap())
    );
    // A tool the server marks read-only whose name says it runs something: asked anyway. Approved, it reports
    // progress, which reaches the client after the gateway's own "waiting" notes, always increasing.
    let gw = Arc::new(gw);
    let call = {
        let gw = gw.clone();
        tokio::spawn(async move {
            let args = json!({"duration": 1, "steps": 4}).as_object().unwrap().clone();
            gw.client
                .call_tool(CallToolRequestParams::new("trigger-long-running-operation").with_arguments(args))
                .await
                .unwrap()
        })
    };
    let parked = gw.parked().await;
    assert_eq!(parked["tool"], "trigger-long-running-operation");
    tokio::time::sleep(Duration::from_millis(350)).await; // a few "waiting" notes at --progress-interval 100ms
    gw.resolve(&parked, true, None).await;
    let done = call.await.unwrap();
    assert_ne!(done.is_error, Some(true), "{done:?}");
    let progress = gw.recorder.progress.lock().unwrap().clone();
    let waiting = progress
        .iter()
        .filter(|p| p.message.as_deref().is_some_and(|m| m.contains("waiting for a person")))
        .count();
    assert!(waiting >= 1, "{progress:?}");
    assert!(
        progress.len() >= waiting + 3,
        "the server's progress notifications reach the client: {progress:?}"
    );
    assert!(
        progress.windows(2).all(|w| w[1].progress > w[0].progress),
        "{progress:?}"
    );
}

/// Serializes any rmcp value for comparison.
mod erased {
    pub trait Ser {
        fn value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_url_fronts_the_everything_server_over_streamable_http() {
    let d = dirs();
    let Some(server) = node_server("mcp-server-everything") else {
        return;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut upstream = Command::new(&server)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut err = BufReader::new(upstream.stderr.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), err.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if line.contains("listening on port") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = err.next_line().await {} });
    let url = format!("http://127.0.0.1:{port}/mcp");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let direct = ().serve(rmcp::transport::StreamableHttpClientTransport::from_uri(url.clone())).await.unwrap();
    // No -- COMMAND: the gateway's helper adds one, so this one is started by hand.
    let mut cmd = Command::new(BIN);
    cmd.arg("mcp")
        .args(["--serve", "127.0.0.1:0", "--token", &format!("alice={TOKEN}")]);
    cmd.args([
        "--store",
        &d.store,
        "--audit",
        d.audit.to_str().unwrap(),
        "--timeout",
        "60s",
    ]);
    cmd.args(["--upstream", &url]);
    let (transport, stderr) = TokioChildProcess::builder(cmd).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut reader = BufReader::new(stderr.unwrap()).lines();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        while let Ok(Some(line)) = reader.next_line().await {
            if let Some(rest) = line.strip_prefix("agentguard mcp: approval page at ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.trim_end_matches('/').to_owned());
                }
            }
        }
    });
    let pid = transport.id().unwrap();
    let recorder = Recorder::default();
    let client = recorder.clone().serve(transport).await.unwrap();
    let api = rx.await.unwrap();
    let gw = Arc::new(Gateway {
        client,
        recorder,
        api,
        pid,
        stderr: Arc::default(),
    });
    assert_eq!(
        sorted_json(&gw.client.list_all_tools().await.unwrap()),
        sorted_json(&direct.list_all_tools().await.unwrap())
    );
    let echoed = gw.call("echo", json!({"message": "over http"})).await;
    assert_ne!(echoed.is_error, Some(true), "{echoed:?}");
    assert!(text(&echoed).contains("over http"), "{}", text(&echoed));
    let call = {
        let gw = gw.clone();
        tokio::spawn(async move {
            gw.call("trigger-long-running-operation", json!({"duration": 0.2, "steps": 1}))
                .await
        })
    };
    let parked = gw.parked().await;
    assert_eq!(parked["server"], format!("127-0-0-1-{port}"));
    gw.resolve(&parked, false, Some("no")).await;
    let denied = call.await.unwrap();
    assert_eq!(denied.is_error, Some(true));
    let lines = audit_lines(&d.audit);
    assert!(lines
        .iter()
        .any(|l| l["tool"] == "echo" && l["decision"] == "allowed" && l["server"] == parked["server"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_behind_one_gateway_leaves_another_gateways_waiting_call_alone() {
    let d = dirs();
    let Some(first) = fs_gateway(&d, "60s", &[]).await else {
        return;
    };
    let second = fs_gateway(&d, "60s", &[]).await.unwrap();
    let (first, second) = (Arc::new(first), Arc::new(second));
    let mine = d.root.join("first.txt");
    let theirs = d.root.join("second.txt");
    let call1 = {
        let gw = first.clone();
        let p = mine.clone();
        tokio::spawn(async move { gw.call("write_file", json!({"path": p, "content": "1"})).await })
    };
    first.parked().await;
    let call2 = {
        let gw = second.clone();
        let p = theirs.clone();
        tokio::spawn(async move { gw.call("write_file", json!({"path": p, "content": "2"})).await })
    };
    // Both wait in the one shared store, under the same server name.
    for _ in 0..400 {
        if second.pending().await.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(second.pending().await.len(), 2);
    let server = child_of(first.pid).unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-9", &server.to_string()])
        .status()
        .unwrap()
        .success());
    let denied = tokio::time::timeout(Duration::from_secs(20), call1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(denied.is_error, Some(true));
    // The other gateway's call still waits, and runs when approved.
    let left = second.pending().await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["params"]["path"], json!(theirs));
    second.resolve(&left[0], true, None).await;
    let ran = call2.await.unwrap();
    assert_ne!(ran.is_error, Some(true), "{ran:?}");
    assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "2");
    assert!(!mine.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_client_that_ends_its_session_while_parked_denies_the_request() {
    let d = dirs();
    let Some(fs) = node_server("mcp-server-filesystem") else {
        return;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(BIN)
        .args([
            "mcp",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--serve",
            "127.0.0.1:0",
        ])
        .args([
            "--token",
            &format!("alice={TOKEN}"),
            "--store",
            &d.store,
            "--audit",
            d.audit.to_str().unwrap(),
        ])
        .args(["--timeout", "60s", "--"])
        .arg(&fs)
        .arg(&d.root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut api = None;
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), err.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(rest) = line.strip_prefix("agentguard mcp: approval page at ") {
            api = Some(rest.trim_end_matches('/').to_owned());
        }
        if line.contains("MCP over streamable HTTP at") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = err.next_line().await {} });
    let api = api.unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(format!("http://127.0.0.1:{port}/mcp"));
    let client = ().serve(transport).await.unwrap();
    let peer = client.peer().clone();
    let target = d.root.join("b.txt");
    let args = json!({"path": target, "content": "x"}).as_object().unwrap().clone();
    let call = tokio::spawn(async move {
        peer.call_tool(CallToolRequestParams::new("write_file").with_arguments(args))
            .await
    });
    let parked = parked_on(&api).await;
    // The client ends its session (rmcp's cancel closes it with a DELETE).
    client.cancel().await.unwrap();
    call.abort();
    let mut state = Value::Null;
    for _ in 0..200 {
        let res = http()
            .get(format!("{api}/pending"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let list: Vec<Value> = res.json().await.unwrap();
        if list.is_empty() {
            let out = std::process::Command::new(BIN)
                .args([
                    "--store",
                    &d.store,
                    "--json",
                    "show",
                    parked["request_id"].as_str().unwrap(),
                ])
                .output()
                .unwrap();
            state = serde_json::from_slice::<Value>(&out.stdout).unwrap()["decision"]["state"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        state, "denied",
        "the request is no longer pending once the session ends"
    );
    // Approving it now changes nothing, and nothing is written.
    let late = http()
        .post(format!("{api}/resolve"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(json!({"request_id": parked["request_id"], "approved": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_ne!(late.status(), reqwest::StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!target.exists());
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_command_that_does_not_exist_is_a_clear_error() {
    let out = Command::new(BIN)
        .args(["mcp", "--", "/nonexistent/mcp-server", "x"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot start `/nonexistent/mcp-server x`") && err.contains("PATH"),
        "{err}"
    );
    let none = Command::new(BIN)
        .args(["mcp"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("give one upstream"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_refuses_a_foreign_host_unless_allowed() {
    let d = dirs();
    let Some(fs) = node_server("mcp-server-filesystem") else {
        return;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(BIN)
        .args([
            "mcp",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--allow-host",
            "gateway.test",
        ])
        .args(["--audit", d.audit.to_str().unwrap(), "--"])
        .arg(&fs)
        .arg(&d.root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), err.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if line.contains("MCP over streamable HTTP at") {
            break;
        }
    }
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let post = |host: &str| {
        http()
            .post(format!("http://127.0.0.1:{port}/mcp"))
            .header("host", host)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(init.to_string())
            .send()
    };
    assert!(post("gateway.test").await.unwrap().status().is_success());
    assert!(post(&format!("127.0.0.1:{port}")).await.unwrap().status().is_success());
    assert_eq!(
        post("evil.example").await.unwrap().status(),
        reqwest::StatusCode::FORBIDDEN
    );
    let _ = child.kill().await;
}
