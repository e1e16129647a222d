//! The values that cross the guard: tool calls (`call.rs`), approval requests (here), denials (`denied.rs`), answers
//! and their outcomes (`answer.rs`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::params::ParamsDigest;

mod answer;
mod call;
mod denied;
mod edit;
mod quorum;

use agentguard_classify::Risk;
pub use answer::{AnswerKind, GrantScope, GrantSpec, Resolution, ResolveOutcome};
pub use call::ToolCall;
pub use denied::{ActionDenied, DenyReason};
pub(crate) use edit::EditCheck;
pub use quorum::{Quorum, QuorumProgress, Vote};

/// The id of one approval request: a random UUID (v4), hyphenated, lowercase.
///
/// Cloning is cheap (a shared, immutable string): the guard, the store's index and each waiter hold the same text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self::of(uuid::Uuid::new_v4())
    }

    fn of(uuid: uuid::Uuid) -> Self {
        let mut buf = uuid::Uuid::encode_buffer();
        RequestId(Arc::from(&*uuid.hyphenated().encode_lower(&mut buf)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An id holding `text` as it is, unchecked: a position in an order of ids (a page cursor's), never a request's.
    pub(crate) fn position(text: &str) -> Self {
        RequestId(Arc::from(text))
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Error for text that is not a request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRequestIdError {
    input: String,
}

impl fmt::Display for ParseRequestIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid request id {:?}: expected a UUID such as 3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d (see `pending`)",
            self.input
        )
    }
}

impl std::error::Error for ParseRequestIdError {}

impl FromStr for RequestId {
    type Err = ParseRequestIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s)
            .map(RequestId::of)
            .map_err(|_| ParseRequestIdError { input: s.to_owned() })
    }
}

impl TryFrom<String> for RequestId {
    type Error = ParseRequestIdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<RequestId> for String {
    fn from(id: RequestId) -> String {
        id.0.to_string()
    }
}

/// One call waiting for (or given) a person's decision. Read-only.
///
/// Serializes to a flat JSON object:
/// `request_id, tool, params, params_digest, risk, reason, agent_id, session_id, timestamp, deadline`, with
/// `timestamp` and `deadline` as Unix seconds (a float) and `risk` as its label. `params` are **redacted**: secrets are
/// masked (see [`Redactor`](crate::params::Redactor)); the digest covers the real values.
///
/// Cloning is cheap: a request is immutable and its clones (the waiting call's, the store's, each notifier's) share
/// one copy.
#[derive(Clone)]
pub struct ApprovalRequest(Arc<RequestData>);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct RequestData {
    // Boxed strings (no spare capacity field) keep a parked request small: it is held for the whole wait.
    request_id: RequestId,
    tool: Box<str>,
    params: Value,
    params_digest: ParamsDigest,
    risk: Risk,
    reason: Option<Box<str>>,
    agent_id: Option<Box<str>>,
    session_id: Option<Box<str>>,
    /// What most requests do not have, boxed (`None` when all of it is absent): a million parked requests then
    /// carry one pointer each for it instead of seven fields. Its fields sit at the top level of the JSON.
    #[serde(flatten, default, deserialize_with = "Rare::read")]
    rare: Option<Box<Rare>>,
    #[serde(with = "unix_seconds")]
    timestamp: UnixTime,
    #[serde(with = "unix_seconds")]
    deadline: UnixTime,
}

/// A time as nanoseconds since the Unix epoch: 8 bytes where a `SystemTime` takes 16 (a million parked requests
/// hold two each). It covers 1970 to 2554: an earlier time is kept as the epoch (as its JSON always was), a later one
/// as the end of that range (a deadline that far is never reached either way).
#[derive(Clone, Copy, PartialEq, Eq)]
struct UnixTime(u64);

impl fmt::Debug for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

impl UnixTime {
    fn of(t: SystemTime) -> UnixTime {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        UnixTime(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    fn get(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0)
    }
}

/// The parts of a request that only some requests have.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Rare {
    /// Absent (not `null`) when unknown, so requests written before it existed read back the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server: Option<Box<str>>,
    /// The policy rule that asked for this approval, and its message (absent when the name rules asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy_rule: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy_message: Option<Box<str>>,
    /// The quorum a policy rule asks for (absent for a plain request: one answer decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quorum: Option<Quorum>,
    /// Actors who may not answer: the requesting agent and the people mapped to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    excluded: Vec<String>,
    /// Why approvers may not edit this call's params (absent: they may).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edit_refused: Option<Box<str>>,
    /// Why approving it may not make a standing grant (absent: it may).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remember_refused: Option<Box<str>>,
}

impl Rare {
    /// Reads the flattened fields, keeping no box when none of them is there.
    fn read<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Box<Rare>>, D::Error> {
        let rare = Rare::deserialize(deserializer)?;
        Ok((rare != Rare::default()).then(|| Box::new(rare)))
    }
}

impl RequestData {
    fn rare(&self) -> Option<&Rare> {
        self.rare.as_deref()
    }

