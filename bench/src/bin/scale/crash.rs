//! crash: what `kill -9` of an agent process loses from its audit log.
//!
//! A child process (this binary, re-executed as `scale __crash_child LOG`) makes calls through a guard with the
//! default file sink as fast as it can (9 safe, 1 gated and auto-approved, in turn) and prints `<i> <wall ns>` after
//! each call returns. After 300 ms the parent kills it with SIGKILL, reads what it printed, verifies the log, and
//! counts the calls that returned but have no line: how many, and how long before the kill the oldest of them
//! returned. Repeated `RUNS` times. A log that ends in a torn tail (the kill cut a batch's `write` short) is repaired
//! by writing one more line, as the next writer would, and counted after that.

use super::*;
use std::io::Read;

const RUNS: usize = 10;

/// The child: calls until killed.
pub(super) fn crash_child(log: &str) {
    let guard = AgentGuard::callback(|_| true).audit_file(log).build();
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let tool = if i % 10 == 9 { "update_email" } else { "read_customer" };
        guard
            .execute(ToolCall::new(tool, json!({ "i": i })), |_, _| ())
            .expect("auto-approved");
        let _ = writeln!(out, "{i} {}", wall_ns());
        let _ = out.flush();
    }
}

pub(super) fn crash(_opts: &Options, figures: &mut Figures) {
    println!("\n== crash: an agent process killed with SIGKILL mid-stream, {RUNS} times");
    let exe = std::env::current_exe().expect("own path");
    let (mut worst_lines, mut worst_age, mut all_ok, mut gated_lost, mut returned_total) = (0usize, 0u64, true, 0, 0);
    let mut torn_runs = 0usize;
    for run in 0..RUNS {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("audit.log");
        let mut child = Command::new(&exe)
            .arg("__crash_child")
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("child");
        let mut stdout = child.stdout.take().expect("piped");
        // Read as it prints: a full pipe would stop the child between calls, with nothing in flight.
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        std::thread::sleep(Duration::from_millis(300));
        let killed_at = wall_ns();
        child.kill().expect("kill");
        child.wait().expect("reaped");
        let text = reader.join().expect("reader");
        let returned: Vec<(u64, u64)> = text
            .lines()
            .filter_map(|l| {
                let (i, t) = l.split_once(' ')?;
                Some((i.parse().ok()?, t.parse().ok()?))
            })
            .collect();
        let report = agentguard::audit::verify(&log);
        // A kill can cut the batch being written short (a write of many pages returns early on SIGKILL): the log
        // then ends in a torn tail. The next writer removes it and records a `repair` line; what is kept is what
        // verifies after that write, less its two lines.
        let torn = matches!(&report, Err(e) if e.kind == agentguard::audit::VerifyErrorKind::TornTail);
        let (report, kept) = if torn {
            torn_runs += 1;
            let next = agentguard::audit::JsonlAudit::new(&log);
            let wrote = agentguard::audit::AuditSink::record(
                &next,
                &agentguard::audit::AuditRecord::new("after_the_kill", agentguard::audit::AuditDecision::Allowed),
            );
            drop(next);
            let repaired = wrote
                .map_err(|e| e.to_string())
                .and_then(|()| agentguard::audit::verify(&log).map_err(|e| e.to_string()));
            let kept = repaired.as_ref().map_or(0, |r| r.lines.saturating_sub(r.repairs + 1));
            (repaired.map_err(|e| format!("after the next write: {e}")), kept)
        } else {
            let kept = report.as_ref().map_or(0, |r| r.lines);
            (report.map_err(|e| e.to_string()), kept)
        };
        all_ok &= report.is_ok();
        let lost: Vec<&(u64, u64)> = returned.iter().filter(|(i, _)| *i >= kept).collect();
        gated_lost += lost.iter().filter(|(i, _)| i % 10 == 9).count();
        let age = lost
            .iter()
            .map(|(_, t)| killed_at.saturating_sub(*t))
            .max()
            .unwrap_or(0);
        worst_lines = worst_lines.max(lost.len());
        worst_age = worst_age.max(age);
        returned_total += returned.len();
        println!(
            "  run {run}: {} calls returned, {kept} lines in the log ({}), {} returned calls without a line, the \
             oldest returned {:.3} ms before the kill",
            returned.len(),
            match (&report, torn) {
                (Ok(_), false) => "verifies".to_owned(),
                (Ok(_), true) => "torn tail, which the next write repaired; then verifies".to_owned(),
                (Err(e), _) => format!("DOES NOT VERIFY: {e}"),
            },
            lost.len(),
            age as f64 / 1e6
        );
    }
    println!(
        "  worst of {RUNS}: {worst_lines} safe calls' lines lost, returned at most {:.3} ms before the kill; gated \
         lines lost: {gated_lost}; every log verifies: {all_ok} ({torn_runs} ended in a torn tail that the next \
         write repaired)",
        worst_age as f64 / 1e6
    );
    record(figures, "crash.runs", RUNS);
    record(figures, "crash.calls_returned", returned_total);
    record(figures, "crash.lost_lines_max", worst_lines);
    record(figures, "crash.lost_age_max_ms", worst_age as f64 / 1e6);
    record(figures, "crash.gated_lost", gated_lost);
    record(figures, "crash.all_verify", all_ok);
    record(figures, "crash.torn_runs", torn_runs);
}
