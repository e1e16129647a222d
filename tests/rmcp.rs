//! Feature `rmcp`: an MCP server written with rmcp's tool macros, guarded with one line, driven by rmcp's own client
//! over real transports — an in-process byte stream, and the `mcp_server` example as a child process on stdio,
//! approved and denied through its approval page's HTTP API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentguard::rmcp::GuardedExt;
use agentguard::{AgentGuard, ApprovalRequest};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolRequestParams, CallToolResult, Tool};
use rmcp::service::RunningService;
use rmcp::{schemars, tool, tool_router, RoleClient, ServiceExt};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Default)]
struct Files;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct PathArg {
    path: String,
}

#[tool_router(server_handler)]
impl Files {
    /// Reads a file.
    #[tool]
    fn read_file(&self, Parameters(PathArg { path }): Parameters<PathArg>) -> String {
        format!("contents of {path}")
    }

    /// Deletes a file.
    #[tool]
    fn delete_file(&self, Parameters(PathArg { path }): Parameters<PathArg>) -> String {
        format!("deleted {path}")
    }

    /// Innocently named, declared destructive by its author.
    #[tool(annotations(destructive_hint = true))]
    fn tidy(&self, Parameters(PathArg { path }): Parameters<PathArg>) -> String {
        format!("tidied {path}")
    }

    /// Dangerous by name; its author's readOnlyHint does not make it safe.
    #[tool(annotations(read_only_hint = true))]
    fn drop_table(&self, Parameters(PathArg { path }): Parameters<PathArg>) -> String {
        format!("dropped {path}")
    }
}

/// The guarded server and rmcp's client, joined by an in-process byte stream (JSON-RPC lines, as on stdio).
async fn connect(guard: AgentGuard) -> RunningService<RoleClient, ()> {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let server = Files.guarded(guard).serve(server_io).await.expect("server starts");
        let _ = server.waiting().await;
    });
    ().serve(client_io).await.expect("client connects")
}

fn args(path: &str) -> serde_json::Map<String, Value> {
    json!({ "path": path }).as_object().unwrap().clone()
}

async fn call(client: &RunningService<RoleClient, ()>, tool: &'static str, path: &str) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(args(path)))
        .await
        .expect("a tool result, not a protocol error")
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn hints(tools: &[Tool], name: &str) -> (Option<bool>, Option<bool>) {
    let tool = tools.iter().find(|t| t.name == name).expect("listed");
    let a = tool.annotations.as_ref().expect("annotated");
    (a.read_only_hint, a.destructive_hint)
}

/// A callback guard that approves `approve` and records every request it is asked about.
fn recording_guard(approve: bool) -> (AgentGuard, Arc<Mutex<Vec<ApprovalRequest>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let a = asked.clone();
    let guard = AgentGuard::callback(move |req| {
        a.lock().unwrap().push(req.clone());
        approve
    })
    .no_audit()
    .build();
    (guard, asked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_advertises_read_only_and_destructive_hints_from_the_guard() {
    let (guard, _) = recording_guard(true);
    let client = connect(guard).await;
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 4);
    assert_eq!(hints(&tools, "read_file"), (Some(true), Some(false)));
    assert_eq!(hints(&tools, "delete_file"), (Some(false), Some(true)));
    assert_eq!(
        hints(&tools, "tidy"),
        (Some(false), Some(true)),
        "declared destructive: gated"
    );
    assert_eq!(
        hints(&tools, "drop_table"),
        (Some(false), Some(true)),
        "the guard gates it, so it is not advertised read-only"
    );
    // The rest of the tool is the server's own.
    let read = tools.iter().find(|t| t.name == "read_file").unwrap();
    assert_eq!(read.description.as_deref(), Some("Reads a file."));
    assert!(read.input_schema.contains_key("properties"));
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_call_runs_without_asking() {
    let (guard, asked) = recording_guard(false);
    let client = connect(guard).await;
    let result = call(&client, "read_file", "notes.txt").await;
    assert_ne!(result.is_error, Some(true));
    assert_eq!(text(&result), "contents of notes.txt");
    assert!(asked.lock().unwrap().is_empty());
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_dangerous_call_runs_with_the_arguments_shown_and_names_client_and_server() {
    let (guard, asked) = recording_guard(true);
    let client = connect(guard).await;
    let result = call(&client, "delete_file", "notes.txt").await;
    assert_ne!(result.is_error, Some(true));
    assert_eq!(text(&result), "deleted notes.txt");
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].tool(), "delete_file");
    assert_eq!(asked[0].params(), &json!({"path": "notes.txt"}));
    assert_eq!(asked[0].agent_id(), Some("rmcp"), "the client's name from initialize");
    assert!(asked[0].server().is_some(), "the server's own name");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_is_an_is_error_result_with_the_reason_and_never_runs() {
    let (guard, asked) = recording_guard(false);
    let client = connect(guard).await;
    for tool in ["delete_file", "tidy", "drop_table"] {
        let result = call(&client, tool, "notes.txt").await;
        assert_eq!(result.is_error, Some(true), "{tool}");
        assert_eq!(text(&result), "Blocked by AgentGuard (user_denied)", "{tool}");
    }
    let asked: Vec<_> = asked
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.tool().to_owned(), r.risk()))
        .collect();
    assert_eq!(
        asked,
        [
            ("delete_file".to_owned(), agentguard::Risk::Irreversible),
            ("tidy".to_owned(), agentguard::Risk::Irreversible),
            ("drop_table".to_owned(), agentguard::Risk::Irreversible),
        ]
    );
    client.cancel().await.unwrap();
}

// ---- the example, as a child process on stdio ----------------------------------------------------------------

fn example_exe() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("mcp_server");
    assert!(
        path.exists(),
        "{} not built: `cargo test --workspace` builds it; with `-p agentguard-tests`, first run \
         `cargo build --examples --all-features`",
        path.display()
    );
    path
}

