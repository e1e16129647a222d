//! Attack: one pending row that cannot be read back (params nested past serde_json's 128-level read limit, written
//! by an older version; a damaged row) used to make every reader fail, so every legitimate request timed out
//! unseen. Now each reader names the bad row and lists the rest: the store's `list_pending`, `GET /pending` (with
//! `x-agentguard-unreadable`), and the event stream (an `unreadable` event). The CLI's side: agentguard-cli's tests;
//! PostgreSQL's: tests/postgres.rs.

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentguard::http::ApprovalApi;
use agentguard::store::{ApprovalStore, SqliteStore};
use agentguard::{AgentGuard, ApprovalRequest, RequestId, Resolution, ResolveOutcome, ToolCall};
use serde_json::{json, Value};

const ALICE: &str = "alice-token-0123456789";

/// Params nested `depth` levels deep, as JSON text.
fn nested(depth: usize) -> String {
    format!("{}\"bottom\"{}", "[".repeat(depth), "]".repeat(depth))
}

/// Writes a pending row straight into the file, as an older agentguard or another program might have: returns its id.
fn insert_raw_row(db: &Path, request_json: &str) -> String {
    let id = RequestId::new().to_string();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "INSERT INTO agentguard_requests (id, request, tool, params_digest, created_ms, deadline_ms, state)
         VALUES (?1, ?2, 'delete_row', ?3, ?4, ?5, 'pending')",
        rusqlite::params![id, request_json, "0".repeat(64), now - 1, now + 60_000],
    )
    .unwrap();
    id
}

/// A deep row: a real request's JSON with its params replaced by 200 levels of nesting.
fn deep_request_json(template: &ApprovalRequest, id: &str) -> String {
    let mut value = serde_json::to_value(template).unwrap();
    value["request_id"] = json!(id);
    value["params"] = json!("PLACEHOLDER");
    value.to_string().replace("\"PLACEHOLDER\"", &nested(200))
}

/// An agent parked on the store at `db` in this process: its request and the handle giving its call's result.
fn park(
    store: Arc<SqliteStore>,
) -> (
    ApprovalRequest,
    std::thread::JoinHandle<Result<&'static str, agentguard::ActionDenied>>,
) {
    let (tx, rx) = mpsc::channel();
    let guard = AgentGuard::external()
        .shared_store(store)
        .on_request(move |req| {
            let _ = tx.send(req.clone());
        })
        .timeout(Duration::from_secs(60))
        .no_audit()
        .build();
    let agent = std::thread::spawn(move || guard.execute(ToolCall::new("delete_row", json!({"id": 7})), |_, _| "ran"));
    (rx.recv_timeout(Duration::from_secs(30)).unwrap(), agent)
}

#[test]
fn one_deep_or_damaged_row_does_not_hide_the_other_pending_requests_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let (good, agent) = park(store.clone());
    let deep_id = RequestId::new().to_string();
    let deep = {
        let json = deep_request_json(&good, &deep_id);
        let conn = rusqlite::Connection::open(&db).unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        conn.execute(
            "INSERT INTO agentguard_requests (id, request, tool, params_digest, created_ms, deadline_ms, state)
             VALUES (?1, ?2, 'delete_row', ?3, ?4, ?5, 'pending')",
            rusqlite::params![deep_id, json, "0".repeat(64), now - 1, now + 60_000],
        )
        .unwrap();
        deep_id
    };
    let damaged = insert_raw_row(&db, "{\"request_id\": \"trunc");
    let blob = RequestId::new().to_string();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO agentguard_requests (id, request, tool, params_digest, created_ms, deadline_ms, state)
             VALUES (?1, x'00ff', 'delete_row', '', 0, 9999999999999, 'pending')",
            [&blob],
        )
        .unwrap();

    let ids = |list: &[ApprovalRequest]| list.iter().map(|r| r.request_id().clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&store.pending().unwrap()),
        vec![good.request_id().clone()],
        "the readable request is listed"
    );
    let list = store.list_pending().unwrap();
    assert_eq!(ids(&list.requests), vec![good.request_id().clone()]);
    let problems: Vec<(&str, &str)> = list
        .unreadable
        .iter()
        .map(|r| (r.id.as_str(), r.problem.as_str()))
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|(id, p)| *id == deep && p.contains("recursion limit")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|(id, p)| *id == damaged && p.contains("damaged")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|(id, p)| *id == blob && p.contains("not JSON text")),
        "{problems:?}"
    );
    let advice = list.unreadable[0].advice();
    assert!(
        advice.contains("agentguard deny") && advice.contains("expire"),
        "{advice}"
    );

    // The bad rows can still be answered (denied) by id, and the good request approved: nothing else is blocked.
    assert_eq!(
        store.resolve(&Resolution::deny(deep.parse().unwrap())).unwrap(),
        ResolveOutcome::Resolved
    );
    store.resolve(&Resolution::approve(good.request_id().clone())).unwrap();
    assert_eq!(agent.join().unwrap().unwrap(), "ran");
    let left = store.list_pending().unwrap();
    assert!(left.requests.is_empty());
    assert_eq!(left.unreadable.len(), 2, "the denied deep row left the list");
}

