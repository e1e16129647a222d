//! The hash-chained audit log: tampering is found at the right line, rotation keeps the chain, and many threads and
//! many OS processes can append to one log without tearing it. A full disk leaves no partial line, a torn tail is
//! told from an edit and repaired on the record, a keyed log cannot be rewritten without its key, and checkpoints
//! show removed lines.

mod common;

use std::path::Path;
use std::process::Command;

use agentguard::audit::{verify, AuditDecision, AuditKey, AuditRecord, Verify, VerifyErrorKind};
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
fn a_process_looping_gated_lines_does_not_keep_another_process_out() {
    // A process whose lines come one after another keeps the log's lock between batches (a lease, up to 2 ms), and
    // lets it go between leases: another process writing meanwhile gets it, well within a short lock timeout.
    let (_dir, log) = audit_path();
    // Killed when the test ends, however it ends (it would loop on otherwise, and keep the test's output open).
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut looping = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_agentguard-test-helper"))
            .arg("audit-append")
            .arg(&log)
            .args(["loop", "0", "1000000000000"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 1_000 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "the looping process wrote nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let audit = JsonlAudit::new(&log).lock_timeout(std::time::Duration::from_millis(500));
    let params = json!({"tag": "other"});
    let mut waits = Vec::new();
    for i in 0..200 {
        let tool = format!("tool_other_{i}");
        let mut rec = AuditRecord::new(&tool, AuditDecision::Allowed);
        rec.params = Some(&params);
        let t = std::time::Instant::now();
        audit
            .record(&rec)
            .unwrap_or_else(|e| panic!("line {i} of the other process: {e}"));
        waits.push((t.elapsed(), i));
    }
    assert!(
        looping.0.try_wait().unwrap().is_none(),
        "the looping process ended early"
    );
    drop(looping);
    waits.sort();
    eprintln!("the other process's slowest lines (time, line): {:?}", &waits[195..]);
    audit
        .record(&AuditRecord::new("after", AuditDecision::Allowed))
        .unwrap();
    let report = verify(&log).unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("\"tool\":\"tool_other_").count(), 200);
    assert!(text.matches("\"tool\":\"tool_loop_").count() as u64 >= 1_000);
    assert_eq!(report.lines as usize, text.lines().count());
}

#[test]
fn an_audit_failure_with_stderr_closed_is_a_denial_not_a_panic() {
    // A daemon whose stderr is a pipe nobody reads: writing there fails (EPIPE). The sink reports a failed write on
    // stderr; `eprintln!` would panic there, in the flusher thread (stopping it) or in the gated call's own thread.
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    // The log's path is a directory: every write fails.
    let out = Command::new(env!("CARGO_BIN_EXE_agentguard-test-helper"))
        .arg("audit-fails")
        .arg(dir.path())
        .stderr(writer)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?}: {stdout}", out.status);
    assert_eq!(stdout, "safe ran\ngated denied audit_unavailable\n");
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
fn verify_says_a_process_stuck_holding_the_lock_is_stuck_instead_of_waiting_for_it() {
    use std::io::BufRead;
    let (_dir, log) = audit_path();
    write_records(&JsonlAudit::new(&log), 3, "a");
    let lock = log.with_file_name("audit.log.lock");
    // A real process holds the log's lock and does not let go: util-linux `flock`, running a shell that says so and
    // waits for a line on its stdin (closing that ends both, and the lock with them).
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(&lock)
        .args(["-c", "echo locked; read _"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux flock");
    let mut said = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert_eq!(said.trim(), "locked");
    let started = std::time::Instant::now();
    let result = Verify::new(&log)
        .lock_timeout(std::time::Duration::from_millis(300))
        .run();
    let waited = started.elapsed();
    drop(holder.stdin.take());
    holder.wait().unwrap(); // `read` at end of input ends the shell (with status 1), and `flock` with it
    let err = result.unwrap_err();
    assert_eq!(err.kind, VerifyErrorKind::Unreadable);
    assert_eq!(err.file, lock);
    assert!(err.problem.contains("likely stuck"), "{err}");
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "gave up after {waited:?}"
    );
    // The holder gone, the same check passes.
    assert_eq!(
        Verify::new(&log)
            .lock_timeout(std::time::Duration::from_millis(300))
            .run()
            .unwrap()
            .lines,
        3
    );
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

// ---- Attacks from the security review: a full disk, a torn tail, a rewrite without the key, truncation. ----

/// A small tmpfs mounted on a temporary directory for one test, unmounted when dropped. Mounting needs root: CI runs
/// as root; elsewhere the test is skipped with the reason printed, and under `CI` a failed mount fails it.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        let reason = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs { dir }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        if std::env::var_os("CI").is_some() {
            panic!("cannot mount a {size} tmpfs under CI (which runs as root): {reason}");
        }
        eprintln!("skipped: cannot mount a {size} tmpfs ({reason}); run as root, as CI does");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Writes to `path` until the file system is full; returns how much it wrote.
fn fill_disk(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![b'.'; 1024];
    let mut written = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
    }
    written
}

fn gated(path_len: usize) -> ToolCall {
    ToolCall::new("delete_file", json!({ "path": "p".repeat(path_len) }))
}

#[test]
fn a_full_disk_denies_gated_calls_leaves_no_partial_line_and_calls_work_once_space_returns() {
    let Some(fs) = Tmpfs::mount("64k") else { return };
    let log = fs.path().join("audit.log");
    let guard = AgentGuard::callback(|_| true).audit_file(&log).build();
    for _ in 0..3 {
        guard.execute(gated(100), |_, _| ()).unwrap();
    }
    let filler = fs.path().join("filler");
    assert!(fill_disk(&filler) > 0);
    let before = std::fs::read(&log).unwrap();
    // tmpfs allocates whole pages: the log's last page still has room, so a longer line than that room is written
    // in part before the write fails. That part must not stay.
    assert_ne!(
        before.len() % 4096,
        0,
        "the log's last page has room for part of a line"
    );
    let ran = std::sync::atomic::AtomicUsize::new(0);
    for _ in 0..2 {
        let denied = guard
            .execute(gated(6_000), |_, _| {
                ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            })
            .unwrap_err();
        assert_eq!(denied.reason(), agentguard::DenyReason::AuditUnavailable);
        assert!(denied.detail().unwrap().contains("No space left"), "{denied}");
        let after = std::fs::read(&log).unwrap();
        assert_eq!(after.len(), before.len(), "no partial line is left behind");
        assert!(after == before);
    }
    assert_eq!(
        ran.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a call whose audit failed never runs"
    );
    assert_eq!(
        verify(&log).unwrap().lines,
        3,
        "the chain is intact while the disk is full"
    );

    std::fs::remove_file(&filler).unwrap();
    guard
        .execute(gated(6_000), |_, _| {
            ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        })
        .unwrap();
    assert_eq!(
        ran.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "calls work once space returns"
    );
    let report = verify(&log).unwrap();
    assert_eq!((report.lines, report.repairs), (4, 0), "nothing needed repairing");
}

#[test]
fn a_torn_tail_found_on_a_full_disk_is_put_back_not_lost_unrecorded_and_repaired_once_space_returns() {
    let Some(fs) = Tmpfs::mount("64k") else { return };
    let log = fs.path().join("audit.log");
    let audit = JsonlAudit::new(&log).no_checkpoints();
    // End the last good line near the end of a 4 KiB page, so that once the disk is full the room the torn bytes
    // leave is too small for the repair line.
    while !(3_600..3_900).contains(&(std::fs::metadata(&log).map_or(0, |m| m.len()) % 4096)) {
        write_records(&audit, 1, "a");
    }
    let good = std::fs::read(&log).unwrap();
    let torn = format!(
        "{{\"seq\":99,\"ts\":\"2026-01-01T00:00:00.000Z\",\"tool\":\"{}",
        "t".repeat(140)
    );
    let mut bytes = good.clone();
    bytes.extend_from_slice(torn.as_bytes());
    assert!(
        bytes.len() % 4096 > good.len() % 4096,
        "the torn bytes stay in the same page"
    );
    std::fs::write(&log, &bytes).unwrap();
    let filler = fs.path().join("filler");
    fill_disk(&filler);

    let guard = AgentGuard::callback(|_| true).audit_file(&log).build();
    let denied = guard.execute(gated(10), |_, _| ()).unwrap_err();
    assert_eq!(denied.reason(), agentguard::DenyReason::AuditUnavailable);
    assert!(denied.detail().unwrap().contains("it was put back"), "{denied}");
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "the torn bytes are back as they were"
    );
    assert_eq!(verify(&log).unwrap_err().kind, VerifyErrorKind::TornTail);

    std::fs::remove_file(&filler).unwrap();
    guard.execute(gated(10), |_, _| ()).unwrap();
    let report = verify(&log).unwrap();
    assert_eq!(report.repairs, 1);
    let lines = common::audit_lines(&log);
    let repair = &lines[lines.len() - 2];
    assert_eq!(repair["event"], "repair");
    assert_eq!(repair["removed_bytes"], torn.len());
    assert_eq!(repair["removed_sha256"], sha256_hex(torn.as_bytes()));
}

