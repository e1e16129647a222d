//! A person's answer to a parked request ([`Resolution`]) and what became of it ([`ResolveOutcome`]).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::RequestId;
use crate::params::ParamsDigest;

/// The result of answering a parked request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ResolveOutcome {
    /// This answer decided the request.
    Resolved,
    /// Someone answered first; this answer changed nothing.
    AlreadyResolved,
    /// No such request (never made, or forgotten after the retention window).
    Unknown,
    /// The deadline passed; the request was denied and will never run.
    Expired,
    /// The answer carried a params digest that is not the request's: the approver was shown something else. Nothing
    /// was decided; the request stays pending.
    DigestMismatch,
    /// The store could not be reached; nothing was decided.
    Unavailable,
    /// A vote on a quorum request was counted; more approvals are needed before the call runs.
    VoteRecorded,
    /// This actor already voted on this quorum request; a second vote changes nothing.
    AlreadyVoted,
    /// This actor may not answer this request: the request names its approvers and the actor is not one of them,
    /// or no actor was given where one is needed (a quorum counts named people).
    NotAnApprover,
    /// The actor is the requesting agent itself, or a person mapped to it (`[principals]` in the policy): nobody
    /// approves their own request.
    OwnRequest,
    /// This kind of answer is not allowed for this request: an edit of a tool whose arguments cannot be read back,
    /// an edit, response or standing grant on a quorum request, a standing grant its policy rule forbids
    /// (`remember = false`), or edited params that are not a JSON object. Nothing was decided.
    NotAllowedHere,
}

impl ResolveOutcome {
    /// The upper-case name, e.g. `ALREADY_RESOLVED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ResolveOutcome::Resolved => "RESOLVED",
            ResolveOutcome::AlreadyResolved => "ALREADY_RESOLVED",
            ResolveOutcome::Unknown => "UNKNOWN",
            ResolveOutcome::Expired => "EXPIRED",
            ResolveOutcome::DigestMismatch => "DIGEST_MISMATCH",
            ResolveOutcome::Unavailable => "UNAVAILABLE",
            ResolveOutcome::VoteRecorded => "VOTE_RECORDED",
            ResolveOutcome::AlreadyVoted => "ALREADY_VOTED",
            ResolveOutcome::NotAnApprover => "NOT_AN_APPROVER",
            ResolveOutcome::OwnRequest => "OWN_REQUEST",
            ResolveOutcome::NotAllowedHere => "NOT_ALLOWED_HERE",
        }
    }
}

impl ResolveOutcome {
    /// `true` when this answer changed something: it decided the request or its vote was counted.
    pub const fn is_accepted(self) -> bool {
        matches!(self, ResolveOutcome::Resolved | ResolveOutcome::VoteRecorded)
    }

    /// What this outcome means for the person who answered, and what to do: the words the HTTP API and the CLI
    /// both show. `kind` is the kind of answer given (it matters only for [`Resolved`](Self::Resolved)).
    pub const fn explain(self, kind: AnswerKind) -> &'static str {
        match self {
            ResolveOutcome::Resolved => match kind {
                AnswerKind::Approve => "approved: the agent's call runs now",
                AnswerKind::Deny => "denied: the agent is told it was denied",
                AnswerKind::Edit => "approved with your edit: the agent's call runs now with the edited arguments",
                AnswerKind::Respond => "answered: the tool does not run; the agent reads your text as its result",
            },
            ResolveOutcome::VoteRecorded => {
                "vote recorded: more approvals are needed before the call runs (see the request's quorum)"
            }
            ResolveOutcome::AlreadyVoted => {
                "already voted: you voted on this request before; this vote changed nothing"
            }
            ResolveOutcome::NotAnApprover => {
                "not an approver: this request names who may approve it, and you are not one of them (or no actor \
                 was given); nothing was decided"
            }
            ResolveOutcome::OwnRequest => {
                "own request: you are the requesting agent or mapped to it, and nobody approves their own request; \
                 nothing was decided"
            }
            ResolveOutcome::NotAllowedHere => {
                "not allowed for this request: its tool does not take edited arguments, it needs a quorum (approve \
                 or deny only), its policy rule forbids standing grants, or the edit is not a JSON object; nothing \
                 was decided (see `agentguard show ID`)"
            }
            ResolveOutcome::AlreadyResolved => {
                "already answered: someone answered this request first; this answer changed nothing"
            }
            ResolveOutcome::Unknown => {
                "unknown request: never parked in this store, or forgotten after its retention window (check the \
                 id and the store)"
            }
            ResolveOutcome::Expired => "expired: the deadline passed, the request was denied and will never run",
            ResolveOutcome::DigestMismatch => {
                "the params digest is not this request's: the params you were shown are not the ones that would \
                 run; nothing was decided, look at the request again"
            }
            ResolveOutcome::Unavailable => "the approval store did not answer; nothing was decided",
        }
    }
}

