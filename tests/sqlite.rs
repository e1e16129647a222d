//! The SQLite store across real OS processes: an agent process parks, another process answers; races between
//! resolver processes; kill -9 of an agent; bad input.

mod common;

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use agentguard::store::{open_store, ApprovalStore, RequestState, SqliteStore};
use agentguard::{AgentGuard, RequestId, Resolution, ResolveOutcome, ToolCall};
use serde_json::json;

use common::{runs, Agent};

fn url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("store.db").display())
}

fn store(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir.join("store.db")).unwrap()
}

#[test]
fn another_process_approves_and_the_agent_process_runs_the_call_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(&url(dir.path()), dir.path(), 1, 30_000);
    let id = agent.parked();
    let store = store(dir.path());
    assert_eq!(store.pending().unwrap().len(), 1);
    assert_eq!(
        store.resolve(&Resolution::approve(id.clone()).actor("alice")).unwrap(),
        ResolveOutcome::Resolved
    );
    assert_eq!(agent.outcome(), json!({"ok": 0}));
    assert!(agent.child.wait().unwrap().success());
    assert_eq!(runs(dir.path()), 1);
    let stored = store.get(&id).unwrap().unwrap();
    assert_eq!(stored.decision.state, RequestState::Executed);
    assert_eq!(stored.decision.actor.as_deref(), Some("alice"));
    assert_eq!(stored.outcome.as_deref(), Some("ok"));
    assert_eq!(
        store.resolve(&Resolution::approve(id)).unwrap(),
        ResolveOutcome::AlreadyResolved
    );
    agentguard::audit::verify(dir.path().join("audit.log")).unwrap();
}

#[test]
fn another_process_denies_and_the_agent_gets_action_denied() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(&url(dir.path()), dir.path(), 1, 30_000);
    let id = agent.parked();
    let answer = Resolution::deny(id).actor("alice").note("not today");
    assert_eq!(store(dir.path()).resolve(&answer).unwrap(), ResolveOutcome::Resolved);
    let out = agent.outcome();
    assert_eq!(out["reason"], "user_denied");
    assert_eq!(out["detail"], "not today");
    agent.child.wait().unwrap();
    assert_eq!(runs(dir.path()), 0);
}

#[test]
fn no_answer_times_out_and_a_late_approval_is_expired() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(&url(dir.path()), dir.path(), 1, 300);
    let id = agent.parked();
    assert_eq!(agent.outcome()["reason"], "approval_timeout");
    agent.child.wait().unwrap();
    assert_eq!(
        store(dir.path()).resolve(&Resolution::approve(id)).unwrap(),
        ResolveOutcome::Expired
    );
    assert_eq!(runs(dir.path()), 0);
}

#[test]
fn thirty_two_resolvers_in_four_processes_race_one_id_exactly_one_wins_over_1000_trials() {
    let dir = tempfile::tempdir().unwrap();
    common::race_resolvers(&url(dir.path()));
}

#[test]
fn killing_the_agent_with_100_pending_leaves_nothing_executed_and_an_intact_audit() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(&url(dir.path()), dir.path(), 100, 1_500);
    for _ in 0..100 {
        agent.parked();
    }
    let store = store(dir.path());
    assert_eq!(store.pending().unwrap().len(), 100);
    agent.child.kill().unwrap(); // SIGKILL
    agent.child.wait().unwrap();
    // Approving after the agent died: the answer is recorded, but nothing runs (no process will claim it).
    let ids: Vec<RequestId> = store
        .pending()
        .unwrap()
        .iter()
        .map(|r| r.request_id().clone())
        .collect();
    assert_eq!(
        store.resolve(&Resolution::approve(ids[0].clone())).unwrap(),
        ResolveOutcome::Resolved
    );
    // After the deadline, every request of the dead agent is expired (or approved-but-never-claimed); none ran.
    std::thread::sleep(Duration::from_millis(1_600));
    assert!(store.pending().unwrap().is_empty());
    for id in &ids[1..] {
        assert_eq!(store.get(id).unwrap().unwrap().decision.state, RequestState::Expired);
        assert_eq!(
            store.resolve(&Resolution::approve(id.clone())).unwrap(),
            ResolveOutcome::Expired
        );
    }
    assert_eq!(
        store.get(&ids[0]).unwrap().unwrap().decision.state,
        RequestState::Approved
    );
    assert_eq!(runs(dir.path()), 0, "nothing ran");
    // A restarted agent does not execute the dead one's requests: it parks its own.
    let mut again = Agent::start(&url(dir.path()), dir.path(), 1, 300);
    let new_id = again.parked();
    assert!(!ids.contains(&new_id));
    assert_eq!(again.outcome()["reason"], "approval_timeout");
    again.child.wait().unwrap();
    assert_eq!(runs(dir.path()), 0);
    if dir.path().join("audit.log").exists() {
        agentguard::audit::verify(dir.path().join("audit.log")).unwrap();
    }
}

