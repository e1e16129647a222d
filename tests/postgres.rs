//! The PostgreSQL store against a real server: cross-process approval, racing resolvers, kill -9, the LISTEN
//! connection killed during resolves, the audit table, and bad input. Needs `AGENTGUARD_TEST_POSTGRES_URL`
//! (`.ci/run` sets it); without it each test says it was skipped and why.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use agentguard::store::{open_store, ApprovalStore, PostgresStore, RequestState};
use agentguard::{AgentGuard, RequestId, Resolution, ResolveOutcome, ToolCall};
use common::{runs, Agent};
use serde_json::json;

/// The server URL, or `None` (and a message) when the tests are not configured.
fn server() -> Option<String> {
    match std::env::var("AGENTGUARD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set AGENTGUARD_TEST_POSTGRES_URL (.ci/run does)"
            );
            eprintln!(
                "skipped: AGENTGUARD_TEST_POSTGRES_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test); \
                 .ci/run sets it"
            );
            None
        }
    }
}

/// A store URL in a fresh schema of its own, so tests do not see each other's requests.
fn fresh(server: &str) -> String {
    let schema = format!("ag_{}", RequestId::new().as_str().replace('-', ""));
    let sep = if server.contains('?') { '&' } else { '?' };
    format!("{server}{sep}schema={schema}")
}

fn store(url: &str) -> Arc<dyn ApprovalStore> {
    open_store(url).unwrap()
}

/// The concrete store for a `fresh` URL: (store, schema name).
fn pg_store(url: &str) -> (Arc<PostgresStore>, String) {
    let (base, query) = url.split_once('?').unwrap();
    let schema = query.strip_prefix("schema=").unwrap().to_owned();
    (Arc::new(PostgresStore::connect(base, Some(&schema)).unwrap()), schema)
}

/// Runs SQL with psql as the server's superuser.
fn psql(server: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([server, "-Atc", sql])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "psql failed: {sql}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn another_process_approves_and_the_agent_process_runs_the_call_once() {
    let Some(server) = server() else { return };
    let url = fresh(&server);
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(&url, dir.path(), 1, 30_000);
    let id = agent.parked();
    let s = store(&url);
    assert_eq!(
        s.resolve(&Resolution::approve(id.clone()).actor("alice")).unwrap(),
        ResolveOutcome::Resolved
    );
    assert_eq!(agent.outcome(), json!({"ok": 0}));
    agent.child.wait().unwrap();
    assert_eq!(runs(dir.path()), 1);
    let stored = s.get(&id).unwrap().unwrap();
    assert_eq!(stored.decision.state, RequestState::Executed);
    assert_eq!(stored.outcome.as_deref(), Some("ok"));
    assert_eq!(
        s.resolve(&Resolution::deny(id)).unwrap(),
        ResolveOutcome::AlreadyResolved
    );
}

#[test]
fn another_process_denies_and_a_late_answer_is_expired() {
    let Some(server) = server() else { return };
    let url = fresh(&server);
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(&url, dir.path(), 1, 30_000);
    let id = agent.parked();
    let s = store(&url);
    assert_eq!(
        s.resolve(&Resolution::deny(id).note("no")).unwrap(),
        ResolveOutcome::Resolved
    );
    assert_eq!(agent.outcome()["reason"], "user_denied");
    agent.child.wait().unwrap();

    let mut agent = Agent::start(&url, dir.path(), 1, 300);
    let id = agent.parked();
    assert_eq!(agent.outcome()["reason"], "approval_timeout");
    agent.child.wait().unwrap();
    assert_eq!(s.resolve(&Resolution::approve(id)).unwrap(), ResolveOutcome::Expired);
    assert_eq!(runs(dir.path()), 0);
}

#[test]
fn thirty_two_resolvers_in_four_processes_race_one_id_exactly_one_wins_over_1000_trials() {
    let Some(server) = server() else { return };
    common::race_resolvers(&fresh(&server));
}

