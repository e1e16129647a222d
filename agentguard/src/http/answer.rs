//! The body of `POST /agentguard/resolve` and what it becomes: one of the four kinds of answer (approve, deny, edit,
//! respond), optionally remembered as a standing grant; and the status and words each outcome is answered with.

use serde::de::{self, Deserializer};

use super::*;
use crate::request::{AnswerKind, GrantScope, GrantSpec, Quorum, QuorumProgress};
use crate::store::StoredRequest;

/// The body of `POST /agentguard/resolve`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResolveBody {
    request_id: String,
    /// The first form of an answer: approve (`true`) or deny (`false`). Optional when `kind` is given.
    #[serde(default)]
    approved: Option<bool>,
    /// `approve`, `deny`, `edit` or `respond`.
    #[serde(default)]
    kind: Option<String>,
    /// The edited params of an `edit`: a JSON object.
    #[serde(default)]
    params: Option<Value>,
    /// The text of a `respond`.
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    params_digest: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    /// "Remember this": a standing grant made with an approval or an edit.
    #[serde(default)]
    remember: Option<RememberBody>,
}

/// `remember` in a resolve body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RememberBody {
    /// `call` (this call only: no grant), `session`, `agent` or `everyone`.
    scope: String,
    /// How long: `"2h"`, `"30m"`, `"1h30m"`, `"7d"`, or a number of seconds.
    #[serde(default, rename = "for", deserialize_with = "duration_field")]
    ttl: Option<Duration>,
    /// How many later calls it lets through.
    #[serde(default)]
    uses: Option<u32>,
    /// Tests on the arguments, as the body of a policy rule's `when` table.
    #[serde(default)]
    when: Option<String>,
}

/// What a resolve body looks like, for error messages.
pub(super) const RESOLVE_SHAPE: &str = r#"send {"request_id": "<id>", "approved": true|false (or "kind": "approve"|"deny"|"edit"|"respond", with "params": {…} for edit, "response": "…" for respond), "params_digest": "<hex>" (optional), "reason": "…" (optional), "remember": {"scope": "session"|"agent"|"everyone", "for": "2h", "uses": 20, "when": "…"} (optional, with approve or edit)}"#;

/// Parses a resolve body; an error names the field that is wrong and shows the expected shape.
pub(super) fn parse_body(bytes: &[u8]) -> Result<ResolveBody, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = match inner.classify() {
            serde_json::error::Category::Data if path != "." => format!("{path}: {inner}"),
            serde_json::error::Category::Data => inner.to_string(),
            _ => format!("the body is not valid JSON: {inner}"),
        };
        ApiError::malformed(format!("{what} — {RESOLVE_SHAPE}"))
    })
}