#[test]
fn bad_store_urls_and_files_give_clear_errors() {
    let err = open_store("redis://localhost").unwrap_err().to_string();
    assert!(
        err.contains("unknown store URL scheme \"redis\"") && err.contains("sqlite:PATH"),
        "{err}"
    );
    let err = open_store("sqlite:").unwrap_err().to_string();
    assert!(err.contains("needs a file path"), "{err}");
    let err = open_store("sqlite:/nonexistent-dir/x/store.db")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot open the sqlite store") && err.contains("directory exist"),
        "{err}"
    );
    let err = open_store("postgres://postgres@127.0.0.1:1/test")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot connect (is the server running and the URL right?)"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let not_db = dir.path().join("notes.txt");
    std::fs::write(&not_db, "this is not a database, just text that is long enough").unwrap();
    let err = SqliteStore::open(&not_db).unwrap_err().to_string();
    assert!(err.contains("SQLite database"), "{err}");
    assert!(std::fs::read(&not_db).unwrap() == b"this is not a database, just text that is long enough");
}

#[test]
fn a_database_at_an_older_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    {
        // What an older release would have left: its meta table at version 0 and a table of its own.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE agentguard_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO agentguard_meta VALUES ('schema_version', '0');
             CREATE TABLE approvals (id TEXT PRIMARY KEY);",
        )
        .unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let err = SqliteStore::open(&db).unwrap_err().to_string();
    assert!(
        err.contains("schema version 0") && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(std::fs::read(&db).unwrap() == before, "the refused file was changed");
}

#[test]
fn an_executor_that_panics_is_recorded_as_an_error_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.db")).unwrap());
    let (tx, rx) = mpsc::channel::<RequestId>();
    let guard = AgentGuard::external()
        .shared_store(store.clone())
        .on_request(move |req| {
            let _ = tx.send(req.request_id().clone());
        })
        .no_audit()
        .build();
    let agent = std::thread::spawn(move || {
        let _ = guard.execute(ToolCall::new("delete_row", json!({})), |_, _| -> () {
            panic!("disk on fire")
        });
    });
    let id = rx.recv().unwrap();
    store.resolve(&Resolution::approve(id.clone())).unwrap();
    assert!(agent.join().is_err(), "the executor's panic reaches its caller");
    let stored = store.get(&id).unwrap().unwrap();
    assert_eq!(stored.decision.state, RequestState::Executed);
    assert_eq!(stored.outcome.as_deref(), Some("error: the executor panicked"));
}

static GATED_GUARD: std::sync::OnceLock<AgentGuard> = std::sync::OnceLock::new();

#[agentguard::gate(guard = GATED_GUARD, risk = "irreversible")]
fn purge_customer(id: u64) -> String {
    format!("purged {id}")
}

#[test]
fn a_gated_function_parked_in_sqlite_records_its_execution_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.db")).unwrap());
    let (tx, rx) = mpsc::channel::<RequestId>();
    let tx = std::sync::Mutex::new(tx);
    GATED_GUARD
        .set(
            AgentGuard::external()
                .shared_store(store.clone())
                .on_request(move |req| {
                    let _ = tx.lock().unwrap().send(req.request_id().clone());
                })
                .no_audit()
                .build(),
        )
        .unwrap();
    let agent = std::thread::spawn(|| purge_customer(7));
    let id = rx.recv().unwrap();
    store.resolve(&Resolution::approve(id.clone())).unwrap();
    assert_eq!(agent.join().unwrap().unwrap(), "purged 7");
    let stored = store.get(&id).unwrap().unwrap();
    assert_eq!(stored.decision.state, RequestState::Executed);
    assert_eq!(stored.outcome.as_deref(), Some("ok"));
}