#[test]
fn killing_the_agent_with_100_pending_leaves_nothing_executed() {
    let Some(server) = server() else { return };
    let url = fresh(&server);
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(&url, dir.path(), 100, 1_500);
    for _ in 0..100 {
        agent.parked();
    }
    let s = store(&url);
    let ids: Vec<RequestId> = s.pending().unwrap().iter().map(|r| r.request_id().clone()).collect();
    assert_eq!(ids.len(), 100);
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1_600)); // past the deadline (judged by the database clock)
    assert!(s.pending().unwrap().is_empty());
    for id in &ids {
        assert_eq!(s.get(id).unwrap().unwrap().decision.state, RequestState::Expired);
        assert_eq!(
            s.resolve(&Resolution::approve(id.clone())).unwrap(),
            ResolveOutcome::Expired
        );
    }
    assert_eq!(runs(dir.path()), 0);
    // A restarted agent parks its own requests, never the dead one's, and its audit chain verifies.
    let mut again = Agent::start(&url, dir.path(), 1, 300);
    assert!(!ids.contains(&again.parked()));
    assert_eq!(again.outcome()["reason"], "approval_timeout");
    again.child.wait().unwrap();
    assert_eq!(runs(dir.path()), 0);
    assert_eq!(
        agentguard::audit::verify(dir.path().join("audit.log")).unwrap().lines,
        1
    );
}

#[test]
fn killing_the_listen_connection_during_resolves_strands_no_approval() {
    let Some(server) = server() else { return };
    let url = fresh(&server);
    let (pg, _) = pg_store(&url);
    let (tx, rx) = mpsc::channel::<RequestId>();
    let guard = AgentGuard::external()
        .shared_store(pg.clone())
        .on_request(move |req| {
            let _ = tx.send(req.request_id().clone());
        })
        .timeout(Duration::from_secs(20))
        .no_audit()
        .build();
    // A killer: terminates the LISTEN backend over and over while approvals are answered.
    let killer_url = server.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let killer = std::thread::spawn(move || {
        let mut kills = 0;
        while !s2.load(Ordering::SeqCst) {
            let killed = psql(
                &killer_url,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = 'agentguard-listen'",
            );
            kills += killed.parse::<usize>().unwrap_or(0);
            std::thread::sleep(Duration::from_millis(30));
        }
        kills
    });
    let ran = Arc::new(AtomicUsize::new(0));
    let (g, r) = (guard.clone(), ran.clone());
    let agent = std::thread::spawn(move || {
        for _ in 0..30 {
            g.execute(ToolCall::new("delete_row", json!({})), |_, _| {
                r.fetch_add(1, Ordering::SeqCst);
            })
            .expect("no approval may be stranded");
        }
    });
    let answerer = store(&url);
    for _ in 0..30 {
        let id = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(
            answerer.resolve(&Resolution::approve(id)).unwrap(),
            ResolveOutcome::Resolved
        );
    }
    agent.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    let kills = killer.join().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 30);
    assert!(kills > 0, "the LISTEN connection was never killed");
    println!("LISTEN connection killed {kills} times; all 30 approvals ran");
}

#[test]
fn the_audit_table_keeps_a_chain_that_verify_checks() {
    let Some(server) = server() else { return };
    let url = fresh(&server);
    let (pg, schema) = pg_store(&url);
    let guard = AgentGuard::callback(|req| req.tool() != "drop_table")
        .audit(pg.audit())
        .build();
    guard
        .execute(ToolCall::new("read_row", json!({"password": "hunter2"})), |_, _| ())
        .unwrap();
    guard
        .execute(ToolCall::new("delete_row", json!({})), |_, _| ())
        .unwrap();
    guard
        .execute(ToolCall::new("drop_table", json!({})), |_, _| ())
        .unwrap_err();
    let report = pg.verify_audit().unwrap();
    assert_eq!(report.lines, 3);
    // Tamper with row 2 through SQL: verify names it.
    psql(
        &server,
        &format!(
            "UPDATE \"{schema}\".agentguard_audit SET line = replace(line, 'delete_row', 'delete_all') WHERE seq = 2"
        ),
    );
    let err = pg.verify_audit().unwrap_err();
    assert_eq!(err.line, 2, "{err}");
    // Secrets are redacted in the table too.
    let all = psql(
        &server,
        &format!("SELECT string_agg(line, '') FROM \"{schema}\".agentguard_audit"),
    );
    assert!(all.contains("[REDACTED]") && !all.contains("hunter2"));
}

