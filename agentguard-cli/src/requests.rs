//! The commands on requests: `pending`, `show`, `approve`/`deny`, `watch`.

use super::*;

pub(super) fn pending(cli: &Cli, store: &dyn ApprovalStore) -> Result<(), Failure> {
    let found = store.list_pending().map_err(store_error)?;
    // A row that cannot be read back is named on stderr; the others are listed as usual.
    warn_unreadable(&found.unreadable);
    let list = found.requests;
    if cli.json {
        print_json(&list);
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
    let rows: [(&str, String); 15] = [
        ("Request", req.request_id().to_string()),
        ("State", stored.decision.state.as_str().to_owned()),
        ("Outcome", stored.outcome.clone().unwrap_or_else(|| "-".into())),
        ("Tool", req.tool().to_owned()),
        ("Risk", req.risk().label().to_owned()),
        ("Reason", req.reason().unwrap_or("-").to_owned()),
        ("Policy rule", policy),
        ("Server", req.server().unwrap_or("-").to_owned()),
        ("Agent", req.agent_id().unwrap_or("-").to_owned()),
        ("Session", req.session_id().unwrap_or("-").to_owned()),
        ("Time left", left(req)),
        ("Actor", stored.decision.actor.clone().unwrap_or_else(|| "-".into())),
        ("Note", stored.decision.note.clone().unwrap_or_else(|| "-".into())),
        ("Digest", req.params_digest().to_string()),
        (
            "Parameters",
            serde_json::to_string_pretty(req.params()).unwrap_or_default(),
        ),
    ];
    for (k, v) in rows {
        // Every value may hold what the model wrote: an escape sequence or a newline must not redraw or fake the
        // lines around it. Only the pretty-printed params span lines, and their newlines are serde_json's own
        // (a newline inside a string is written as `\n`).
        let v = if k == "Parameters" {
            v.split('\n').map(shown).collect::<Vec<_>>().join("\n")
        } else {
            shown(&v)
        };
        outln!("{k:<10}: {v}");
    }
    Ok(())
}

pub(super) fn answer_request(cli: &Cli, store: &dyn ApprovalStore, answer: &Resolution) -> Result<(), Failure> {
    let outcome = store.resolve(answer).map_err(store_error)?;
    let id = answer.request_id();
    if cli.json {
        print_json(&serde_json::json!({"request_id": id, "outcome": outcome}));
    }
    // The same words as the HTTP API's `message`.
    let explained = format!("request {id}: {}", outcome.explain(answer.kind()));
    let code = match outcome {
        ResolveOutcome::Resolved => {
            if !cli.json {
                let verb = if answer.is_approval() { "approved" } else { "denied" };
                outln!("{verb} {id}");
            }
            return Ok(());
        }
        ResolveOutcome::AlreadyResolved => EXIT_ALREADY,
        ResolveOutcome::Unknown => EXIT_UNKNOWN,
        ResolveOutcome::Expired => EXIT_EXPIRED,
        ResolveOutcome::DigestMismatch => EXIT_DIGEST,
        ResolveOutcome::Unavailable => EXIT_STORE,
        _ => EXIT_ERROR,
    };
    Err(fail(code, explained))
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