/// The example's approval page and token, read from its stderr.
async fn page_of(stderr: tokio::process::ChildStderr) -> (String, String) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let (mut page, mut token) = (None, None);
    while page.is_none() || token.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the example prints its page within 30 s")
            .unwrap()
            .expect("stderr open");
        if let Some(url) = line.strip_prefix("mcp_server: approval page: ") {
            page = Some(url.to_owned());
        } else if let Some(t) = line.strip_prefix("mcp_server: token: ") {
            token = Some(t.to_owned());
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (page.unwrap(), token.unwrap())
}

/// Waits until the page lists a request for `tool`, then answers it.
async fn answer_on_the_page(page: &str, token: &str, tool: &str, approved: bool) {
    let http = reqwest::Client::new();
    let request = loop {
        let pending: Vec<Value> = http
            .get(format!("{page}pending"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(req) = pending.into_iter().find(|r| r["tool"] == tool) {
            break req;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let res = http
        .post(format!("{page}resolve"))
        .bearer_auth(token)
        .json(&json!({
            "request_id": request["request_id"],
            "approved": approved,
            "params_digest": request["params_digest"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_server_over_stdio_runs_safe_calls_and_waits_for_the_page_on_dangerous_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(example_exe());
    cmd.env("AGENTGUARD_LOG", dir.path().join("audit.log"))
        .env("AGENTGUARD_TIMEOUT_SECS", "60")
        .env_remove("AGENTGUARD_BIND")
        .env_remove("AGENTGUARD_TOKEN");
    let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (page, token) = page_of(stderr.unwrap()).await;
    let client = ().serve(transport).await.expect("the example speaks MCP");

    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(hints(&tools, "read_customer"), (Some(true), Some(false)));
    assert_eq!(hints(&tools, "delete_customer"), (Some(false), Some(true)));
    assert_eq!(hints(&tools, "send_invoice"), (Some(false), Some(true)));

    let id = json!({"id": 7}).as_object().unwrap().clone();
    let read = client
        .call_tool(CallToolRequestParams::new("read_customer").with_arguments(id.clone()))
        .await
        .unwrap();
    assert_eq!(text(&read), "customer #7: Jane Doe, plan pro");

    let delete = client.call_tool(CallToolRequestParams::new("delete_customer").with_arguments(id));
    let (delete, ()) = tokio::join!(delete, answer_on_the_page(&page, &token, "delete_customer", true));
    let delete = delete.unwrap();
    assert_ne!(delete.is_error, Some(true));
    assert_eq!(text(&delete), "customer #7 deleted");

    let invoice = json!({"id": 7, "amount_eur": 12.5}).as_object().unwrap().clone();
    let send = client.call_tool(CallToolRequestParams::new("send_invoice").with_arguments(invoice));
    let (send, ()) = tokio::join!(send, answer_on_the_page(&page, &token, "send_invoice", false));
    let send = send.unwrap();
    assert_eq!(send.is_error, Some(true));
    assert_eq!(text(&send), "Blocked by AgentGuard (user_denied)");

    client.cancel().await.unwrap();
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(audit.contains("\"tool\":\"delete_customer\"") && audit.contains("\"decision\":\"approved\""));
}
