//! The approval API over real HTTP: a server on a loopback port, an agent parked in the same process, and a client
//! that sends what browsers, scripts and attackers send. Every status code, every refusal, and the event stream.

mod common;
mod web;

use std::sync::Arc;
use std::time::Duration;

use agentguard::http::ApprovalApi;
use agentguard::store::{ApprovalStore, RequestState, StoreError, StoredRequest};
use agentguard::{AgentGuard, ApprovalRequest, DenyReason, RequestId};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use web::{Web, ALICE};

fn client() -> Client {
    Client::new()
}

async fn body(res: Response) -> (StatusCode, Value) {
    let status = res.status();
    let text = res.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: body {text:?} is not JSON: {e}"));
    (status, value)
}

async fn resolve(web: &Web, payload: Value) -> (StatusCode, Value) {
    post_raw(web, &[("content-type", "application/json")], payload.to_string()).await
}

/// A resolve request with Alice's token, exactly these headers and this body.
async fn post_raw(web: &Web, headers: &[(&str, &str)], payload: String) -> (StatusCode, Value) {
    let mut req = client().post(web.url("resolve")).bearer_auth(ALICE).body(payload);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    body(req.send().await.unwrap()).await
}

fn answer(req: &ApprovalRequest, approved: bool) -> Value {
    json!({
        "request_id": req.request_id(),
        "approved": approved,
        "params_digest": req.params_digest(),
    })
}

fn external() -> agentguard::guard::GuardBuilder<agentguard::guard::mode::External> {
    AgentGuard::external().timeout(Duration::from_secs(60)).no_audit()
}

#[tokio::test]
async fn pending_lists_live_requests_with_redacted_params_digest_and_deadline() {
    let mut web = Web::start(external()).await;
    let _call = web.call("delete_customer", json!({"id": 7, "api_key": "sk-live-123"}));
    let parked = web.next_parked().await;

    let res = client()
        .get(web.url("pending"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let (status, list) = body(res).await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    let item = &list[0];
    assert_eq!(item["request_id"], parked.request_id().as_str());
    assert_eq!(item["tool"], "delete_customer");
    assert_eq!(item["params"]["id"], 7);
    assert_eq!(item["params"]["api_key"], "[REDACTED]");
    assert_eq!(item["params_digest"], parked.params_digest().to_string());
    assert!(item["deadline"].as_f64().unwrap() > item["timestamp"].as_f64().unwrap());
    assert_eq!(item["agent_id"], "support-bot");
    assert!(!list[0].to_string().contains("sk-live-123"));
}

#[tokio::test]
async fn an_approval_returns_200_runs_the_call_and_records_the_tokens_actor() {
    let (_dir, log) = common::audit_path();
    let mut web = Web::start(AgentGuard::external().timeout(Duration::from_secs(60)).audit_file(&log)).await;
    let call = web.call("delete_customer", json!({"id": 7}));
    let parked = web.next_parked().await;

    let (status, out) = resolve(&web, answer(&parked, true)).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["outcome"], "RESOLVED");
    assert_eq!(call.await.unwrap().unwrap(), "ran");
    let stored = web.guard.store().get(parked.request_id()).unwrap().unwrap();
    assert_eq!(stored.decision.actor.as_deref(), Some("alice"));
    let lines = common::audit_lines(&log);
    let line = lines.iter().find(|l| l["tool"] == "delete_customer").unwrap();
    assert_eq!(line["actor"], "alice", "the token's actor is in the audit: {line}");
}

#[tokio::test]
async fn a_denial_with_a_reason_reaches_the_agent_as_action_denied() {
    let mut web = Web::start(external()).await;
    let call = web.call("send_email", json!({"to": "all@example.com"}));
    let parked = web.next_parked().await;
    let mut payload = answer(&parked, false);
    payload["reason"] = json!("not to everyone");

    let (status, out) = resolve(&web, payload).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let denied = call.await.unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::UserDenied);
    assert_eq!(denied.detail(), Some("not to everyone"));
}

