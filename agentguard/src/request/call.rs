//! [`ToolCall`]: one call an agent wants to make, as the guard receives it.

use super::*;

/// One tool call an agent wants to make: the tool's name, its params, and optional context for the approver.
///
/// ```
/// use agentguard::ToolCall;
/// use serde_json::json;
///
/// let call = ToolCall::new("delete_file", json!({"path": "notes.txt"}))
///     .agent_id("support-bot")
///     .session_id("ticket-4821")
///     .reason("the customer asked for it");
/// assert_eq!(call.name(), "delete_file");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub(crate) edits: EditCheck,
    pub(crate) name: String,
    pub(crate) params: Value,
    pub(crate) agent_id: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) server: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) redact: Vec<String>,
    pub(crate) call_id: Option<String>,
}

impl ToolCall {
    /// The longest tool name accepted, in characters. A longer one is denied (`invalid_call`).
    pub const MAX_NAME_CHARS: usize = 256;

    /// The longest `reason`, `agent_id`, `session_id`, `server` or `call_id` accepted, in bytes. A longer one is denied (`invalid_call`):
    /// what a person is shown must fit on a card.
    pub const MAX_TEXT_BYTES: usize = 4096;

    /// What is wrong with this call's name or context, if anything: checked before anything else, for every call.
    pub(crate) fn problem(&self) -> Option<String> {
        let chars = self.name.chars().count();
        if chars == 0 {
            return Some("the tool name is empty".to_owned());
        }
        if chars > Self::MAX_NAME_CHARS {
            return Some(format!(
                "the tool name is {chars} characters long; at most {} are accepted",
                Self::MAX_NAME_CHARS
            ));
        }
        for (field, value) in [
            ("reason", &self.reason),
            ("agent_id", &self.agent_id),
            ("session_id", &self.session_id),
            ("server", &self.server),
            ("call_id", &self.call_id),
        ] {
            if let Some(value) = value.as_deref().filter(|v| v.len() > Self::MAX_TEXT_BYTES) {
                return Some(format!(
                    "{field} is {} bytes long; at most {} are accepted",
                    value.len(),
                    Self::MAX_TEXT_BYTES
                ));
            }
        }
        None
    }

    /// A copy of this call's name and context cut to their limits (with `…`), for the record of a refused call.
    pub(crate) fn clipped(&self) -> ToolCall {
        fn clip(text: &str, max_bytes: usize) -> String {
            if text.len() <= max_bytes {
                return text.to_owned();
            }
            let mut end = max_bytes;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &text[..end])
        }
        ToolCall {
            edits: EditCheck::Object,
            name: clip(&self.name, Self::MAX_NAME_CHARS),
            params: Value::Null,
            agent_id: self.agent_id.as_deref().map(|v| clip(v, Self::MAX_TEXT_BYTES)),
            session_id: self.session_id.as_deref().map(|v| clip(v, Self::MAX_TEXT_BYTES)),
            server: self.server.as_deref().map(|v| clip(v, Self::MAX_TEXT_BYTES)),
            reason: None,
            redact: Vec::new(),
            call_id: self.call_id.as_deref().map(|v| clip(v, Self::MAX_TEXT_BYTES)),
        }
    }

    /// A call of tool `name` with `params` (usually a JSON object).
    pub fn new(name: impl Into<String>, params: Value) -> Self {
        ToolCall {
            edits: EditCheck::Object,
            name: name.into(),
            params,
            agent_id: None,
            session_id: None,
            server: None,
            reason: None,
            redact: Vec::new(),
            call_id: None,
        }
    }

    /// How an approver's edited params are checked before they run: `check` reads them back into the tool's
    /// arguments (an `Err` refuses the edit, with the message shown to the agent and in the audit). Without it, any
    /// JSON object is taken. `#[derive(Tool)]` and `#[gate]` set it from the tool's argument types.
    pub fn check_edits(mut self, check: fn(&Value) -> Result<(), String>) -> Self {
        self.edits = EditCheck::Parse(check);
        self
    }

    /// Approvers may not edit this call's params (approve or deny it as shown): `why` says so to the person who
    /// tries, e.g. "argument `path` is a `&str`, which cannot be read back from JSON".
    pub fn refuse_edits(mut self, why: impl Into<String>) -> Self {
        self.edits = EditCheck::Refused(why.into());
        self
    }

    /// Top-level params of this call to mask in everything shown (on top of the guard's redaction rules), e.g. the
    /// arguments named in `#[gate(redact(...))]`. The executor still gets the real values.
    pub fn redact_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.redact.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Who is acting (shown to the approver, recorded in the audit).
    pub fn agent_id(mut self, agent_id: impl Into<String>) -> Self {
        self.agent_id = Some(agent_id.into());
        self
    }

    /// Which run or conversation this call belongs to.
    pub fn session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Which tool server the call goes to (the MCP gateway sets the upstream server's name): policy rules can match
    /// it, and the audit records it.
    pub fn server(mut self, server: impl Into<String>) -> Self {
        self.server = Some(server.into());
        self
    }

    /// The id the model gave this tool call (OpenAI's `tool_calls[].id`, Anthropic's `tool_use.id`): the span of the
    /// call carries it as `gen_ai.tool.call.id` (feature `tracing`).
    pub fn call_id(mut self, call_id: impl Into<String>) -> Self {
        self.call_id = Some(call_id.into());
        self
    }

    /// Why the agent wants to make the call (shown to the approver).
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The params as given.
    pub fn params(&self) -> &Value {
        &self.params
    }

    /// The agent's id, if given.
    pub fn get_agent_id(&self) -> Option<&str> {
        self.agent_id.as_deref()
    }

    /// The session's id, if given.
    pub fn get_session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The tool server's name, if given.
    pub fn get_server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    /// The model's id for this tool call, if given.
    pub fn get_call_id(&self) -> Option<&str> {
        self.call_id.as_deref()
    }
}
