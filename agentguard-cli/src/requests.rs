//! The commands on requests: `pending`, `show`, `approve`/`deny`/`respond`, `watch`.

use agentguard::answer::{AnswerKind, GrantScope, QuorumProgress};
use agentguard::store::{Grant, StoredRequest};

use super::grants::{bounds, covers, grant_json, now_ms};
use super::*;

/// How far a quorum request got, from its stored votes; `None` for a request without a quorum.
fn progress(stored: &StoredRequest) -> Option<QuorumProgress> {
    let quorum = stored.request.quorum()?;
    Some(quorum.progress(&stored.decision.votes, stored.request.excluded()))
}

/// `1 of 2 approvals, waiting for bob or carol`, and the denials when there are some.
fn progress_words(stored: &StoredRequest) -> Option<String> {
    let p = progress(stored)?;
    let mut words = shown(&p.to_string());
    if p.denials > 0 {
        let ends = stored.request.quorum().map_or(1, |q| q.denials.max(1));
        words.push_str(&format!("; {} of {ends} denials that end it", p.denials));
    }
    Some(words)
}

pub(super) fn pending(
    cli: &Cli,
    store: &dyn ApprovalStore,
    limit: Option<u16>,
    after: Option<&str>,
) -> Result<(), Failure> {
    let after = after
        .map(|text| text.parse::<PageCursor>())
        .transpose()
        .map_err(|e| fail(EXIT_USAGE, format!("--after {e}")))?;
    let (found, next) = match limit {
        Some(limit) => {
            let page = store
                .pending_page(usize::from(limit), after.as_ref())
                .map_err(store_error)?;
            let list = PendingList {
                requests: page.requests,
                unreadable: page.unreadable,
            };
            (list, Some(page.next))
        }
        None => (store.list_pending().map_err(store_error)?, None),
    };
    // A row that cannot be read back is named on stderr; the others are listed as usual.
    warn_unreadable(&found.unreadable);
    let list = found.requests;
    // A quorum request's votes are in its decision: read them for its progress.
    let quorums: BTreeMap<RequestId, StoredRequest> = list
        .iter()
        .filter(|r| r.quorum().is_some())
        .filter_map(|r| store.get(r.request_id()).ok().flatten())
        .map(|s| (s.request.request_id().clone(), s))
        .collect();
    if cli.json {
        let list: Vec<serde_json::Value> = list
            .iter()
            .map(|r| {
                let mut value = serde_json::to_value(r).unwrap_or_default();
                if let (Some(map), Some(p)) = (value.as_object_mut(), quorums.get(r.request_id()).and_then(progress)) {
                    map.insert("progress".into(), serde_json::to_value(&p).unwrap_or_default());
                    map.insert("progress_text".into(), p.to_string().into());
                }
                value
            })
            .collect();
        match next {
            Some(next) => print_json(&serde_json::json!({ "requests": list, "next": next })),
            None => print_json(&list),
        }
        return Ok(());
    }
    if list.is_empty() {
        outln!("no pending requests");
        return Ok(());
    }
    outln!(
        "{:<36}  {:<20}  {:<16}  {:<12}  {:>6}  PARAMS",
        "REQUEST",
        "TOOL",
        "RISK",
        "AGENT",
        "LEFT"
    );
    for req in &list {
        let risk = req.risk().key();
        let mut params = shown(&req.params().to_string());
        if params.chars().count() > 60 {
            params = params.chars().take(57).collect::<String>() + "...";
        }
        outln!(
            "{:<36}  {:<20}  {:<16}  {:<12}  {:>6}  {params}",
            req.request_id(),
            shown(req.tool()),
            risk,
            shown(req.agent_id().unwrap_or("-")),
            left(req)
        );
        if let Some(words) = quorums.get(req.request_id()).and_then(progress_words) {
            outln!("{:<36}  quorum: {words}", "");
        }
    }
    if let (Some(Some(next)), Some(limit)) = (next, limit) {
        outln!("more are waiting: the next page is `agentguard pending --limit {limit} --after {next}`");
    }
    Ok(())
}