#[test]
fn a_reader_never_creates_a_store_at_a_mistyped_path_nor_adds_tables_to_a_foreign_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("agentgaurd.db");
    for err in [
        SqliteStore::open_existing(&typo).unwrap_err().to_string(),
        agentguard::store::open_existing_store(&format!("sqlite:{}", typo.display()))
            .unwrap_err()
            .to_string(),
    ] {
        assert!(
            err.contains(&format!("no agentguard store at {}", typo.display())) && err.contains("does not exist"),
            "{err}"
        );
    }
    assert!(!typo.exists(), "nothing was created");

    // Another program's database: refused, byte for byte unchanged, no agentguard table added.
    let foreign = dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('x');",
        )
        .unwrap();
    }
    let before = std::fs::read(&foreign).unwrap();
    let err = SqliteStore::open_existing(&foreign).unwrap_err().to_string();
    assert!(
        err.contains(&foreign.display().to_string())
            && err.contains("not an agentguard store")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(
        std::fs::read(&foreign).unwrap() == before,
        "the foreign file was changed"
    );
    let tables: i64 = rusqlite::Connection::open(&foreign)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'agentguard%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
    // A text file: not a database, named, untouched.
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "this is not a database, just text that is long enough").unwrap();
    let err = SqliteStore::open_existing(&text).unwrap_err().to_string();
    assert!(err.contains("SQLite database") && err.contains("notes.txt"), "{err}");

    // The store an agent made opens, and answers.
    let real = dir.path().join("store.db");
    SqliteStore::open(&real).unwrap();
    assert!(SqliteStore::open_existing(&real).unwrap().pending().unwrap().is_empty());
}

/// The schema of version 1 (the release before richer answers), exactly as it created a new file.
const SCHEMA_1: &str = "
    CREATE TABLE agentguard_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE agentguard_requests (
        id TEXT PRIMARY KEY, request TEXT NOT NULL, tool TEXT NOT NULL, params_digest TEXT NOT NULL,
        created_ms INTEGER NOT NULL, deadline_ms INTEGER NOT NULL, state TEXT NOT NULL, actor TEXT, note TEXT,
        decided_ms INTEGER, executed_ms INTEGER, outcome TEXT, finished_ms INTEGER
    );
    CREATE INDEX agentguard_requests_state ON agentguard_requests (state, deadline_ms);
    CREATE INDEX agentguard_requests_decided ON agentguard_requests (decided_ms);
    INSERT INTO agentguard_meta (key, value) VALUES ('schema_version', '1');";

/// A request as a real guard makes it (parked on a memory store, then denied): for rows written by hand.
fn a_request(tool: &str) -> agentguard::ApprovalRequest {
    let (tx, rx) = mpsc::channel();
    let guard = AgentGuard::external()
        .on_request(move |req| {
            let _ = tx.send(req.clone());
        })
        .no_audit()
        .build();
    let g = guard.clone();
    let call = ToolCall::new(tool, json!({"row": 1}));
    let agent = std::thread::spawn(move || g.execute(call, |_, _| ()));
    let request = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    guard.resolve(request.request_id(), false, None);
    agent.join().unwrap().unwrap_err();
    request
}

fn insert_v1_row(conn: &rusqlite::Connection, request: &agentguard::ApprovalRequest, state: &str, actor: Option<&str>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    conn.execute(
        "INSERT INTO agentguard_requests (id, request, tool, params_digest, created_ms, deadline_ms, state, actor,
                                          decided_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        rusqlite::params![
            request.request_id().as_str(),
            serde_json::to_string(request).unwrap(),
            request.tool(),
            request.params_digest().as_str(),
            now,
            now + 60_000,
            state,
            actor,
            (state != "pending").then_some(now),
        ],
    )
    .unwrap();
}