#[test]
fn a_torn_tail_is_reported_as_a_torn_write_not_tampering_and_the_next_write_removes_it_on_the_record() {
    let (_dir, log) = audit_path();
    write_records(&JsonlAudit::new(&log), 3, "a");
    // A crash (or a full disk with no chance to clean up) in the middle of writing the fourth line.
    let torn = br#"{"seq":4,"ts":"2026-01-01T00:00:00.000Z","event":"call","tool":"tool_a_3","deci"#;
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(torn);
    std::fs::write(&log, &bytes).unwrap();

    let err = verify(&log).unwrap_err();
    assert_eq!(err.kind, VerifyErrorKind::TornTail, "{err}");
    assert_eq!(err.line, 4, "{err}");
    assert!(err.problem.starts_with("torn tail: the last "), "{err}");

    // The next writer cuts the torn bytes off and says so in the chain; gated calls work again.
    let guard = AgentGuard::callback(|_| true).audit_file(&log).build();
    guard.execute(gated(10), |_, _| ()).unwrap();
    let report = verify(&log).unwrap();
    assert_eq!((report.lines, report.repairs), (5, 1));
    let lines = common::audit_lines(&log);
    let repair = &lines[3];
    assert_eq!(repair["event"], "repair");
    assert_eq!(repair["seq"], 4);
    assert_eq!(repair["removed_bytes"], torn.len());
    assert_eq!(repair["removed_sha256"], sha256_hex(torn));
    assert!(repair["removed_head"].as_str().unwrap().starts_with("{\"seq\":4,"));
    assert_eq!(lines[4]["tool"], "delete_file");
}