impl fmt::Display for ResolveOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of answer a person gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// Run the call as shown.
    Approve,
    /// Do not run it; the agent is told it was denied.
    Deny,
    /// Run it with new arguments ([`Resolution::edit`]): they are validated and judged by the policy again.
    Edit,
    /// Do not run it; the agent reads the approver's text as the tool's result ([`Resolution::respond`]).
    Respond,
}

impl AnswerKind {
    /// `approve`, `deny`, `edit` or `respond`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AnswerKind::Approve => "approve",
            AnswerKind::Deny => "deny",
            AnswerKind::Edit => "edit",
            AnswerKind::Respond => "respond",
        }
    }

    /// `true` for the kinds that let the call run ([`Approve`](Self::Approve), [`Edit`](Self::Edit)).
    pub const fn runs(self) -> bool {
        matches!(self, AnswerKind::Approve | AnswerKind::Edit)
    }
}

impl fmt::Display for AnswerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a standing grant ("remember this") covers, beyond the call it was given for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantScope {
    /// Later calls of the same tool in the same session (the request's `session_id`).
    Session,
    /// Later calls of the same tool by the same agent (the request's `agent_id`).
    Agent,
    /// Later calls of the same tool by any agent.
    Everyone,
}

impl GrantScope {
    /// `session`, `agent` or `everyone`.
    pub const fn as_str(self) -> &'static str {
        match self {
            GrantScope::Session => "session",
            GrantScope::Agent => "agent",
            GrantScope::Everyone => "everyone",
        }
    }

    /// The scope named by [`as_str`](Self::as_str); `call` (this call only) is `Ok(None)`. The error says what to
    /// write.
    pub fn parse(text: &str) -> Result<Option<GrantScope>, String> {
        match text {
            "call" => Ok(None),
            "session" => Ok(Some(GrantScope::Session)),
            "agent" => Ok(Some(GrantScope::Agent)),
            "everyone" => Ok(Some(GrantScope::Everyone)),
            other => Err(format!(
                "unknown scope {other:?}: write call (this call only), session, agent or everyone"
            )),
        }
    }
}

impl fmt::Display for GrantScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// "Remember this": a standing grant made with an approval, letting later calls of the same tool run without asking,
/// within a [scope](GrantScope), for a time and/or a number of uses, optionally narrowed by tests on the arguments in
/// the [policy](crate::policy)'s language.
///
/// ```
/// # use agentguard::answer::{GrantScope, GrantSpec};
/// # use std::time::Duration;
/// let spec = GrantSpec::new(GrantScope::Session)
///     .ttl(Duration::from_secs(2 * 3600))
///     .uses(20)
///     .when(r#"path = { under = "./reports" }"#);
/// assert_eq!(spec.get_uses(), Some(20));
/// ```
///
/// A grant without `ttl` or `uses` lasts [`DEFAULT_TTL`](Self::DEFAULT_TTL). A grant never beats a policy `deny`,
/// never covers a call a rule with `remember = false` or a quorum asks about, and is used at most `uses` times across
/// every process sharing the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantSpec {
    scope: GrantScope,
    /// Seconds the grant lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uses: Option<u32>,
    /// Tests on the arguments, as the body of a policy rule's `when` table (TOML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    when: Option<String>,
}

impl GrantSpec {
    /// How long a grant lasts when neither [`ttl`](Self::ttl) nor [`uses`](Self::uses) bounds it: one hour. A grant
    /// is never unbounded.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    /// The longest a grant may last: 30 days.
    pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

    /// A grant covering `scope`.
    pub fn new(scope: GrantScope) -> Self {
        GrantSpec {
            scope,
            ttl_secs: None,
            uses: None,
            when: None,
        }
    }