pub(super) fn show(cli: &Cli, store: &dyn ApprovalStore, id: &RequestId) -> Result<(), Failure> {
    let stored = store.get(id).map_err(|e| {
        // A pending row that cannot be read back: say so, and what to do, rather than "unreachable".
        let unreadable = store
            .list_pending()
            .ok()
            .and_then(|list| list.unreadable.into_iter().find(|row| row.id == id.as_str()));
        match unreadable {
            Some(row) => fail(
                EXIT_STORE,
                UnreadableRow {
                    id: shown(&row.id),
                    problem: shown(&row.problem),
                }
                .advice(),
            ),
            None => store_error(e),
        }
    })?;
    let Some(stored) = stored else {
        return Err(fail(
            EXIT_UNKNOWN,
            format!("unknown request {id}: not in this store (check the id and --store)"),
        ));
    };
    if cli.json {
        print_json(&stored);
        return Ok(());
    }
    let req = &stored.request;
    let policy = match (req.policy_rule(), req.policy_message()) {
        (Some(rule), Some(message)) => format!("{rule} — {message}"),
        (Some(rule), None) => rule.to_owned(),
        _ => "-".to_owned(),
    };
    let decision = &stored.decision;
    let mut rows: Vec<(&str, String)> = vec![
        ("Request", req.request_id().to_string()),
        ("State", decision.state.as_str().to_owned()),
        ("Outcome", stored.outcome.clone().unwrap_or_else(|| "-".into())),
        ("Tool", req.tool().to_owned()),
        ("Risk", req.risk().label().to_owned()),
        ("Reason", req.reason().unwrap_or("-").to_owned()),
        ("Policy rule", policy),
        ("Server", req.server().unwrap_or("-").to_owned()),
        ("Agent", req.agent_id().unwrap_or("-").to_owned()),
        ("Session", req.session_id().unwrap_or("-").to_owned()),
        ("Time left", left(req)),
        ("Actor", decision.actor.clone().unwrap_or_else(|| "-".into())),
        ("Note", decision.note.clone().unwrap_or_else(|| "-".into())),
    ];
    // What the answer was beyond yes or no: its kind, a quorum's votes, an edit, a response, a grant.
    if let Some(kind) = decision.kind {
        rows.push(("Answer", kind.as_str().to_owned()));
    }
    if let Some(quorum) = req.quorum() {
        let approvers = if quorum.approvers.is_empty() {
            "any named actor".to_owned()
        } else {
            quorum.approvers.join(", ")
        };
        let p = progress(&stored).map(|p| p.to_string()).unwrap_or_default();
        rows.push((
            "Quorum",
            format!(
                "{p} (approvers: {approvers}; {} denial{} end{} it)",
                quorum.denials.max(1),
                if quorum.denials > 1 { "s" } else { "" },
                if quorum.denials > 1 { "" } else { "s" }
            ),
        ));
    }
    let now = now_ms();
    for vote in &decision.votes {
        let ago = human(Duration::from_millis(now.saturating_sub(vote.at_ms)));
        let verb = if vote.approve { "approved" } else { "denied" };
        let note = vote.note.as_deref().map(|n| format!(" — {n}")).unwrap_or_default();
        rows.push(("Vote", format!("{} {verb} {ago} ago{note}", vote.actor)));
    }
    if let Some(edited) = &decision.edited {
        rows.push(("Edited", serde_json::to_string_pretty(edited).unwrap_or_default()));
    }
    if let Some(response) = &decision.response {
        rows.push(("Response", response.clone()));
    }
    if let Some(id) = &decision.grant {
        let grant: Option<Grant> = store
            .grants()
            .ok()
            .and_then(|all| all.into_iter().find(|g| &g.id == id));
        rows.push((
            "Grant",
            match grant {
                Some(g) => format!(
                    "{id} ({}, {}; {} used{})",
                    covers(&g),
                    g.status(now),
                    g.used,
                    g.uses_left.map(|n| format!(", {n} left")).unwrap_or_default()
                ),
                None => id.clone(),
            },
        ));
    }
    if let Some(why) = req.edit_refused() {
        rows.push(("Edits", format!("refused: {why}")));
    }
    if let Some(why) = req.remember_refused() {
        rows.push(("Remember", format!("refused: {why}")));
    }
    rows.push(("Digest", req.params_digest().to_string()));
    rows.push((
        "Parameters",
        serde_json::to_string_pretty(req.params()).unwrap_or_default(),
    ));
    for (k, v) in rows {
        // Every value may hold what the model wrote: an escape sequence or a newline must not redraw or fake the
        // lines around it. Only the pretty-printed params (shown and edited) and a response span lines: the params'
        // newlines are serde_json's own (a newline inside a string is written as `\n`), a response's are the
        // approver's, each line shown indented under the first.
        let v = match k {
            "Parameters" | "Edited" => v.split('\n').map(shown).collect::<Vec<_>>().join("\n"),
            "Response" => v
                .split('\n')
                .map(shown)
                .collect::<Vec<_>>()
                .join(&format!("\n{:12}", "")),
            _ => shown(&v),
        };
        outln!("{k:<10}: {v}");
    }
    Ok(())
}