/// SHA-256 in hex, computed by the `sha256sum` tool so that the test does not reuse the code it checks.
fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// A 64-hex-digit key in a file of its own.
fn key_file(dir: &Path, name: &str, fill: char) -> (std::path::PathBuf, AuditKey) {
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", fill.to_string().repeat(64))).unwrap();
    let key = AuditKey::from_file(&path).unwrap();
    (path, key)
}

/// What an attacker without the key does: write a whole new chain with the lines they want, hashes recomputed.
fn forge_log(log: &Path, tools: &[&str], sink: impl Fn(&Path) -> JsonlAudit) {
    let forged_dir = tempfile::tempdir().unwrap();
    let forged = forged_dir.path().join("forged.log");
    let audit = sink(&forged).no_checkpoints();
    for tool in tools {
        audit.record(&AuditRecord::new(tool, AuditDecision::Allowed)).unwrap();
    }
    std::fs::copy(&forged, log).unwrap();
}

#[test]
fn an_unkeyed_log_rewritten_whole_verifies_which_is_why_there_is_a_key() {
    let (_dir, log) = audit_path();
    let audit = JsonlAudit::new(&log).no_checkpoints();
    for tool in ["read", "delete_everything", "read"] {
        audit.record(&AuditRecord::new(tool, AuditDecision::Allowed)).unwrap();
    }
    forge_log(&log, &["read", "read", "read"], |p| JsonlAudit::new(p));
    assert_eq!(
        verify(&log).unwrap().lines,
        3,
        "without a key, a full rewrite cannot be told"
    );
}

