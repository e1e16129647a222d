//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use agentguard::{AgentGuard, RequestId, ToolCall};
use serde_json::json;

use serde_json::Value;

/// A temp dir and an audit log path inside it.
pub fn audit_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.log");
    (dir, path)
}

/// The audit file's lines, parsed.
pub fn audit_lines(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Runs the test helper binary (a real OS process).
pub const HELPER: &str = env!("CARGO_BIN_EXE_agentguard-test-helper");

pub struct Agent {
    pub child: Child,
    pub out: BufReader<ChildStdout>,
}

impl Agent {
    /// Starts an agent process parking `n` calls on the store at `url`; its executor runs and audit go to `dir`.
    pub fn start(url: &str, dir: &Path, n: usize, timeout_ms: u64) -> Agent {
        let mut child = Command::new(HELPER)
            .arg("store-agent")
            .arg(url)
            .args([n.to_string(), timeout_ms.to_string()])
            .arg(dir.join("ran.txt"))
            .arg(dir.join("audit.log"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Agent { child, out }
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }

    pub fn parked(&mut self) -> RequestId {
        let line = self.line();
        line.strip_prefix("parked ")
            .unwrap_or_else(|| panic!("expected a parked line, got {line:?}"))
            .parse()
            .unwrap()
    }

    pub fn outcome(&mut self) -> Value {
        serde_json::from_str(&self.line()).unwrap()
    }
}

pub fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("ran.txt"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// 32 resolvers in 4 helper processes answer each of 1,000 parked requests (AGENTGUARD_RACE_TRIALS) on the store
/// at `url` at once: exactly one answer wins each time, and each approved call runs exactly once.
pub fn race_resolvers(url: &str) {
    let trials: usize = std::env::var("AGENTGUARD_RACE_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let store = agentguard::store::open_store(url).unwrap();
    let (tx, rx) = mpsc::channel::<RequestId>();
    let guard = AgentGuard::external()
        .shared_store(store)
        .on_request(move |req| {
            let _ = tx.send(req.request_id().clone());
        })
        .timeout(Duration::from_secs(60))
        .no_audit()
        .build();
    let mut resolvers: Vec<(Child, BufReader<ChildStdout>)> = (0..4)
        .map(|_| {
            let mut c = Command::new(HELPER)
                .args(["store-resolver", url, "8"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let out = BufReader::new(c.stdout.take().unwrap());
            (c, out)
        })
        .collect();
    let ran = Arc::new(AtomicUsize::new(0));
    let (g, r) = (guard.clone(), ran.clone());
    let agent = std::thread::spawn(move || {
        for _ in 0..trials {
            g.execute(ToolCall::new("delete_row", json!({})), |_, _| {
                r.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
    });
    for trial in 0..trials {
        let id = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        for (c, _) in &mut resolvers {
            writeln!(c.stdin.as_mut().unwrap(), "{id}").unwrap();
        }
        let (mut resolved, mut already) = (0, 0);
        for (_, out) in &mut resolvers {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace().map(|p| p.parse::<usize>().unwrap());
            resolved += parts.next().unwrap();
            already += parts.next().unwrap();
        }
        assert_eq!(resolved, 1, "trial {trial}: exactly one RESOLVED");
        assert_eq!(already, 31, "trial {trial}");
    }
    agent.join().unwrap();
    assert_eq!(
        ran.load(Ordering::SeqCst),
        trials,
        "each approved call ran exactly once"
    );
    for (mut c, _) in resolvers {
        drop(c.stdin.take());
        assert!(c.wait().unwrap().success());
    }
}

/// The test PostgreSQL server's URL (`AGENTGUARD_TEST_POSTGRES_URL`), or `None` with a message saying the tests
/// were skipped. Under CI (`CI` set) a missing URL fails the test instead: `.ci/run` always sets it.
pub fn postgres_server() -> Option<String> {
    match std::env::var("AGENTGUARD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set AGENTGUARD_TEST_POSTGRES_URL (.ci/run does)"
            );
            eprintln!(
                "skipped: AGENTGUARD_TEST_POSTGRES_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}
