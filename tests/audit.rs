//! The hash-chained audit log: tampering is found at the right line, rotation keeps the chain, and many threads and
//! many OS processes can append to one log without tearing it.

mod common;

use std::path::Path;
use std::process::Command;

use agentguard::audit::{verify, AuditDecision, AuditRecord};
use agentguard::audit::{AuditSink, JsonlAudit};
use agentguard::{AgentGuard, ToolCall};
use common::audit_path;
use serde_json::json;

fn write_records(audit: &JsonlAudit, n: usize, tag: &str) {
    let params = json!({"tag": tag});
    for i in 0..n {
        let tool = format!("tool_{tag}_{i}");
        let mut rec = AuditRecord::new(&tool, AuditDecision::Allowed);
        rec.params = Some(&params);
        audit.record(&rec).unwrap();
    }
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

#[test]
fn intact_chain_verifies_and_counts_its_lines() {
    let (_dir, log) = audit_path();
    write_records(&JsonlAudit::new(&log), 5, "a");
    let report = verify(&log).unwrap();
    assert_eq!(report.lines, 5);
    assert_eq!(report.first_seq, Some(1));
    assert_eq!(report.last_seq, Some(5));
}

#[test]
fn a_flipped_byte_is_reported_at_its_line() {
    let (_dir, log) = audit_path();
    write_records(&JsonlAudit::new(&log), 6, "a");
    let mut lines = lines_of(&log);
    lines[3] = lines[3].replacen("tool_a_3", "tool_a_X", 1);
    rewrite(&log, &lines);
    let err = verify(&log).unwrap_err();
    assert_eq!(err.line, 4, "{err}");
    assert!(err.problem.contains("edited"), "{err}");
}

#[test]
fn a_deleted_line_is_reported_where_the_gap_is() {
    let (_dir, log) = audit_path();
    write_records(&JsonlAudit::new(&log), 6, "a");
    let mut lines = lines_of(&log);
    lines.remove(2);
    rewrite(&log, &lines);
    let err = verify(&log).unwrap_err();
    assert_eq!(err.line, 3, "{err}");
    assert!(err.problem.contains("expected seq 3"), "{err}");
}

#[test]
fn two_swapped_lines_are_reported_at_the_first_of_them() {
    let (_dir, log) = audit_path();
    write_records(&JsonlAudit::new(&log), 6, "a");
    let mut lines = lines_of(&log);
    lines.swap(1, 4);
    rewrite(&log, &lines);
    let err = verify(&log).unwrap_err();
    assert_eq!(err.line, 2, "{err}");
}

#[test]
fn a_torn_last_line_is_reported() {
    let (_dir, log) = audit_path();
    write_records(&JsonlAudit::new(&log), 3, "a");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, &text[..text.len() - 10]).unwrap();
    let err = verify(&log).unwrap_err();
    assert_eq!(err.line, 3, "{err}");
    assert!(err.problem.contains("torn"), "{err}");
}

#[test]
fn a_damaged_tail_stops_gated_calls_with_a_message_saying_what_to_do() {
    let (_dir, log) = audit_path();
    write_records(&JsonlAudit::new(&log), 2, "a");
    std::fs::write(&log, b"{not json\n").unwrap();
    let guard = AgentGuard::callback(|_| true).audit_file(&log).build();
    let denied = guard
        .execute(ToolCall::new("delete_file", json!({})), |_, _| ())
        .unwrap_err();
    assert_eq!(denied.reason(), agentguard::DenyReason::AuditUnavailable);
    assert!(denied.detail().unwrap().contains("audit verify"), "{denied}");
}

#[test]
fn rotation_keeps_the_chain_across_files() {
    let (dir, log) = audit_path();
    let audit = JsonlAudit::new(&log).max_bytes(2_000);
    write_records(&audit, 60, "r");
    let report = verify(&log).unwrap();
    assert!(report.files.len() > 3, "rotated into {} files", report.files.len());
    assert_eq!(report.lines, 60);
    assert_eq!(report.last_seq, Some(60));
    // A fresh writer (a restarted process) continues the chain from the files on disk.
    write_records(&JsonlAudit::new(&log).max_bytes(2_000), 5, "s");
    assert_eq!(verify(&log).unwrap().last_seq, Some(65));
    // Tampering in a rotated file is found there.
    let first = report.files[0].clone();
    let mut lines = lines_of(&first);
    lines[0] = lines[0].replace("tool_r_0", "tool_r_9");
    rewrite(&first, &lines);
    let err = verify(&log).unwrap_err();
    assert_eq!(err.file, first);
    assert_eq!(err.line, 1);
    drop(dir);
}

