//! `agentguard-test-helper`: a real OS process for the integration tests that need one (several writers on one
//! audit log, a guard whose stdin is not a terminal). Not part of the public tools.

use std::path::PathBuf;
use std::process::ExitCode;

use agentguard::audit::{AuditDecision, AuditRecord};
use agentguard::audit::{AuditSink, JsonlAudit};
use agentguard::{AgentGuard, ToolCall};
use serde_json::json;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        // Appends N records tagged TAG to the log at PATH (0: until killed), rotating at MAX_BYTES.
        ["audit-append", path, tag, n, max_bytes] => {
            let audit = JsonlAudit::new(PathBuf::from(path)).max_bytes(max_bytes.parse().expect("max_bytes"));
            let params = json!({"tag": tag});
            let n = match n.parse::<usize>().expect("n") {
                0 => usize::MAX,
                n => n,
            };
            for i in 0..n {
                let tool = format!("tool_{tag}_{i}");
                let mut rec = AuditRecord::new(&tool, AuditDecision::Allowed);
                rec.params = Some(&params);
                if let Err(e) = audit.record(&rec) {
                    eprintln!("audit-append: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        // Makes N calls (0: until killed) through a guard auditing to PATH: every 10th one gated (auto-approved),
        // the rest safe, each with params {"i": i}. Prints "<i> safe|gated" after each call returns. At the end it
        // exits with `std::process::exit` without dropping the guard, as a program with a global guard does.
        ["audit-calls", path, n] => {
            use std::io::Write;
            let guard = AgentGuard::callback(|_| true).audit_file(PathBuf::from(path)).build();
            let n: u64 = n.parse().expect("n");
            let mut out = std::io::stdout().lock();
            let mut i = 0u64;
            while n == 0 || i < n {
                let gated = i % 10 == 9;
                let tool = if gated { "update_email" } else { "read_customer" };
                if guard
                    .execute(ToolCall::new(tool, json!({ "i": i })), |_, _| ())
                    .is_err()
                {
                    eprintln!("audit-calls: call {i} was denied");
                    std::process::exit(1);
                }
                let _ = writeln!(out, "{i} {}", if gated { "gated" } else { "safe" });
                let _ = out.flush();
                i += 1;
            }
            let _ = out.flush();
            std::process::exit(0)
        }
        // Makes one safe and one gated call through a guard auditing to PATH (which the test makes unwritable) and
        // prints each outcome: "safe ran", "gated denied <reason>".
        ["audit-fails", path] => {
            use std::io::Write;
            let guard = AgentGuard::callback(|_| true).audit_file(PathBuf::from(path)).build();
            let mut out = std::io::stdout().lock();
            match guard.execute(ToolCall::new("read_customer", json!({})), |_, _| ()) {
                Ok(()) => {
                    let _ = writeln!(out, "safe ran");
                }
                Err(denied) => {
                    let _ = writeln!(out, "safe denied {}", denied.reason().as_str());
                }
            }
            // The safe call's line is queued: let the flusher try it (and fail) before the gated call.
            std::thread::sleep(std::time::Duration::from_millis(50));
            match guard.execute(ToolCall::new("delete_file", json!({})), |_, _| ()) {
                Ok(()) => {
                    let _ = writeln!(out, "gated ran");
                }
                Err(denied) => {
                    let _ = writeln!(out, "gated denied {}", denied.reason().as_str());
                }
            }
            drop(guard);
            ExitCode::SUCCESS
        }
        // Makes one gated call through a terminal guard on the real stdin and prints the outcome as JSON.
        ["terminal-call"] => {
            let guard = AgentGuard::terminal().no_audit().build();
            let out = guard.execute(ToolCall::new("delete_file", json!({"path": "notes.txt"})), |_, _| "ran");
            match out {
                Ok(v) => println!("{}", json!({"ok": v})),
                Err(denied) => println!("{}", serde_json::to_string(&denied).expect("serializable")),
            }
            ExitCode::SUCCESS
        }
        // Parks N gated calls (one thread each) on the store at URL, timing out after TIMEOUT_MS. Prints each
        // request id as it parks ("parked <id>"), and each call's outcome as JSON. Every executor run appends a line
        // to RAN_FILE. Audits to LOG.
        ["store-agent", url, n, timeout_ms, ran_file, log] => {
            let store = agentguard::store::open_store(url).expect("open store");
            let guard = AgentGuard::external()
                .shared_store(store)
                .on_request(|req| println!("parked {}", req.request_id()))
                .timeout(std::time::Duration::from_millis(
                    timeout_ms.parse().expect("timeout_ms"),
                ))
                .audit_file(log)
                .build();
            let n: usize = n.parse().expect("n");
            let ran_file = PathBuf::from(ran_file);
            let threads: Vec<_> = (0..n)
                .map(|i| {
                    let (g, ran) = (guard.clone(), ran_file.clone());
                    std::thread::spawn(move || {
                        let call = ToolCall::new("delete_row", json!({"row": i})).agent_id("worker");
                        let out = g.execute(call, |_, _| {
                            use std::io::Write;
                            let mut f = std::fs::OpenOptions::new()
                                .create(true)
                                .append(true)
                                .open(&ran)
                                .unwrap();
                            writeln!(f, "ran {i}").unwrap();
                        });
                        match out {
                            Ok(()) => println!("{}", json!({"ok": i})),
                            Err(d) => println!("{}", serde_json::to_string(&d).expect("serializable")),
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("agent thread");
            }
            ExitCode::SUCCESS
        }
        // Reads request ids from stdin; for each, THREADS threads answer "approve" at once on the store at URL, and one line "<resolved> <already>" is printed with the counts of RESOLVED and ALREADY_RESOLVED.
        ["store-resolver", url, threads] => {
            use std::io::BufRead;
            use std::sync::{Arc, Barrier};
            let store = agentguard::store::open_store(url).expect("open store");
            let n: usize = threads.parse().expect("threads");
            for line in std::io::stdin().lock().lines() {
                let id: agentguard::RequestId = line.expect("stdin").trim().parse().expect("id");
                let barrier = Arc::new(Barrier::new(n));
                let outcomes: Vec<_> = (0..n)
                    .map(|_| {
                        let (s, b, id) = (store.clone(), barrier.clone(), id.clone());
                        std::thread::spawn(move || {
                            b.wait();
                            s.resolve(&agentguard::Resolution::approve(id)).expect("resolve")
                        })
                    })
                    .collect::<Vec<_>>()
                    .into_iter()
                    .map(|t| t.join().expect("resolver thread"))
                    .collect();
                let resolved = outcomes
                    .iter()
                    .filter(|o| **o == agentguard::ResolveOutcome::Resolved)
                    .count();
                let already = outcomes
                    .iter()
                    .filter(|o| **o == agentguard::ResolveOutcome::AlreadyResolved)
                    .count();
                println!("{resolved} {already}");
            }
            ExitCode::SUCCESS
        }
        // An agent whose guard parks on the store at URL (with the policy file POLICY, or none for "-"), timing out
        // after TIMEOUT_MS; audits to LOG; every executor run appends "ran <tool> <params>" to RAN_FILE. Prints
        // "ready" once the store is open, then reads calls from stdin, one JSON object a line ({"tool", "agent",
        // "params", "loop"}), each made on a thread of its own. Prints "parked <id>" as a call parks and, when it
        // ends, its outcome: {"ok": params} or the denial; with "loop": true the call is made again and again until
        // one is not let through, then {"runs": N, "ended": denial} is printed. Exits when stdin closes and every
        // call ended.
        ["answers-agent", url, timeout_ms, ran_file, log, policy] => {
            answers_agent(url, timeout_ms, ran_file, log, policy)
        }
        // Reads request ids from stdin; answers each "approve" as ACTOR on the store at URL, printing the outcome
        // (RESOLVED, VOTE_RECORDED, ALREADY_RESOLVED, ...). Prints "ready" once the store is open.
        ["answers-voter", url, actor] => {
            use std::io::BufRead;
            let store = agentguard::store::open_store(url).expect("open store");
            println!("ready");
            for line in std::io::stdin().lock().lines() {
                let id: agentguard::RequestId = line.expect("stdin").trim().parse().expect("id");
                let outcome = store
                    .resolve(&agentguard::Resolution::approve(id).actor(*actor))
                    .expect("resolve");
                println!("{outcome}");
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "usage: agentguard-test-helper audit-append PATH TAG N MAX_BYTES | audit-calls PATH N | \
                 audit-fails PATH | terminal-call | store-agent URL N TIMEOUT_MS RAN_FILE LOG | store-resolver URL THREADS | \
                 answers-agent URL TIMEOUT_MS RAN_FILE LOG POLICY|- | answers-voter URL ACTOR"
            );
            ExitCode::from(2)
        }
    }
}

fn answers_agent(url: &str, timeout_ms: &str, ran_file: &str, log: &str, policy: &str) -> ExitCode {
    use std::io::{BufRead, Write};
    let store = agentguard::store::open_store(url).expect("open store");
    let mut builder = AgentGuard::external()
        .shared_store(store)
        .on_request(|req| println!("parked {}", req.request_id()))
        .timeout(std::time::Duration::from_millis(
            timeout_ms.parse().expect("timeout_ms"),
        ))
        .audit_file(log);
    if policy != "-" {
        builder = builder.policy_file(policy).expect("policy file");
    }
    let guard = builder.build();
    println!("ready");
    let ran_file = PathBuf::from(ran_file);
    let mut threads = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let spec: serde_json::Value = serde_json::from_str(&line.expect("stdin")).expect("a JSON call");
        let (g, ran) = (guard.clone(), ran_file.clone());
        threads.push(std::thread::spawn(move || {
            let call = || {
                let mut call = ToolCall::new(spec["tool"].as_str().expect("tool"), spec["params"].clone());
                if let Some(agent) = spec["agent"].as_str() {
                    call = call.agent_id(agent);
                }
                let ran = ran.clone();
                g.execute(call, move |tool, params| {
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&ran)
                        .expect("ran file");
                    // One write per line: O_APPEND keeps lines of several processes whole.
                    f.write_all(format!("ran {tool} {params}\n").as_bytes())
                        .expect("ran file");
                    params
                })
            };
            if spec["loop"] == true {
                let mut runs = 0u64;
                let ended = loop {
                    match call() {
                        Ok(_) => runs += 1,
                        Err(denied) => break denied,
                    }
                };
                println!("{}", json!({"runs": runs, "ended": ended}));
            } else {
                match call() {
                    Ok(params) => println!("{}", json!({ "ok": params })),
                    Err(d) => println!("{}", serde_json::to_string(&d).expect("serializable")),
                }
            }
        }));
    }
    for t in threads {
        t.join().expect("agent thread");
    }
    ExitCode::SUCCESS
}