    /// Changes the rare parts: boxed only if something is set (a plain request, which every guard builds through
    /// these setters with nothing in them, allocates nothing here), and unboxed again if all of it ends absent.
    fn set_rare(&mut self, nothing: bool, set: impl FnOnce(&mut Rare)) {
        if nothing && self.rare.is_none() {
            return;
        }
        set(self.rare.get_or_insert_with(Box::default));
        if self.rare.as_deref().is_some_and(|r| *r == Rare::default()) {
            self.rare = None;
        }
    }
}

impl fmt::Debug for ApprovalRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &*self.0;
        f.debug_struct("ApprovalRequest")
            .field("request_id", &d.request_id)
            .field("tool", &d.tool)
            .field("params", &d.params)
            .field("params_digest", &d.params_digest)
            .field("risk", &d.risk)
            .field("reason", &d.reason)
            .field("agent_id", &d.agent_id)
            .field("session_id", &d.session_id)
            .field("server", &self.server())
            .field("policy_rule", &self.policy_rule())
            .field("policy_message", &self.policy_message())
            .field("quorum", &self.quorum())
            .field("excluded", &self.excluded())
            .field("edit_refused", &self.edit_refused())
            .field("remember_refused", &self.remember_refused())
            .field("timestamp", &d.timestamp.get())
            .field("deadline", &d.deadline.get())
            .finish()
    }
}

impl PartialEq for ApprovalRequest {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Serialize for ApprovalRequest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ApprovalRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RequestData::deserialize(deserializer).map(|d| ApprovalRequest(Arc::new(d)))
    }
}