/// Reads SSE blocks until `want` events are seen: (name, data).
async fn events(res: &mut reqwest::Response, want: usize) -> Vec<(String, Value)> {
    let mut buffer = String::new();
    let mut out = Vec::new();
    while out.len() < want {
        while let Some(cut) = buffer.find("\n\n") {
            let block: String = buffer.drain(..cut + 2).collect();
            let name = block.lines().find_map(|l| l.strip_prefix("event:")).map(str::trim);
            let data = block.lines().find_map(|l| l.strip_prefix("data:")).map(str::trim);
            if let (Some(name), Some(data)) = (name, data) {
                out.push((name.to_owned(), serde_json::from_str(data).unwrap()));
            }
        }
        if out.len() >= want {
            break;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(30), res.chunk())
            .await
            .expect("an event within 30 s")
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deep_row_does_not_hide_the_others_from_get_pending_or_the_event_stream() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let (good, agent) = tokio::task::spawn_blocking({
        let store = store.clone();
        move || park(store)
    })
    .await
    .unwrap();
    let deep = RequestId::new().to_string();
    {
        let json = deep_request_json(&good, &deep);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute(
                "INSERT INTO agentguard_requests (id, request, tool, params_digest, created_ms, deadline_ms, state)
                 VALUES (?1, ?2, 'delete_row', ?3, ?4, ?5, 'pending')",
                rusqlite::params![deep, json, "0".repeat(64), now - 1, now + 60_000],
            )
            .unwrap();
    }
    let app = ApprovalApi::new(store.clone())
        .token(ALICE, "alice")
        .poll_interval(Duration::from_millis(20))
        .router()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/agentguard/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();

    let res = client
        .get(format!("{base}pending"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK, "not 503");
    assert_eq!(res.headers()["x-agentguard-unreadable"], "1");
    let listed: Value = res.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["request_id"], json!(good.request_id()));

    let mut stream = client
        .get(format!("{base}events"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    let first = events(&mut stream, 2).await;
    assert_eq!(first[0].0, "snapshot", "not only `error`: {first:?}");
    assert_eq!(first[0].1["requests"][0]["request_id"], json!(good.request_id()));
    assert_eq!(first[0].1["requests"].as_array().unwrap().len(), 1);
    assert_eq!(first[1].0, "unreadable", "{first:?}");
    assert_eq!(first[1].1["rows"][0]["id"], deep.as_str());
    assert!(
        first[1].1["message"].as_str().unwrap().contains("agentguard deny"),
        "{first:?}"
    );

    // The stream goes on: the good request answered is `resolved`; the deep row denied clears the `unreadable` set.
    let id = good.request_id().clone();
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        s.resolve(&Resolution::approve(id)).unwrap();
        s.resolve(&Resolution::deny(deep.parse().unwrap())).unwrap();
    })
    .await
    .unwrap();
    let mut seen = events(&mut stream, 1).await;
    if seen[0].0 != "resolved" {
        seen.extend(events(&mut stream, 1).await);
    }
    assert!(seen.iter().any(|(name, _)| name == "resolved"), "{seen:?}");
    assert_eq!(
        tokio::task::spawn_blocking(move || agent.join().unwrap())
            .await
            .unwrap()
            .unwrap(),
        "ran"
    );
}
