//! The approval server under the attacks of a security review, over real TCP on loopback: clients that open
//! connections and send nothing or half a request, that stall a body, that open more connections or event streams
//! than the server allows, and that guess tokens. Each test is named after the attack; each prints what it measured.

mod web;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use agentguard::http::ServeLimits;
use agentguard::AgentGuard;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use web::{Web, ALICE};

fn external() -> agentguard::guard::GuardBuilder<agentguard::guard::mode::External> {
    AgentGuard::external().timeout(Duration::from_secs(60)).no_audit()
}

async fn json(res: Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: body {text:?} is not JSON: {e}"));
    (status, headers, value)
}

/// Reads until the server closes the connection (an end of stream or a reset); returns what it sent and when it
/// closed, counted from `since`. Fails the test if it is still open after `bound`.
async fn until_closed(stream: &mut TcpStream, since: Instant, bound: Duration) -> (String, Duration) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = bound.saturating_sub(since.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open for {bound:?}; it sent {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), since.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The body of a raw HTTP/1.1 response, as JSON.
fn raw_json(response: &str) -> Value {
    let (_, body) = response.split_once("\r\n\r\n").expect("a whole response");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?} is not JSON: {e}"))
}

#[tokio::test]
async fn a_half_sent_request_is_closed_within_the_header_timeout() {
    let timeout = Duration::from_secs(1);
    let web = Web::start_limited(
        external(),
        |api| api,
        ServeLimits::default().header_read_timeout(timeout),
    )
    .await;
    let cases = [
        ("nothing at all", ""),
        ("half a request line", "GET /agentg"),
        (
            "headers without their end",
            "GET /agentguard/pending HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bea",
        ),
    ];
    let mut clients = Vec::new();
    for (what, sent) in cases {
        let addr = web.addr;
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let since = Instant::now();
            stream.write_all(sent.as_bytes()).await.unwrap();
            let (answer, closed) = until_closed(&mut stream, since, Duration::from_secs(5)).await;
            (what, answer, closed)
        }));
    }
    for client in clients {
        let (what, answer, closed) = client.await.unwrap();
        eprintln!("{what}: closed after {closed:?} (header timeout {timeout:?})");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{what}: {answer:?}"
        );
        assert!(
            closed >= timeout - Duration::from_millis(50) && closed < timeout + Duration::from_secs(1),
            "{what}: closed after {closed:?}"
        );
    }
}