#[test]
fn unreachable_servers_and_old_schemas_give_clear_errors() {
    let Some(server) = server() else { return };
    let err = open_store("postgres://postgres@127.0.0.1:1/test")
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect"), "{err}");
    let url = fresh(&server);
    let schema = url.split_once("schema=").unwrap().1.to_owned();
    psql(
        &server,
        &format!(
            "CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".agentguard_meta (key text PRIMARY KEY, value text);
             INSERT INTO \"{schema}\".agentguard_meta VALUES ('schema_version', '0');"
        ),
    );
    let err = open_store(&url).unwrap_err().to_string();
    assert!(
        err.contains("schema version 0") && err.contains("nothing was changed"),
        "{err}"
    );
    let tables = psql(
        &server,
        &format!("SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}'"),
    );
    assert_eq!(tables, "1", "no table was added");
}

/// A request parked by a real agent thread on `store`: its request and the handle giving the call's result.
fn park(
    store: Arc<dyn ApprovalStore>,
) -> (
    agentguard::ApprovalRequest,
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
fn one_deep_or_damaged_row_does_not_hide_the_other_pending_requests_in_postgres() {
    let Some(server) = server() else { return };
    let url = fresh(&server);
    let (pg, schema) = pg_store(&url);
    let (good, agent) = park(pg.clone());
    // What an older version (before intake refused params deeper than 64 levels) or a damaged write left behind:
    // params nested 200 levels deep (serde_json reads 128), and JSON cut short.
    let mut deep = serde_json::to_value(&good).unwrap();
    let deep_id = RequestId::new();
    deep["request_id"] = json!(deep_id);
    deep["params"] = json!("PLACEHOLDER");
    let deep = deep
        .to_string()
        .replace("\"PLACEHOLDER\"", &format!("{}0{}", "[".repeat(200), "]".repeat(200)));
    let damaged_id = RequestId::new();
    psql(
        &server,
        &format!(
            "INSERT INTO \"{schema}\".agentguard_requests (id, request, tool, params_digest, deadline, state) VALUES
             ('{deep_id}', '{deep}', 'delete_row', '', now() + interval '1 minute', 'pending'),
             ('{damaged_id}', '{{\"request_id\": \"trunc', 'delete_row', '', now() + interval '1 minute', 'pending')"
        ),
    );
    let list = pg.list_pending().unwrap();
    assert_eq!(
        list.requests.iter().map(|r| r.request_id()).collect::<Vec<_>>(),
        vec![good.request_id()],
        "the readable request is listed"
    );
    let mut bad: Vec<(String, String)> = list.unreadable.into_iter().map(|r| (r.id, r.problem)).collect();
    bad.sort_by_key(|(id, _)| *id != deep_id.as_str());
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        bad[0].0 == deep_id.as_str() && bad[0].1.contains("recursion limit"),
        "{bad:?}"
    );
    assert!(
        bad[1].0 == damaged_id.as_str() && bad[1].1.contains("damaged"),
        "{bad:?}"
    );
    assert_eq!(pg.pending().unwrap().len(), 1);
    // Another process's reader (the CLI opens existing stores) sees the same.
    let reader = agentguard::store::open_existing_store(&url).unwrap();
    assert_eq!(reader.list_pending().unwrap().unreadable.len(), 2);
    assert_eq!(
        reader.resolve(&Resolution::deny(deep_id)).unwrap(),
        ResolveOutcome::Resolved,
        "an unreadable row can still be denied by id"
    );
    reader.resolve(&Resolution::approve(good.request_id().clone())).unwrap();
    assert_eq!(agent.join().unwrap().unwrap(), "ran");
}

