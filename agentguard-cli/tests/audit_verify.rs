//! `agentguard audit verify` against the attacks of the security review: a torn tail is told from tampering (exit 9,
//! not 8), a keyed log needs its key (`--key-file` or `AGENTGUARD_AUDIT_KEY_FILE`) and catches a rewrite without it,
//! and a checkpoint catches removed lines.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use agentguard::audit::{AuditDecision, AuditKey, AuditRecord, AuditSink, JsonlAudit};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_agentguard");

fn verify(args: &[&str], key_env: Option<&Path>) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["audit", "verify"])
        .args(args)
        .env_remove("AGENTGUARD_STORE")
        .env_remove("AGENTGUARD_AUDIT_KEY_FILE")
        .stdin(Stdio::null());
    if let Some(k) = key_env {
        cmd.env("AGENTGUARD_AUDIT_KEY_FILE", k);
    }
    let out: Output = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(audit: &JsonlAudit, n: usize) {
    for i in 0..n {
        let tool = format!("tool_{i}");
        audit.record(&AuditRecord::new(&tool, AuditDecision::Allowed)).unwrap();
    }
}

fn setup() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let arg = log.to_str().unwrap().to_owned();
    (dir, log, arg)
}

fn key_file(dir: &Path) -> (PathBuf, AuditKey) {
    let path = dir.join("audit.key");
    std::fs::write(&path, format!("{}\n", "4".repeat(64))).unwrap();
    let key = AuditKey::from_file(&path).unwrap();
    (path, key)
}

#[test]
fn a_torn_tail_exits_9_saying_it_is_a_cut_short_write_not_an_edit() {
    let (_dir, log, arg) = setup();
    write(&JsonlAudit::new(&log), 3);
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(br#"{"seq":4,"ts":"2026"#);
    std::fs::write(&log, bytes).unwrap();
    let (code, _, err) = verify(&[&arg], None);
    assert_eq!(code, Some(9), "{err}");
    assert!(err.contains("audit.log:4: torn tail: the last "), "{err}");
    let (code, out, _) = verify(&["--json", &arg], None);
    assert_eq!(code, Some(9));
    let json: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (json["ok"].as_bool(), json["kind"].as_str()),
        (Some(false), Some("torn_tail"))
    );

    // After the next write's repair, the log verifies and says a repair happened.
    write(&JsonlAudit::new(&log), 1);
    let (code, out, err) = verify(&[&arg], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("chain intact: 5 lines") && out.contains("1 repair(s)"),
        "{out}"
    );
}

#[test]
fn a_keyed_log_verifies_with_its_key_file_and_exits_2_without_it() {
    let (dir, log, arg) = setup();
    let (key_path, key) = key_file(dir.path());
    write(&JsonlAudit::new(&log).key(key), 3);
    let key_arg = key_path.to_str().unwrap();

    let (code, out, err) = verify(&[&arg, "--key-file", key_arg], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("chain intact: 3 lines") && out.contains("keyed, every MAC checked"),
        "{out}"
    );
    let (code, _, err) = verify(&[&arg], Some(&key_path));
    assert_eq!(code, Some(0), "the key file named by the environment: {err}");

    let (code, _, err) = verify(&[&arg], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no key was given") && err.contains("--key-file"), "{err}");

    let short = dir.path().join("short.key");
    std::fs::write(&short, "too short").unwrap();
    let (code, _, err) = verify(&[&arg, "--key-file", short.to_str().unwrap()], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("too short"), "{err}");
}

#[test]
fn a_keyed_log_rewritten_without_the_key_exits_8() {
    let (dir, log, arg) = setup();
    let (key_path, key) = key_file(dir.path());
    write(&JsonlAudit::new(&log).key(key), 3);
    // The attacker, without the key, writes a fresh unkeyed chain in its place.
    std::fs::remove_file(&log).unwrap();
    write(&JsonlAudit::new(&log).no_checkpoints(), 3);
    let (code, _, err) = verify(&[&arg, "--key-file", key_path.to_str().unwrap()], None);
    assert_eq!(code, Some(8), "{err}");
    assert!(
        err.contains("chain broken at") && err.contains("no line carries a MAC"),
        "{err}"
    );
}

#[test]
fn removed_newest_lines_exit_8_naming_the_checkpoint_and_the_checkpoint_flags_choose_the_file() {
    let (dir, log, arg) = setup();
    write(&JsonlAudit::new(&log).checkpoint_every(5), 12);
    let text = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = text.lines().take(7).collect();
    std::fs::write(&log, format!("{}\n", kept.join("\n"))).unwrap();

    let (code, _, err) = verify(&[&arg], None);
    assert_eq!(code, Some(8), "{err}");
    assert!(
        err.contains("audit.log.checkpoint:") && err.contains("ends at seq 7, but a checkpoint records seq 10"),
        "{err}"
    );
    let (code, out, _) = verify(&["--json", &arg], None);
    assert_eq!(code, Some(8));
    assert_eq!(serde_json::from_str::<Value>(out.trim()).unwrap()["kind"], "truncated");

    let (code, _, err) = verify(&[&arg, "--no-checkpoint"], None);
    assert_eq!(code, Some(0), "{err}");
    let missing = dir.path().join("missing.checkpoint");
    let (code, _, err) = verify(&[&arg, "--checkpoint", missing.to_str().unwrap()], None);
    assert_eq!(
        code,
        Some(1),
        "a checkpoint file that was asked for and is missing: {err}"
    );
}

#[test]
fn a_deleted_log_whose_checkpoint_remains_exits_8_not_no_log() {
    let (_dir, log, arg) = setup();
    write(&JsonlAudit::new(&log).checkpoint_every(2), 4);
    std::fs::remove_file(&log).unwrap();
    let (code, _, err) = verify(&[&arg], None);
    assert_eq!(code, Some(8), "{err}");
    assert!(err.contains("no lines"), "{err}");
}