impl ResolveBody {
    /// The answer this body gives, by `actor`, or a 422 saying which field to fix.
    pub(super) fn into_resolution(self, actor: String) -> Result<Resolution, ApiError> {
        let request_id: RequestId = self
            .request_id
            .parse()
            .map_err(|e| ApiError::malformed(format!("request_id: {e}")))?;
        let params_digest = self
            .params_digest
            .as_deref()
            .map(str::parse::<ParamsDigest>)
            .transpose()
            .map_err(|e| ApiError::malformed(format!("params_digest: {e}")))?;
        let kind = match (self.kind.as_deref(), self.approved) {
            (None, None) => {
                return Err(ApiError::malformed(format!(
                    "missing field `approved` (or `kind`): say what the answer is — {RESOLVE_SHAPE}"
                )))
            }
            (None, Some(approved)) => {
                if approved {
                    AnswerKind::Approve
                } else {
                    AnswerKind::Deny
                }
            }
            (Some(name), approved) => {
                let kind = parse_kind(name)?;
                if approved.is_some_and(|a| a != kind.runs()) {
                    return Err(ApiError::malformed(format!(
                        "approved: {} contradicts kind {:?}; send one of them (kind alone is enough)",
                        approved.unwrap_or_default(),
                        kind.as_str()
                    )));
                }
                kind
            }
        };
        if kind != AnswerKind::Edit && self.params.is_some() {
            return Err(ApiError::malformed(format!(
                "params: only an edit carries params; send \"kind\": \"edit\" with them (this answer is {kind})"
            )));
        }
        if kind != AnswerKind::Respond && self.response.is_some() {
            return Err(ApiError::malformed(format!(
                "response: only a respond carries a response; send \"kind\": \"respond\" with it (this answer is \
                 {kind})"
            )));
        }
        let mut resolution = match kind {
            AnswerKind::Approve | AnswerKind::Deny => Resolution::new(request_id, kind.runs()),
            AnswerKind::Edit => {
                let params = match self.params {
                    Some(params @ Value::Object(_)) => params,
                    Some(other) => {
                        return Err(ApiError::malformed(format!(
                            "params: the edited params must be a JSON object ({{\"name\": value, …}}), not {}",
                            json_type(&other)
                        )))
                    }
                    None => {
                        return Err(ApiError::malformed(
                            "params: an edit needs the edited params: \"params\": {\"name\": value, …}",
                        ))
                    }
                };
                Resolution::edit(request_id, params)
            }
            AnswerKind::Respond => {
                let text = self.response.ok_or_else(|| {
                    ApiError::malformed(
                        "response: a respond needs the text the agent reads as the tool's result: \"response\": \"…\"",
                    )
                })?;
                Resolution::check_response(&text)
                    .map_err(|problem| ApiError::malformed(format!("response: {problem}")))?;
                Resolution::respond(request_id, text)
            }
        }
        .actor(actor);
        if let Some(digest) = params_digest {
            resolution = resolution.params_digest(digest);
        }
        if let Some(reason) = self.reason.filter(|r| !r.trim().is_empty()) {
            check_reason(&reason)?;
            resolution = resolution.note(reason);
        }
        if let Some(remember) = self.remember {
            if let Some(spec) = remember.into_spec()? {
                if !kind.runs() {
                    return Err(ApiError::malformed(format!(
                        "remember: only an approval or an edit makes a standing grant (this answer is {kind}); leave \
                         remember out"
                    )));
                }
                resolution = resolution.remember(spec);
            }
        }
        Ok(resolution)
    }
}

/// A reason is text for a person and the audit: at most [`Resolution::MAX_NOTE_CHARS`] characters, and no control
/// characters but newline and tab. NUL in particular cannot be stored (PostgreSQL refuses it in text), and the others
/// (escape sequences, carriage return, C1 controls) have no place in a note someone reads in a terminal.
pub(super) fn check_reason(reason: &str) -> Result<(), ApiError> {
    Resolution::check_note(reason).map_err(|problem| ApiError::malformed(format!("reason: {problem}")))
}