#[test]
fn a_reader_refuses_a_schema_without_a_store_and_creates_nothing() {
    let Some(server) = server() else { return };
    let url = fresh(&server);
    let schema = url.split_once("schema=").unwrap().1.to_owned();
    let err = agentguard::store::open_existing_store(&url).unwrap_err().to_string();
    assert!(
        err.contains("no agentguard store") && err.contains(&schema) && err.contains("nothing was created"),
        "{err}"
    );
    assert_eq!(
        psql(
            &server,
            &format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'")
        ),
        "0",
        "no schema was created"
    );
    store(&url); // an agent's guard creates it
    assert!(agentguard::store::open_existing_store(&url).is_ok());
}

/// The TLS server URL (`sslmode=verify-full&sslrootcert=…`), or `None` (and a message) when not configured.
fn tls_server() -> Option<String> {
    match std::env::var("AGENTGUARD_TEST_POSTGRES_TLS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set AGENTGUARD_TEST_POSTGRES_TLS_URL (.ci/run does)"
            );
            eprintln!(
                "skipped: AGENTGUARD_TEST_POSTGRES_TLS_URL is not set (a server with ssl = on, e.g. \
                 postgres://postgres@localhost:5432/test?sslmode=verify-full&sslrootcert=/path/ca.pem); .ci/run sets it"
            );
            None
        }
    }
}

#[test]
fn over_verify_full_a_store_parks_and_resolves_a_request_encrypted() {
    let Some(tls) = tls_server() else { return };
    let url = fresh(&tls);
    let s = store(&url);
    let schema = url.rsplit_once("schema=").unwrap().1.to_owned();
    let pg = PostgresStore::connect(&tls, Some(&schema)).unwrap();
    assert!(pg.uses_tls().unwrap(), "the server sees an encrypted connection");
    let (req, agent) = park(s.clone());
    assert_eq!(
        agentguard::store::open_existing_store(&url)
            .unwrap()
            .resolve(&Resolution::approve(req.request_id().clone()).actor("alice"))
            .unwrap(),
        ResolveOutcome::Resolved
    );
    assert_eq!(agent.join().unwrap().unwrap(), "ran");
    assert_eq!(
        s.get(req.request_id()).unwrap().unwrap().decision.state,
        RequestState::Executed
    );
}

#[test]
fn sslmode_require_encrypts_and_disable_does_not() {
    let Some(tls) = tls_server() else { return };
    let Some(plain) = server() else { return };
    let (base, _) = tls.split_once('?').unwrap();
    let required = PostgresStore::connect(&format!("{base}?sslmode=require"), Some("ag_tls_require")).unwrap();
    assert!(required.uses_tls().unwrap());
    let (req, agent) = park(Arc::new(required));
    store(&format!("{base}?sslmode=require&schema=ag_tls_require"))
        .resolve(&Resolution::deny(req.request_id().clone()))
        .unwrap();
    assert!(agent.join().unwrap().is_err());
    // No sslmode: plain, as before (the documented default), even though the server offers TLS.
    let plain = PostgresStore::connect(&plain, Some("ag_tls_require")).unwrap();
    assert!(!plain.uses_tls().unwrap());
}

