//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

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
