//! audit: audit lines per second from threads and from sinks.

use super::*;

// ---------------------------------------------------------------------------------------------------------------
// audit: append throughput
// ---------------------------------------------------------------------------------------------------------------

pub(super) fn append(audit: &JsonlAudit, tag: usize, n: usize) {
    append_as(audit, tag, n, false)
}

/// `n` records; `deferred`: as the guard writes a safe call's line (`record_deferred`: queued for the writer's next
/// batch), else as it writes a gated call's (`record`: returns once its batch is written).
pub(super) fn append_as(audit: &JsonlAudit, tag: usize, n: usize, deferred: bool) {
    let params = json!({"id": tag, "email": "jane@example.com"});
    for _ in 0..n {
        let mut rec = AuditRecord::new("update_email", AuditDecision::Allowed);
        rec.params = Some(&params);
        rec.agent_id = Some("scale");
        if deferred {
            audit.record_deferred(&rec).expect("audit append");
        } else {
            audit.record(&rec).expect("audit append");
        }
    }
}

pub(super) fn audit(opts: &Options, figures: &mut Figures) {
    let n = opts.audit_records;
    println!("\n== audit: {n} records appended to a hash-chained JSONL file");
    let dir = tempfile::tempdir().expect("temp dir");
    // Each run ends when every line is in the file (the sinks are dropped, which writes what is queued), so a rate
    // is lines written, not lines queued.
    let runs: [(&str, &str, usize, bool, bool); 5] = [
        ("one_writer", "1 writer, waits for each line", 1, true, false),
        (
            "eight_threads_one_sink",
            "8 threads, one sink, each waits",
            8,
            true,
            false,
        ),
        (
            "one_writer_deferred",
            "1 writer, safe-call lines (queued)",
            1,
            true,
            true,
        ),
        (
            "eight_threads_deferred",
            "8 threads, one sink, safe-call lines",
            8,
            true,
            true,
        ),
        (
            "eight_sinks_one_file",
            "8 sinks on one file (as 8 processes)",
            8,
            false,
            false,
        ),
    ];
    if let Some(unknown) = opts.audit_runs.iter().find(|k| !runs.iter().any(|r| r.0 == k.as_str())) {
        let keys: Vec<&str> = runs.iter().map(|r| r.0).collect();
        eprintln!(
            "scale: --audit-run {unknown:?} is not a run of the audit section; its runs: {}",
            keys.join(", ")
        );
        std::process::exit(2);
    }
    for (key, label, writers, shared, deferred) in runs {
        if !opts.audit_runs.is_empty() && !opts.audit_runs.iter().any(|k| k == key) {
            continue;
        }
        let path = dir.path().join(format!("{key}.log"));
        let per = n / writers;
        let t0 = Instant::now();
        if shared {
            let audit = Arc::new(JsonlAudit::new(&path));
            std::thread::scope(|s| {
                for w in 0..writers {
                    let audit = audit.clone();
                    s.spawn(move || append_as(&audit, w, per, deferred));
                }
            });
            drop(audit);
        } else {
            std::thread::scope(|s| {
                for w in 0..writers {
                    let path = path.clone();
                    s.spawn(move || append(&JsonlAudit::new(path), w, per));
                }
            });
        }
        let elapsed = t0.elapsed();
        let written = per * writers;
        let rate = written as f64 / elapsed.as_secs_f64();
        let verified = agentguard::audit::verify(&path).map(|r| r.lines);
        let chain = match &verified {
            Ok(lines) if *lines == written as u64 => "chain intact".to_owned(),
            Ok(lines) => format!("CHAIN HAS {lines} LINES, EXPECTED {written}"),
            Err(e) => format!("CHAIN BROKEN: {e}"),
        };
        println!(
            "  {label:<38} {rate:>10.0} records/s  ({written} in {:.2} s, {chain})",
            elapsed.as_secs_f64()
        );
        record(figures, &format!("audit.{key}.records_per_s"), rate);
        record(
            figures,
            &format!("audit.{key}.chain_ok"),
            verified.is_ok_and(|l| l == written as u64),
        );
    }
}