/// A CA of its own that signed nothing the server has, made with openssl in `dir`.
fn wrong_ca(dir: &std::path::Path) -> std::path::PathBuf {
    let ca = dir.join("wrong-ca.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=not the server's CA",
        ])
        .args(["-addext", "basicConstraints=critical,CA:TRUE", "-keyout"])
        .arg(dir.join("wrong-ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ca
}

#[test]
fn verify_full_with_the_wrong_ca_or_host_is_refused_clearly_and_never_shows_the_password() {
    let Some(tls) = tls_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = wrong_ca(dir.path());
    let (base, _) = tls.split_once('?').unwrap();
    let with_password = base.replacen("postgres@", "postgres:S3cr3tPw@", 1);
    let url = format!(
        "{with_password}?sslmode=verify-full&sslrootcert={}&schema=ag_tls_refused",
        ca.display()
    );
    let err = open_store(&url).unwrap_err();
    let shown = format!("{err} / {err:?}");
    assert!(
        shown.contains("cannot connect over TLS (sslmode=verify-full: ")
            && shown.contains("invalid peer certificate: UnknownIssuer")
            && shown.contains("sslrootcert names the CA"),
        "{shown}"
    );
    assert!(!shown.contains("S3cr3tPw"), "{shown}");
    let parsed: agentguard::store::StoreUrl = url.parse().unwrap();
    assert!(!parsed.to_string().contains("S3cr3tPw"));
    // The right CA, but a host name the certificate does not carry (it names localhost and 127.0.0.1; hostaddr
    // says where to connect): refused by verify-full, accepted by verify-ca, which checks the chain only.
    let right_ca = tls.split_once("sslrootcert=").unwrap().1.split('&').next().unwrap();
    let other_name = base.replacen("@localhost", "@not-in-the-certificate.invalid", 1);
    let err = open_store(&format!(
        "{other_name}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={right_ca}"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("not valid for name") && err.contains("names the host"),
        "{err}"
    );
    let ok = PostgresStore::connect(
        &format!("{other_name}?hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={right_ca}"),
        Some("ag_tls_refused"),
    );
    assert!(ok.unwrap().uses_tls().unwrap());
    // A missing CA file is named before anything is sent.
    let err = open_store(&format!("{base}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sslrootcert=/nonexistent/ca.pem"), "{err}");
}

/// The schema of version 1 (the release before richer answers), exactly as it created a new store, in `schema`.
fn schema_1(schema: &str) -> String {
    format!(
        "CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\";
         CREATE TABLE agentguard_meta (key text PRIMARY KEY, value text NOT NULL);
         CREATE TABLE agentguard_requests (
             id text PRIMARY KEY, request text NOT NULL, tool text NOT NULL, params_digest text NOT NULL,
             created timestamptz NOT NULL DEFAULT now(), deadline timestamptz NOT NULL, state text NOT NULL,
             actor text, note text, decided timestamptz, executed timestamptz, outcome text, finished timestamptz
         );
         CREATE INDEX agentguard_requests_pending ON agentguard_requests (state, deadline);
         CREATE INDEX agentguard_requests_decided ON agentguard_requests (decided);
         CREATE TABLE agentguard_audit (seq bigint PRIMARY KEY, line text NOT NULL);
         INSERT INTO agentguard_meta (key, value) VALUES ('schema_version', '1');"
    )
}

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

fn v1_row(request: &agentguard::ApprovalRequest, state: &str, actor: &str) -> String {
    format!(
        "('{}', '{}', '{}', '{}', now() + interval '1 minute', '{state}', {actor})",
        request.request_id(),
        serde_json::to_string(request).unwrap().replace('\'', "''"),
        request.tool(),
        request.params_digest().as_str(),
    )
}

#[test]
fn a_store_at_schema_1_is_upgraded_in_place_and_its_requests_are_still_answered() {
    let Some(server) = server() else { return };
    let url = fresh(&server);
    let schema = url.split_once("schema=").unwrap().1.to_owned();
    let (pending, remembered, executed) = (
        a_request("delete_row"),
        a_request("drop_table"),
        a_request("delete_row"),
    );
    psql(
        &server,
        &format!(
            "{} INSERT INTO agentguard_requests (id, request, tool, params_digest, deadline, state, actor) VALUES {}, {}, {};",
            schema_1(&schema),
            v1_row(&pending, "pending", "NULL"),
            v1_row(&remembered, "pending", "NULL"),
            v1_row(&executed, "executed", "'alice'"),
        ),
    );
    // A reader (the CLI) connecting upgrades it; an agent's guard connecting then finds it current.
    let reader = agentguard::store::open_existing_store(&url).unwrap();
    let version = psql(
        &server,
        &format!("SELECT value FROM \"{schema}\".agentguard_meta WHERE key = 'schema_version'"),
    );
    assert_eq!(version, "2");
    let s = store(&url);
    assert_eq!(s.pending().unwrap().len(), 2, "the pending requests survived");
    let old = s.get(executed.request_id()).unwrap().unwrap().decision;
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
    let d = s.get(pending.request_id()).unwrap().unwrap().decision;
    assert_eq!(
        (d.state, d.response.as_deref()),
        (RequestState::Responded, Some("done by hand"))
    );
    let answer = Resolution::approve(remembered.request_id().clone())
        .actor("bob")
        .remember(agentguard::answer::GrantSpec::new(agentguard::answer::GrantScope::Everyone).uses(1));
    assert_eq!(reader.resolve(&answer).unwrap(), ResolveOutcome::Resolved);
    let grants = s.grants().unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].from_request, *remembered.request_id());
    assert!(s.use_grant(&grants[0].id).unwrap());
}

