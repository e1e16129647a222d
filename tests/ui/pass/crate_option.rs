// `crate = path`, bare or as a string, names the runtime crate the generated code uses: here through a re-export.
mod deps {
    pub use agentguard;
}

use std::sync::LazyLock;

use agentguard::{ActionDenied, AgentGuard, Tool};

static GUARD: LazyLock<AgentGuard> = LazyLock::new(|| AgentGuard::callback(|_| true).no_audit().build());

#[agentguard::gate(guard = GUARD, crate = crate::deps::agentguard, risk = "irreversible")]
fn delete_file(path: String) -> usize {
    path.len()
}

#[agentguard::gate(guard = GUARD, crate = "::agentguard")]
fn send_mail(to: String) -> usize {
    to.len()
}

#[derive(agentguard::Tool, serde::Serialize, serde::Deserialize)]
#[tool(crate = crate::deps::agentguard)]
enum Tools {
    ReadFile { path: String },
    #[tool(risk = "irreversible")]
    Wipe,
}

#[derive(agentguard::Tool, serde::Serialize, serde::Deserialize)]
#[tool(crate = "agentguard")]
enum MoreTools {
    #[tool(dangerous)]
    Ping,
}

struct Handler;

impl ToolsHandler for Handler {
    type Output = &'static str;
    fn read_file(&mut self, _path: String) -> &'static str {
        "read"
    }
    fn wipe(&mut self, _approval: agentguard::Approval<'_, ToolsWipe>) -> &'static str {
        "wiped"
    }
}

fn main() {
    let _: Result<usize, ActionDenied> = delete_file("a".into());
    let _: Result<usize, ActionDenied> = send_mail("b".into());
    let _ = Tools::NAMES;
    let _ = MoreTools::NAMES;
    let _ = GUARD.dispatch(Tools::Wipe, &mut Handler);
}