fn parse_kind(name: &str) -> Result<AnswerKind, ApiError> {
    match name {
        "approve" => Ok(AnswerKind::Approve),
        "deny" => Ok(AnswerKind::Deny),
        "edit" => Ok(AnswerKind::Edit),
        "respond" => Ok(AnswerKind::Respond),
        other => Err(ApiError::malformed(format!(
            "kind: unknown kind {other:?}: write approve, deny, edit (with \"params\") or respond (with \"response\")"
        ))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl RememberBody {
    /// The grant asked for (`None` for scope `call`: this call only), checked as [`GrantSpec::check`] checks it.
    fn into_spec(self) -> Result<Option<GrantSpec>, ApiError> {
        let scope =
            GrantScope::parse(self.scope.trim()).map_err(|e| ApiError::malformed(format!("remember.scope: {e}")))?;
        let Some(scope) = scope else {
            if self.ttl.is_some() || self.uses.is_some() || self.when.is_some() {
                return Err(ApiError::malformed(
                    "remember: scope \"call\" (this call only) makes no grant, so it takes no for, uses or when; \
                     choose session, agent or everyone",
                ));
            }
            return Ok(None);
        };
        // Each part is checked on its own first, so the error names the field to fix; then the whole.
        let mut spec = GrantSpec::new(scope);
        let check = |field: &str, part: GrantSpec| {
            part.check()
                .map_err(|e| ApiError::malformed(format!("remember.{field}: {e}")))
        };
        if let Some(ttl) = self.ttl {
            check("for", GrantSpec::new(scope).ttl(ttl))?;
            spec = spec.ttl(ttl);
        }
        if let Some(uses) = self.uses {
            check("uses", GrantSpec::new(scope).uses(uses))?;
            spec = spec.uses(uses);
        }
        if let Some(when) = self.when.filter(|w| !w.trim().is_empty()) {
            check("when", GrantSpec::new(scope).when(when.clone()))?;
            spec = spec.when(when);
        }
        spec.check()
            .map_err(|e| ApiError::malformed(format!("remember: {e}")))?;
        Ok(Some(spec))
    }
}

/// `"for"`: a duration as text (`"90s"`, `"30m"`, `"2h"`, `"7d"`, `"1h30m"`) or a whole number of seconds.
fn duration_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => Err(de::Error::custom("a grant lasts at least one second")),
            Some(secs) => Ok(Some(Duration::from_secs(secs))),
            None => Err(de::Error::custom(format!(
                "{n} is not a whole number of seconds: write e.g. 7200 or \"2h\""
            ))),
        },
        Some(Value::String(text)) => parse_duration(&text).map(Some).map_err(de::Error::custom),
        Some(other) => Err(de::Error::custom(format!(
            "a duration is text (\"2h\", \"30m\") or a number of seconds, not {}",
            json_type(&other)
        ))),
    }
}

/// `90s`, `30m`, `2h`, `7d`, `1h30m`, or bare seconds; the error says what to write.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a duration: write e.g. 90s, 30m, 2h, 7d or 1h30m (or a number of seconds)");
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return (secs > 0)
            .then(|| Duration::from_secs(secs))
            .ok_or_else(|| "a grant lasts at least one second".to_owned());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|s| total.checked_add(s)).ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    if total == 0 {
        return Err("a grant lasts at least one second".to_owned());
    }
    Ok(Duration::from_secs(total))
}

/// The status an outcome is answered with; `None` for a store that did not answer (a 503).
pub(super) fn status_of(outcome: ResolveOutcome) -> Option<StatusCode> {
    Some(match outcome {
        ResolveOutcome::Resolved => StatusCode::OK,
        ResolveOutcome::VoteRecorded => StatusCode::ACCEPTED,
        ResolveOutcome::AlreadyResolved | ResolveOutcome::AlreadyVoted => StatusCode::CONFLICT,
        ResolveOutcome::Unknown => StatusCode::NOT_FOUND,
        ResolveOutcome::Expired => StatusCode::GONE,
        ResolveOutcome::DigestMismatch | ResolveOutcome::NotAllowedHere => StatusCode::UNPROCESSABLE_ENTITY,
        ResolveOutcome::NotAnApprover | ResolveOutcome::OwnRequest => StatusCode::FORBIDDEN,
        ResolveOutcome::Unavailable => return None,
    })
}

