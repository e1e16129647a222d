//! `#[derive(Tool)]` parse of an LLM's JSON tool call: from the arguments text the model sent, and from an
//! already-parsed `serde_json::Value`.
//!
//! ```text
//! cargo bench -p agentguard-bench --bench tool_parse
//! ```

use std::hint::black_box;

use agentguard::Tool;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::Value;

/// A support desk's tools, as in `examples/tool_enum.rs`.
#[derive(Tool, Debug)]
#[allow(dead_code)] // the fields are read by the handler trait, which this bench does not implement
enum SupportTool {
    ReadCustomer {
        id: u64,
    },
    UpdateEmail {
        id: u64,
        email: String,
    },
    #[tool(risk = "irreversible")]
    DeleteCustomer {
        id: u64,
    },
    #[tool(name = "loyalty_bonus", dangerous)]
    Bonus {
        id: u64,
        points: u32,
    },
}

/// The call as an LLM API returns it: a tool name and its arguments as JSON text.
const NAME: &str = "update_email";
const ARGUMENTS: &str = r#"{"id": 7, "email": "jane@example.com"}"#;

fn bench_tool_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("tool_parse");
    group.bench_function("from_arguments_text", |b| {
        b.iter(|| {
            let params: Value = serde_json::from_str(black_box(ARGUMENTS)).expect("valid JSON");
            SupportTool::parse(black_box(NAME), params).expect("valid call")
        })
    });
    let value: Value = serde_json::from_str(ARGUMENTS).expect("valid JSON");
    group.bench_function("from_value", |b| {
        b.iter_batched(
            || value.clone(),
            |params| SupportTool::parse(black_box(NAME), params).expect("valid call"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_tool_parse);
criterion_main!(benches);