#[test]
fn a_keyed_log_rewritten_without_the_key_fails_verify() {
    let (dir, log) = audit_path();
    let (_, key) = key_file(dir.path(), "audit.key", 'k');
    let audit = JsonlAudit::new(&log).key(key.clone());
    for tool in ["read", "delete_everything", "read"] {
        audit.record(&AuditRecord::new(tool, AuditDecision::Allowed)).unwrap();
    }
    let report = Verify::new(&log).key(key.clone()).run().unwrap();
    assert!(report.keyed);
    let keyed_lines = lines_of(&log);

    // Rewritten with recomputed SHA-256 hashes, as works on an unkeyed log.
    forge_log(&log, &["read", "read", "read"], |p| JsonlAudit::new(p));
    let err = Verify::new(&log).key(key.clone()).run().unwrap_err();
    assert_eq!(err.kind, VerifyErrorKind::Tampered, "{err}");
    assert!(err.problem.contains("no line carries a MAC"), "{err}");

    // Rewritten with the attacker's own key, under the real key's id.
    let (_, theirs) = key_file(dir.path(), "their.key", 'z');
    forge_log(&log, &["read", "read", "read"], |p| {
        JsonlAudit::new(p).key(theirs.clone())
    });
    let text = std::fs::read_to_string(&log).unwrap().replace(theirs.id(), key.id());
    std::fs::write(&log, text).unwrap();
    let err = Verify::new(&log).key(key.clone()).run().unwrap_err();
    assert_eq!((err.kind, err.line), (VerifyErrorKind::Tampered, 1), "{err}");
    assert!(err.problem.contains("does not match its MAC"), "{err}");

    // One line edited in place, the chain after it re-linked by hand: the MAC of the edited line fails.
    let mut lines = keyed_lines.clone();
    lines[1] = lines[1].replace("delete_everything", "read_everything__");
    rewrite(&log, &lines);
    let err = Verify::new(&log).key(key.clone()).run().unwrap_err();
    assert_eq!((err.kind, err.line), (VerifyErrorKind::Tampered, 2), "{err}");

    // Unkeyed lines appended after keyed ones (the attacker continues the chain with SHA-256).
    rewrite(&log, &keyed_lines);
    let last: serde_json::Value = serde_json::from_str(&keyed_lines[2]).unwrap();
    let mac = last["mac"].as_str().unwrap();
    let forged_dir = tempfile::tempdir().unwrap();
    let forged = forged_dir.path().join("f.log");
    // Start an unkeyed chain at seq 4 whose prev is the last MAC: a rotated file with that line lets JsonlAudit
    // continue from it, as an attacker could.
    std::fs::write(
        forged_dir.path().join("f.log.000001"),
        format!("{{\"seq\":3,\"prev\":\"x\",\"hash\":\"{mac}\"}}\n"),
    )
    .unwrap();
    JsonlAudit::new(&forged)
        .no_checkpoints()
        .record(&AuditRecord::new("read", AuditDecision::Allowed))
        .unwrap();
    let mut tampered = keyed_lines.clone();
    tampered.extend(lines_of(&forged));
    rewrite(&log, &tampered);
    let err = Verify::new(&log).key(key).run().unwrap_err();
    assert_eq!((err.kind, err.line), (VerifyErrorKind::Tampered, 4), "{err}");
    assert!(err.problem.contains("unkeyed after keyed"), "{err}");
}

#[test]
fn a_keyed_log_verified_without_its_key_says_a_key_is_needed() {
    let (dir, log) = audit_path();
    let (_, key) = key_file(dir.path(), "audit.key", 'k');
    write_records(&JsonlAudit::new(&log).key(key.clone()), 2, "a");
    let err = verify(&log).unwrap_err();
    assert_eq!(err.kind, VerifyErrorKind::KeyNeeded, "{err}");
    assert!(err.problem.contains(key.id()), "{err}");
}