/// What this outcome means for this request in particular (why it was refused, how far the votes got): the general
/// [`explain`](ResolveOutcome::explain) lists the possible causes; this names the one that applies.
pub(super) fn outcome_detail(outcome: ResolveOutcome, answer: &Resolution, stored: &StoredRequest) -> Option<String> {
    let request = &stored.request;
    match outcome {
        ResolveOutcome::NotAllowedHere => {
            let kind = answer.kind();
            if let Some(quorum) = request.quorum() {
                if !matches!(kind, AnswerKind::Approve | AnswerKind::Deny) {
                    return Some(format!(
                        "this request needs {} approvals ({}): answer it with approve or deny only",
                        quorum.needed,
                        who(quorum)
                    ));
                }
            }
            if kind == AnswerKind::Edit {
                if let Some(why) = request.edit_refused() {
                    return Some(format!("its arguments cannot be edited: {why}"));
                }
            }
            if let Some(spec) = answer.get_remember() {
                if let Some(why) = request.remember_refused() {
                    return Some(format!("no standing grant can be made: {why}"));
                }
                let (scope, missing) = match spec.get_scope() {
                    GrantScope::Session => ("session", request.session_id().is_none()),
                    GrantScope::Agent => ("agent", request.agent_id().is_none()),
                    GrantScope::Everyone => ("everyone", false),
                };
                if missing {
                    return Some(format!(
                        "the request names no {scope}, so a grant for its {scope} would cover nothing: choose another \
                         scope"
                    ));
                }
            }
            None
        }
        ResolveOutcome::NotAnApprover => request.quorum().map(|q| {
            if answer.get_actor().is_none() {
                "a quorum counts named people: answer with a token that names you".to_owned()
            } else {
                format!("who may approve it: {}", who(q))
            }
        }),
        ResolveOutcome::AlreadyVoted | ResolveOutcome::VoteRecorded => {
            progress_of(stored).map(|p| format!("so far: {p}"))
        }
        _ => None,
    }
}

fn who(quorum: &Quorum) -> String {
    if quorum.approvers.is_empty() {
        "any named approver".to_owned()
    } else {
        quorum.approvers.join(", ")
    }
}

/// How far a quorum request got, from its stored votes; `None` for a request without a quorum.
pub(super) fn progress_of(stored: &StoredRequest) -> Option<QuorumProgress> {
    let quorum = stored.request.quorum()?;
    Some(quorum.progress(&stored.decision.votes, stored.request.excluded()))
}

/// A quorum progress as JSON: its fields, the votes cast (who, which way, when) and the sentence the page shows.
pub(super) fn progress_json(stored: &StoredRequest) -> Option<Value> {
    let progress = progress_of(stored)?;
    let votes: Vec<Value> = stored
        .decision
        .votes
        .iter()
        .map(|v| json!({ "actor": v.actor, "approve": v.approve, "at_ms": v.at_ms }))
        .collect();
    Some(json!({
        "approvals": progress.approvals,
        "denials": progress.denials,
        "needed": progress.needed,
        "waiting_for": progress.waiting_for,
        "votes": votes,
        "text": progress.to_string(),
    }))
}

/// A live request as the API shows it: the request's own JSON, and for a quorum request its `quorum_progress`.
pub(super) fn request_json(request: &ApprovalRequest, stored: Option<&StoredRequest>) -> Value {
    let mut value = json!(request);
    if let (Some(stored), Some(object)) = (stored, value.as_object_mut()) {
        if let Some(progress) = progress_json(stored) {
            object.insert("quorum_progress".to_owned(), progress);
        }
    }
    value
}

