//! The rig adapter (`agentguard::rig`): a real rig agent (rig-core's `AgentBuilder` and its multi-turn tool loop),
//! driven by a scripted completion model, calls its tools only through the guard.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentguard::rig::{CallContext, GuardedDyn, GuardedToolSet};
use agentguard::{AgentGuard, ApprovalRequest, Risk};
use rig_core::agent::AgentBuilder;
use rig_core::completion::{
    AssistantContent, CompletionError, CompletionModel, CompletionRequest, CompletionResponse, GetTokenUsage, Prompt,
    Usage,
};
use rig_core::message::{Message, ToolResultContent, UserContent};
use rig_core::streaming::StreamingCompletionResponse;
use rig_core::tool::{Tool, ToolCallExtensions, ToolDyn, ToolSet};
use rig_core::OneOrMany;
use serde::Deserialize;
use serde_json::{json, Value};

// ----- Tools that count their runs and keep the arguments they ran with ------------------------------------------

#[derive(Debug)]
struct Failed;

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("failed")
    }
}

impl std::error::Error for Failed {}

#[derive(Default, Clone)]
struct Runs(Arc<Mutex<Vec<Value>>>);

impl Runs {
    fn record(&self, args: Value) {
        self.0.lock().unwrap().push(args);
    }
    fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Deserialize)]
struct PathArgs {
    path: String,
}

struct DeleteFile(Runs);

impl Tool for DeleteFile {
    const NAME: &'static str = "delete_file";
    type Error = Failed;
    type Args = PathArgs;
    type Output = String;
    fn description(&self) -> String {
        "Delete a file".into()
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]})
    }
    async fn call(&self, args: PathArgs) -> Result<String, Failed> {
        self.0.record(json!({"path": args.path}));
        Ok(format!("deleted {}", args.path))
    }
}

#[derive(Deserialize)]
struct CityArgs {
    city: String,
}

struct GetWeather(Runs);

impl Tool for GetWeather {
    const NAME: &'static str = "get_weather";
    type Error = Failed;
    type Args = CityArgs;
    type Output = Value;
    fn description(&self) -> String {
        "The weather".into()
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    }
    async fn call(&self, args: CityArgs) -> Result<Value, Failed> {
        self.0.record(json!({"city": args.city}));
        Ok(json!({"city": args.city, "celsius": 21}))
    }
}

// ----- A scripted completion model ---------------------------------------------------------------------------------

