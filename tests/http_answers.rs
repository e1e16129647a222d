//! Richer answers over the HTTP API, against a real server on a loopback port and a real agent call parked in this
//! process: edit, respond, "remember this" (standing grants, listed and revoked over HTTP), quorum requests voted on
//! with several people's tokens, and the bodies that are refused. Each test asserts what the agent got.

mod common;
mod web;

use std::time::Duration;

use agentguard::policy::Policy;
use agentguard::store::RequestState;
use agentguard::{AgentGuard, ApprovalRequest, DenyReason, RequestId, ToolCall};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use web::{Web, ALICE, BOB, BOT, CAROL, DAVE};

async fn body(res: Response) -> (StatusCode, Value) {
    let status = res.status();
    let text = res.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: body {text:?} is not JSON: {e}"));
    (status, value)
}

/// `POST resolve` with `token`.
async fn resolve_as(web: &Web, token: &str, payload: Value) -> (StatusCode, Value) {
    let res = Client::new()
        .post(web.url("resolve"))
        .bearer_auth(token)
        .json(&payload)
        .send()
        .await
        .unwrap();
    body(res).await
}

async fn resolve(web: &Web, payload: Value) -> (StatusCode, Value) {
    resolve_as(web, ALICE, payload).await
}

/// An answer of `kind` to `req`, with the digest of what was shown; `extra` fields merged in.
fn answer(req: &ApprovalRequest, kind: &str, extra: Value) -> Value {
    let mut body = json!({
        "request_id": req.request_id(),
        "kind": kind,
        "params_digest": req.params_digest(),
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

async fn get(web: &Web, route: &str) -> (StatusCode, Value) {
    let res = Client::new()
        .get(web.url(route))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    body(res).await
}

async fn grants(web: &Web) -> Vec<Value> {
    let (status, list) = get(web, "grants").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list.as_array().unwrap().clone()
}

async fn revoke(web: &Web, token: &str, id: &str) -> (StatusCode, Value) {
    let res = Client::new()
        .post(web.url(&format!("grants/{id}/revoke")))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    body(res).await
}

fn external() -> agentguard::guard::GuardBuilder<agentguard::guard::mode::External> {
    AgentGuard::external().timeout(Duration::from_secs(60)).no_audit()
}

// --- edit ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_edit_runs_the_call_with_the_edited_params_and_says_so() {
    let (_dir, log) = common::audit_path();
    let mut web = Web::start(AgentGuard::external().timeout(Duration::from_secs(60)).audit_file(&log)).await;
    let call = web.call_echo(
        "send_email",
        json!({"to": "all@example.com", "subject": "Price change"}),
    );
    let parked = web.next_parked().await;

    let edited = json!({"to": "team@example.com", "subject": "Price change"});
    let (status, out) = resolve(&web, answer(&parked, "edit", json!({"params": edited}))).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!((&out["outcome"], &out["kind"]), (&json!("RESOLVED"), &json!("edit")));
    assert!(out["message"].as_str().unwrap().contains("edited arguments"), "{out}");
    assert_eq!(
        call.await.unwrap().unwrap(),
        edited,
        "the executor ran with the edited params"
    );

    let decision = web.guard.store().get(parked.request_id()).unwrap().unwrap().decision;
    assert_eq!(decision.kind, Some(agentguard::answer::AnswerKind::Edit));
    assert_eq!(decision.actor.as_deref(), Some("alice"));
    let lines = common::audit_lines(&log);
    let line = lines.iter().find(|l| l["tool"] == "send_email").unwrap();
    assert_eq!(line["decision"], "edited", "{line}");
    assert_eq!(line["actor"], "alice", "{line}");
    assert_eq!(
        line["params_digest"],
        parked.params_digest().to_string(),
        "the original digest stays: {line}"
    );
    assert_eq!(line["edit"]["params"]["to"], "team@example.com", "{line}");
}

#[tokio::test]
async fn an_edit_that_is_not_a_json_object_is_422_and_decides_nothing() {
    let mut web = Web::start(external()).await;
    let call = web.call_echo("send_email", json!({"to": "all@example.com"}));
    let parked = web.next_parked().await;
    for (extra, says) in [
        (
            json!({"params": [1, 2]}),
            "params: the edited params must be a JSON object",
        ),
        (
            json!({"params": "to=team"}),
            "params: the edited params must be a JSON object",
        ),
        (json!({}), "params: an edit needs the edited params"),
    ] {
        let (status, out) = resolve(&web, answer(&parked, "edit", extra.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{extra}: {out}");
        assert_eq!(out["error"], "malformed_body");
        assert!(out["message"].as_str().unwrap().starts_with(says), "{extra}: {out}");
    }
    assert_eq!(web.state(parked.request_id()), RequestState::Pending);
    assert_eq!(
        resolve(&web, answer(&parked, "approve", json!({}))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call.await.unwrap().unwrap(),
        json!({"to": "all@example.com"}),
        "ran as shown"
    );
}

#[tokio::test]
async fn an_edit_of_a_call_that_refuses_edits_is_422_not_allowed_here_with_its_reason() {
    let mut web = Web::start(external()).await;
    let call = web.run(
        ToolCall::new("charge_card", json!({"amount": 40}))
            .agent_id("support-bot")
            .refuse_edits("the amount is signed by the payment provider"),
    );
    let parked = web.next_parked().await;
    let (_, pending) = get(&web, "pending").await;
    assert_eq!(
        pending[0]["edit_refused"], "the amount is signed by the payment provider",
        "the page learns it before offering an edit"
    );

    let (status, out) = resolve(&web, answer(&parked, "edit", json!({"params": {"amount": 4}}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(
        (&out["outcome"], &out["error"]),
        (&json!("NOT_ALLOWED_HERE"), &json!("not_allowed_here"))
    );
    let message = out["message"].as_str().unwrap();
    assert!(
        message.contains("signed by the payment provider"),
        "the reason, not only the list: {message}"
    );
    assert_eq!(web.state(parked.request_id()), RequestState::Pending);
    assert_eq!(
        resolve(&web, answer(&parked, "deny", json!({}))).await.0,
        StatusCode::OK
    );
    assert_eq!(call.await.unwrap().unwrap_err().reason(), DenyReason::UserDenied);
}

// --- respond ------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_response_reaches_the_agent_as_the_tools_result_and_the_tool_never_runs() {
    let mut web = Web::start(external()).await;
    let call = web.call_echo("refund_payment", json!({"order": "A-1009", "amount": 249}));
    let parked = web.next_parked().await;

    let text = "The refund was already made on Monday; tell the customer it is on its way.";
    let (status, out) = resolve(&web, answer(&parked, "respond", json!({"response": text}))).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!((&out["outcome"], &out["kind"]), (&json!("RESOLVED"), &json!("respond")));
    assert!(out["message"].as_str().unwrap().contains("does not run"), "{out}");
    let answered = call.await.unwrap().unwrap_err();
    assert_eq!(answered.reason(), DenyReason::Responded);
    assert_eq!(answered.response(), Some(text));
    assert!(!answered.is_denial(), "an answer for the tool is not a denial");
    assert_eq!(web.state(parked.request_id()), RequestState::Responded);
}

#[tokio::test]
async fn a_response_that_is_empty_or_not_plain_text_is_422_naming_response() {
    let mut web = Web::start(external()).await;
    let call = web.call_echo("refund_payment", json!({"amount": 5}));
    let parked = web.next_parked().await;
    for (response, says) in [
        (json!("   "), "response: the response is empty"),
        (json!("done\u{1b}[2J"), "response: a control character (U+001B)"),
        (json!("x".repeat(20_001)), "response: 20001 characters; at most 20000"),
        (json!(42), "response: invalid type"),
    ] {
        let (status, out) = resolve(&web, answer(&parked, "respond", json!({"response": response}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
        assert!(out["message"].as_str().unwrap().starts_with(says), "{says}: {out}");
    }
    let (status, out) = resolve(&web, answer(&parked, "respond", json!({}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .starts_with("response: a respond needs"),
        "{out}"
    );
    assert_eq!(web.state(parked.request_id()), RequestState::Pending);
    web.guard.resolve(parked.request_id(), false, None);
    assert!(call.await.unwrap().is_err());
}

// --- remember: standing grants ------------------------------------------------------------------------------------

#[tokio::test]
async fn approve_with_remember_makes_a_grant_that_lets_the_next_call_through_until_revoked() {
    let (_dir, log) = common::audit_path();
    let mut web = Web::start_with(
        AgentGuard::external().timeout(Duration::from_secs(60)).audit_file(&log),
        web::everyone,
    )
    .await;
    assert!(grants(&web).await.is_empty());
    let first = web.call_echo("delete_file", json!({"path": "./reports/a.txt"}));
    let parked = web.next_parked().await;
    let remember = json!({"remember": {"scope": "session", "for": "2h", "uses": 2}});
    let (status, out) = resolve(&web, answer(&parked, "approve", remember)).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(first.await.unwrap().is_ok());

    let list = grants(&web).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let grant = &list[0];
    let id = grant["id"].as_str().unwrap().to_owned();
    assert_eq!(grant["tool"], "delete_file");
    assert_eq!(
        (&grant["scope"], &grant["session_id"]),
        (&json!("session"), &json!("s-42"))
    );
    assert_eq!(
        (&grant["created_by"], &grant["status"]),
        (&json!("alice"), &json!("active"))
    );
    assert_eq!((&grant["used"], &grant["uses_left"]), (&json!(0), &json!(2)));
    let left = grant["remaining_secs"].as_u64().unwrap();
    assert!((7000..=7200).contains(&left), "about two hours left: {grant}");
    assert_eq!(grant["from_request"], parked.request_id().as_str());

    // The next call of the tool in that session runs without asking; in another session it asks.
    let second = web.call_echo("delete_file", json!({"path": "./reports/b.txt"}));
    assert_eq!(second.await.unwrap().unwrap(), json!({"path": "./reports/b.txt"}));
    assert!(web.nothing_parked(), "the grant let it through: nobody was asked");
    let list = grants(&web).await;
    assert_eq!((&list[0]["used"], &list[0]["uses_left"]), (&json!(1), &json!(1)));
    let lines = common::audit_lines(&log);
    let line = lines.iter().rfind(|l| l["tool"] == "delete_file").unwrap();
    assert_eq!(
        (&line["grant"]["id"], &line["actor"]),
        (&json!(id), &json!("alice")),
        "{line}"
    );

    let elsewhere = web.run(
        ToolCall::new("delete_file", json!({"path": "x"}))
            .agent_id("support-bot")
            .session_id("s-99"),
    );
    let asked = web.next_parked().await;
    web.guard.resolve(asked.request_id(), false, None);
    assert!(elsewhere.await.unwrap().is_err());

    // Revoked by bob: recorded, and the next call in the session asks again.
    let (status, out) = revoke(&web, BOB, &id).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["outcome"], "REVOKED");
    assert_eq!(
        (&out["grant"]["status"], &out["grant"]["revoked_by"]),
        (&json!("revoked"), &json!("bob"))
    );
    assert!(
        out["message"].as_str().unwrap().contains("it let 1 call through"),
        "{out}"
    );
    let third = web.call_echo("delete_file", json!({"path": "./reports/c.txt"}));
    let asked = web.next_parked().await;
    assert_eq!(asked.tool(), "delete_file", "asked again after the revocation");
    web.guard.resolve(asked.request_id(), false, None);
    assert!(third.await.unwrap().is_err());

    let (status, out) = revoke(&web, ALICE, &id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{out}");
    assert_eq!(
        (&out["outcome"], &out["error"]),
        (&json!("ALREADY_REVOKED"), &json!("already_revoked"))
    );
    assert!(
        out["message"].as_str().unwrap().contains("already revoked by bob"),
        "{out}"
    );
    let (status, out) = revoke(&web, ALICE, "0d1e2f3a-0000-4000-8000-000000000000").await;
    assert_eq!(
        (status, &out["error"]),
        (StatusCode::NOT_FOUND, &json!("unknown_grant"))
    );
}

#[tokio::test]
async fn a_revoke_needs_a_token_json_and_the_servers_own_origin() {
    let mut web = Web::start(external()).await;
    let call = web.call_echo("delete_file", json!({"path": "a"}));
    let parked = web.next_parked().await;
    let remember = json!({"remember": {"scope": "agent", "uses": 3}});
    assert_eq!(
        resolve(&web, answer(&parked, "approve", remember)).await.0,
        StatusCode::OK
    );
    assert!(call.await.unwrap().is_ok());
    let id = grants(&web).await[0]["id"].as_str().unwrap().to_owned();
    let url = web.url(&format!("grants/{id}/revoke"));
    let c = Client::new();
    let cases = [
        (
            "no token",
            c.post(&url).header("content-type", "application/json").body("{}"),
            401,
        ),
        (
            "wrong token",
            c.post(&url).bearer_auth("wrong-token-0123456789abcdef").body("{}"),
            401,
        ),
        (
            "text/plain",
            c.post(&url)
                .bearer_auth(ALICE)
                .header("content-type", "text/plain")
                .body("{}"),
            415,
        ),
        (
            "another site",
            c.post(&url)
                .bearer_auth(ALICE)
                .header("content-type", "application/json")
                .header("origin", "https://evil.example")
                .body("{}"),
            403,
        ),
        (
            "a field",
            c.post(&url)
                .bearer_auth(ALICE)
                .header("content-type", "application/json")
                .body(r#"{"force": true}"#),
            422,
        ),
        ("GET", c.get(&url).bearer_auth(ALICE), 405),
    ];
    for (what, req, want) in cases {
        let (status, out) = body(req.send().await.unwrap()).await;
        assert_eq!(status.as_u16(), want, "{what}: {out}");
        assert!(out["error"].is_string(), "{what}: {out}");
    }
    assert_eq!(
        grants(&web).await[0]["status"],
        "active",
        "no refused revoke took effect"
    );
    let (status, _) = body(
        c.post(&url)
            .bearer_auth(ALICE)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "an empty body is fine");
}

#[tokio::test]
async fn a_grant_with_a_condition_covers_only_calls_whose_arguments_pass_it() {
    let mut web = Web::start(external()).await;
    let first = web.call_echo("delete_file", json!({"path": "./reports/a.txt"}));
    let parked = web.next_parked().await;
    let remember = json!({"remember": {"scope": "agent", "for": 3600, "when": "path = { under = \"./reports\" }"}});
    let (status, out) = resolve(&web, answer(&parked, "approve", remember)).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(first.await.unwrap().is_ok());
    assert_eq!(grants(&web).await[0]["when"], "path = { under = \"./reports\" }");

    let inside = web.call_echo("delete_file", json!({"path": "./reports/2026/b.txt"}));
    assert!(inside.await.unwrap().is_ok());
    assert!(web.nothing_parked(), "under ./reports: let through");
    let outside = web.call_echo("delete_file", json!({"path": "./reports/../etc/passwd"}));
    let asked = web.next_parked().await;
    assert_eq!(
        asked.params()["path"],
        "./reports/../etc/passwd",
        "outside ./reports: asked"
    );
    web.guard.resolve(asked.request_id(), false, None);
    assert!(outside.await.unwrap().is_err());
}

#[tokio::test]
async fn a_remember_that_is_wrong_is_422_naming_the_field_and_decides_nothing() {
    let mut web = Web::start(external()).await;
    let call = web.call_echo("delete_file", json!({"path": "a"}));
    let parked = web.next_parked().await;
    for (kind, remember, says) in [
        (
            "approve",
            json!({"scope": "session", "uses": 0}),
            "remember.uses: uses must be at least 1",
        ),
        (
            "approve",
            json!({"scope": "session", "for": "31d"}),
            "remember.for: a grant lasts at most 30 days",
        ),
        (
            "approve",
            json!({"scope": "session", "for": "soon"}),
            "remember.for: \"soon\" is not a duration",
        ),
        (
            "approve",
            json!({"scope": "session", "for": -5}),
            "remember.for: -5 is not a whole number",
        ),
        (
            "approve",
            json!({"scope": "session", "when": "path = {"}),
            "remember.when: ",
        ),
        (
            "approve",
            json!({"scope": "session", "when": "amount = { gt = \"100\" }"}),
            "remember.when: ",
        ),
        (
            "approve",
            json!({"scope": "forever"}),
            "remember.scope: unknown scope \"forever\"",
        ),
        (
            "approve",
            json!({"scope": "call", "uses": 2}),
            "remember: scope \"call\"",
        ),
        ("approve", json!({"uses": 2}), "remember: missing field `scope`"),
        (
            "deny",
            json!({"scope": "session"}),
            "remember: only an approval or an edit",
        ),
        (
            "respond",
            json!({"scope": "agent"}),
            "remember: only an approval or an edit",
        ),
    ] {
        let mut extra = json!({ "remember": remember });
        if kind == "respond" {
            extra["response"] = json!("done");
        }
        let (status, out) = resolve(&web, answer(&parked, kind, extra)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{remember}: {out}");
        assert_eq!(out["error"], "malformed_body", "{out}");
        let message = out["message"].as_str().unwrap();
        assert!(
            message.starts_with(says),
            "{remember}: {message:?} should start with {says:?}"
        );
    }
    assert_eq!(web.state(parked.request_id()), RequestState::Pending);
    assert!(grants(&web).await.is_empty(), "no refused answer made a grant");
    // "call" is this call only: an approval, no grant.
    let (status, _) = resolve(&web, answer(&parked, "approve", json!({"remember": {"scope": "call"}}))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(call.await.unwrap().is_ok());
    assert!(grants(&web).await.is_empty());
}

#[tokio::test]
async fn a_grant_the_request_cannot_take_is_422_not_allowed_here_with_the_reason() {
    let policy = Policy::from_toml(
        r#"
        default = "classify"
        [[rule]]
        name = "payments are always asked"
        tools = ["charge_card"]
        action = "ask"
        remember = false
        "#,
    )
    .unwrap();
    let mut web = Web::start(external().policy(policy)).await;
    let call = web.call_echo("charge_card", json!({"amount": 40}));
    let parked = web.next_parked().await;
    let (_, pending) = get(&web, "pending").await;
    let why = pending[0]["remember_refused"].as_str().unwrap().to_owned();
    assert!(why.contains("payments are always asked"), "{why}");

    let (status, out) = resolve(
        &web,
        answer(&parked, "approve", json!({"remember": {"scope": "agent"}})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(out["outcome"], "NOT_ALLOWED_HERE");
    assert!(out["message"].as_str().unwrap().contains(&why), "{out}");

    // A call with no session: a session grant would cover nothing.
    let lone = web.run(ToolCall::new("delete_file", json!({"path": "a"})).agent_id("support-bot"));
    let lone_req = web.next_parked().await;
    let (status, out) = resolve(
        &web,
        answer(&lone_req, "approve", json!({"remember": {"scope": "session"}})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(out["message"].as_str().unwrap().contains("names no session"), "{out}");

    assert!(grants(&web).await.is_empty());
    assert_eq!(web.state(parked.request_id()), RequestState::Pending);
    web.guard.resolve(parked.request_id(), false, None);
    web.guard.resolve(lone_req.request_id(), false, None);
    assert!(call.await.unwrap().is_err());
    assert!(lone.await.unwrap().is_err());
}

// --- quorum -------------------------------------------------------------------------------------------------------

fn quorum_policy() -> Policy {
    Policy::from_toml(
        r#"
        default = "classify"
        [principals]
        "support-bot" = ["dave"]

        [[rule]]
        name = "payments need two of three"
        tools = ["charge_card"]
        action = "ask"
        approvers = ["alice", "bob", "carol"]
        quorum = 2
        "#,
    )
    .unwrap()
}

#[tokio::test]
async fn a_quorum_request_runs_after_two_approvals_by_two_people_and_refuses_the_rest() {
    let (_dir, log) = common::audit_path();
    let builder = AgentGuard::external()
        .timeout(Duration::from_secs(60))
        .audit_file(&log)
        .policy(quorum_policy());
    let mut web = Web::start_with(builder, |api| {
        web::everyone(api).token("erin-token-0123456789abcdef", "erin")
    })
    .await;
    let call = web.call_echo("charge_card", json!({"amount": 900}));
    let parked = web.next_parked().await;

    let (_, pending) = get(&web, "pending").await;
    let item = &pending[0];
    assert_eq!(item["quorum"]["needed"], 2);
    assert_eq!(item["quorum"]["approvers"], json!(["alice", "bob", "carol"]));
    assert_eq!(
        item["quorum_progress"]["text"],
        "0 of 2 approvals, waiting for alice or bob or carol"
    );
    assert!(item["remember_refused"].is_string(), "the page offers no grant: {item}");

    let approve = || answer(&parked, "approve", json!({}));
    let (status, out) = resolve_as(&web, ALICE, approve()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["outcome"], "VOTE_RECORDED");
    assert!(out.get("error").is_none(), "a counted vote is no error: {out}");
    assert_eq!(
        out["quorum_progress"]["text"],
        "1 of 2 approvals, waiting for bob or carol"
    );
    assert!(
        out["message"].as_str().unwrap().contains("so far: 1 of 2 approvals"),
        "{out}"
    );
    assert_eq!(
        web.state(parked.request_id()),
        RequestState::Pending,
        "one vote does not decide"
    );

    let refusals = [
        (
            ALICE,
            "approve",
            StatusCode::CONFLICT,
            "ALREADY_VOTED",
            "you voted on this request before",
        ),
        (
            BOT,
            "approve",
            StatusCode::FORBIDDEN,
            "OWN_REQUEST",
            "nobody approves their own request",
        ),
        (DAVE, "approve", StatusCode::FORBIDDEN, "OWN_REQUEST", "mapped to it"),
        (
            "erin-token-0123456789abcdef",
            "approve",
            StatusCode::FORBIDDEN,
            "NOT_AN_APPROVER",
            "who may approve it: alice, bob, carol",
        ),
        (
            BOB,
            "edit",
            StatusCode::UNPROCESSABLE_ENTITY,
            "NOT_ALLOWED_HERE",
            "approve or deny only",
        ),
        (
            BOB,
            "respond",
            StatusCode::UNPROCESSABLE_ENTITY,
            "NOT_ALLOWED_HERE",
            "approve or deny only",
        ),
    ];
    for (token, kind, want, outcome, says) in refusals {
        let extra = match kind {
            "edit" => json!({"params": {"amount": 9}}),
            "respond" => json!({"response": "paid already"}),
            _ => json!({}),
        };
        let (status, out) = resolve_as(&web, token, answer(&parked, kind, extra)).await;
        assert_eq!((status, out["outcome"].as_str().unwrap()), (want, outcome), "{out}");
        assert_eq!(out["error"], outcome.to_ascii_lowercase());
        assert!(out["message"].as_str().unwrap().contains(says), "{outcome}: {out}");
    }
    assert_eq!(
        web.state(parked.request_id()),
        RequestState::Pending,
        "no refusal counted"
    );

    let (status, out) = resolve_as(&web, BOB, approve()).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["outcome"], "RESOLVED");
    assert_eq!(
        call.await.unwrap().unwrap(),
        json!({"amount": 900}),
        "the second approval ran it"
    );
    let decision = web.guard.store().get(parked.request_id()).unwrap().unwrap().decision;
    assert_eq!(decision.actor.as_deref(), Some("alice, bob"));
    assert_eq!(decision.votes.len(), 2);
    let (status, out) = resolve_as(&web, CAROL, approve()).await;
    assert_eq!(
        (status, &out["outcome"]),
        (StatusCode::CONFLICT, &json!("ALREADY_RESOLVED"))
    );

    let lines = common::audit_lines(&log);
    let votes: Vec<&Value> = lines.iter().filter(|l| l["event"] == "vote").collect();
    assert_eq!(votes.len(), 2, "each vote is audited: {lines:?}");
    assert_eq!(
        (&votes[0]["actor"], &votes[1]["actor"]),
        (&json!("alice"), &json!("bob"))
    );
}

#[tokio::test]
async fn one_deny_ends_a_quorum_request() {
    let mut web = Web::start_with(external().policy(quorum_policy()), web::everyone).await;
    let call = web.call_echo("charge_card", json!({"amount": 900}));
    let parked = web.next_parked().await;
    let (status, _) = resolve_as(&web, ALICE, answer(&parked, "approve", json!({}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, out) = resolve_as(
        &web,
        CAROL,
        answer(&parked, "deny", json!({"reason": "not this month"})),
    )
    .await;
    assert_eq!((status, &out["outcome"]), (StatusCode::OK, &json!("RESOLVED")), "{out}");
    let denied = call.await.unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::UserDenied);
    assert_eq!(denied.detail(), Some("not this month"));
}

// --- bodies -------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn answer_bodies_that_contradict_themselves_are_422_and_decide_nothing() {
    let mut web = Web::start(external()).await;
    let call = web.call_echo("delete_file", json!({"path": "a"}));
    let parked = web.next_parked().await;
    let id = parked.request_id().to_string();
    for (payload, says) in [
        (
            json!({"request_id": id, "kind": "approve", "approved": false}),
            "approved: false contradicts kind \"approve\"",
        ),
        (
            json!({"request_id": id, "kind": "deny", "approved": true}),
            "approved: true contradicts kind \"deny\"",
        ),
        (
            json!({"request_id": id, "kind": "approved"}),
            "kind: unknown kind \"approved\"",
        ),
        (json!({"request_id": id, "kind": true}), "kind: invalid type"),
        (
            json!({"request_id": id, "approved": true, "params": {"path": "b"}}),
            "params: only an edit",
        ),
        (
            json!({"request_id": id, "kind": "deny", "response": "no"}),
            "response: only a respond",
        ),
        (json!({"request_id": id}), "missing field `approved` (or `kind`)"),
        (
            json!({"request_id": id, "approved": true, "remember": "session"}),
            "remember: invalid type",
        ),
    ] {
        let (status, out) = resolve(&web, payload.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{payload}: {out}");
        assert_eq!(out["error"], "malformed_body");
        assert!(out["message"].as_str().unwrap().starts_with(says), "{payload}: {out}");
    }
    assert_eq!(web.state(parked.request_id()), RequestState::Pending);
    // Today's body still works.
    let (status, out) = resolve(&web, json!({"request_id": id, "approved": true})).await;
    assert_eq!((status, &out["kind"]), (StatusCode::OK, &json!("approve")));
    assert!(call.await.unwrap().is_ok());
}

// --- events -------------------------------------------------------------------------------------------------------

/// Reads SSE events (name, data) from a streaming response.
struct Events {
    res: Response,
    buffer: String,
}

impl Events {
    async fn open(web: &Web) -> Events {
        let res = Client::new()
            .get(web.url("events"))
            .bearer_auth(ALICE)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        Events {
            res,
            buffer: String::new(),
        }
    }

    /// The next event, which must be `name`; returns its data.
    async fn expect(&mut self, name: &str) -> Value {
        let (got, data) = self.next().await;
        assert_eq!(got, name, "{data}");
        data
    }

    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(cut) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..cut + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return (name, serde_json::from_str(&data).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.res.chunk())
                .await
                .expect("an event within 30 s")
                .unwrap()
                .expect("the stream stays open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn events_carry_votes_responses_and_grant_changes() {
    let mut web = Web::start_with(external().policy(quorum_policy()), web::everyone).await;
    let mut events = Events::open(&web).await;
    let snapshot = events.expect("snapshot").await;
    assert_eq!((&snapshot["requests"], &snapshot["grants"]), (&json!([]), &json!([])));

    // Votes: the request arrives with its progress, each vote moves it, the last one resolves it.
    let payment = web.call_echo("charge_card", json!({"amount": 900}));
    let parked = web.next_parked().await;
    let data = events.expect("parked").await;
    assert_eq!(data["quorum_progress"]["approvals"], 0);
    assert_eq!(
        resolve_as(&web, BOB, answer(&parked, "approve", json!({}))).await.0,
        StatusCode::ACCEPTED
    );
    let data = events.expect("progress").await;
    assert_eq!(data["request_id"], parked.request_id().as_str());
    assert_eq!(
        data["quorum_progress"]["text"],
        "1 of 2 approvals, waiting for alice or carol"
    );
    assert_eq!(data["quorum_progress"]["votes"][0]["actor"], "bob");
    assert_eq!(
        resolve_as(&web, CAROL, answer(&parked, "approve", json!({}))).await.0,
        StatusCode::OK
    );
    let data = events.expect("resolved").await;
    assert_eq!(
        (&data["approved"], &data["actor"]),
        (&json!(true), &json!("bob, carol"))
    );
    assert!(payment.await.unwrap().is_ok());

    // A response: resolved, not approved, state responded.
    let refund = web.call_echo("refund_payment", json!({"amount": 5}));
    let parked = web.next_parked().await;
    events.expect("parked").await;
    let (status, _) = resolve(
        &web,
        answer(&parked, "respond", json!({"response": "already refunded"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let data = events.expect("resolved").await;
    assert_eq!(
        (&data["approved"], &data["state"], &data["kind"]),
        (&json!(false), &json!("responded"), &json!("respond"))
    );
    assert!(refund.await.unwrap().is_err());

    // A grant made, then revoked: the grant list comes again each time.
    let delete = web.call_echo("delete_file", json!({"path": "a"}));
    let parked = web.next_parked().await;
    events.expect("parked").await;
    let remember = json!({"remember": {"scope": "agent", "uses": 5}});
    assert_eq!(
        resolve(&web, answer(&parked, "approve", remember)).await.0,
        StatusCode::OK
    );
    events.expect("resolved").await;
    let data = events.expect("grants").await;
    assert_eq!(data["grants"][0]["status"], "active");
    let id = data["grants"][0]["id"].as_str().unwrap().to_owned();
    assert!(delete.await.unwrap().is_ok());
    assert_eq!(revoke(&web, ALICE, &id).await.0, StatusCode::OK);
    let data = events.expect("grants").await;
    assert_eq!(
        (&data["grants"][0]["id"], &data["grants"][0]["status"]),
        (&json!(id), &json!("revoked"))
    );
}

#[tokio::test]
async fn the_grants_list_needs_a_token() {
    let web = Web::start(external()).await;
    let res = Client::new().get(web.url("grants")).send().await.unwrap();
    let (status, out) = body(res).await;
    assert_eq!(
        (status, &out["error"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthorized"))
    );
    let res = Client::new()
        .post(web.url(&format!("grants/{}/revoke", RequestId::new())))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