#[test]
fn a_writer_without_the_key_refuses_to_continue_a_keyed_log() {
    let (dir, log) = audit_path();
    let (_, key) = key_file(dir.path(), "audit.key", 'k');
    write_records(&JsonlAudit::new(&log).key(key.clone()), 2, "a");
    let guard = AgentGuard::callback(|_| true).audit_file(&log).build();
    let denied = guard.execute(gated(1), |_, _| ()).unwrap_err();
    assert_eq!(denied.reason(), agentguard::DenyReason::AuditUnavailable);
    assert!(denied.detail().unwrap().contains("is keyed"), "{denied}");
    assert_eq!(Verify::new(&log).key(key).run().unwrap().lines, 2);
}

#[test]
fn an_unkeyed_log_that_gains_a_key_stays_verifiable_and_old_logs_verify_as_before() {
    let (dir, log) = audit_path();
    write_records(&JsonlAudit::new(&log), 3, "old");
    assert!(!verify(&log).unwrap().keyed);
    let (_, key) = key_file(dir.path(), "audit.key", 'k');
    write_records(&JsonlAudit::new(&log).key(key.clone()), 3, "new");
    let report = Verify::new(&log).key(key).run().unwrap();
    assert_eq!((report.lines, report.keyed), (6, true));
    let lines = common::audit_lines(&log);
    assert!(lines[2].get("hash").is_some() && lines[3].get("mac").is_some());
}

#[test]
fn removing_the_newest_lines_is_detected_by_the_checkpoint_and_the_writer_refuses_to_go_on() {
    let (_dir, log) = audit_path();
    write_records(&JsonlAudit::new(&log).checkpoint_every(10), 25, "a");
    assert_eq!(verify(&log).unwrap().checkpoint, Some(20));
    let lines = lines_of(&log);
    rewrite(&log, &lines[..17]);

    let err = verify(&log).unwrap_err();
    assert_eq!(err.kind, VerifyErrorKind::Truncated, "{err}");
    assert_eq!(err.file, log.with_file_name("audit.log.checkpoint"));
    assert!(
        err.problem.contains("ends at seq 17") && err.problem.contains("seq 20"),
        "{err}"
    );
    // Without the checkpoint, the shorter chain holds: that is the attack.
    assert!(Verify::new(&log).no_checkpoint().run().is_ok());

    let guard = AgentGuard::callback(|_| true).audit_file(&log).build();
    let denied = guard.execute(gated(1), |_, _| ()).unwrap_err();
    assert_eq!(denied.reason(), agentguard::DenyReason::AuditUnavailable);
    assert!(denied.detail().unwrap().contains("lines were removed"), "{denied}");
    assert_eq!(lines_of(&log).len(), 17, "the writer did not paper over the gap");
}

#[test]
fn cutting_back_and_rewriting_past_a_checkpoint_is_detected() {
    let (_dir, log) = audit_path();
    write_records(&JsonlAudit::new(&log).checkpoint_every(10), 25, "a");
    let lines = lines_of(&log);
    rewrite(&log, &lines[..15]);
    // The attacker writes new lines 16..=25 without checkpoints: the chain is whole and as long as before.
    write_records(&JsonlAudit::new(&log).no_checkpoints(), 10, "forged");
    let err = verify(&log).unwrap_err();
    assert_eq!(err.kind, VerifyErrorKind::Truncated, "{err}");
    assert_eq!(err.file, log.with_file_name("audit.log.checkpoint"));
    assert!(err.problem.contains("checkpoint of seq 20 names another line"), "{err}");
}

#[test]
fn deleting_the_live_log_is_detected_by_the_checkpoint_and_no_new_chain_is_started() {
    let (_dir, log) = audit_path();
    write_records(&JsonlAudit::new(&log).checkpoint_every(10), 12, "a");
    std::fs::remove_file(&log).unwrap();
    let err = verify(&log).unwrap_err();
    assert_eq!(err.kind, VerifyErrorKind::Truncated, "{err}");
    assert!(err.problem.contains("no lines"), "{err}");
    let guard = AgentGuard::callback(|_| true).audit_file(&log).build();
    assert_eq!(
        guard.execute(gated(1), |_, _| ()).unwrap_err().reason(),
        agentguard::DenyReason::AuditUnavailable
    );
}

