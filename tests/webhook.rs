//! Feature `webhook`: notifications posted to a real HTTP receiver (axum on a loopback port) by an external guard —
//! the signature, retries after a 500, a receiver that hangs, one that is down, a full queue, the Slack and ntfy
//! shapes, and the link to the request's card (opening it approves nothing).

mod web;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentguard::notify::{verify_signature, Webhook, WebhookFormat, DELIVERY_HEADER, SIGNATURE_HEADER};
use agentguard::{AgentGuard, ApprovalRequest, ResolveOutcome};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::mpsc;
use web::Web;

const SECRET: &str = "whsec-test-0123456789";

/// What the receiver does with each POST, in order; the last one repeats.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// Never answers (holds the connection until the client gives up).
    Hang,
}

#[derive(Debug, Clone)]
struct Hit {
    headers: HeaderMap,
    body: Bytes,
}

struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    arrived: mpsc::UnboundedReceiver<Hit>,
}

#[derive(Clone)]
struct Script {
    answers: Arc<Vec<Answer>>,
    hits: Arc<Mutex<Vec<Hit>>>,
    arrived: mpsc::UnboundedSender<Hit>,
}

async fn hook(State(script): State<Script>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let hit = Hit { headers, body };
    let n = {
        let mut hits = script.hits.lock().unwrap();
        hits.push(hit.clone());
        hits.len()
    };
    let _ = script.arrived.send(hit);
    let answer = script.answers[(n - 1).min(script.answers.len() - 1)];
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap(),
        Answer::Hang => std::future::pending().await,
    }
}

async fn receiver(answers: &[Answer]) -> Receiver {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let (tx, arrived) = mpsc::unbounded_channel();
    let script = Script {
        answers: Arc::new(answers.to_vec()),
        hits: hits.clone(),
        arrived: tx,
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url: format!("http://{addr}/hook"),
        hits,
        arrived,
    }
}

impl Receiver {
    async fn next(&mut self) -> Hit {
        tokio::time::timeout(Duration::from_secs(30), self.arrived.recv())
            .await
            .expect("a POST within 30 s")
            .expect("receiver alive")
    }

    fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
}

/// A loopback address nothing listens on: connecting is refused at once.
fn down_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}

fn external() -> agentguard::guard::GuardBuilder<agentguard::guard::mode::External> {
    AgentGuard::external().timeout(Duration::from_secs(60)).no_audit()
}