pub(super) fn answer_request(cli: &Cli, store: &dyn ApprovalStore, answer: &Resolution) -> Result<(), Failure> {
    let outcome = store.resolve(answer).map_err(store_error)?;
    let id = answer.request_id();
    let kind = answer.kind();
    // The request as it now stands (its quorum, votes, grant), for the words that say what happened or why not. A
    // store that cannot be read back now only loses those details: the answer's outcome stands.
    let stored = match outcome {
        ResolveOutcome::Unknown | ResolveOutcome::Unavailable | ResolveOutcome::Expired => None,
        _ => store.get(id).ok().flatten(),
    };
    let now = now_ms();
    let grant: Option<Grant> = stored
        .as_ref()
        .and_then(|s| s.decision.grant.clone())
        .filter(|_| outcome == ResolveOutcome::Resolved)
        .and_then(|gid| store.grants().ok()?.into_iter().find(|g| g.id == gid));
    // The same words as the HTTP API's `message`.
    let explained = outcome.explain(kind);
    if cli.json {
        let mut out = serde_json::json!({"request_id": id, "outcome": outcome, "message": explained});
        if let Some(p) = stored.as_ref().and_then(progress) {
            out["progress"] = serde_json::to_value(&p).unwrap_or_default();
            out["progress_text"] = p.to_string().into();
        }
        if let Some(g) = &grant {
            out["grant"] = grant_json(g, now);
        }
        print_json(&out);
    }
    let code = match outcome {
        ResolveOutcome::Resolved => {
            if !cli.json {
                outln!("{}", decided(id, kind));
                if let Some(s) = stored.as_ref().filter(|s| !s.decision.votes.is_empty()) {
                    let by = s.decision.actor.as_deref().unwrap_or("-");
                    let p = progress(s).map(|p| p.to_string()).unwrap_or_default();
                    outln!("  quorum: {p}; decided by {}", shown(by));
                }
                if let Some(g) = &grant {
                    outln!(
                        "  remembered as grant {}: later calls of {} by {} run without asking, {}{}",
                        shown(&g.id),
                        shown(&g.tool),
                        covers(g),
                        bounds(g),
                        g.when
                            .as_deref()
                            .map(|w| format!(", when {}", shown(&w.replace('\n', "; "))))
                            .unwrap_or_default()
                    );
                }
            }
            if answer.get_remember().is_some() && grant.is_none() {
                eprintln!(
                    "agentguard: warning: request {id} was approved, but the store kept no standing grant (a store \
                     without grants?): later calls will be asked"
                );
            }
            return Ok(());
        }
        ResolveOutcome::VoteRecorded => {
            if !cli.json {
                let p = stored.as_ref().and_then(progress_words).unwrap_or_default();
                outln!("request {id}: vote recorded: {p}");
            }
            return Ok(());
        }
        ResolveOutcome::AlreadyResolved => EXIT_ALREADY,
        ResolveOutcome::Unknown => EXIT_UNKNOWN,
        ResolveOutcome::Expired => EXIT_EXPIRED,
        ResolveOutcome::DigestMismatch => EXIT_DIGEST,
        ResolveOutcome::Unavailable => EXIT_STORE,
        ResolveOutcome::AlreadyVoted => EXIT_VOTED,
        ResolveOutcome::NotAnApprover => EXIT_NOT_APPROVER,
        ResolveOutcome::OwnRequest => EXIT_OWN_REQUEST,
        ResolveOutcome::NotAllowedHere => EXIT_NOT_ALLOWED,
        _ => EXIT_ERROR,
    };
    let mut message = format!("request {id}: {explained}");
    if let Some(why) = stored.as_ref().and_then(|s| why_not(s, answer, outcome)) {
        message.push_str(&format!("\n  here: {}", shown(&why)));
    }
    Err(fail(code, message))
}

/// The first line printed for an answer that decided its request.
fn decided(id: &RequestId, kind: AnswerKind) -> String {
    match kind {
        AnswerKind::Approve => format!("approved {id}"),
        AnswerKind::Deny => format!("denied {id}"),
        AnswerKind::Edit => format!("approved {id} with your edit: the call runs with the edited arguments"),
        AnswerKind::Respond => {
            format!("responded to {id}: the tool does not run; the agent reads your text as its result")
        }
    }
}