#[test]
fn eight_threads_appending_produce_one_valid_chain() {
    let (_dir, log) = audit_path();
    let audit = std::sync::Arc::new(JsonlAudit::new(&log).max_bytes(50_000));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let a = audit.clone();
            std::thread::spawn(move || write_records(&a, 250, &format!("t{t}")))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = verify(&log).unwrap();
    assert_eq!(report.lines, 2_000);
}

#[test]
fn several_processes_appending_with_rotation_produce_one_chain_with_no_torn_lines() {
    let (_dir, log) = audit_path();
    let children: Vec<_> = (0..4)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_agentguard-test-helper"))
                .arg("audit-append")
                .arg(&log)
                .args([format!("p{i}"), "300".into(), "20000".into()])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let report = verify(&log).unwrap();
    assert_eq!(report.lines, 1_200, "4 processes x 300 records");
    assert!(report.files.len() > 2, "rotation happened: {:?}", report.files);
    // Every process's records are all there.
    let mut all = String::new();
    for f in &report.files {
        all.push_str(&std::fs::read_to_string(f).unwrap());
    }
    for i in 0..4 {
        assert_eq!(all.matches(&format!("\"tool\":\"tool_p{i}_")).count(), 300);
    }
}

#[test]
fn deleting_the_first_line_of_an_unrotated_log_is_reported() {
    let (_dir, log) = audit_path();
    write_records(&JsonlAudit::new(&log), 3, "a");
    let mut lines = lines_of(&log);
    lines.remove(0);
    rewrite(&log, &lines);
    let err = verify(&log).unwrap_err();
    assert_eq!(err.line, 1, "{err}");
    assert!(err.problem.contains("starts at seq 2"), "{err}");
}

#[test]
fn verify_while_a_writer_appends_and_rotates_reports_no_false_tampering() {
    let (_dir, log) = audit_path();
    let audit = std::sync::Arc::new(JsonlAudit::new(&log).max_bytes(1_500));
    write_records(&audit, 1, "w");
    let a = audit.clone();
    let writer = std::thread::spawn(move || write_records(&a, 600, "w"));
    let mut checks = 0;
    while !writer.is_finished() || checks < 20 {
        if let Err(e) = verify(&log) {
            panic!("false report while writing: {e}");
        }
        checks += 1;
    }
    writer.join().unwrap();
    assert_eq!(verify(&log).unwrap().lines, 601);
}

#[test]
fn a_writer_stuck_holding_the_lock_makes_gated_calls_fail_closed_not_hang() {
    let (_dir, log) = audit_path();
    write_records(&JsonlAudit::new(&log), 1, "a");
    // Another open file description holding the OS lock stands for a stuck process.
    let holder = std::fs::OpenOptions::new()
        .write(true)
        .open(log.with_file_name("audit.log.lock"))
        .unwrap();
    holder.lock().unwrap();
    let audit = JsonlAudit::new(&log).lock_timeout(std::time::Duration::from_millis(100));
    let guard = AgentGuard::callback(|_| true).audit(audit).build();
    let ran = std::sync::atomic::AtomicBool::new(false);
    let denied = guard
        .execute(ToolCall::new("delete_file", json!({})), |_, _| {
            ran.store(true, std::sync::atomic::Ordering::SeqCst)
        })
        .unwrap_err();
    assert_eq!(denied.reason(), agentguard::DenyReason::AuditUnavailable);
    assert!(
        denied.detail().unwrap().contains("another process holds it"),
        "{denied}"
    );
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    holder.unlock().unwrap();
    assert!(guard
        .execute(ToolCall::new("delete_file", json!({})), |_, _| ())
        .is_ok());
}

#[test]
fn a_tail_edited_to_an_absurd_seq_or_hash_is_an_error_not_a_panic() {
    let (_dir, log) = audit_path();
    let line = format!(
        "{{\"seq\":{},\"prev\":\"{}\",\"hash\":\"{}\"}}\n",
        u64::MAX,
        agentguard::audit::GENESIS,
        "a".repeat(64)
    );
    std::fs::write(&log, &line).unwrap();
    let guard = AgentGuard::callback(|_| true).audit_file(&log).build();
    let denied = guard
        .execute(ToolCall::new("delete_file", json!({})), |_, _| ())
        .unwrap_err();
    assert_eq!(denied.reason(), agentguard::DenyReason::AuditUnavailable);
    std::fs::write(&log, "{\"seq\":1,\"prev\":\"x\",\"hash\":\"x\\\"y\"}\n").unwrap();
    let denied = guard
        .execute(ToolCall::new("delete_file", json!({})), |_, _| ())
        .unwrap_err();
    assert!(denied.detail().unwrap().contains("malformed hash"), "{denied}");
}
