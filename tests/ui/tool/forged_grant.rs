use agentguard::guard::Gating;
use agentguard::{AgentGuard, ToolCall};

fn main() {
    let guard = AgentGuard::callback(|_| false).no_audit().build();
    let allowed = agentguard::__private::approve(
        agentguard::__private::Which::Named(Some(&guard)),
        ToolCall::new("read_logs", serde_json::json!({})),
        Gating::Never,
        None,
    )
    .unwrap();
    // A Grant (what mints Approvals) is made only by the guard's dispatch: no struct literal, no constructor.
    let _grant = agentguard::tool::Grant { allowed: &allowed };
}