/// The live requests as the API shows them; a quorum request's votes are read back from the store (one read each;
/// one that fails goes without its progress, rather than hide the list).
pub(super) fn requests_json(store: &dyn ApprovalStore, requests: &[ApprovalRequest]) -> Vec<Value> {
    requests
        .iter()
        .map(|r| {
            let stored = match r.quorum() {
                Some(_) => store.get(r.request_id()).ok().flatten(),
                None => None,
            };
            request_json(r, stored.as_ref())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        for (text, secs) in [
            ("90", 90),
            ("90s", 90),
            ("30m", 1800),
            ("2h", 7200),
            ("7d", 604_800),
            ("1h30m", 5400),
        ] {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        for text in ["", "h", "2x", "1.5h", "0", "0s", "-1h", "2h3", "99999999999999999999d"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert!(parse_duration("2w").unwrap_err().contains("e.g. 90s, 30m, 2h"));
    }

    fn body(text: &str) -> Result<Resolution, String> {
        parse_body(text.as_bytes())
            .and_then(|b| b.into_resolution("alice".to_owned()))
            .map_err(|e| format!("{e:?}"))
    }

    const ID: &str = "3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d";

    #[test]
    fn every_kind_of_answer_reads_from_its_body() {
        let r = body(&format!(r#"{{"request_id": "{ID}", "approved": true}}"#)).unwrap();
        assert_eq!((r.kind(), r.get_actor()), (AnswerKind::Approve, Some("alice")));
        let r = body(&format!(
            r#"{{"request_id": "{ID}", "kind": "deny", "approved": false}}"#
        ))
        .unwrap();
        assert_eq!(r.kind(), AnswerKind::Deny);
        let r = body(&format!(
            r#"{{"request_id": "{ID}", "kind": "edit", "params": {{"to": "b"}}}}"#
        ))
        .unwrap();
        assert_eq!(r.get_edited(), Some(&json!({"to": "b"})));
        let r = body(&format!(
            r#"{{"request_id": "{ID}", "kind": "respond", "response": "done"}}"#
        ))
        .unwrap();
        assert_eq!(r.get_response(), Some("done"));
        let r = body(&format!(
            r#"{{"request_id": "{ID}", "kind": "approve", "remember": {{"scope": "session", "for": "2h", "uses": 20,
                "when": "path = {{ under = \"./reports\" }}"}}}}"#
        ))
        .unwrap();
        let spec = r.get_remember().unwrap();
        assert_eq!(spec.get_scope(), GrantScope::Session);
        assert_eq!(spec.get_ttl(), Some(Duration::from_secs(7200)));
        assert_eq!(spec.get_uses(), Some(20));
        let r = body(&format!(
            r#"{{"request_id": "{ID}", "approved": true, "remember": {{"scope": "call"}}}}"#
        ))
        .unwrap();
        assert!(r.get_remember().is_none(), "this call only: no grant");
    }

    #[test]
    fn a_wrong_answer_body_names_the_field_to_fix() {
        for (extra, says) in [
            (r#""kind": "approve", "approved": false"#, "approved: false contradicts"),
            (r#""kind": "maybe""#, "kind: unknown kind"),
            (r#""kind": "edit""#, "params: an edit needs"),
            (
                r#""kind": "edit", "params": [1]"#,
                "params: the edited params must be a JSON object",
            ),
            (r#""approved": true, "params": {}"#, "params: only an edit"),
            (r#""kind": "respond""#, "response: a respond needs"),
            (
                r#""kind": "respond", "response": "  ""#,
                "response: the response is empty",
            ),
            (
                r#""kind": "respond", "response": "a\u001bb""#,
                "response: a control character",
            ),
            (r#""approved": true, "response": "x""#, "response: only a respond"),
            (
                r#""approved": false, "remember": {"scope": "session"}"#,
                "remember: only an approval",
            ),
            (
                r#""approved": true, "remember": {"scope": "forever"}"#,
                "remember.scope: unknown scope",
            ),
            (
                r#""approved": true, "remember": {"scope": "agent", "uses": 0}"#,
                "remember.uses: ",
            ),
            (
                r#""approved": true, "remember": {"scope": "agent", "for": "31d"}"#,
                "remember.for: ",
            ),
            (
                r#""approved": true, "remember": {"scope": "agent", "for": "soon"}"#,
                "remember.for: ",
            ),
            (
                r#""approved": true, "remember": {"scope": "agent", "when": "path = {"}"#,
                "remember.when: ",
            ),
            (
                r#""approved": true, "remember": {"scope": "call", "uses": 2}"#,
                "(this call only) makes no grant",
            ),
            (
                r#""approved": true, "remember": {"scope": "agent", "until": 2}"#,
                "remember.until: unknown field",
            ),
            (r#""reason": "x""#, "missing field `approved` (or `kind`)"),
        ] {
            let e = body(&format!(r#"{{"request_id": "{ID}", {extra}}}"#)).unwrap_err();
            assert!(e.contains(says), "{extra}: {e}");
        }
    }
}
