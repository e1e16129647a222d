//! Evaluating a 50-rule policy for typical calls (issue target: ≤ 1 µs per call). The policy mixes what real ones
//! hold: exact tool names and globs; deny, ask and allow rules; `gt`/`le` on amounts, `under`/`not_under` on paths,
//! `suffix` on addresses, `in` on currencies, a `regex`, `glob`s, agent and server scopes. Calls are evaluated as
//! the guard does (frozen params already in hand, risk already classified).
//!
//! ```text
//! cargo bench -p agentguard-bench --bench policy
//! ```

use std::hint::black_box;

use agentguard::policy::Policy;
use agentguard::{classify, ToolCall};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

/// 50 rules: 10 groups of 5, each group about one family of tools.
fn policy_50() -> Policy {
    let mut text = String::from("default = \"classify\"\nbase_dir = \"/srv/app\"\n");
    for g in 0..10 {
        text.push_str(&format!(
            r#"
[[rule]]
name = "g{g} writes inside the sandbox"
tools = ["write_file_{g}", "edit_file_{g}", "create_directory_{g}"]
when = {{ path = {{ under = "./sandbox/{g}" }} }}
action = "allow"

[[rule]]
name = "g{g} nothing outside the app"
tools = ["*_{g}"]
when = {{ path = {{ exists = true, not_under = "/srv/app" }} }}
action = "deny"
message = "paths outside /srv/app are off limits"

[[rule]]
name = "g{g} refunds over 100 EUR ask"
tools = ["refund_*_{g}", "charge_card_{g}"]
when = {{ amount_eur = {{ gt = 100 }}, currency = {{ in = ["EUR", "USD", "GBP"] }} }}
action = "ask"

[[rule]]
name = "g{g} internal email runs"
tools = ["send_email_{g}"]
servers = ["mail", "smtp-*"]
when = {{ "to.*" = {{ suffix = "@example.com" }}, subject = {{ regex = "^[^\\n]{{1,200}}$" }} }}
action = "allow"

[[rule]]
name = "g{g} interns ask about reports"
tools = ["export_*_{g}"]
agents = ["intern-*"]
when = {{ path = {{ glob = "reports/**/*.{{csv,xlsx}}" }} }}
action = "ask"
"#
        ));
    }
    let p = Policy::from_toml(&text).unwrap();
    assert_eq!(p.rule_names().count(), 50);
    p
}

fn bench_policy(c: &mut Criterion) {
    let policy = policy_50();
    let calls = [
        (
            "refund_order_3",
            json!({"order": 1042, "amount_eur": 250, "currency": "EUR"}),
        ),
        (
            "write_file_7",
            json!({"path": "sandbox/7/notes.md", "content": "hello"}),
        ),
        (
            "send_email_1",
            json!({"to": ["ann@example.com", "bo@example.com"], "subject": "Your refund"}),
        ),
        ("read_customer", json!({"id": 7})),
    ];
    let mut group = c.benchmark_group("policy_50_rules");
    for (tool, params) in calls {
        let call = ToolCall::new(tool, params).agent_id("support-bot").server("mail");
        let risk = classify(tool);
        let decided = policy.evaluate(&call, risk);
        println!("{tool}: {:?} by {:?}", decided.action(), decided.rule());
        group.bench_function(tool, |b| {
            b.iter(|| black_box(policy.evaluate(black_box(&call), risk)).action())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_policy);
criterion_main!(benches);
