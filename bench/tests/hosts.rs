//! The hosts program (src/bin/hosts/) at a small size against `$AGENTGUARD_TEST_POSTGRES_URL`: three agent
//! processes and two approver processes on one PostgreSQL, with and without the LISTEN backends killed.

use std::process::{Command, Stdio};

#[test]
fn hosts_decides_and_runs_every_call_once_and_strands_none_with_the_listener_up_and_killed() {
    let Some(url) = std::env::var("AGENTGUARD_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "AGENTGUARD_TEST_POSTGRES_URL is unset under CI"
        );
        println!("skipped: AGENTGUARD_TEST_POSTGRES_URL is unset");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("hosts.json");
    let out = Command::new(env!("CARGO_BIN_EXE_hosts"))
        .args(["--agents", "3", "--calls", "20", "--approvers", "2"])
        .args(["--timeout-s", "20", "--deadline-s", "40", "--probe-s", "0"])
        .args(["--pg-url", &url, "--json"])
        .arg(&json)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let figures: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for phase in ["notify", "killed"] {
        let figure = |name: &str| {
            figures[format!("{phase}.{name}")]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: {text}"))
        };
        assert_eq!(figure("calls_total"), 60, "{text}");
        assert_eq!(figure("decided"), 60, "{phase}: every call decided\n{text}");
        assert_eq!(figure("executed"), 60, "{phase}: every call ran\n{text}");
        assert_eq!(figure("double_executions"), 0, "{phase}\n{text}");
        assert_eq!(figure("double_decisions"), 0, "{phase}\n{text}");
        assert_eq!(figure("stranded"), 0, "{phase}\n{text}");
    }
}