/// What in this request refused this answer, in its particulars (the outcome's words are general).
fn why_not(stored: &StoredRequest, answer: &Resolution, outcome: ResolveOutcome) -> Option<String> {
    let req = &stored.request;
    let actor = answer.get_actor();
    let mut why: Vec<String> = Vec::new();
    match outcome {
        ResolveOutcome::NotAllowedHere => {
            if answer.kind() == AnswerKind::Edit {
                if let Some(w) = req.edit_refused() {
                    why.push(format!("it takes no edited arguments: {w}"));
                }
            }
            if let Some(spec) = answer.get_remember() {
                if let Some(w) = req.remember_refused() {
                    why.push(format!("no standing grant: {w}"));
                } else if req.quorum().is_some() {
                    why.push("no standing grant on a quorum request: each call needs its quorum".to_owned());
                }
                match spec.get_scope() {
                    GrantScope::Session if req.session_id().is_none() => why.push(
                        "the call has no session id, so --remember session covers nothing: use agent or everyone"
                            .to_owned(),
                    ),
                    GrantScope::Agent if req.agent_id().is_none() => why.push(
                        "the call has no agent id, so --remember agent covers nothing: use session or everyone"
                            .to_owned(),
                    ),
                    _ => {}
                }
            }
            if req.quorum().is_some() && matches!(answer.kind(), AnswerKind::Edit | AnswerKind::Respond) {
                why.push("it needs a quorum: approve (without --edit) or deny only".to_owned());
            }
        }
        ResolveOutcome::NotAnApprover => match (actor, req.quorum()) {
            (None, _) => why.push("no actor given: pass --actor NAME (or set USER)".to_owned()),
            (Some(a), Some(q)) if !q.approvers.is_empty() => {
                why.push(format!("{a} is not one of its approvers: {}", q.approvers.join(", ")))
            }
            _ => {}
        },
        ResolveOutcome::OwnRequest => {
            if let Some(a) = actor {
                let agent = req.agent_id().unwrap_or("-");
                if a == agent {
                    why.push(format!("{a} is the agent that asked"));
                } else {
                    why.push(format!(
                        "{a} is mapped to the agent {agent} ([principals] in the policy)"
                    ));
                }
            }
        }
        ResolveOutcome::AlreadyVoted => {
            if let Some(p) = progress_words(stored) {
                why.push(p);
            }
        }
        _ => {}
    }
    (!why.is_empty()).then(|| why.join("; "))
}

pub(super) fn watch(cli: &Cli, store: &dyn ApprovalStore, interval: Duration) -> Result<(), Failure> {
    let mut known: BTreeMap<RequestId, ApprovalRequest> = BTreeMap::new();
    let mut unreadable: Vec<String> = Vec::new();
    if !cli.json {
        outln!("watching for requests (Ctrl-C to stop)");
    }
    loop {
        let found = store.list_pending().map_err(store_error)?;
        // Each unreadable row is named once, when first seen; the others are watched as usual.
        warn_unreadable(
            &found
                .unreadable
                .iter()
                .filter(|row| !unreadable.contains(&row.id))
                .cloned()
                .collect::<Vec<_>>(),
        );
        unreadable = found.unreadable.into_iter().map(|row| row.id).collect();
        let now: BTreeMap<RequestId, ApprovalRequest> = found
            .requests
            .into_iter()
            .map(|r| (r.request_id().clone(), r))
            .collect();
        for (id, req) in &now {
            if !known.contains_key(id) {
                if cli.json {
                    print_json(&serde_json::json!({"event": "parked", "request": req}));
                } else {
                    outln!(
                        "+ parked   {id}  {}  {}  {}",
                        shown(req.tool()),
                        req.risk().key(),
                        shown(&req.params().to_string())
                    );
                }
            }
        }
        for id in known.keys().filter(|id| !now.contains_key(*id)) {
            let state = store
                .get(id)
                .map_err(store_error)?
                .map_or("gone", |s| s.decision.state.as_str());
            if cli.json {
                print_json(&serde_json::json!({"event": state, "request_id": id}));
            } else {
                outln!("- {state:<8} {id}");
            }
        }
        known = now;
        std::thread::sleep(interval);
    }
}
