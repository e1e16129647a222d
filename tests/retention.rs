//! Attack: decided or dead rows were never pruned from the SQLite and PostgreSQL stores (pending and approved rows
//! past their deadline stayed forever), so a long-running host's store grew without bound. Now every insert sweeps
//! a bounded batch: pending past the deadline → expired, an approval its dead agent never claimed → expired (never
//! approved forever), decided rows older than the retention → deleted. PostgreSQL tests need
//! `AGENTGUARD_TEST_POSTGRES_URL` (`.ci/run` sets it).

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentguard::store::{ApprovalStore, ExecOutcome, InMemoryStore, PostgresStore, RequestState, SqliteStore};
use agentguard::{AgentGuard, ApprovalRequest, RequestId, Resolution, ResolveOutcome, ToolCall};
use serde_json::{json, Value};

/// A real parked request's JSON, to make fresh requests from (their constructor is the guard's).
fn template() -> Value {
    let (tx, rx) = mpsc::channel();
    let guard = AgentGuard::external()
        .store(InMemoryStore::new())
        .on_request(move |req| {
            let _ = tx.send(req.clone());
        })
        .no_audit()
        .build();
    let g = guard.clone();
    let agent = std::thread::spawn(move || g.execute(ToolCall::new("delete_row", json!({"id": 7})), |_, _| ()));
    let req: ApprovalRequest = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    guard.resolve(req.request_id(), false, Some("test"));
    agent.join().unwrap().unwrap_err();
    serde_json::to_value(&req).unwrap()
}

/// A fresh request from the template: a new id, parked now, due in `timeout`.
fn request(template: &Value, timeout: Duration) -> ApprovalRequest {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let mut v = template.clone();
    v["request_id"] = json!(RequestId::new());
    v["timestamp"] = json!(now);
    v["deadline"] = json!(now + timeout.as_secs_f64());
    serde_json::from_value(v).unwrap()
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn sqlite_rows(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT count(*) FROM agentguard_requests", [], |r| r.get(0))
        .unwrap()
}

/// One park/decide cycle through the store API, as agents and approvers do it; four kinds in turn: approved and
/// claimed (run, outcome recorded), denied, expired at the deadline, approved but the waiter went away.
fn cycle(store: &dyn ApprovalStore, req: &ApprovalRequest, i: usize) {
    let id = req.request_id();
    store.insert(req).unwrap();
    match i % 4 {
        0 => {
            assert_eq!(
                store.resolve(&Resolution::approve(id.clone())).unwrap(),
                ResolveOutcome::Resolved
            );
            assert!(store.claim(id).unwrap());
            store.finish(id, &ExecOutcome::Ok).unwrap();
        }
        1 => {
            assert_eq!(
                store.resolve(&Resolution::deny(id.clone())).unwrap(),
                ResolveOutcome::Resolved
            );
        }
        2 => {
            store.expire(id).unwrap();
        }
        _ => {
            store.resolve(&Resolution::approve(id.clone())).unwrap();
            store.abandon(id).unwrap();
        }
    }
}

#[test]
fn a_sqlite_store_stays_flat_over_100_000_park_and_decide_cycles() {
    let cycles: usize = std::env::var("AGENTGUARD_RETENTION_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let wal = dir.path().join("store.db-wal");
    // A short retention, so decided rows are deleted within the run; short enough that how many fit in it (and so
    // the file's size) hardly depends on this machine's speed.
    let store = SqliteStore::open(&db).unwrap().retention(Duration::from_millis(5));
    let template = template();
    let started = Instant::now();
    let mut max_rows = [0i64; 2];
    let mut sizes = Vec::new();
    for i in 0..cycles {
        cycle(&store, &request(&template, Duration::from_secs(60)), i);
        if (i + 1) % 5_000 == 0 {
            let half = usize::from(i >= cycles / 2);
            max_rows[half] = max_rows[half].max(sqlite_rows(&db));
        }
        if i + 1 == cycles / 2 || i + 1 == cycles {
            sizes.push((size(&db), size(&wal)));
        }
    }
    let elapsed = started.elapsed();
    let ((main_mid, wal_mid), (main_end, wal_end)) = (sizes[0], sizes[1]);
    println!(
        "{cycles} cycles in {elapsed:.1?} ({:.1} µs each); rows at most {} (first half) and {} (second half), {} at \
         the end; main file {main_mid} → {main_end} bytes, WAL {wal_mid} → {wal_end} bytes",
        elapsed.as_secs_f64() * 1e6 / cycles as f64,
        max_rows[0],
        max_rows[1],
        sqlite_rows(&db),
    );
    // Bounded: what the 5 ms retention holds (plus the sweep's batches), never a share of the cycles.
    assert!(max_rows[1] <= 5_000, "rows grew to {}", max_rows[1]);
    assert!(max_rows[1] <= max_rows[0] * 2 + 500, "rows grew: {max_rows:?}");
    // Flat: the second half adds nothing to the file (freed pages are reused) beyond a little slack.
    assert!(
        main_end <= main_mid + 64 * 1024,
        "main file grew: {main_mid} → {main_end}"
    );
    // The WAL is reset at each checkpoint and truncated back to 4 MiB (journal_size_limit).
    assert!(wal_end <= 5 * 1024 * 1024, "WAL grew to {wal_end}");
}

#[test]
fn an_approval_whose_agent_died_before_claiming_it_expires_then_is_pruned_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let store = SqliteStore::open(&db).unwrap().retention(Duration::ZERO);
    let template = template();
    let approved = request(&template, Duration::from_secs(60));
    let pending = request(&template, Duration::from_secs(60));
    store.insert(&approved).unwrap();
    store.insert(&pending).unwrap();
    store
        .resolve(&Resolution::approve(approved.request_id().clone()))
        .unwrap();
    // The agent dies; time passes: both deadlines are now over a minute ago.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE agentguard_requests SET deadline_ms = deadline_ms - 125000", [])
        .unwrap();
    let state = |id: &RequestId| -> Option<String> {
        conn.query_row(
            "SELECT state FROM agentguard_requests WHERE id = ?1",
            [id.as_str()],
            |r| r.get(0),
        )
        .ok()
    };
    assert_eq!(
        state(approved.request_id()).as_deref(),
        Some("approved"),
        "approved forever, before"
    );
    store.insert(&request(&template, Duration::from_secs(60))).unwrap(); // any insert sweeps
    assert_eq!(state(approved.request_id()).as_deref(), Some("expired"));
    assert_eq!(state(pending.request_id()).as_deref(), Some("expired"));
    assert!(!store.claim(approved.request_id()).unwrap(), "it can never run now");
    // Retention zero: decided more than zero ms ago. Let the millisecond clock move on.
    std::thread::sleep(Duration::from_millis(2));
    store.insert(&request(&template, Duration::from_secs(60))).unwrap();
    assert_eq!(
        state(approved.request_id()),
        None,
        "pruned after the retention (zero here)"
    );
    assert_eq!(state(pending.request_id()), None);
    assert_eq!(sqlite_rows(&db), 2, "only the two live requests remain");
}

#[test]
fn an_approval_just_past_its_deadline_is_left_for_its_living_agent_to_claim() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let store = SqliteStore::open(&db).unwrap().retention(Duration::ZERO);
    let template = template();
    let approved = request(&template, Duration::from_secs(60));
    store.insert(&approved).unwrap();
    store
        .resolve(&Resolution::approve(approved.request_id().clone()))
        .unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("UPDATE agentguard_requests SET deadline_ms = deadline_ms - 61000", [])
        .unwrap();
    store.insert(&request(&template, Duration::from_secs(60))).unwrap();
    assert_eq!(
        store.get(approved.request_id()).unwrap().unwrap().decision.state,
        RequestState::Approved
    );
    assert!(
        store.claim(approved.request_id()).unwrap(),
        "a slow waiter still claims its approval"
    );
}