#[test]
fn rotation_writes_a_checkpoint_of_the_file_it_rotates_out() {
    let (_dir, log) = audit_path();
    let audit = JsonlAudit::new(&log).max_bytes(2_000).checkpoint_every(1_000);
    write_records(&audit, 30, "r");
    drop(audit); // waits for the checkpoint thread
    let report = verify(&log).unwrap();
    assert!(report.files.len() > 2);
    // The newest checkpoint names the last line of the newest rotated file.
    let newest_rotated = &report.files[report.files.len() - 2];
    let lines = lines_of(newest_rotated);
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(report.checkpoint, last["seq"].as_u64());
    // So cutting that file short is caught.
    rewrite(newest_rotated, &lines[..lines.len() - 1]);
    assert!(verify(&log).is_err());
}

#[test]
fn checkpoints_kept_in_another_file_are_checked_when_verify_is_told_where() {
    let (dir, log) = audit_path();
    let elsewhere = dir.path().join("elsewhere").join("cp");
    std::fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
    write_records(
        &JsonlAudit::new(&log).checkpoint_file(&elsewhere).checkpoint_every(5),
        12,
        "a",
    );
    assert!(!log.with_file_name("audit.log.checkpoint").exists());
    let lines = lines_of(&log);
    rewrite(&log, &lines[..8]);
    assert!(verify(&log).is_ok(), "the default place has no checkpoint");
    let err = Verify::new(&log).checkpoint_file(&elsewhere).run().unwrap_err();
    assert_eq!(err.kind, VerifyErrorKind::Truncated, "{err}");
}

#[test]
fn a_keyed_audit_table_verifies_with_its_key_and_rows_rewritten_without_it_are_found() {
    let server = match std::env::var("AGENTGUARD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set AGENTGUARD_TEST_POSTGRES_URL (.ci/run does)"
            );
            eprintln!("skipped: AGENTGUARD_TEST_POSTGRES_URL is not set; .ci/run sets it");
            return;
        }
    };
    let schema = format!("audit_{}", agentguard::RequestId::new().as_str().replace('-', ""));
    let pg = std::sync::Arc::new(agentguard::store::PostgresStore::connect(&server, Some(&schema)).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = key_file(dir.path(), "audit.key", 'p');
    let keyed = pg.audit().key(key.clone());
    for tool in ["read_row", "delete_row"] {
        keyed.record(&AuditRecord::new(tool, AuditDecision::Allowed)).unwrap();
    }
    let report = pg.verify_audit_with_keys(std::slice::from_ref(&key)).unwrap();
    assert_eq!((report.lines, report.keyed), (2, true));
    assert_eq!(pg.verify_audit().unwrap_err().kind, VerifyErrorKind::KeyNeeded);

    // A writer without the key refuses to continue the keyed table.
    let err = pg
        .audit()
        .record(&AuditRecord::new("x", AuditDecision::Allowed))
        .unwrap_err();
    assert!(err.to_string().contains("is keyed"), "{err}");

    // Someone with write access to the table but not the key replaces its rows with a chain of their own.
    let out = Command::new("psql")
        .args([&server, "-Atc", &format!("DELETE FROM \"{schema}\".agentguard_audit")])
        .output()
        .unwrap();
    assert!(out.status.success());
    pg.audit()
        .record(&AuditRecord::new("read_row", AuditDecision::Allowed))
        .unwrap();
    assert!(pg.verify_audit().is_ok(), "without the key, the rewrite holds");
    let err = pg.verify_audit_with_keys(&[key]).unwrap_err();
    assert_eq!(err.kind, VerifyErrorKind::Tampered, "{err}");
    assert!(err.problem.contains("no line carries a MAC"), "{err}");
}

/// What `agentguard-test-helper audit-calls` printed: `(i, gated)` of each call that returned.
fn returned_call(line: &str) -> (u64, bool) {
    let (i, kind) = line.trim().split_once(' ').expect("<i> safe|gated");
    (i.parse().expect("i"), kind == "gated")
}

/// The `params.i` of each call line in these files, in file order.
fn logged_calls(files: &[std::path::PathBuf]) -> Vec<u64> {
    files
        .iter()
        .flat_map(|f| lines_of(f))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok()?["params"]["i"].as_u64())
        .collect()
}