    /// It lasts this long from the approval (rounded down to whole seconds, at least one).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl_secs = Some(ttl.as_secs().max(1));
        self
    }

    /// It lets this many later calls run, then ends.
    pub fn uses(mut self, uses: u32) -> Self {
        self.uses = Some(uses);
        self
    }

    /// It covers only calls whose arguments pass these tests, written as the body of a policy rule's `when` table:
    /// `path = { under = "/srv/reports" }`, `amount = { le = 100 }`, `all = [ … ]`.
    pub fn when(mut self, tests: impl Into<String>) -> Self {
        self.when = Some(tests.into());
        self
    }

    /// Who it covers.
    pub fn get_scope(&self) -> GrantScope {
        self.scope
    }

    /// How long it lasts, if bounded by time.
    pub fn get_ttl(&self) -> Option<Duration> {
        self.ttl_secs.map(Duration::from_secs)
    }

    /// How long it lasts, with the default applied when neither a time nor a number of uses was given.
    pub fn effective_ttl(&self) -> Option<Duration> {
        match (self.get_ttl(), self.uses) {
            (Some(ttl), _) => Some(ttl),
            (None, None) => Some(Self::DEFAULT_TTL),
            (None, Some(_)) => None,
        }
    }

    /// How many uses it allows, if bounded by count.
    pub fn get_uses(&self) -> Option<u32> {
        self.uses
    }

    /// Its tests on the arguments, if narrowed.
    pub fn get_when(&self) -> Option<&str> {
        self.when.as_deref()
    }

    /// Checks the spec before it is sent: a time within [`MAX_TTL`](Self::MAX_TTL), at least one use, and tests that
    /// compile in the policy's language. The error says what to fix.
    pub fn check(&self) -> Result<(), String> {
        if self.uses == Some(0) {
            return Err("uses must be at least 1".to_owned());
        }
        if self.get_ttl().is_some_and(|t| t > Self::MAX_TTL) {
            return Err(format!(
                "a grant lasts at most {} days; ask again after that",
                Self::MAX_TTL.as_secs() / 86_400
            ));
        }
        if let Some(when) = &self.when {
            crate::policy::GrantCondition::compile(when).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// A person's answer to a parked request, for [`AgentGuard::resolve_with`](crate::AgentGuard::resolve_with) and
/// [`ApprovalStore::resolve`](crate::store::ApprovalStore::resolve).
///
/// Built one way: [`approve`](Self::approve), [`deny`](Self::deny), [`edit`](Self::edit), [`respond`](Self::respond)
/// or [`new`](Self::new), then the optional parts. Read back with the `get_` accessors (as `std::process::Command`
/// does), e.g. in a custom store.
///
/// ```
/// # use agentguard::{Resolution, RequestId};
/// # use agentguard::answer::{AnswerKind, GrantScope, GrantSpec};
/// # use serde_json::json;
/// let id = RequestId::new();
/// let answer = Resolution::deny(id.clone()).actor("alice").note("wrong customer");
/// assert!(!answer.is_approval());
/// assert_eq!(answer.get_note(), Some("wrong customer"));
///
/// let fixed = Resolution::edit(id.clone(), json!({"to": "bob@example.com"})).actor("alice");
/// assert_eq!(fixed.kind(), AnswerKind::Edit);
///
/// let standing = Resolution::approve(id).actor("alice").remember(GrantSpec::new(GrantScope::Session).uses(20));
/// assert!(standing.get_remember().is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    request_id: RequestId,
    kind: AnswerKind,
    actor: Option<String>,
    params_digest: Option<ParamsDigest>,
    note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edited: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remember: Option<GrantSpec>,
}

impl Resolution {
    /// The longest note an answer may carry, in characters: it goes to the agent and into the audit. The HTTP API
    /// and the CLI refuse longer ones.
    pub const MAX_NOTE_CHARS: usize = 1000;

    /// The longest response ([`respond`](Self::respond)) an answer may carry, in characters: the agent reads it as
    /// the tool's result.
    pub const MAX_RESPONSE_CHARS: usize = 20_000;

    /// Checks a note before it is sent: at most [`MAX_NOTE_CHARS`](Self::MAX_NOTE_CHARS) characters, and no
    /// control character but newline and tab (a NUL or an escape sequence has no place in a note for a person, and
    /// a database may refuse it). The error says what is wrong, for the HTTP API and the CLI alike.
    pub fn check_note(note: &str) -> Result<(), String> {
        check_text(note, Self::MAX_NOTE_CHARS)
    }

    /// Checks a response's text as [`check_note`](Self::check_note) checks a note, with its own limit
    /// ([`MAX_RESPONSE_CHARS`](Self::MAX_RESPONSE_CHARS)); an empty response is refused.
    pub fn check_response(text: &str) -> Result<(), String> {
        if text.trim().is_empty() {
            return Err("the response is empty: write what the agent should read as the tool's result".to_owned());
        }
        check_text(text, Self::MAX_RESPONSE_CHARS)
    }

    /// An approval of `request_id`.
    pub fn approve(request_id: RequestId) -> Self {
        Self::of(request_id, AnswerKind::Approve)
    }

    /// A denial of `request_id`.
    pub fn deny(request_id: RequestId) -> Self {
        Self::of(request_id, AnswerKind::Deny)
    }

    /// An approval of `request_id` with new params: the call runs with `params` instead of those shown, once they
    /// are validated (the tool's argument types, a JSON object for `execute`) and the policy does not deny them.
    /// A value left as the redaction mask (`[REDACTED]`) where the original had a secret keeps the original secret.
    pub fn edit(request_id: RequestId, params: Value) -> Self {
        let mut r = Self::of(request_id, AnswerKind::Edit);
        r.edited = Some(params);
        r
    }

    /// An answer for the tool: it does not run, and the agent reads `text` as its result.
    pub fn respond(request_id: RequestId, text: impl Into<String>) -> Self {
        let mut r = Self::of(request_id, AnswerKind::Respond);
        r.response = Some(text.into());
        r
    }

    /// An answer to `request_id`: approve (`true`) or deny (`false`).
    pub fn new(request_id: RequestId, approved: bool) -> Self {
        Self::of(
            request_id,
            if approved {
                AnswerKind::Approve
            } else {
                AnswerKind::Deny
            },
        )
    }

    fn of(request_id: RequestId, kind: AnswerKind) -> Self {
        Resolution {
            request_id,
            kind,
            actor: None,
            params_digest: None,
            note: None,
            edited: None,
            response: None,
            remember: None,
        }
    }

    /// Who answered; recorded in the audit. A request that names its approvers (a quorum) needs it.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// The digest of the params the approver was shown; an answer whose digest is not the request's is refused
    /// ([`ResolveOutcome::DigestMismatch`]).
    pub fn params_digest(mut self, digest: ParamsDigest) -> Self {
        self.params_digest = Some(digest);
        self
    }

    /// A note for the agent ([`ActionDenied::detail`](super::ActionDenied::detail)) and the audit, e.g. why it was denied.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// With an approval or an edit: remember it as a standing grant ([`GrantSpec`]). Ignored on a denial or a
    /// response.
    pub fn remember(mut self, spec: GrantSpec) -> Self {
        self.remember = Some(spec);
        self
    }

    /// Which request this answers.
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// The kind of answer.
    pub fn kind(&self) -> AnswerKind {
        self.kind
    }

    /// `true` for an answer that lets the call run (an approval or an edit), `false` for a denial or a response.
    pub fn is_approval(&self) -> bool {
        self.kind.runs()
    }

    /// Who answered, if given.
    pub fn get_actor(&self) -> Option<&str> {
        self.actor.as_deref()
    }

    /// The digest the approver was shown, if given.
    pub fn get_params_digest(&self) -> Option<&ParamsDigest> {
        self.params_digest.as_ref()
    }

    /// The note, if given.
    pub fn get_note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// The edited params of an [`edit`](Self::edit).
    pub fn get_edited(&self) -> Option<&Value> {
        self.edited.as_ref()
    }

    /// The text of a [`respond`](Self::respond).
    pub fn get_response(&self) -> Option<&str> {
        self.response.as_deref()
    }

    /// The standing grant asked for, on an approval or an edit.
    pub fn get_remember(&self) -> Option<&GrantSpec> {
        self.remember.as_ref().filter(|_| self.kind.runs())
    }
}

fn check_text(text: &str, max: usize) -> Result<(), String> {
    let chars = text.chars().count();
    if chars > max {
        return Err(format!("{chars} characters; at most {max}"));
    }
    if let Some((at, c)) = text
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(format!(
            "a control character (U+{:04X}) at character {}; send plain text (newline and tab are the only \
             control characters allowed)",
            u32::from(c),
            at + 1
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_outcome_serializes_to_its_documented_names() {
        assert_eq!(
            serde_json::to_value(ResolveOutcome::AlreadyResolved).unwrap(),
            "ALREADY_RESOLVED"
        );
        assert_eq!(ResolveOutcome::Resolved.to_string(), "RESOLVED");
    }
}