impl ApprovalRequest {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        request_id: RequestId,
        tool: String,
        params: Value,
        params_digest: ParamsDigest,
        risk: Risk,
        reason: Option<String>,
        agent_id: Option<String>,
        session_id: Option<String>,
        timestamp: SystemTime,
        deadline: SystemTime,
    ) -> Self {
        ApprovalRequest(Arc::new(RequestData {
            request_id,
            tool: tool.into_boxed_str(),
            params,
            params_digest,
            risk,
            reason: reason.map(String::into_boxed_str),
            agent_id: agent_id.map(String::into_boxed_str),
            session_id: session_id.map(String::into_boxed_str),
            rare: None,
            timestamp: UnixTime::of(timestamp),
            deadline: UnixTime::of(deadline),
        }))
    }

    /// This request, naming the tool server its call goes to (set before the request is shared).
    pub(crate) fn with_server(mut self, server: Option<String>) -> Self {
        if let Some(data) = Arc::get_mut(&mut self.0) {
            data.set_rare(server.is_none(), |rare| {
                rare.server = server.map(String::into_boxed_str)
            });
        }
        self
    }

    /// This request, naming the policy rule that asked for it and the rule's message (set before it is shared).
    pub(crate) fn with_policy_rule(mut self, rule: Option<String>, message: Option<String>) -> Self {
        if let Some(data) = Arc::get_mut(&mut self.0) {
            data.set_rare(rule.is_none() && message.is_none(), |rare| {
                rare.policy_rule = rule.map(String::into_boxed_str);
                rare.policy_message = message.map(String::into_boxed_str);
            });
        }
        self
    }

    /// This request, with what answers it takes (set before it is shared): its quorum, who may not answer it, and
    /// why edits or standing grants are refused.
    pub(crate) fn with_answers(
        mut self,
        quorum: Option<Quorum>,
        excluded: Vec<String>,
        edit_refused: Option<String>,
        remember_refused: Option<String>,
    ) -> Self {
        if let Some(data) = Arc::get_mut(&mut self.0) {
            let nothing =
                quorum.is_none() && excluded.is_empty() && edit_refused.is_none() && remember_refused.is_none();
            data.set_rare(nothing, |rare| {
                rare.quorum = quorum;
                rare.excluded = excluded;
                rare.edit_refused = edit_refused.map(String::into_boxed_str);
                rare.remember_refused = remember_refused.map(String::into_boxed_str);
            });
        }
        self
    }

    /// The tool's name, taken without a copy when this is the last holder of the request.
    pub(crate) fn into_tool(self) -> String {
        match Arc::try_unwrap(self.0) {
            Ok(data) => data.tool.into_string(),
            Err(shared) => shared.tool.to_string(),
        }
    }

    /// The request's id: what `resolve` takes.
    pub fn request_id(&self) -> &RequestId {
        &self.0.request_id
    }
    /// The tool's name.
    pub fn tool(&self) -> &str {
        &self.0.tool
    }
    /// The params, with secrets masked.
    pub fn params(&self) -> &Value {
        &self.0.params
    }
    /// SHA-256 of the real params' canonical JSON.
    pub fn params_digest(&self) -> &ParamsDigest {
        &self.0.params_digest
    }
    /// Why the call is gated.
    pub fn risk(&self) -> Risk {
        self.0.risk
    }
    /// The agent's stated reason, if any.
    pub fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
    /// Who is acting, if given.
    pub fn agent_id(&self) -> Option<&str> {
        self.0.agent_id.as_deref()
    }
    /// Which run this belongs to, if given.
    pub fn session_id(&self) -> Option<&str> {
        self.0.session_id.as_deref()
    }
    /// The tool server the call goes to, if known (the MCP gateway's upstream).
    pub fn server(&self) -> Option<&str> {
        self.0.rare().and_then(|r| r.server.as_deref())
    }
    /// The [policy](crate::policy) rule that asked for this approval, if one did (not the name rules or the
    /// policy's default).
    pub fn policy_rule(&self) -> Option<&str> {
        self.0.rare().and_then(|r| r.policy_rule.as_deref())
    }
    /// That rule's message, if it has one: why the policy wants a person to look.
    pub fn policy_message(&self) -> Option<&str> {
        self.0.rare().and_then(|r| r.policy_message.as_deref())
    }
    /// The quorum this request needs, when a policy rule asks for more than one approval or names its approvers.
    pub fn quorum(&self) -> Option<&Quorum> {
        self.0.rare().and_then(|r| r.quorum.as_ref())
    }
    /// Actors who may not answer this request: the requesting agent and the people mapped to it in the policy's
    /// `[principals]`.
    pub fn excluded(&self) -> &[String] {
        self.0.rare().map_or(&[], |r| &r.excluded)
    }
    /// Why approvers may not edit this call's params, if they may not.
    pub fn edit_refused(&self) -> Option<&str> {
        self.0.rare().and_then(|r| r.edit_refused.as_deref())
    }
    /// Why approving this call may not make a standing grant, if it may not.
    pub fn remember_refused(&self) -> Option<&str> {
        self.0.rare().and_then(|r| r.remember_refused.as_deref())
    }
    /// When the request was made.
    pub fn timestamp(&self) -> SystemTime {
        self.0.timestamp.get()
    }
    /// When an unanswered request is denied.
    pub fn deadline(&self) -> SystemTime {
        self.0.deadline.get()
    }
    /// Time left before the deadline (zero once it passed).
    pub fn remaining(&self) -> Duration {
        self.deadline()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }
}

