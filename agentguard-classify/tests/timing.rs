//! A quick timing loop for `classify` over the catalog's names (the criterion bench `benches/classify.rs` is the
//! reference figure). Ignored by default; run it in release:
//!
//! ```text
//! cargo test -p agentguard-classify --release --test timing -- --ignored --nocapture
//! ```

use std::hint::black_box;
use std::time::Instant;

use agentguard_classify::classify;

fn names() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/tool_names.tsv");
    let text = std::fs::read_to_string(path).expect("tests/data/tool_names.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split('\t').next())
        .map(str::to_owned)
        .collect()
}

/// Median over rounds of the mean time per name, cycling through `names` in file order.
fn ns_per_name(names: &[String]) -> f64 {
    let rounds = 31;
    let per_round = 50_000;
    let mut means = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..per_round / names.len().max(1) + 1 {
            for name in names {
                black_box(classify(black_box(name)));
            }
        }
        let calls = (per_round / names.len().max(1) + 1) * names.len();
        means.push(start.elapsed().as_nanos() as f64 / calls as f64);
    }
    means.sort_by(f64::total_cmp);
    means[rounds / 2]
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn classify_time_per_name() {
    let names = names();
    assert!(names.len() > 300);
    // Warm up.
    ns_per_name(&names);
    println!("catalog names, file order: {:.1} ns/name", ns_per_name(&names));
}
