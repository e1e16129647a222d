//! The scale program (src/bin/scale/) at small sizes: every section it is asked for runs and reports.

use std::process::{Command, Stdio};

#[test]
fn scale_parks_cycles_and_audits_at_small_sizes() {
    let out = Command::new(env!("CARGO_BIN_EXE_scale"))
        .args([
            "park",
            "--park-n",
            "1000",
            "cycles",
            "--cycles",
            "10000",
            "audit",
            "--audit-records",
            "1000",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("failed closed (timeout)       1000 of 1000; executors run: 0"),
        "{text}"
    );
    assert!(
        text.contains("10000 cycles in") && text.contains(", 0 failed;"),
        "{text}"
    );
    // Waiting writers (1 and 8 threads), queued safe-call lines (1 and 8 threads), and 8 sinks on one file.
    assert_eq!(text.matches("chain intact").count(), 5, "{text}");
}
