use agentguard::{AgentGuard, Approval, Tool};

/// Every supported variant shape and option.
#[derive(Tool, Debug)]
pub enum Tools {
    /// Named fields, classified as safe by its name.
    Search { query: String, limit: Option<u32> },
    #[tool(name = "rm", risk = "irreversible")]
    DeleteFile { path: String },
    #[tool(dangerous)]
    GrantCredits { user: u64, amount: u32 },
    #[tool(safe)]
    ResetView,
    /// Renamed fields via serde.
    SendEmail {
        #[serde(rename = "to_address")]
        to: String,
    },
    /// A keyword-like handler name.
    Move { from: String, to: String },
}

struct Handler;

impl ToolsHandler for Handler {
    type Output = String;
    fn search(&mut self, query: String, _limit: Option<u32>) -> String {
        query
    }
    fn delete_file(&mut self, approval: Approval<'_, ToolsDeleteFile>) -> String {
        approval.into_args().path
    }
    fn grant_credits(&mut self, approval: Approval<'_, ToolsGrantCredits>) -> String {
        format!("{} to {}", approval.amount, approval.user)
    }
    fn reset_view(&mut self) -> String {
        String::new()
    }
    fn send_email(&mut self, approval: Approval<'_, ToolsSendEmail>) -> String {
        approval.to.clone()
    }
    fn r#move(&mut self, approval: Approval<'_, ToolsMove>) -> String {
        approval.from.clone()
    }
}

fn main() {
    let guard = AgentGuard::callback(|_| true).no_audit().build();
    let tool = Tools::parse("search", serde_json::json!({"query": "x"})).unwrap();
    let _ = guard.dispatch(tool, &mut Handler);
}