/// Calls `script`'s tools in order, one per turn (an empty name is a text answer), then answers text. Keeps the tool
/// results it read.
#[derive(Clone)]
struct Scripted {
    script: Arc<Vec<(&'static str, Value)>>,
    turn: Arc<AtomicUsize>,
    read: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn new(script: Vec<(&'static str, Value)>) -> Self {
        Scripted {
            script: Arc::new(script),
            turn: Arc::default(),
            read: Arc::default(),
        }
    }
    /// Every tool result the model was sent back, in order.
    fn tool_results(&self) -> Vec<String> {
        self.read.lock().unwrap().clone()
    }
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct NoRaw;

impl GetTokenUsage for NoRaw {
    fn token_usage(&self) -> Usage {
        Usage::new()
    }
}

impl CompletionModel for Scripted {
    type Response = NoRaw;
    type StreamingResponse = NoRaw;
    type Client = ();

    fn make(_: &(), _: impl Into<String>) -> Self {
        Scripted::new(Vec::new())
    }

    async fn completion(&self, request: CompletionRequest) -> Result<CompletionResponse<NoRaw>, CompletionError> {
        let mut results = Vec::new();
        for message in request.chat_history.iter() {
            if let Message::User { content } = message {
                for item in content.iter() {
                    if let UserContent::ToolResult(result) = item {
                        for part in result.content.iter() {
                            if let ToolResultContent::Text(text) = part {
                                results.push(text.text.clone());
                            }
                        }
                    }
                }
            }
        }
        *self.read.lock().unwrap() = results;
        let turn = self.turn.fetch_add(1, Ordering::SeqCst);
        let content = match self.script.get(turn) {
            Some((name, args)) if !name.is_empty() => {
                AssistantContent::tool_call(format!("call-{turn}"), *name, args.clone())
            }
            _ => AssistantContent::text("done"),
        };
        Ok(CompletionResponse {
            choice: OneOrMany::one(content),
            usage: Usage::new(),
            raw_response: NoRaw,
            message_id: None,
        })
    }

    async fn stream(&self, _: CompletionRequest) -> Result<StreamingCompletionResponse<NoRaw>, CompletionError> {
        Err(CompletionError::ProviderError("not scripted".into()))
    }
}

/// A guard whose approver answers `approve` and keeps every request it was shown; audit in `dir`.
fn guard_answering(approve: bool, dir: &std::path::Path) -> (AgentGuard, Arc<Mutex<Vec<ApprovalRequest>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let guard = AgentGuard::callback(move |req| {
        seen.lock().unwrap().push(req.clone());
        approve
    })
    .audit_file(dir.join("audit.log"))
    .build();
    (guard, asked)
}

async fn run_agent(model: Scripted, tools: Vec<Box<dyn ToolDyn>>) -> String {
    let agent = AgentBuilder::new(model).tools(tools).build();
    agent.prompt("go").max_turns(6).await.expect("the agent finishes")
}

#[tokio::test]
async fn a_rig_agent_runs_a_safe_tool_at_once_and_a_dangerous_one_only_when_approved() {
    let dir = tempfile::tempdir().unwrap();
    let (guard, asked) = guard_answering(true, dir.path());
    let (weather, delete) = (Runs::default(), Runs::default());
    let model = Scripted::new(vec![
        ("get_weather", json!({"city": "Lisbon"})),
        ("delete_file", json!({"path": "notes.txt"})),
    ]);
    let tools = GuardedToolSet::new(&guard)
        .unguarded(GetWeather(weather.clone()))
        .guarded(DeleteFile(delete.clone()))
        .into_tools();

    assert_eq!(run_agent(model.clone(), tools).await, "done");

    let asked = asked.lock().unwrap();
    assert_eq!(asked.len(), 1, "only the dangerous call is asked");
    assert_eq!(asked[0].tool(), "delete_file");
    assert_eq!(asked[0].risk(), Risk::Irreversible);
    assert_eq!(weather.all(), [json!({"city": "Lisbon"})]);
    assert_eq!(
        delete.all(),
        [json!({"path": "notes.txt"})],
        "ran once, with the approved params"
    );
    assert_eq!(asked[0].params(), &json!({"path": "notes.txt"}));
    assert_eq!(
        model.tool_results(),
        [r#"{"celsius":21,"city":"Lisbon"}"#, "deleted notes.txt"]
    );
    // Both calls are audit lines: the unguarded one as allowed, the guarded one as approved.
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let lines: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{audit}");
    assert_eq!(
        (lines[0]["tool"].as_str(), lines[0]["decision"].as_str()),
        (Some("get_weather"), Some("allowed"))
    );
    assert_eq!(
        (lines[1]["tool"].as_str(), lines[1]["decision"].as_str()),
        (Some("delete_file"), Some("approved"))
    );
}

#[tokio::test]
async fn a_denied_call_is_the_tools_output_text_and_the_tool_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (guard, asked) = guard_answering(false, dir.path());
    let delete = Runs::default();
    let model = Scripted::new(vec![("delete_file", json!({"path": "notes.txt"}))]);
    let tools = GuardedToolSet::new(&guard)
        .guarded(DeleteFile(delete.clone()))
        .into_tools();

    assert_eq!(
        run_agent(model.clone(), tools).await,
        "done",
        "the agent goes on: a denial is not an error"
    );

    assert_eq!(asked.lock().unwrap().len(), 1);
    assert!(delete.all().is_empty(), "the denied tool never ran");
    assert_eq!(model.tool_results(), ["Blocked by AgentGuard (user_denied)"]);
}

#[tokio::test]
async fn arguments_that_do_not_fit_the_tool_are_refused_before_anyone_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (guard, asked) = guard_answering(true, dir.path());
    let delete = Runs::default();
    let model = Scripted::new(vec![("delete_file", json!({"path": 5}))]);
    let tools = GuardedToolSet::new(&guard)
        .guarded(DeleteFile(delete.clone()))
        .into_tools();

    run_agent(model.clone(), tools).await;

    assert!(
        asked.lock().unwrap().is_empty(),
        "nobody is asked to approve a call that cannot run"
    );
    assert!(delete.all().is_empty());
    let results = model.tool_results();
    assert_eq!(results.len(), 1);
    assert!(
        results[0].contains("bad arguments for tool \"delete_file\""),
        "{results:?}"
    );
}

#[tokio::test]
async fn a_tool_declared_always_ask_asks_even_with_a_safe_name() {
    let dir = tempfile::tempdir().unwrap();
    let (guard, asked) = guard_answering(false, dir.path());
    let weather = Runs::default();
    let model = Scripted::new(vec![("get_weather", json!({"city": "Oslo"}))]);
    let tools = GuardedToolSet::new(&guard)
        .always_ask(GetWeather(weather.clone()), Risk::ExternalSend)
        .into_tools();

    run_agent(model.clone(), tools).await;

    let asked = asked.lock().unwrap();
    assert_eq!((asked.len(), asked[0].risk()), (1, Risk::ExternalSend));
    assert!(weather.all().is_empty());
}

#[tokio::test]
async fn a_parked_call_waits_for_a_resolve_from_elsewhere() {
    let (queue, mut inbox) = tokio::sync::mpsc::unbounded_channel::<ApprovalRequest>();
    let guard = AgentGuard::external()
        .on_request(move |req| {
            let _ = queue.send(req.clone());
        })
        .timeout(Duration::from_secs(30))
        .no_audit()
        .build();
    let reviewer = {
        let guard = guard.clone();
        tokio::spawn(async move {
            let req = inbox.recv().await.unwrap();
            guard.resolve(req.request_id(), true, Some("alice"));
            req
        })
    };
    let delete = Runs::default();
    let model = Scripted::new(vec![("delete_file", json!({"path": "a.txt"}))]);
    let tools = GuardedToolSet::new(&guard)
        .guarded(DeleteFile(delete.clone()))
        .into_tools();

    run_agent(model.clone(), tools).await;

    let req = reviewer.await.unwrap();
    assert_eq!(req.tool(), "delete_file");
    assert_eq!(delete.all(), [json!({"path": "a.txt"})]);
    assert_eq!(model.tool_results(), ["deleted a.txt"]);
}

/// An external guard whose reviewer answers the first request with `answer(id)`.
fn guard_answering_with(
    answer: fn(agentguard::RequestId) -> agentguard::Resolution,
) -> (AgentGuard, tokio::task::JoinHandle<()>) {
    let (queue, mut inbox) = tokio::sync::mpsc::unbounded_channel::<ApprovalRequest>();
    let guard = AgentGuard::external()
        .on_request(move |req| {
            let _ = queue.send(req.clone());
        })
        .timeout(Duration::from_secs(30))
        .no_audit()
        .build();
    let g = guard.clone();
    let reviewer = tokio::spawn(async move {
        let req = inbox.recv().await.unwrap();
        g.resolve_with(&answer(req.request_id().clone()));
    });
    (guard, reviewer)
}

#[tokio::test]
async fn an_edited_call_runs_with_the_approvers_arguments_and_the_model_is_told() {
    let (guard, reviewer) =
        guard_answering_with(|id| agentguard::Resolution::edit(id, json!({"path": "b.txt"})).actor("alice"));
    let delete = Runs::default();
    let model = Scripted::new(vec![("delete_file", json!({"path": "a.txt"}))]);
    let tools = GuardedToolSet::new(&guard)
        .guarded(DeleteFile(delete.clone()))
        .into_tools();
    run_agent(model.clone(), tools).await;
    reviewer.await.unwrap();
    assert_eq!(delete.all(), [json!({"path": "b.txt"})], "the edited arguments ran");
    let read = model.tool_results();
    assert!(read[0].starts_with("deleted b.txt"), "{read:?}");
    assert!(read[0].contains("an approver (alice) edited the arguments"), "{read:?}");
}

#[tokio::test]
async fn a_response_is_the_tools_output_and_the_tool_never_runs() {
    let (guard, reviewer) =
        guard_answering_with(|id| agentguard::Resolution::respond(id, "a.txt is already gone").actor("alice"));
    let delete = Runs::default();
    let model = Scripted::new(vec![("delete_file", json!({"path": "a.txt"}))]);
    let tools = GuardedToolSet::new(&guard)
        .guarded(DeleteFile(delete.clone()))
        .into_tools();
    run_agent(model.clone(), tools).await;
    reviewer.await.unwrap();
    assert!(delete.all().is_empty(), "the tool never ran");
    assert_eq!(model.tool_results(), ["a.txt is already gone"]);
}

#[tokio::test]
async fn a_tool_set_of_boxed_tools_is_gated_by_name_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let (guard, asked) = guard_answering(false, dir.path());
    let (weather, delete) = (Runs::default(), Runs::default());
    let existing: Vec<Box<dyn ToolDyn>> = vec![
        Box::new(GetWeather(weather.clone())),
        Box::new(DeleteFile(delete.clone())),
    ];
    let set: ToolSet = GuardedToolSet::new(&guard).guarded_all(existing).into_tool_set();

    let out = set.call("get_weather", r#"{"city":"Rome"}"#.into()).await.unwrap();
    assert_eq!(out, r#"{"celsius":21,"city":"Rome"}"#);
    let out = set.call("delete_file", r#"{"path":"x"}"#.into()).await.unwrap();
    assert_eq!(out, "Blocked by AgentGuard (user_denied)");

    assert_eq!(asked.lock().unwrap().len(), 1);
    assert_eq!(weather.all(), [json!({"city": "Rome"})]);
    assert!(delete.all().is_empty());

    // Not JSON at all: an error, and nobody is asked.
    let boxed = GuardedDyn::new(Box::new(DeleteFile(delete.clone())), &guard);
    assert!(ToolDyn::call(&boxed, "{not json".into()).await.is_err());
    assert_eq!(asked.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_agent_and_session_reach_the_approver_from_the_set_or_from_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let (guard, asked) = guard_answering(true, dir.path());
    let model = Scripted::new(vec![
        ("delete_file", json!({"path": "a"})),
        ("", json!(null)),
        ("delete_file", json!({"path": "b"})),
    ]);
    let tools = GuardedToolSet::new(&guard)
        .context(CallContext::new().agent_id("support-bot").session_id("default-session"))
        .guarded(DeleteFile(Runs::default()))
        .into_tools();
    let agent = AgentBuilder::new(model).tools(tools).build();

    // Set-level context only.
    agent.prompt("one").max_turns(6).await.unwrap();
    // This prompt's own session, through rig's tool extensions; the agent id stays the set's.
    let mut extensions = ToolCallExtensions::new();
    extensions.insert(CallContext::new().session_id("ticket-4821"));
    agent
        .prompt("two")
        .tool_extensions(extensions)
        .max_turns(6)
        .await
        .unwrap();

    let asked = asked.lock().unwrap();
    let who: Vec<(Option<&str>, Option<&str>)> = asked.iter().map(|r| (r.agent_id(), r.session_id())).collect();
    assert_eq!(
        who,
        [
            (Some("support-bot"), Some("default-session")),
            (Some("support-bot"), Some("ticket-4821"))
        ]
    );
}

#[tokio::test]
async fn an_unguarded_tool_still_answers_to_the_guards_policy() {
    let policy = agentguard::policy::Policy::from_toml(
        r#"
default = "classify"

[[rule]]
name = "no weather for Mordor"
tools = ["get_weather"]
when = { city = { eq = "Mordor" } }
action = "deny"
message = "not there"
"#,
    )
    .unwrap();
    let guard = AgentGuard::callback(|_| true).policy(policy).no_audit().build();
    let weather = Runs::default();
    let model = Scripted::new(vec![
        ("get_weather", json!({"city": "Mordor"})),
        ("get_weather", json!({"city": "Rome"})),
    ]);
    let tools = GuardedToolSet::new(&guard)
        .unguarded(GetWeather(weather.clone()))
        .into_tools();

    run_agent(model.clone(), tools).await;

    assert_eq!(weather.all(), [json!({"city": "Rome"})], "the denied call never ran");
    let results = model.tool_results();
    assert_eq!(results[0], "Blocked by AgentGuard (policy_denied: not there)");
}

#[derive(Deserialize)]
struct NoArgs {}

struct ResetCache(Runs);

impl Tool for ResetCache {
    const NAME: &'static str = "reset_cache";
    type Error = Failed;
    type Args = NoArgs;
    type Output = String;
    fn description(&self) -> String {
        "Reset the cache".into()
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {}})
    }
    async fn call(&self, _: NoArgs) -> Result<String, Failed> {
        self.0.record(json!({}));
        Ok("reset".into())
    }
}

#[tokio::test]
async fn a_call_with_null_arguments_is_a_call_without_arguments_as_rig_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let (guard, asked) = guard_answering(true, dir.path());
    let runs = Runs::default();
    let typed = agentguard::rig::Guarded::new(ResetCache(runs.clone()), &guard);
    assert_eq!(Tool::call(&typed, Value::Null).await.unwrap(), "reset");
    let boxed = GuardedDyn::new(Box::new(ResetCache(runs.clone())), &guard);
    assert_eq!(ToolDyn::call(&boxed, "null".into()).await.unwrap(), "reset");

    assert_eq!(runs.all().len(), 2);
    let asked = asked.lock().unwrap();
    assert_eq!(asked.len(), 2, "reset is irreversible: both calls asked");
    assert!(asked.iter().all(|r| r.params() == &json!({})), "frozen as no arguments");
}