/// Waits (off the runtime) until the webhook has nothing queued or in flight.
async fn idle(hook: &Webhook) {
    let hook = hook.clone();
    let done = tokio::task::spawn_blocking(move || hook.wait_idle(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(done, "the webhook finished within 30 s");
}

fn json_of(hit: &Hit) -> Value {
    serde_json::from_slice(&hit.body).expect("the body is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_post_carries_the_redacted_request_a_card_link_and_a_signature_that_verifies() {
    let mut rx = receiver(&[Answer::Status(200)]).await;
    let hook = Webhook::builder(&rx.url)
        .secret(SECRET)
        .page_url("http://approvals.example:8787/agentguard/")
        .build()
        .unwrap();
    let mut web = Web::start(external().notify_webhook(hook.clone())).await;
    let call = web.call("delete_customer", json!({"id": 7, "api_key": "sk-live-123"}));
    let parked = web.next_parked().await;
    let hit = rx.next().await;

    // The signature, checked independently: HMAC-SHA256(secret, "<t>.<raw body>"), t close to now.
    let header = hit.headers[SIGNATURE_HEADER].to_str().unwrap();
    let (t, v1) = header.split_once(',').unwrap();
    let t: u64 = t.strip_prefix("t=").unwrap().parse().unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(now.abs_diff(t) <= 60, "t={t} is now");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&hit.body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v1, format!("v1={expected}"));
    assert_eq!(
        verify_signature(SECRET.as_bytes(), header, &hit.body, Duration::from_secs(300)),
        Ok(())
    );
    let mut tampered = hit.body.to_vec();
    tampered[10] ^= 1;
    assert!(verify_signature(SECRET.as_bytes(), header, &tampered, Duration::from_secs(300)).is_err());
    assert!(verify_signature(b"another secret", header, &hit.body, Duration::from_secs(300)).is_err());

    let body = json_of(&hit);
    assert_eq!(hit.headers["content-type"], "application/json");
    assert_eq!(body["event"], "approval_requested");
    assert_eq!(body["request"]["request_id"], parked.request_id().as_str());
    assert_eq!(body["request"]["tool"], "delete_customer");
    assert_eq!(body["request"]["params"], json!({"id": 7, "api_key": "[REDACTED]"}));
    assert_eq!(body["request"]["params_digest"], parked.params_digest().as_str());
    assert!(
        !String::from_utf8_lossy(&hit.body).contains("sk-live-123"),
        "the secret param never leaves"
    );
    assert_eq!(
        body["link"],
        format!("http://approvals.example:8787/agentguard/#{}", parked.request_id())
    );
    assert_eq!(hook.link(&parked).unwrap(), body["link"].as_str().unwrap());

    assert_eq!(
        web.guard.resolve(parked.request_id(), true, Some("alice")),
        ResolveOutcome::Resolved
    );
    assert_eq!(call.await.unwrap().unwrap(), "ran");
    idle(&hook).await;
    assert_eq!(hook.stats().delivered, 1);
    assert_eq!(hook.stats().attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_with_back_off_and_the_same_delivery_id_until_accepted() {
    let rx = receiver(&[Answer::Status(500), Answer::Status(503), Answer::Status(204)]).await;
    let hook = Webhook::builder(&rx.url)
        .secret(SECRET)
        .backoff(Duration::from_millis(20))
        .max_attempts(5)
        .build()
        .unwrap();
    let mut web = Web::start(external().notify_webhook(hook.clone())).await;
    let call = web.call("send_email", json!({"to": "a@b.c"}));
    let parked = web.next_parked().await;
    idle(&hook).await;

    let hits = rx.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 3, "two refusals, then accepted");
    let ids: Vec<_> = hits.iter().map(|h| h.headers[DELIVERY_HEADER].clone()).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one delivery id for every attempt: {ids:?}"
    );
    for hit in &hits {
        let sig = hit.headers[SIGNATURE_HEADER].to_str().unwrap();
        assert_eq!(
            verify_signature(SECRET.as_bytes(), sig, &hit.body, Duration::from_secs(300)),
            Ok(())
        );
    }
    let stats = hook.stats();
    assert_eq!((stats.delivered, stats.failed, stats.attempts), (1, 0, 3));

    web.guard.resolve(parked.request_id(), false, Some("alice"));
    assert!(call.await.unwrap().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_not_retried() {
    let rx = receiver(&[Answer::Status(400), Answer::Status(200)]).await;
    let hook = Webhook::builder(&rx.url)
        .backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let mut web = Web::start(external().notify_webhook(hook.clone())).await;
    let call = web.call("send_email", json!({"to": "a@b.c"}));
    let parked = web.next_parked().await;
    idle(&hook).await;
    assert_eq!(rx.count(), 1);
    assert_eq!((hook.stats().delivered, hook.stats().failed), (0, 1));
    web.guard.resolve(parked.request_id(), false, None);
    let _ = call.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_hangs_never_holds_up_the_agent() {
    let mut rx = receiver(&[Answer::Hang]).await;
    // A long timeout: the delivery is still hanging when the agent's call has long finished.
    let hook = Webhook::builder(&rx.url)
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let mut web = Web::start(external().notify_webhook(hook.clone())).await;
    let call = web.call("delete_file", json!({"path": "a.txt"}));
    let parked = web.next_parked().await;
    rx.next().await; // the receiver holds this POST and never answers

    assert_eq!(
        web.guard.resolve(parked.request_id(), true, Some("alice")),
        ResolveOutcome::Resolved
    );
    assert_eq!(call.await.unwrap().unwrap(), "ran");
    let stats = hook.stats();
    assert_eq!(
        (stats.delivered, stats.failed),
        (0, 0),
        "the POST is still hanging after the call ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_hangs_is_cut_off_by_the_timeout_retried_then_given_up() {
    let rx = receiver(&[Answer::Hang]).await;
    let hook = Webhook::builder(&rx.url)
        .timeout(Duration::from_millis(500))
        .max_attempts(2)
        .backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let mut web = Web::start(external().notify_webhook(hook.clone())).await;
    let call = web.call("delete_file", json!({"path": "a.txt"}));
    let parked = web.next_parked().await;
    idle(&hook).await;
    assert_eq!(rx.count(), 2, "each attempt reached the receiver");
    let stats = hook.stats();
    assert_eq!((stats.delivered, stats.failed, stats.attempts), (0, 1, 2));

    // The request is still parked and answerable: a failed notification changes nothing about it.
    assert_eq!(
        web.guard.resolve(parked.request_id(), true, Some("alice")),
        ResolveOutcome::Resolved
    );
    assert_eq!(call.await.unwrap().unwrap(), "ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_is_given_up_after_its_attempts_and_the_agent_is_not_affected() {
    let hook = Webhook::builder(down_url())
        .max_attempts(3)
        .backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let mut web = Web::start(external().notify_webhook(hook.clone())).await;
    let call = web.call("delete_file", json!({"path": "a.txt"}));
    let parked = web.next_parked().await;
    assert_eq!(
        web.guard.resolve(parked.request_id(), true, Some("alice")),
        ResolveOutcome::Resolved
    );
    assert_eq!(call.await.unwrap().unwrap(), "ran");
    idle(&hook).await;
    let stats = hook.stats();
    assert_eq!((stats.delivered, stats.failed, stats.attempts), (0, 1, 3));
}

/// A request as the guard would hand it to a notifier.
fn request(tool: &str, reason: &str) -> ApprovalRequest {
    let (tx, rx) = std::sync::mpsc::channel();
    let guard = AgentGuard::external()
        .timeout(Duration::from_millis(1))
        .no_audit()
        .on_request(move |req| {
            let _ = tx.send(req.clone());
        })
        .build();
    let _ = guard.execute(
        agentguard::ToolCall::new(tool, json!({"id": 7, "password": "hunter2"}))
            .agent_id("support-bot")
            .reason(reason),
        |_, _| (),
    );
    rx.recv().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_without_blocking_and_counts_the_drops() {
    let rx = receiver(&[Answer::Hang]).await;
    let hook = Webhook::builder(&rx.url)
        .timeout(Duration::from_secs(600))
        .queue(1)
        .build()
        .unwrap();
    let req = request("delete_file", "cleanup");
    for _ in 0..30 {
        hook.notify(&req); // returns at once, full queue or not
    }
    // At most 8 deliveries in flight plus the 1 the queue holds can have been taken: the rest were dropped.
    assert!(hook.stats().dropped >= 21, "{:?}", hook.stats());
    assert_eq!(hook.stats().delivered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slack_shape_is_a_message_with_blocks_a_button_to_the_card_and_escaped_model_text() {
    let mut rx = receiver(&[Answer::Status(200)]).await;
    let hook = Webhook::builder(&rx.url)
        .format(WebhookFormat::Slack)
        .page_url("https://approvals.example/agentguard/")
        .build()
        .unwrap();
    let req = request("delete_customer", "<!channel> please & thanks");
    hook.notify(&req);
    let body = json_of(&rx.next().await);
    let link = format!("https://approvals.example/agentguard/#{}", req.request_id());

    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("delete_customer") && text.contains(&format!("<{link}|Open the request>")),
        "{text}"
    );
    let blocks = body["blocks"].as_array().unwrap();
    let summary = blocks[0]["text"]["text"].as_str().unwrap();
    assert_eq!(blocks[0]["type"], "section");
    assert!(summary.contains("*Risk:* IRREVERSIBLE - cannot be undone"), "{summary}");
    assert!(summary.contains("*Agent:* support-bot"), "{summary}");
    assert!(
        summary.contains("&lt;!channel&gt; please &amp; thanks"),
        "model text cannot ping: {summary}"
    );
    let params = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(params.contains("[REDACTED]") && !params.contains("hunter2"), "{params}");
    let button = &blocks[2]["elements"][0];
    assert_eq!(button["type"], "button");
    assert_eq!(button["url"], link);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ntfy_shape_names_the_topic_and_clicks_through_to_the_card() {
    let mut rx = receiver(&[Answer::Status(200)]).await;
    let hook = Webhook::builder(&rx.url)
        .format(WebhookFormat::Ntfy {
            topic: "agentguard-approvals".into(),
        })
        .page_url("https://approvals.example/agentguard/")
        .build()
        .unwrap();
    let req = request("send_invoice", "month end");
    hook.notify(&req);
    let body = json_of(&rx.next().await);
    let link = format!("https://approvals.example/agentguard/#{}", req.request_id());
    assert_eq!(body["topic"], "agentguard-approvals");
    assert_eq!(body["title"], "Approval needed: send_invoice");
    assert_eq!(body["click"], link);
    assert_eq!(
        body["actions"][0],
        json!({"action": "view", "label": "Open the request", "url": link})
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("Risk: EXTERNAL SEND - leaves your system"),
        "{message}"
    );
    assert!(message.contains("Reason: month end"), "{message}");
    assert!(
        message.contains("[REDACTED]") && !message.contains("hunter2"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_the_cards_link_serves_the_page_and_approves_nothing() {
    let hook = Webhook::builder(down_url()).max_attempts(1).build().unwrap();
    let mut web = Web::start(external().notify_webhook(hook.clone())).await;
    let call = web.call("delete_file", json!({"path": "a.txt"}));
    let parked = web.next_parked().await;
    let hook = Webhook::builder(down_url()).page_url(&web.base).build().unwrap();
    let link = hook.link(&parked).unwrap();
    assert_eq!(link, format!("{}#{}", web.base, parked.request_id()));

    let res = reqwest::get(&link).await.unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("location.hash"),
        "the page reads the fragment to open the card"
    );
    assert_eq!(web.state(parked.request_id()), agentguard::store::RequestState::Pending);
    assert_eq!(web.guard.pending().len(), 1, "still waiting: a GET changes nothing");

    web.guard.resolve(parked.request_id(), false, None);
    assert!(call.await.unwrap().is_err());
}

#[test]
fn bad_urls_are_refused_with_what_to_do() {
    let err = Webhook::builder("ftp://example.com/hook").build().unwrap_err();
    assert!(err.to_string().contains("\"ftp\" is not http or https"), "{err}");
    let err = Webhook::builder("not a url").build().unwrap_err();
    assert!(err.to_string().contains("give an http:// or https:// URL"), "{err}");
    let err = Webhook::builder("https://example.com/hook")
        .page_url("approvals")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("bad page URL"), "{err}");
}

#[test]
fn debug_never_shows_the_url_path_or_the_secret() {
    let hook = Webhook::builder("https://hooks.slack.com/services/T000/B000/XXXXSECRET")
        .secret("s3cr3t")
        .build()
        .unwrap();
    let shown = format!("{hook:?}");
    assert!(shown.contains("https://hooks.slack.com"), "{shown}");
    assert!(!shown.contains("XXXXSECRET") && !shown.contains("s3cr3t"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifiers_add_up_and_a_panicking_on_request_does_not_stop_the_webhook() {
    let mut rx = receiver(&[Answer::Status(200)]).await;
    let hook = Webhook::builder(&rx.url).build().unwrap();
    let builder = external()
        .on_request(|_| panic!("a broken notifier"))
        .notify_webhook(hook.clone());
    let mut web = Web::start(builder).await; // adds its own on_request, which must run too
    let call = web.call("delete_file", json!({"path": "a.txt"}));
    let parked = web.next_parked().await;
    let body = json_of(&rx.next().await);
    assert_eq!(body["request"]["request_id"], parked.request_id().as_str());
    web.guard.resolve(parked.request_id(), true, None);
    assert_eq!(call.await.unwrap().unwrap(), "ran");
}
