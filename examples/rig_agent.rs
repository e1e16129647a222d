//! A rig agent whose tools are behind the guard: a safe call runs, a dangerous one is approved, another is denied
//! and the model reads the denial as the tool's output.
//!
//! The agent is rig's own (`AgentBuilder`, its multi-turn tool loop); the model is scripted (`ScriptedModel`, a rig
//! `CompletionModel` written here), so it runs without a network or an API key. Swap it for
//! `rig_core::providers::openai::Client::from_env().completion_model("gpt-4o")` and nothing else changes.
//!
//! ```text
//! cargo run --example rig_agent --features rig
//! ```

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use agentguard::rig::GuardedToolSet;
use agentguard::AgentGuard;
use rig_core::agent::AgentBuilder;
use rig_core::completion::{
    AssistantContent, CompletionError, CompletionModel, CompletionRequest, CompletionResponse, GetTokenUsage, Prompt,
    Usage,
};
use rig_core::message::{Message, ToolResultContent, UserContent};
use rig_core::streaming::StreamingCompletionResponse;
use rig_core::tool::Tool;
use rig_core::OneOrMany;
use serde::Deserialize;
use serde_json::{json, Value};

// ----- Three ordinary rig tools -------------------------------------------------------------------------------

#[derive(Debug)]
struct ToolFailed(String);

impl fmt::Display for ToolFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToolFailed {}

#[derive(Deserialize)]
struct CityArgs {
    city: String,
}

struct GetWeather;

impl Tool for GetWeather {
    const NAME: &'static str = "get_weather";
    type Error = ToolFailed;
    type Args = CityArgs;
    type Output = Value;

    fn description(&self) -> String {
        "The weather in a city".into()
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    }
    async fn call(&self, args: CityArgs) -> Result<Value, ToolFailed> {
        Ok(json!({"city": args.city, "sky": "clear", "celsius": 21}))
    }
}

#[derive(Deserialize)]
struct PathArgs {
    path: String,
}

struct DeleteFile;

impl Tool for DeleteFile {
    const NAME: &'static str = "delete_file";
    type Error = ToolFailed;
    type Args = PathArgs;
    type Output = String;

    fn description(&self) -> String {
        "Delete a file".into()
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]})
    }
    async fn call(&self, args: PathArgs) -> Result<String, ToolFailed> {
        Ok(format!("deleted {}", args.path))
    }
}

#[derive(Deserialize)]
struct EmailArgs {
    to: String,
    body: String,
}

struct SendEmail;

impl Tool for SendEmail {
    const NAME: &'static str = "send_email";
    type Error = ToolFailed;
    type Args = EmailArgs;
    type Output = String;

    fn description(&self) -> String {
        "Send an email".into()
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"to": {"type": "string"}, "body": {"type": "string"}},
               "required": ["to", "body"]})
    }
    async fn call(&self, args: EmailArgs) -> Result<String, ToolFailed> {
        Ok(format!("sent {} bytes to {}", args.body.len(), args.to))
    }
}

// ----- A scripted model: rig's CompletionModel, answering from a script instead of a network ----------------

/// Calls the three tools one per turn, then answers with what the tools returned. Each turn it also prints the
/// tool results the agent sent back, so the output shows what the model read.
#[derive(Clone, Default)]
struct ScriptedModel {
    turn: Arc<AtomicUsize>,
}

/// The scripted model's raw response (it has none worth keeping).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct NoRaw;

impl GetTokenUsage for NoRaw {
    fn token_usage(&self) -> Usage {
        Usage::new()
    }
}

/// The text of every tool result in the request's history, oldest first.
fn tool_results(request: &CompletionRequest) -> Vec<String> {
    let mut out = Vec::new();
    for message in request.chat_history.iter() {
        if let Message::User { content } = message {
            for item in content.iter() {
                if let UserContent::ToolResult(result) = item {
                    for part in result.content.iter() {
                        if let ToolResultContent::Text(text) = part {
                            out.push(text.text.clone());
                        }
                    }
                }
            }
        }
    }
    out
}

impl CompletionModel for ScriptedModel {
    type Response = NoRaw;
    type StreamingResponse = NoRaw;
    type Client = ();

    fn make(_: &(), _: impl Into<String>) -> Self {
        Self::default()
    }

    async fn completion(&self, request: CompletionRequest) -> Result<CompletionResponse<NoRaw>, CompletionError> {
        let turn = self.turn.fetch_add(1, Ordering::SeqCst);
        if let Some(last) = tool_results(&request).last() {
            println!("  model reads: {last}");
        }
        let content = match turn {
            0 => AssistantContent::tool_call("call-1", "get_weather", json!({"city": "Lisbon"})),
            1 => AssistantContent::tool_call("call-2", "delete_file", json!({"path": "notes.txt"})),
            2 => AssistantContent::tool_call(
                "call-3",
                "send_email",
                json!({"to": "everyone@example.com", "body": "the weather is nice"}),
            ),
            _ => AssistantContent::text(format!("Done. Tool results: {}", tool_results(&request).join(" | "))),
        };
        if let AssistantContent::ToolCall(call) = &content {
            println!("model calls {} {}", call.function.name, call.function.arguments);
        }
        Ok(CompletionResponse {
            choice: OneOrMany::one(content),
            usage: Usage::new(),
            raw_response: NoRaw,
            message_id: None,
        })
    }

    async fn stream(&self, _request: CompletionRequest) -> Result<StreamingCompletionResponse<NoRaw>, CompletionError> {
        Err(CompletionError::ProviderError(
            "the scripted model does not stream".into(),
        ))
    }
}

#[tokio::main]
async fn main() {
    // The person: a callback here (a web page or the CLI in a real app). Approves the deletion, denies the email.
    let guard = AgentGuard::callback(|req| {
        let approve = req.tool() == "delete_file";
        println!(
            "  [card] {} {} risk={:?} -> {}",
            req.tool(),
            req.params(),
            req.risk().label(),
            if approve { "approved" } else { "denied" }
        );
        approve
    })
    .build();

    let tools = GuardedToolSet::new(&guard)
        .unguarded(GetWeather) // a read-only name: checked at compile time, runs without asking
        .guarded(DeleteFile) // asks: "delete" is irreversible
        .guarded(SendEmail) // asks: "send" leaves your system
        // .unguarded(DeleteFile) would not compile: "the rig tool `delete_file` cannot be registered unguarded …"
        .into_tools();

    let agent = AgentBuilder::new(ScriptedModel::default())
        .preamble("You are a careful assistant.")
        .tools(tools)
        .build();

    let answer = agent
        .prompt("Check the weather in Lisbon, clean up notes.txt and tell everyone.")
        .max_turns(5)
        .await
        .expect("the agent finishes");
    println!("agent answers: {answer}");
}