mod unix_seconds {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &UnixTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(to_f64(t.get()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<UnixTime, D::Error> {
        let secs = f64::deserialize(d)?;
        if !secs.is_finite() || secs < 0.0 {
            return Err(serde::de::Error::custom("expected non-negative Unix seconds"));
        }
        Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|d| UNIX_EPOCH.checked_add(d))
            .map(UnixTime::of)
            .ok_or_else(|| serde::de::Error::custom("Unix seconds out of range"))
    }

    pub fn to_f64(t: SystemTime) -> f64 {
        t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> ApprovalRequest {
        ApprovalRequest::new(
            "3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d".parse().unwrap(),
            "delete_file".into(),
            json!({"path": "notes.txt"}),
            ParamsDigest::of(b"x"),
            Risk::Irreversible,
            None,
            Some("bot".into()),
            None,
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_500),
            UNIX_EPOCH + Duration::from_millis(1_700_000_300_500),
        )
    }

    #[test]
    fn approval_request_serializes_to_its_documented_flat_shape() {
        let v = serde_json::to_value(sample()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "request_id",
            "tool",
            "params",
            "params_digest",
            "risk",
            "reason",
            "agent_id",
            "session_id",
            "timestamp",
            "deadline",
        ];
        expected.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(keys_sorted, expected);
        assert_eq!(v["risk"], "IRREVERSIBLE - cannot be undone");
        assert_eq!(v["timestamp"], 1_700_000_000.5);
        assert_eq!(v["deadline"], 1_700_000_300.5);
        assert_eq!(v["reason"], Value::Null);
        let back: ApprovalRequest = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn the_rare_fields_are_boxed_only_when_set_and_read_back_at_the_top_level() {
        // A plain request keeps no box for them, whether made here or read back.
        assert!(sample().0.rare.is_none());
        let back: ApprovalRequest = serde_json::from_value(serde_json::to_value(sample()).unwrap()).unwrap();
        assert!(back.0.rare.is_none());
        // Built with nothing in them, or set and then cleared again: no box either.
        assert!(sample().with_server(None).0.rare.is_none());
        assert!(sample().with_answers(None, Vec::new(), None, None).0.rare.is_none());
        let set = sample().with_server(Some("files".into()));
        assert!(set.0.rare.is_some());
        assert!(set.with_server(None).0.rare.is_none());

        let rich = sample()
            .with_server(Some("files".into()))
            .with_policy_rule(Some("two-people".into()), Some("needs two".into()))
            .with_answers(
                Some(Quorum {
                    needed: 2,
                    approvers: vec!["ana".into(), "bo".into()],
                    denials: 1,
                }),
                vec!["bot".into()],
                Some("no edits".into()),
                Some("no grants".into()),
            );
        let v = serde_json::to_value(&rich).unwrap();
        assert_eq!(v["server"], "files");
        assert_eq!(v["policy_rule"], "two-people");
        assert_eq!(v["policy_message"], "needs two");
        assert_eq!(v["quorum"]["needed"], 2);
        assert_eq!(v["excluded"], json!(["bot"]));
        assert_eq!(v["edit_refused"], "no edits");
        assert_eq!(v["remember_refused"], "no grants");
        let back: ApprovalRequest = serde_json::from_value(v).unwrap();
        assert_eq!(back, rich);
        assert_eq!(back.quorum().map(|q| q.needed), Some(2));
        assert_eq!(back.excluded(), ["bot".to_owned()]);
        assert_eq!(back.server(), Some("files"));
    }

    #[test]
    fn times_keep_their_nanoseconds_in_a_small_request() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(UnixTime::of(t).get(), t);
        // Before 1970: the epoch (its JSON was 0 already); past 2554: the end of the range, still never reached.
        assert_eq!(UnixTime::of(UNIX_EPOCH - Duration::from_secs(5)).get(), UNIX_EPOCH);
        let far = UNIX_EPOCH + Duration::from_secs(1 << 40);
        assert_eq!(UnixTime::of(far).get(), UNIX_EPOCH + Duration::from_nanos(u64::MAX));
        // Every parked call holds one (shared with the store and the notifiers): with rustc 1.95 it is 208 bytes,
        // 224 when its two times were `SystemTime`s.
        let size = std::mem::size_of::<RequestData>();
        assert!(size <= 208, "{size} bytes");
    }

    #[test]
    fn out_of_range_times_are_a_serde_error_not_a_panic() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["deadline"] = json!(1e30);
        let err = serde_json::from_value::<ApprovalRequest>(v).unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn request_id_rejects_malformed_text_with_a_hint() {
        assert!("not-an-id"
            .parse::<RequestId>()
            .unwrap_err()
            .to_string()
            .contains("expected a UUID"));
        let id = RequestId::new();
        assert_eq!(id.as_str().parse::<RequestId>().unwrap(), id);
        // Upper-case input is accepted and normalized.
        assert_eq!(id.as_str().to_uppercase().parse::<RequestId>().unwrap(), id);
    }
}