fn schema_version(db: &Path) -> String {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT value FROM agentguard_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn a_store_at_schema_1_is_upgraded_in_place_and_its_requests_are_still_answered() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let (pending, remembered, executed) = (
        a_request("delete_row"),
        a_request("drop_table"),
        a_request("delete_row"),
    );
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(SCHEMA_1).unwrap();
        insert_v1_row(&conn, &pending, "pending", None);
        insert_v1_row(&conn, &remembered, "pending", None);
        insert_v1_row(&conn, &executed, "executed", Some("alice"));
    }
    // A reader (the CLI) opening it upgrades it; an agent's guard opening it then finds it current.
    let reader = SqliteStore::open_existing(&db).unwrap();
    assert_eq!(schema_version(&db), "2");
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(store.pending().unwrap().len(), 2, "the pending requests survived");
    let old = store.get(executed.request_id()).unwrap().unwrap().decision;
    assert_eq!(
        (old.state, old.actor.as_deref(), old.kind),
        (RequestState::Executed, Some("alice"), None)
    );

    assert_eq!(
        reader
            .resolve(&Resolution::respond(pending.request_id().clone(), "done by hand").actor("bob"))
            .unwrap(),
        ResolveOutcome::Resolved
    );
    let d = store.get(pending.request_id()).unwrap().unwrap().decision;
    assert_eq!(
        (d.state, d.response.as_deref()),
        (RequestState::Responded, Some("done by hand"))
    );
    let answer = Resolution::approve(remembered.request_id().clone())
        .actor("bob")
        .remember(agentguard::answer::GrantSpec::new(agentguard::answer::GrantScope::Everyone).uses(1));
    assert_eq!(reader.resolve(&answer).unwrap(), ResolveOutcome::Resolved);
    let grants = store.grants().unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].from_request, *remembered.request_id());
    assert!(store.use_grant(&grants[0].id).unwrap());
}

#[test]
fn a_store_at_a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(SCHEMA_1).unwrap();
        conn.execute("UPDATE agentguard_meta SET value = '3'", []).unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    for err in [
        SqliteStore::open(&db).unwrap_err().to_string(),
        SqliteStore::open_existing(&db).unwrap_err().to_string(),
    ] {
        assert!(
            err.contains("schema version 3") && err.contains("reads version 2") && err.contains("nothing was changed"),
            "{err}"
        );
    }
    assert!(std::fs::read(&db).unwrap() == before, "the refused file was changed");
}

/// An async agent whose SQLite file is locked by another connection waits for it off the runtime's worker: the
/// other task on the same (one-worker) runtime keeps running meanwhile. Without that, the insert would hold the
/// worker for the whole 800 ms the lock is held.
#[test]
fn an_async_agent_waiting_for_a_locked_sqlite_file_does_not_hold_up_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let guard = AgentGuard::external()
        .store(store(dir.path()))
        .timeout(Duration::from_secs(30))
        .no_audit()
        .build();
    let lock = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let hold = Duration::from_millis(800);
    let unlock = std::thread::spawn(move || {
        std::thread::sleep(hold);
        lock.execute_batch("ROLLBACK").unwrap();
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (longest_gap, parked) = rt.block_on(async move {
        let ticker = tokio::spawn(async {
            let mut longest = Duration::ZERO;
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_millis(1000) {
                let before = std::time::Instant::now();
                tokio::time::sleep(Duration::from_millis(5)).await;
                longest = longest.max(before.elapsed());
            }
            longest
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let store = guard.store().clone();
        let agent = tokio::spawn(async move {
            guard
                .aexecute(ToolCall::new("delete_row", json!({})), |_, _| async {})
                .await
        });
        let longest = ticker.await.unwrap();
        // By now the lock is gone and the call is parked in the file.
        let parked = store.pending().unwrap().len();
        agent.abort();
        (longest, parked)
    });
    unlock.join().unwrap();
    assert_eq!(parked, 1, "the call parked once the file was free");
    assert!(
        longest_gap < hold / 2,
        "the other task went {longest_gap:?} without running while the file was locked for {hold:?}"
    );
}
