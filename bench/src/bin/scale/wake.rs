//! wake: a decision made in another process, and how soon the waiting agent sees it.

use super::*;

// ---------------------------------------------------------------------------------------------------------------
// wake: cross-process resolve → wake latency
// ---------------------------------------------------------------------------------------------------------------

/// The second process: answers "approve" to each request id read from stdin after the pause given with it, printing
/// the wall-clock time just before each `resolve`.
pub(super) fn resolver_process(url: &str) {
    let store = open_store(url).unwrap_or_else(|e| {
        eprintln!("resolver: cannot open {url}: {e}");
        std::process::exit(1)
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").and_then(|()| out.flush()).expect("stdout");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let (id, pause_us) = line.split_once(' ').expect("`<id> <pause_us>`");
        std::thread::sleep(Duration::from_micros(pause_us.parse().expect("pause")));
        let id: RequestId = id.parse().expect("request id");
        let at = wall_ns();
        let outcome = store.resolve(&Resolution::approve(id).actor("resolver-process"));
        match outcome {
            Ok(ResolveOutcome::Resolved) => writeln!(out, "{at}"),
            other => writeln!(out, "error {other:?}"),
        }
        .and_then(|()| out.flush())
        .expect("stdout");
    }
}

/// Runs SQL through `psql` (as the URL's user); the output, or why it failed.
pub(super) fn psql(server: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([server, "-Atqc", sql])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("psql not runnable ({e}); it is needed to cut the LISTEN connection"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!("psql failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The role the agent connects as in the listener-killed run: an ordinary role, so a connection limit binds it.
const CUT_ROLE: &str = "agentguard_scale_agent";

/// `server` with its user replaced by `user`.
pub(super) fn with_user(server: &str, user: &str) -> String {
    let (scheme, rest) = server.split_once("://").unwrap_or(("postgres", server));
    let host_and_rest = rest.split_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}@{host_and_rest}")
}

/// Kills the agent role's LISTEN connection and caps the role at its remaining connections, so the listener cannot
/// come back and only the store's polling can notice a decision. Checks that it stayed down.
pub(super) fn cut_listener(server: &str) -> Result<(), String> {
    psql(
        server,
        &format!(
            "DO $$DECLARE k int; BEGIN                PERFORM pg_terminate_backend(pid, 5000) FROM pg_stat_activity                  WHERE usename = '{CUT_ROLE}' AND application_name = 'agentguard-listen';                SELECT count(*) INTO k FROM pg_stat_activity                  WHERE usename = '{CUT_ROLE}' AND application_name <> 'agentguard-listen';                EXECUTE format('ALTER ROLE {CUT_ROLE} CONNECTION LIMIT %s', k);              END$$;"
        ),
    )?;
    std::thread::sleep(Duration::from_millis(400)); // past the listener's reconnect attempt
    let listening = psql(
        server,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{CUT_ROLE}'              AND application_name = 'agentguard-listen'"
        ),
    )?;
    if listening == "0" {
        Ok(())
    } else {
        Err(format!("the LISTEN connection came back ({listening} found)"))
    }
}

/// Parks `samples` calls one after another on the store at `url`, each answered by the resolver process; returns
/// the sorted latencies.
pub(super) fn wake_samples(
    agent_url: &str,
    resolver_url: &str,
    samples: usize,
    rt: &tokio::runtime::Runtime,
    after_open: &dyn Fn() -> Result<(), String>,
) -> Result<Vec<Duration>, String> {
    let store = open_store(agent_url).map_err(|e| e.to_string())?;
    after_open()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child: Child = Command::new(exe)
        .args(["__resolver", resolver_url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the resolver process: {e}"))?;
    let child_in: Arc<Mutex<ChildStdin>> = Arc::new(Mutex::new(child.stdin.take().expect("child stdin")));
    let (times_tx, times) = mpsc::channel::<String>();
    let child_out = child.stdout.take().expect("child stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(child_out).lines().map_while(Result::ok) {
            if times_tx.send(line).is_err() {
                break;
            }
        }
    });
    if times.recv_timeout(Duration::from_secs(30)).as_deref() != Ok("ready") {
        let _ = child.kill();
        return Err("the resolver process did not start".into());
    }
    // A cheap, deterministic spread of pauses (20–50 ms): a person never answers in the same poll phase.
    let seed = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let writer = child_in.clone();
    let guard = AgentGuard::external()
        .shared_store(store)
        .on_request(move |req| {
            let x = seed.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
            let pause_us = 20_000 + (x >> 33) % 30_000;
            let mut w = writer.lock().expect("child stdin");
            let _ = writeln!(w, "{} {pause_us}", req.request_id()).and_then(|()| w.flush());
        })
        .timeout(Duration::from_secs(30))
        .no_audit()
        .build();
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let out = rt.block_on(
            guard.aexecute(ToolCall::new("delete_row", json!({ "row": i })), |_, _| async {
                wall_ns()
            }),
        );
        let ran_at = out.map_err(|d| format!("sample {i} was not approved: {d} {:?}", d.detail()))?;
        let line = times
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the resolver process went quiet".to_owned())?;
        let resolved_at: u64 = line.parse().map_err(|_| format!("resolver: {line}"))?;
        latencies.push(Duration::from_nanos(ran_at.saturating_sub(resolved_at)));
    }
    drop(child_in);
    drop(guard);
    let _ = child.wait();
    latencies.sort();
    Ok(latencies)
}

pub(super) fn report_wake(figures: &mut Figures, key: &str, label: &str, result: Result<Vec<Duration>, String>) {
    match result {
        Ok(l) => {
            println!(
                "  {label:<38} n={:<4} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
                l.len(),
                ms(quantile(&l, 0.5)),
                ms(quantile(&l, 0.99)),
                ms(*l.last().expect("samples > 0"))
            );
            record(figures, &format!("wake.{key}.n"), l.len());
            record(figures, &format!("wake.{key}.p50_ms"), ms(quantile(&l, 0.5)));
            record(figures, &format!("wake.{key}.p99_ms"), ms(quantile(&l, 0.99)));
            record(
                figures,
                &format!("wake.{key}.max_ms"),
                ms(*l.last().expect("samples > 0")),
            );
        }
        Err(e) => {
            println!("  {label:<38} skipped: {e}");
            record(figures, &format!("wake.{key}.skipped"), e);
        }
    }
}

pub(super) fn wake(opts: &Options, figures: &mut Figures) {
    println!("\n== wake: cross-process resolve → executor running (resolver is a second OS process)");
    let rt = runtime();
    let nothing = || Ok(());
    if opts.sqlite {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("scale.db").display());
        let result = wake_samples(&url, &url, opts.wake_samples.max(1), &rt, &nothing);
        report_wake(figures, "sqlite", "SQLite (polling, 2→25 ms)", result);
    } else {
        println!("  SQLite                                 skipped: --no-sqlite");
    }
    let Some(server) = &opts.pg_url else {
        println!("  PostgreSQL                             skipped: --no-postgres");
        return;
    };
    let fresh = |base: &str, schema: &str| {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}schema={schema}")
    };
    let schema = format!("ag_scale_{}", RequestId::new().as_str().replace('-', ""));
    let url = fresh(server, &schema);
    if let Err(e) = open_store(&url) {
        let why = format!("no PostgreSQL at {server} ({e})");
        println!("  PostgreSQL                             skipped: {why}");
        record(figures, "wake.postgres_notify.skipped", why.clone());
        record(figures, "wake.postgres_killed.skipped", why);
        return;
    }
    let result = wake_samples(&url, &url, opts.wake_samples.max(1), &rt, &nothing);
    report_wake(figures, "postgres_notify", "PostgreSQL (LISTEN/NOTIFY)", result);
    let _ = psql(server, &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));

    // Listener killed: the agent connects as an ordinary role; once its store is open, its LISTEN connection is
    // terminated and the role capped at the connections it has left, so the listener cannot reconnect and only the
    // 1 s polling fallback can wake a waiter. The resolver process connects as the server URL's user.
    let schema = format!("ag_scale_{}", RequestId::new().as_str().replace('-', ""));
    let setup = psql(
        server,
        &format!(
            "DO $$BEGIN \
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{CUT_ROLE}') THEN CREATE ROLE {CUT_ROLE} LOGIN; \
               END IF; \
               ALTER ROLE {CUT_ROLE} CONNECTION LIMIT -1; \
               EXECUTE format('GRANT CREATE ON DATABASE %I TO {CUT_ROLE}', current_database()); \
             END$$;"
        ),
    );
    let result = setup.and_then(|_| {
        let agent_url = fresh(&with_user(server, CUT_ROLE), &schema);
        let resolver_url = fresh(server, &schema);
        wake_samples(&agent_url, &resolver_url, opts.killed_samples.max(1), &rt, &|| {
            cut_listener(server)
        })
    });
    report_wake(
        figures,
        "postgres_killed",
        "PostgreSQL, LISTEN connection killed",
        result,
    );
    // Leave nothing behind (best effort).
    let _ = psql(
        server,
        &format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; \
             DO $$BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM {CUT_ROLE}', current_database()); END$$; \
             DROP ROLE IF EXISTS {CUT_ROLE};"
        ),
    );
}
