//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use agentguard::RequestId;

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
