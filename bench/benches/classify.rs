//! `classify` per name, over the 368 real tool names of `tests/data/tool_names.tsv` (MCP servers and agent toolkits:
//! safe reads, mutations, sends, executions, mixed case and separator styles), one name per iteration in file order.
//!
//! ```text
//! cargo bench -p agentguard-bench --bench classify
//! ```

use std::hint::black_box;

use agentguard::classify;
use criterion::{criterion_group, criterion_main, Criterion};

/// The tool names of the classifier's test corpus, in file order.
fn names() -> Vec<&'static str> {
    include_str!("../../tests/data/tool_names.tsv")
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split('\t').next())
        .collect()
}

fn bench_classify(c: &mut Criterion) {
    let names = names();
    assert!(names.len() > 300, "the name corpus is missing");
    let mut group = c.benchmark_group("classify");
    // One name per iteration, cycling through the corpus: the median is the time per name.
    group.bench_function("per_name_mixed_368", |b| {
        let mut i = 0;
        b.iter(|| {
            i = if i + 1 == names.len() { 0 } else { i + 1 };
            classify(black_box(names[i]))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_classify);
criterion_main!(benches);