#[test]
fn a_store_at_a_newer_schema_is_refused_and_left_untouched() {
    let Some(server) = server() else { return };
    let url = fresh(&server);
    let schema = url.split_once("schema=").unwrap().1.to_owned();
    psql(
        &server,
        &format!("{} UPDATE agentguard_meta SET value = '3';", schema_1(&schema)),
    );
    for err in [
        open_store(&url).unwrap_err().to_string(),
        agentguard::store::open_existing_store(&url).unwrap_err().to_string(),
    ] {
        assert!(
            err.contains("schema version 3") && err.contains("reads version 2") && err.contains("nothing was changed"),
            "{err}"
        );
    }
    let tables = psql(
        &server,
        &format!("SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}'"),
    );
    assert_eq!(tables, "3", "no table was added");
}

/// Concurrent answers, claims and waits through one store are done in batches (one transaction or statement for
/// many): each still gets its own result. Two answers to one request at once: exactly one decides. Eight claims of
/// one approved request at once: exactly one wins, even when they share a batch.
#[test]
fn concurrent_answers_claims_and_waits_through_one_store_each_get_their_own_result() {
    let Some(server) = server() else { return };
    let url = fresh(&server);
    let s = store(&url);
    let requests: Vec<_> = (0..40).map(|_| a_request("delete_row")).collect();
    for r in &requests {
        s.insert(r).unwrap();
    }
    let waits: Vec<_> = requests
        .iter()
        .map(|r| {
            let (s, id) = (s.clone(), r.request_id().clone());
            std::thread::spawn(move || s.wait_blocking(&id, std::time::Instant::now() + Duration::from_secs(60)))
        })
        .collect();
    let answers: Vec<_> = requests
        .iter()
        .flat_map(|r| [r.request_id().clone(), r.request_id().clone()])
        .enumerate()
        .map(|(n, id)| {
            let s = s.clone();
            std::thread::spawn(move || s.resolve(&Resolution::approve(id).actor(format!("a{n}"))).unwrap())
        })
        .collect();
    let outcomes: Vec<ResolveOutcome> = answers.into_iter().map(|t| t.join().unwrap()).collect();
    for pair in outcomes.chunks(2) {
        let mut pair = pair.to_vec();
        pair.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(
            pair,
            [ResolveOutcome::AlreadyResolved, ResolveOutcome::Resolved],
            "{outcomes:?}"
        );
    }
    for w in waits {
        let d = w.join().unwrap().unwrap().expect("decided within the wait");
        assert_eq!(d.state, RequestState::Approved);
    }
    let claims: Vec<_> = requests
        .iter()
        .flat_map(|r| std::iter::repeat_n(r.request_id().clone(), 8))
        .map(|id| {
            let s = s.clone();
            std::thread::spawn(move || (id.clone(), s.claim(&id).unwrap()))
        })
        .collect();
    let mut won = std::collections::HashMap::<RequestId, usize>::new();
    for c in claims {
        let (id, ok) = c.join().unwrap();
        *won.entry(id).or_default() += usize::from(ok);
    }
    assert_eq!(won.len(), 40);
    assert!(won.values().all(|&n| n == 1), "exactly one claim of each wins: {won:?}");
    for r in &requests {
        assert_eq!(
            s.get(r.request_id()).unwrap().unwrap().decision.state,
            RequestState::Executed
        );
    }
}