/// The server URL, or `None` (and a message) when the PostgreSQL tests are not configured.
fn server() -> Option<String> {
    match std::env::var("AGENTGUARD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set AGENTGUARD_TEST_POSTGRES_URL (.ci/run does)"
            );
            eprintln!("skipped: AGENTGUARD_TEST_POSTGRES_URL is not set; .ci/run sets it");
            None
        }
    }
}

fn psql(server: &str, sql: &str) -> String {
    let out = Command::new("psql").args([server, "-Atc", sql]).output().unwrap();
    assert!(
        out.status.success(),
        "psql failed: {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn fresh_schema() -> String {
    format!("ag_{}", RequestId::new().as_str().replace('-', ""))
}

#[test]
fn a_postgres_store_stays_bounded_over_park_and_decide_cycles() {
    let Some(server) = server() else { return };
    let schema = fresh_schema();
    let store = PostgresStore::connect(&server, Some(&schema))
        .unwrap()
        .retention(Duration::ZERO);
    let template = template();
    let cycles = 1_000;
    let started = Instant::now();
    let mut max_rows = 0;
    for i in 0..cycles {
        cycle(&store, &request(&template, Duration::from_secs(60)), i);
        if (i + 1) % 200 == 0 {
            let rows: i64 = psql(
                &server,
                &format!("SELECT count(*) FROM \"{schema}\".agentguard_requests"),
            )
            .parse()
            .unwrap();
            max_rows = max_rows.max(rows);
        }
    }
    println!(
        "postgres: {cycles} cycles in {:.1?}, at most {max_rows} rows",
        started.elapsed()
    );
    assert!(max_rows <= 40, "rows grew to {max_rows}");
}

#[test]
fn an_approval_whose_agent_died_before_claiming_it_expires_then_is_pruned_in_postgres() {
    let Some(server) = server() else { return };
    let schema = fresh_schema();
    let store = PostgresStore::connect(&server, Some(&schema))
        .unwrap()
        .retention(Duration::from_secs(3600));
    let template = template();
    let approved = request(&template, Duration::from_secs(60));
    let pending = request(&template, Duration::from_secs(60));
    let old = request(&template, Duration::from_secs(60));
    for r in [&approved, &pending, &old] {
        store.insert(r).unwrap();
    }
    store
        .resolve(&Resolution::approve(approved.request_id().clone()))
        .unwrap();
    store.resolve(&Resolution::deny(old.request_id().clone())).unwrap();
    let table = format!("\"{schema}\".agentguard_requests");
    psql(
        &server,
        &format!("UPDATE {table} SET deadline = deadline - interval '125 seconds'"),
    );
    psql(
        &server,
        &format!(
            "UPDATE {table} SET decided = now() - interval '2 hours' WHERE id = '{}'",
            old.request_id()
        ),
    );
    let state = |id: &RequestId| psql(&server, &format!("SELECT state FROM {table} WHERE id = '{id}'"));
    assert_eq!(state(approved.request_id()), "approved");
    store.insert(&request(&template, Duration::from_secs(60))).unwrap(); // any insert sweeps
    assert_eq!(state(approved.request_id()), "expired", "never approved forever");
    assert_eq!(state(pending.request_id()), "expired");
    assert_eq!(
        state(old.request_id()),
        "",
        "decided two hours ago: past the one-hour retention, deleted"
    );
    assert!(!store.claim(approved.request_id()).unwrap());
    // Within the retention, the expired rows stay for `show`.
    assert_eq!(
        store.get(approved.request_id()).unwrap().unwrap().decision.state,
        RequestState::Expired
    );
}