#[test]
fn a_process_killed_mid_stream_loses_only_queued_safe_lines_and_its_log_verifies() {
    use std::io::{BufRead, BufReader};
    let (_dir, log) = audit_path();
    let mut child = Command::new(common::HELPER)
        .arg("audit-calls")
        .arg(&log)
        .arg("0")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut returned = Vec::new();
    let mut line = String::new();
    // Many batches in, kill -9 mid-stream: the writer thread is killed with whatever is queued.
    while returned.len() < 20_000 {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the helper ended early");
        returned.push(returned_call(&line));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    for rest in out.lines() {
        returned.push(returned_call(&rest.unwrap()));
    }
    // The kill can cut the batch being written short (a write of many pages returns early on SIGKILL): the log then
    // ends in a torn tail, with every line before it verified. Either way the next writer carries the chain on,
    // removing a torn tail first and saying so in a `repair` line.
    let torn = match verify(&log) {
        Ok(_) => false,
        Err(e) if e.kind == VerifyErrorKind::TornTail => true,
        Err(e) => panic!("the log of a killed process verifies, or ends in a torn tail: {e}"),
    };
    let before = verify(&log).map(|r| r.last_seq);
    JsonlAudit::new(&log)
        .record(&AuditRecord::new("after_the_kill", AuditDecision::Allowed))
        .unwrap();
    let report = verify(&log).expect("the log verifies after the next write");
    assert_eq!(
        report.repairs,
        u64::from(torn),
        "a torn tail is repaired, on the record"
    );
    if let Ok(last) = before {
        assert_eq!(report.last_seq, Some(last.unwrap() + 1));
    }
    let logged = logged_calls(&report.files);
    assert!(
        logged.iter().enumerate().all(|(k, &i)| k as u64 == i),
        "the lines are those of the first calls, in order, without a hole"
    );
    let kept = logged.len() as u64;
    let lost: Vec<&(u64, bool)> = returned.iter().filter(|(i, _)| *i >= kept).collect();
    assert!(
        lost.iter().all(|(_, gated)| !gated),
        "a gated call that ran has its line: lost {lost:?}"
    );
    // The documented bound: what was queued, at most the queue's 4 MiB of lines.
    let bytes: u64 = report.files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    let per_line = bytes / report.lines.max(1);
    assert!(
        lost.len() as u64 * per_line <= 4 * 1024 * 1024,
        "lost {} lines",
        lost.len()
    );
    eprintln!(
        "killed after {} calls returned: {} lines in the log, {} safe calls' lines lost{}",
        returned.len(),
        kept,
        lost.len(),
        if torn { ", torn tail repaired" } else { "" }
    );
}

#[test]
fn a_process_that_exits_without_dropping_its_guard_leaves_every_line() {
    let (_dir, log) = audit_path();
    let out = Command::new(common::HELPER)
        .arg("audit-calls")
        .arg(&log)
        .arg("1000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = verify(&log).unwrap();
    assert_eq!(
        report.lines, 1000,
        "std::process::exit with the guard alive wrote every queued line"
    );
    assert_eq!(logged_calls(&report.files), (0..1000).collect::<Vec<u64>>());
}

#[test]
fn every_fsync_setting_writes_one_chain_and_per_line_returns_only_once_written() {
    use agentguard::audit::Fsync;
    for fsync in [Fsync::Never, Fsync::PerBatch, Fsync::PerLine] {
        let (_dir, log) = audit_path();
        let audit = std::sync::Arc::new(JsonlAudit::new(&log).max_bytes(20_000).fsync(fsync));
        std::thread::scope(|s| {
            for t in 0..4 {
                let audit = audit.clone();
                s.spawn(move || write_records(&audit, 100, &format!("t{t}")));
            }
        });
        let safe = AuditRecord::new("read_customer", AuditDecision::Allowed);
        audit.record_deferred(&safe).unwrap();
        if fsync == Fsync::PerLine {
            assert_eq!(
                verify(&log).unwrap().lines,
                401,
                "{fsync:?}: a deferred line is written before it returns"
            );
        }
        audit.flush().unwrap();
        let report = verify(&log).unwrap();
        assert_eq!(report.lines, 401, "{fsync:?}");
        assert!(report.files.len() > 1, "{fsync:?}: rotated inside batches");
    }
}
