//! The scale program (src/bin/scale/) at small sizes: every section it is asked for runs and reports.

use std::process::{Command, Stdio};

#[test]
fn scale_parks_cycles_audits_pages_and_watches_at_small_sizes() {
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
            "pages",
            "--pages-n",
            "1000",
            "watch",
            "--watch-n",
            "1000",
            "--watch-secs",
            "1",
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
    // A page of a long list, in process and over HTTP; an open page while the list changes.
    assert!(text.contains("first page (100), over HTTP"), "{text}");
    assert!(text.contains("the page's share of a core"), "{text}");
    let sent: usize = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("events sent while changing"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no event count: {text}"));
    assert!(
        sent >= 50,
        "the open page was sent the changes (about 100 in 1 s): {text}"
    );
}