#[tokio::test]
async fn a_second_answer_is_409_already_resolved() {
    let mut web = Web::start(external()).await;
    let call = web.call("delete_customer", json!({"id": 7}));
    let parked = web.next_parked().await;
    assert_eq!(resolve(&web, answer(&parked, true)).await.0, StatusCode::OK);
    let (status, out) = resolve(&web, answer(&parked, false)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(out["outcome"], "ALREADY_RESOLVED");
    assert!(out["message"].as_str().unwrap().contains("first"));
    assert_eq!(call.await.unwrap().unwrap(), "ran", "the first answer stands");
}

#[tokio::test]
async fn an_unknown_request_is_404() {
    let web = Web::start(external()).await;
    let (status, out) = resolve(&web, json!({"request_id": RequestId::new(), "approved": true})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(out["outcome"], "UNKNOWN");
}

#[tokio::test]
async fn an_answer_after_the_deadline_is_410_and_the_call_never_runs() {
    let mut web = Web::start(AgentGuard::external().timeout(Duration::from_millis(200)).no_audit()).await;
    let call = web.call("delete_customer", json!({"id": 7}));
    let parked = web.next_parked().await;
    let denied = call.await.unwrap().unwrap_err();
    assert_eq!(denied.reason(), DenyReason::ApprovalTimeout);

    let (status, out) = resolve(&web, answer(&parked, true)).await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(out["outcome"], "EXPIRED");
}

#[tokio::test]
async fn a_digest_that_is_not_the_requests_is_422_and_decides_nothing() {
    let mut web = Web::start(external()).await;
    let call = web.call("delete_customer", json!({"id": 7}));
    let parked = web.next_parked().await;
    let mut payload = answer(&parked, true);
    payload["params_digest"] = json!(agentguard::params::ParamsDigest::of(b"{\"id\":8}").to_string());

    let (status, out) = resolve(&web, payload).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(out["outcome"], "DIGEST_MISMATCH");
    assert_eq!(
        web.state(parked.request_id()),
        RequestState::Pending,
        "still waiting for a real answer"
    );
    assert_eq!(resolve(&web, answer(&parked, false)).await.0, StatusCode::OK);
    assert!(call.await.unwrap().is_err());
}

#[tokio::test]
async fn malformed_bodies_are_422_with_a_message_saying_what_is_wrong() {
    let web = Web::start(external()).await;
    // Each message starts by naming what is wrong.
    let cases: [(&str, &str); 6] = [
        ("{not json", "the body is not valid JSON"),
        (r#"{"approved": true}"#, "missing field `request_id`"),
        (r#"{"request_id": "x", "approved": true}"#, "request_id: "),
        (
            r#"{"request_id": "3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d", "approved": "yes"}"#,
            "approved: invalid type",
        ),
        (
            r#"{"request_id": "3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d", "approved": true, "aproved": true}"#,
            "aproved: unknown field `aproved`, expected one of",
        ),
        (
            r#"{"request_id": "3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d", "approved": true, "params_digest": "zz"}"#,
            "params_digest: ",
        ),
    ];
    for (raw, says) in cases {
        let (status, out) = post_raw(&web, &[("content-type", "application/json")], raw.to_owned()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{raw}: {out}");
        assert_eq!(out["error"], "malformed_body");
        let message = out["message"].as_str().unwrap();
        assert!(
            message.starts_with(says),
            "{raw}: {message:?} should start with {says:?}"
        );
        if !says.ends_with(": ") {
            // A body of the wrong shape also shows the right one; a bad id or digest says what one looks like.
            assert!(
                message.contains(r#"send {"request_id""#),
                "and show the expected shape: {message}"
            );
        }
    }
}

#[tokio::test]
async fn an_oversized_body_is_413_with_a_message() {
    let web = Web::start(external()).await;
    let huge = format!(
        r#"{{"request_id": "3f9c2b1e-8d4a-4f7b-9c1d-2e5f6a7b8c9d", "approved": true, "reason": "{}"}}"#,
        "x".repeat(200_000)
    );
    let (status, out) = post_raw(&web, &[("content-type", "application/json")], huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(out["message"].as_str().unwrap().contains("131072 bytes"), "{out}");
}

#[tokio::test]
async fn no_token_or_a_wrong_one_is_401_on_every_api_route() {
    let mut web = Web::start(external()).await;
    let call = web.call("delete_customer", json!({"id": 7}));
    let parked = web.next_parked().await;
    for token in [
        None,
        Some("wrong-token-0123456789abcdef"),
        Some(&ALICE[..ALICE.len() - 1]),
    ] {
        for (method, route) in [("GET", "pending"), ("GET", "events"), ("POST", "resolve")] {
            let mut req = match method {
                "GET" => client().get(web.url(route)),
                _ => client().post(web.url(route)).json(&answer(&parked, true)),
            };
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"agentguard\"");
            let (status, out) = body(res).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {route} with {token:?}");
            assert_eq!(out["error"], "unauthorized");
            assert!(!out.to_string().contains(ALICE), "no secret in a response");
        }
    }
    assert_eq!(web.state(parked.request_id()), RequestState::Pending);
    web.guard.resolve(parked.request_id(), false, None);
    assert!(call.await.unwrap().is_err());
}

#[tokio::test]
async fn form_multipart_and_text_bodies_are_415_and_decide_nothing() {
    let mut web = Web::start(external()).await;
    let _call = web.call("delete_customer", json!({"id": 7}));
    let parked = web.next_parked().await;
    let json_text = answer(&parked, true).to_string();
    let form = format!("request_id={}&approved=true", parked.request_id());
    let cases = [
        ("application/x-www-form-urlencoded", form.clone()),
        (
            "multipart/form-data; boundary=XYZ",
            format!("--XYZ\r\n\r\n{json_text}\r\n--XYZ--"),
        ),
        ("text/plain", json_text.clone()),
        ("text/plain;charset=UTF-8", json_text.clone()),
    ];
    for (content_type, payload) in cases {
        let (status, out) = post_raw(&web, &[("content-type", content_type)], payload).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}: {out}");
        assert!(out["message"].as_str().unwrap().contains("application/json"));
    }
    let res = client()
        .post(web.url("resolve"))
        .bearer_auth(ALICE)
        .body(json_text)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "no content type at all"
    );
    assert_eq!(web.state(parked.request_id()), RequestState::Pending);
}

#[tokio::test]
async fn a_cross_origin_post_is_403_even_with_a_valid_token_and_decides_nothing() {
    let mut web = Web::start(external()).await;
    let _call = web.call("delete_customer", json!({"id": 7}));
    let parked = web.next_parked().await;
    let host = web
        .base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let cases: [(&str, String); 3] = [
        ("origin", "https://evil.example".to_owned()),
        ("origin", "null".to_owned()),
        ("sec-fetch-site", "cross-site".to_owned()),
    ];
    for (header, value) in cases {
        let json_type = ("content-type", "application/json");
        let (status, out) = post_raw(&web, &[(header, &value), json_type], answer(&parked, true).to_string()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{header}: {value}");
        assert_eq!(out["error"], "forbidden");
    }
    assert_eq!(web.state(parked.request_id()), RequestState::Pending);
    // The page's own origin passes.
    let origin = format!("http://{host}");
    let headers = [
        ("origin", origin.as_str()),
        ("sec-fetch-site", "same-origin"),
        ("content-type", "application/json"),
    ];
    let (status, _) = post_raw(&web, &headers, answer(&parked, true).to_string()).await;
    assert_eq!(status, StatusCode::OK);
}

/// Reads SSE events (name, data) from a streaming response.
struct Events {
    res: Response,
    buffer: String,
}

impl Events {
    async fn open(web: &Web) -> Events {
        let res = client().get(web.url("events")).bearer_auth(ALICE).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        Events {
            res,
            buffer: String::new(),
        }
    }

    /// The next event, which must be `name` about the request `id`; returns its data.
    async fn expect(&mut self, name: &str, id: &RequestId) -> Value {
        let (got, data) = self.next().await;
        assert_eq!((got.as_str(), &data["request_id"]), (name, &json!(id)), "{data}");
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
                    continue; // a keep-alive comment
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
async fn events_deliver_snapshot_parked_resolved_and_expired_in_order() {
    let mut web = Web::start(AgentGuard::external().timeout(Duration::from_secs(60)).no_audit()).await;
    let first = web.call("delete_customer", json!({"id": 1}));
    let one = web.next_parked().await;

    let mut events = Events::open(&web).await;
    let (name, data) = events.next().await;
    assert_eq!(name, "snapshot");
    assert_eq!(data["requests"][0]["request_id"], one.request_id().as_str());
    assert!(
        data["now"].as_f64().unwrap() > 1.7e9,
        "the server's clock, for the page's countdown"
    );

    let second = web.call("refund_payment", json!({"amount": 5}));
    let two = web.next_parked().await;
    let data = events.expect("parked", two.request_id()).await;
    assert_eq!(data["tool"], "refund_payment");

    assert_eq!(resolve(&web, answer(&one, true)).await.0, StatusCode::OK);
    let data = events.expect("resolved", one.request_id()).await;
    assert_eq!(data["approved"], true);
    assert_eq!(data["actor"], "alice");
    assert_eq!(first.await.unwrap().unwrap(), "ran");

    assert_eq!(resolve(&web, answer(&two, false)).await.0, StatusCode::OK);
    let (name, data) = events.next().await;
    assert_eq!((name.as_str(), &data["approved"]), ("resolved", &json!(false)));
    assert!(second.await.unwrap().is_err());

    // A short deadline: the request leaves as expired.
    let short = AgentGuard::external().timeout(Duration::from_secs(2)).no_audit();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let short = short
        .shared_store(web.guard.store().clone())
        .on_request(move |r| {
            let _ = tx.send(r.clone());
        })
        .build();
    let third = tokio::spawn(async move {
        short
            .aexecute(agentguard::ToolCall::new("wipe_disk", json!({})), |_, _| async {})
            .await
    });
    let three = rx.recv().await.unwrap();
    events.expect("parked", three.request_id()).await;
    events.expect("expired", three.request_id()).await;
    assert_eq!(third.await.unwrap().unwrap_err().reason(), DenyReason::ApprovalTimeout);
}

/// A store whose every read fails, as an unreachable database does.
#[derive(Debug)]
struct Unreachable;

fn refused<T>() -> Result<T, StoreError> {
    Err(StoreError::new("connection refused"))
}

impl ApprovalStore for Unreachable {
    fn insert(&self, _: &ApprovalRequest) -> Result<(), StoreError> {
        refused()
    }
    fn resolve(&self, _: &agentguard::Resolution) -> Result<agentguard::ResolveOutcome, StoreError> {
        refused()
    }
    fn expire(&self, _: &RequestId) -> Result<Option<agentguard::store::Decision>, StoreError> {
        refused()
    }
    fn claim(&self, _: &RequestId) -> Result<bool, StoreError> {
        refused()
    }
    fn get(&self, _: &RequestId) -> Result<Option<StoredRequest>, StoreError> {
        refused()
    }
    fn pending(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        refused()
    }
    fn wait<'a>(&'a self, _: &'a RequestId) -> agentguard::store::WaitFuture<'a> {
        Box::pin(async { refused() })
    }
    fn wait_blocking(
        &self,
        _: &RequestId,
        _: std::time::Instant,
    ) -> Result<Option<agentguard::store::Decision>, StoreError> {
        refused()
    }
}

#[tokio::test]
async fn an_unreachable_store_is_503_with_the_cause_never_a_500() {
    let app = ApprovalApi::new(Arc::new(Unreachable))
        .token(ALICE, "alice")
        .router()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/agentguard/", listener.local_addr().unwrap());
    tokio::spawn(agentguard::http::serve(listener, app, Default::default()));

    let res = client()
        .get(format!("{base}pending"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    let (status, out) = body(res).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(out["error"], "store_unavailable");
    assert!(out["message"].as_str().unwrap().contains("connection refused"), "{out}");
    let res = client()
        .post(format!("{base}resolve"))
        .bearer_auth(ALICE)
        .json(&json!({"request_id": RequestId::new(), "approved": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(body(res).await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_json_errors() {
    let web = Web::start(external()).await;
    let (status, out) = body(client().get(web.url("nope")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(out["message"].as_str().unwrap().contains("/agentguard/pending"));
    let (status, out) = body(
        client()
            .get(web.url("resolve"))
            .bearer_auth(ALICE)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(out["message"].as_str().unwrap().contains("POST"));
}

#[tokio::test]
async fn the_page_is_self_contained_under_a_strict_csp() {
    let web = Web::start(external()).await;
    let res = client().get(&web.base).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"),
        "{csp}"
    );
    assert!(
        csp.contains("connect-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let html = res.text().await.unwrap();
    assert!(html.contains("Approve") && html.contains("No requests waiting"));
    assert!(!html.contains(ALICE), "the page carries no credential");
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "nothing from a CDN"
    );

    // Without the trailing slash: a redirect to the page, relative so it works when mounted under a prefix.
    let no_redirects = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_redirects.get(web.base.trim_end_matches('/')).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(res.headers()["location"], "agentguard/");
}

#[tokio::test]
async fn events_over_a_sqlite_store_say_expired_at_the_deadline_not_at_the_next_poll() {
    let dir = tempfile::tempdir().unwrap();
    let store = agentguard::store::SqliteStore::open(dir.path().join("store.db")).unwrap();
    // A poll interval far beyond the test's patience: only the wake-up at the deadline can deliver `expired`.
    let mut web = Web::start_with(external().store(store).timeout(Duration::from_secs(2)), |api| {
        api.poll_interval(Duration::from_secs(3600))
    })
    .await;
    let call = web.call("delete_customer", json!({"id": 7}));
    let parked = web.next_parked().await;
    let mut events = Events::open(&web).await;
    let (name, data) = events.next().await;
    assert_eq!(
        (name.as_str(), &data["requests"][0]["request_id"]),
        ("snapshot", &json!(parked.request_id()))
    );
    events.expect("expired", parked.request_id()).await;
    assert_eq!(call.await.unwrap().unwrap_err().reason(), DenyReason::ApprovalTimeout);
}

#[tokio::test]
async fn events_over_a_sqlite_store_arrive_by_polling() {
    let dir = tempfile::tempdir().unwrap();
    let store = agentguard::store::SqliteStore::open(dir.path().join("store.db")).unwrap();
    let mut web = Web::start(external().store(store)).await;
    assert!(
        web.guard.store().changed().is_none(),
        "SQLite cannot signal: the stream polls"
    );
    let mut events = Events::open(&web).await;
    let (name, data) = events.next().await;
    assert_eq!((name.as_str(), &data["requests"]), ("snapshot", &json!([])));

    let call = web.call("delete_customer", json!({"id": 7}));
    let parked = web.next_parked().await;
    events.expect("parked", parked.request_id()).await;
    assert_eq!(resolve(&web, answer(&parked, true)).await.0, StatusCode::OK);
    let (name, data) = events.next().await;
    assert_eq!((name.as_str(), &data["actor"]), ("resolved", &json!("alice")));
    assert_eq!(call.await.unwrap().unwrap(), "ran");
}

/// Sends `raw` on a new connection and reads the answer until the server closes it (bounded: 5 s).
async fn raw_exchange(web: &Web, raw: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(web.addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(read.is_ok(), "no answer and no close within 5 s: {got:?}");
    got
}

#[tokio::test]
async fn every_error_path_answers_json_with_an_error_key() {
    let mut web = Web::start_with(external(), |api| {
        api.standalone()
            .max_event_streams(1)
            .body_timeout(Duration::from_millis(300))
            .auth_failure_limit(2, Duration::from_secs(60), Duration::from_secs(60))
    })
    .await;
    let _first = web.call("delete_customer", json!({"id": 7}));
    let parked = web.next_parked().await;
    let done = web.call("delete_customer", json!({"id": 8}));
    let resolved = web.next_parked().await;
    assert_eq!(resolve(&web, answer(&resolved, false)).await.0, StatusCode::OK);
    assert!(done.await.unwrap().is_err());
    let expiring = AgentGuard::external()
        .timeout(Duration::from_millis(100))
        .no_audit()
        .shared_store(web.guard.store().clone())
        .build();
    let expired = expiring
        .aexecute(agentguard::ToolCall::new("wipe_disk", json!({})), |_, _| async {})
        .await
        .unwrap_err();
    let expired_id = expired.request_id().cloned().expect("a parked request's id");
    let stream = client().get(web.url("events")).bearer_auth(ALICE).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK, "the one event stream allowed");

    let id = parked.request_id().to_string();
    let valid = |extra: &str| format!(r#"{{"request_id": "{id}", "approved": true{extra}}}"#);
    let json_type = ("content-type", "application/json");
    let host = web.addr.to_string();
    let root = web.base.trim_end_matches("agentguard/").to_owned();
    let c = client();
    let mut cases: Vec<(String, reqwest::RequestBuilder)> = vec![
        ("unknown route under /agentguard/".into(), c.get(web.url("nope"))),
        ("a path outside /agentguard/".into(), c.get(format!("{root}elsewhere"))),
        ("GET resolve".into(), c.get(web.url("resolve")).bearer_auth(ALICE)),
        ("POST pending".into(), c.post(web.url("pending")).bearer_auth(ALICE)),
        ("PUT the page".into(), c.put(&web.base)),
        ("DELETE events".into(), c.delete(web.url("events")).bearer_auth(ALICE)),
        (
            "no token".into(),
            c.post(web.url("resolve"))
                .header(json_type.0, json_type.1)
                .body(valid("")),
        ),
        (
            "Basic credentials".into(),
            c.get(web.url("pending")).basic_auth("alice", Some("x")),
        ),
        (
            "cross-origin".into(),
            c.post(web.url("resolve"))
                .bearer_auth(ALICE)
                .header("origin", "https://evil.example")
                .header(json_type.0, json_type.1)
                .body(valid("")),
        ),
        (
            "no content type".into(),
            c.post(web.url("resolve")).bearer_auth(ALICE).body(valid("")),
        ),
        (
            "text/plain".into(),
            c.post(web.url("resolve"))
                .bearer_auth(ALICE)
                .header("content-type", "text/plain")
                .body(valid("")),
        ),
        (
            "a second event stream".into(),
            c.get(web.url("events")).bearer_auth(ALICE),
        ),
    ];
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("an empty body", Vec::new()),
        ("not JSON", b"{not json".to_vec()),
        ("a JSON array", b"[1, 2]".to_vec()),
        ("JSON null", b"null".to_vec()),
        (
            "invalid UTF-8",
            b"{\"request_id\": \"\xff\xfe\", \"approved\": true}".to_vec(),
        ),
        ("a missing field", br#"{"approved": true}"#.to_vec()),
        ("an unknown field", valid(r#", "extra": 1"#).into_bytes()),
        ("a malformed id", br#"{"request_id": "x", "approved": true}"#.to_vec()),
        ("a malformed digest", valid(r#", "params_digest": "zz""#).into_bytes()),
        (
            "a NUL in the reason",
            valid(r#", "reason": "no\u0000way""#).into_bytes(),
        ),
        (
            "an escape in the reason",
            valid(r#", "reason": "\u001b[2Jok""#).into_bytes(),
        ),
        (
            "a reason too long",
            valid(&format!(r#", "reason": "{}""#, "x".repeat(1001))).into_bytes(),
        ),
        (
            "a body over the limit",
            valid(&format!(r#", "reason": "{}""#, "x".repeat(200_000))).into_bytes(),
        ),
        (
            "an unknown request",
            format!(r#"{{"request_id": "{}", "approved": true}}"#, RequestId::new()).into_bytes(),
        ),
        (
            "an answered request",
            format!(r#"{{"request_id": "{}", "approved": true}}"#, resolved.request_id()).into_bytes(),
        ),
        (
            "an expired request",
            format!(r#"{{"request_id": "{expired_id}", "approved": true}}"#).into_bytes(),
        ),
        (
            "another digest",
            valid(&format!(
                r#", "params_digest": "{}""#,
                agentguard::params::ParamsDigest::of(b"{}")
            ))
            .into_bytes(),
        ),
    ];
    for (what, payload) in bodies {
        let req = c
            .post(web.url("resolve"))
            .bearer_auth(ALICE)
            .header(json_type.0, json_type.1)
            .body(payload);
        cases.push((what.to_owned(), req));
    }
    let mut seen = std::collections::BTreeMap::new();
    for (what, req) in cases {
        let res = req.send().await.unwrap();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let (status, out) = body(res).await;
        assert!(!status.is_success(), "{what}: {status} {out}");
        assert_eq!(content_type.as_deref(), Some("application/json"), "{what}");
        assert!(out["error"].is_string() && out["message"].is_string(), "{what}: {out}");
        seen.insert(status.as_u16(), out["error"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        web.state(parked.request_id()),
        RequestState::Pending,
        "no error path decided anything"
    );

    // Over raw TCP: a stalled body (408) and a broken chunked body (400).
    let head = |extra: &str| {
        format!(
            "POST /agentguard/resolve HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ALICE}\r\nContent-Type: \
             application/json\r\n{extra}\r\n"
        )
    };
    let stalled = raw_exchange(&web, &head("Content-Length: 50\r\n")).await;
    let broken = raw_exchange(
        &web,
        &format!("{}zz\r\nnot a chunk\r\n", head("Transfer-Encoding: chunked\r\n")),
    )
    .await;
    for (what, answer) in [("a stalled body", stalled), ("a broken chunked body", broken)] {
        let (head, payload) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{what}: {answer:?}"));
        assert!(head.contains("content-type: application/json"), "{what}: {head}");
        let out: Value = serde_json::from_str(payload).unwrap_or_else(|e| panic!("{what}: {payload:?}: {e}"));
        assert!(out["error"].is_string(), "{what}: {out}");
        seen.insert(head[9..12].parse().unwrap(), out["error"].as_str().unwrap().to_owned());
    }

    // Two wrong tokens block an address (another one than above, where "Basic credentials" counted): then 429.
    let c = Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
        .build()
        .unwrap();
    for _ in 0..2 {
        let res = c
            .get(web.url("pending"))
            .bearer_auth("wrong-token-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let (status, out) = body(c.get(web.url("pending")).bearer_auth(ALICE).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    seen.insert(status.as_u16(), out["error"].as_str().unwrap().to_owned());

    let codes: Vec<u16> = seen.keys().copied().collect();
    assert_eq!(
        codes,
        [400, 401, 403, 404, 405, 408, 409, 410, 413, 415, 422, 429, 503],
        "every error status was reached: {seen:?}"
    );
    drop(stream);
}

#[tokio::test]
async fn a_nul_in_the_reason_is_422_naming_reason_and_decides_nothing() {
    let mut web = Web::start(external()).await;
    let _call = web.call("delete_customer", json!({"id": 7}));
    let parked = web.next_parked().await;
    let mut payload = answer(&parked, false);
    payload["reason"] = json!("not\u{0}this");
    let (status, out) = resolve(&web, payload).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(out["error"], "malformed_body");
    let message = out["message"].as_str().unwrap();
    assert!(
        message.starts_with("reason: ") && message.contains("U+0000"),
        "{message}"
    );
    assert_eq!(web.state(parked.request_id()), RequestState::Pending);
}

#[tokio::test]
async fn control_characters_other_than_newline_and_tab_in_the_reason_are_422() {
    let mut web = Web::start(external()).await;
    let _call = web.call("delete_customer", json!({"id": 7}));
    let parked = web.next_parked().await;
    for (reason, code) in [
        ("\u{1b}[2J", "U+001B"),
        ("a\rb", "U+000D"),
        ("x\u{7f}", "U+007F"),
        ("\u{9b}31m", "U+009B"),
    ] {
        let mut payload = answer(&parked, false);
        payload["reason"] = json!(reason);
        let (status, out) = resolve(&web, payload).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reason:?}: {out}");
        assert!(out["message"].as_str().unwrap().contains(code), "{reason:?}: {out}");
    }
    let mut payload = answer(&parked, false);
    payload["reason"] = json!("line one\n\tline two — ünïcode ✓");
    let (status, out) = resolve(&web, payload).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "newline, tab and any printable text pass: {out}"
    );
    let stored = web.guard.store().get(parked.request_id()).unwrap().unwrap();
    assert_eq!(
        stored.decision.note.as_deref(),
        Some("line one\n\tline two — ünïcode ✓")
    );
}

/// GETs `url` as alice: the status, the `x-agentguard-next` and `link` headers, and the body.
async fn get_page(url: &str) -> (StatusCode, Option<String>, Option<String>, Value) {
    let res = client().get(url).bearer_auth(ALICE).send().await.unwrap();
    let header = |name: &str| res.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let (next, link) = (header("x-agentguard-next"), header("link"));
    let (status, value) = body(res).await;
    (status, next, link, value)
}

/// Parks `n` calls through the server's guard; returns the requests in the pending order (oldest first).
async fn park_many(
    web: &mut Web,
    n: usize,
) -> (
    Vec<ApprovalRequest>,
    Vec<tokio::task::JoinHandle<Result<&'static str, agentguard::ActionDenied>>>,
) {
    let calls: Vec<_> = (0..n).map(|i| web.call("delete_row", json!({ "row": i }))).collect();
    let mut parked = Vec::new();
    for _ in 0..n {
        parked.push(web.next_parked().await);
    }
    parked.sort_by_cached_key(agentguard::store::PageCursor::at);
    (parked, calls)
}

fn request_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn pending_is_paged_by_limit_and_after_and_says_where_the_next_page_starts() {
    let mut web = Web::start(external()).await;
    let (parked, _calls) = park_many(&mut web, 5).await;
    let want: Vec<String> = parked.iter().map(|r| r.request_id().to_string()).collect();

    let (status, next, link, list) = get_page(&web.url("pending?limit=2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(request_ids(&list), want[..2], "the oldest two");
    let next = next.expect("more follow: the next page's cursor");
    assert_eq!(
        link.unwrap(),
        format!("</agentguard/pending?limit=2&after={next}>; rel=\"next\"")
    );
    let (_, next, _, list) = get_page(&web.url(&format!("pending?limit=2&after={next}"))).await;
    assert_eq!(request_ids(&list), want[2..4]);
    let (_, last, link, list) = get_page(&web.url(&format!("pending?after={}&limit=2", next.unwrap()))).await;
    assert_eq!(request_ids(&list), want[4..], "the rest");
    assert!(
        last.is_none() && link.is_none(),
        "the last page says so by having no next"
    );

    // Without a limit: up to 1,000 at once, as before.
    let (_, next, _, list) = get_page(&web.url("pending")).await;
    assert_eq!(request_ids(&list), want);
    assert!(next.is_none());
}

#[tokio::test]
async fn pending_refuses_a_bad_limit_or_cursor_and_says_what_to_pass() {
    let web = Web::start(external()).await;
    for (query, words) in [
        ("limit=0", "from 1 to 1000"),
        ("limit=1001", "from 1 to 1000"),
        ("limit=ten", "from 1 to 1000"),
        ("after=yesterday", "`next`"),
        ("after=", "`next`"),
        ("limit=5&page=2", "limit and after"),
    ] {
        let (status, next, _, body) = get_page(&web.url(&format!("pending?{query}"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"], "bad_query", "{query}: {body}");
        assert!(body["message"].as_str().unwrap().contains(words), "{query}: {body}");
        assert!(next.is_none());
    }
}

#[tokio::test]
async fn events_show_the_oldest_window_and_the_next_ones_as_shown_ones_leave() {
    let window = agentguard::http::EVENTS_WINDOW;
    let mut web = Web::start(external()).await;
    let (parked, _calls) = park_many(&mut web, window + 3).await;
    let ids: Vec<String> = parked.iter().map(|r| r.request_id().to_string()).collect();

    let mut events = Events::open(&web).await;
    let (name, data) = events.next().await;
    assert_eq!(name, "snapshot");
    assert_eq!(
        request_ids(&data["requests"]),
        ids[..window],
        "the oldest {window}, oldest first"
    );
    assert_eq!(data["more"], true, "and the page is told more are waiting");

    // Three shown ones are answered: each leaves, and the next waiting ones are sent, oldest first.
    for r in &parked[..3] {
        assert_eq!(resolve(&web, answer(r, false)).await.0, StatusCode::OK);
    }
    let (mut resolved, mut shown, mut no_more) = (Vec::new(), Vec::new(), false);
    while shown.len() < 3 || resolved.len() < 3 || !no_more {
        let (name, data) = events.next().await;
        match name.as_str() {
            "resolved" => resolved.push(data["request_id"].as_str().unwrap().to_owned()),
            "parked" => shown.push(data["request_id"].as_str().unwrap().to_owned()),
            // All waiting requests are shown now: the page is told so.
            "more" => {
                assert_eq!(data["more"], false, "{data}");
                assert_eq!(shown.len(), 3, "told only once the last waiting one is shown");
                no_more = true;
            }
            other => panic!("unexpected event {other}: {data}"),
        }
    }
    resolved.sort();
    let mut want: Vec<String> = ids[..3].to_vec();
    want.sort();
    assert_eq!(resolved, want);
    assert_eq!(shown, ids[window..], "the next three, in order");
}