#[tokio::test]
async fn a_request_head_over_64_kib_is_refused_not_buffered() {
    let web = Web::start(external()).await;
    let mut stream = TcpStream::connect(web.addr).await.unwrap();
    let head = format!(
        "GET /agentguard/ HTTP/1.1\r\nHost: {}\r\nX-Padding: {}\r\n",
        web.addr,
        "a".repeat(70_000)
    );
    let since = Instant::now();
    // The server may stop reading (and close) before all of it is written.
    let _ = stream.write_all(head.as_bytes()).await;
    let (answer, closed) = until_closed(&mut stream, since, Duration::from_secs(5)).await;
    eprintln!("a 70 KB head: refused and closed after {closed:?}");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_at_the_header_timeout() {
    let timeout = Duration::from_secs(1);
    let web = Web::start_limited(
        external(),
        |api| api,
        ServeLimits::default().header_read_timeout(timeout),
    )
    .await;
    let mut stream = TcpStream::connect(web.addr).await.unwrap();
    let request = format!(
        "GET /agentguard/pending HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ALICE}\r\n\r\n",
        web.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The answer comes, the connection stays open for another request, then closes when none comes.
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let since = Instant::now();
    let (more, closed) = until_closed(&mut stream, since, Duration::from_secs(5)).await;
    eprintln!("idle keep-alive connection closed {closed:?} after its response (header timeout {timeout:?})");
    assert!(more.is_empty(), "{more:?}");
    assert!(closed >= timeout - Duration::from_millis(100) && closed < timeout + Duration::from_secs(1));
}

#[tokio::test]
async fn a_stalled_request_body_is_closed_at_the_idle_timeout() {
    let idle = Duration::from_secs(1);
    let limits = ServeLimits::default()
        .idle_timeout(idle)
        .header_read_timeout(Duration::from_secs(30));
    let web = Web::start_limited(external(), |api| api, limits).await;
    let mut stream = TcpStream::connect(web.addr).await.unwrap();
    let head = format!(
        "POST /agentguard/resolve HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ALICE}\r\nContent-Type: \
         application/json\r\nContent-Length: 200\r\n\r\n{{\"request_id\": ",
        web.addr
    );
    let since = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let (answer, closed) = until_closed(&mut stream, since, Duration::from_secs(5)).await;
    eprintln!("stalled body: closed after {closed:?} (idle timeout {idle:?})");
    assert!(answer.is_empty(), "{answer:?}");
    assert!(closed >= idle - Duration::from_millis(50) && closed < idle + Duration::from_secs(1));
}

#[tokio::test]
async fn a_trickled_body_is_408_json_at_the_body_timeout() {
    let timeout = Duration::from_secs(1);
    let web = Web::start_with(external(), |api| api.body_timeout(timeout)).await;
    let mut stream = TcpStream::connect(web.addr).await.unwrap();
    let head = format!(
        "POST /agentguard/resolve HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ALICE}\r\nContent-Type: \
         application/json\r\nContent-Length: 200\r\n\r\n",
        web.addr
    );
    let since = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    // One byte every 100 ms: never idle, never done. At most 50 bytes (5 s), well short of the 200 announced.
    let (mut read, mut write) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..50 {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut got = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(5), read.read_to_end(&mut got)).await;
    let elapsed = since.elapsed();
    trickle.abort();
    let answer = String::from_utf8_lossy(&got).into_owned();
    assert!(answered.is_ok(), "no answer within 5 s: {answer:?}");
    eprintln!("trickled body: answered after {elapsed:?} (body timeout {timeout:?})");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    let body = raw_json(&answer);
    assert_eq!(body["error"], "body_timeout", "{body}");
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(1),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn idle_connections_past_the_cap_do_not_keep_a_real_request_out() {
    let cap = 8;
    // A long header timeout: only the cap can close the idle connections within this test.
    let limits = ServeLimits::default()
        .max_connections(cap)
        .header_read_timeout(Duration::from_secs(30));
    let web = Web::start_limited(external(), |api| api, limits).await;
    let mut idle = Vec::new();
    for _ in 0..=cap {
        let mut stream = TcpStream::connect(web.addr).await.unwrap();
        stream.write_all(b"GET /agentguard/pend").await.unwrap();
        idle.push(stream);
    }
    // The kernel queues connections in order, so the server has taken all N+1 before it takes this one.
    let since = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(2),
        Client::new().get(web.url("pending")).bearer_auth(ALICE).send(),
    )
    .await
    .expect("an answer within 2 s")
    .unwrap();
    let took = since.elapsed();
    eprintln!(
        "a real request past {} idle connections (cap {cap}): answered in {took:?}",
        cap + 1
    );
    assert_eq!(res.status(), StatusCode::OK);
    // The two oldest idle connections made room (N+1 idle and one real for N places).
    for (i, stream) in idle.iter_mut().take(2).enumerate() {
        let (_, closed) = until_closed(stream, since, Duration::from_secs(2)).await;
        eprintln!("idle connection {i} closed {closed:?} after the real request started");
    }
}

#[tokio::test]
async fn a_connection_past_the_cap_when_all_are_busy_gets_503_json_at_once() {
    let limits = ServeLimits::default().max_connections(2);
    let web = Web::start_limited(external(), |api| api, limits).await;
    // Two event streams keep both connections busy for as long as they are open.
    let client = Client::new();
    let mut streams = Vec::new();
    for _ in 0..2 {
        let res = client.get(web.url("events")).bearer_auth(ALICE).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        streams.push(res);
    }
    let since = Instant::now();
    let mut stream = TcpStream::connect(web.addr).await.unwrap();
    let (answer, closed) = until_closed(&mut stream, since, Duration::from_secs(2)).await;
    eprintln!("third connection with two busy (cap 2): refused and closed in {closed:?}");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("retry-after: 1"), "{answer:?}");
    assert_eq!(raw_json(&answer)["error"], "too_many_connections");
}

#[tokio::test]
async fn event_streams_past_the_cap_get_503_json_with_retry_after() {
    let web = Web::start_with(external(), |api| api.max_event_streams(2)).await;
    let client = Client::new();
    let open = || client.get(web.url("events")).bearer_auth(ALICE).send();
    let first = open().await.unwrap();
    let second = open().await.unwrap();
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));

    let (status, headers, body) = json(open().await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(body["error"], "too_many_streams");
    assert!(body["message"].as_str().unwrap().contains("close a page"), "{body}");

    // A client that goes away frees its place.
    drop(first);
    let since = Instant::now();
    loop {
        let res = open().await.unwrap();
        if res.status() == StatusCode::OK {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(2),
            "the place was not freed within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("a closed event stream freed its place within {:?}", since.elapsed());
}

/// A client whose connections come from `ip` (any 127.x.y.z address reaches the server on 127.0.0.1).
fn client_from(ip: Ipv4Addr) -> Client {
    Client::builder().local_address(IpAddr::V4(ip)).build().unwrap()
}

async fn pending_status(client: &Client, web: &Web, token: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    json(client.get(web.url("pending")).bearer_auth(token).send().await.unwrap()).await
}

const WRONG: &str = "wrong-token-0123456789abcdef";

#[tokio::test]
async fn eleven_wrong_tokens_get_429_with_retry_after_even_with_the_right_token() {
    let web = Web::start(external()).await;
    let guesser = client_from(Ipv4Addr::new(127, 0, 0, 1));
    for i in 1..=10 {
        let (status, _, body) = pending_status(&guesser, &web, WRONG).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {i}: {body}");
    }
    let (status, headers, body) = pending_status(&guesser, &web, WRONG).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "guess 11: {body}");
    assert_eq!(body["error"], "too_many_auth_failures");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry), "the default block is a minute: {retry}");
    // Blocked means blocked: the right token does not tell a guesser it was right.
    for route in ["pending", "events"] {
        let res = guesser.get(web.url(route)).bearer_auth(ALICE).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{route}");
    }
    let res = guesser
        .post(web.url("resolve"))
        .bearer_auth(ALICE)
        .json(&serde_json::json!({"request_id": agentguard::RequestId::new(), "approved": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_guessers_block_leaves_other_addresses_alone() {
    let web = Web::start(external()).await;
    let guesser = client_from(Ipv4Addr::new(127, 0, 0, 1));
    for _ in 0..11 {
        pending_status(&guesser, &web, WRONG).await;
    }
    assert_eq!(
        pending_status(&guesser, &web, ALICE).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    let colleague = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let (status, _, body) = pending_status(&colleague, &web, ALICE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_blocked_address_gets_in_again_after_retry_after() {
    let web = Web::start_with(external(), |api| {
        api.auth_failure_limit(3, Duration::from_secs(60), Duration::from_secs(1))
    })
    .await;
    let client = client_from(Ipv4Addr::new(127, 0, 0, 1));
    for _ in 0..3 {
        assert_eq!(pending_status(&client, &web, WRONG).await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, headers, _) = pending_status(&client, &web, ALICE).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(retry, 1);
    // The block is a span of time: waiting it out is the behaviour under test.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let (status, _, body) = pending_status(&client, &web, ALICE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn requests_without_a_token_and_good_requests_never_lead_to_a_block() {
    let web = Web::start(external()).await;
    let client = client_from(Ipv4Addr::new(127, 0, 0, 1));
    for i in 0..30 {
        let res = client.get(web.url("pending")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "no token, request {i}");
        assert_eq!(
            pending_status(&client, &web, ALICE).await.0,
            StatusCode::OK,
            "good request {i}"
        );
    }
    // Nine wrong tokens in a minute are forgiven mistakes.
    for _ in 0..9 {
        pending_status(&client, &web, WRONG).await;
    }
    assert_eq!(pending_status(&client, &web, ALICE).await.0, StatusCode::OK);
}
