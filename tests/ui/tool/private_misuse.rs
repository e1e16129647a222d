use agentguard::guard::Gating;
use agentguard::{AgentGuard, Approval, Tool, ToolCall};

#[derive(Tool)]
enum Tools {
    DeleteFile { path: String },
}

struct Files;

impl ToolsHandler for Files {
    type Output = ();
    fn delete_file(&mut self, _approval: Approval<'_, ToolsDeleteFile>) {}
}

fn main() {
    let guard = AgentGuard::callback(|_| false).no_audit().build();
    // The internals generated code uses decide and run; none of them makes an Approval.
    let allowed = agentguard::__private::approve(
        agentguard::__private::Which::Named(Some(&guard)),
        ToolCall::new("read_logs", serde_json::json!({})),
        Gating::Never,
        None,
    )
    .unwrap();
    Files.delete_file(allowed);
}
