// agentguard is `guard` in this package's Cargo.toml: `crate = guard` points the generated code there, and the
// gated function and the tool enum run through a guard.
use guard::{AgentGuard, Approval, Tool};

#[guard::gate(guard = GUARD, crate = guard, risk = "irreversible", skip(log), redact(token))]
fn delete_file(path: String, token: String, log: &mut Vec<String>) -> std::io::Result<usize> {
    log.push(format!("deleted {path}"));
    Ok(path.len() + token.len())
}

#[guard::gate(guard = GUARD, crate = "guard")]
async fn send_mail(to: String) -> usize {
    to.len()
}

#[derive(guard::Tool, serde::Serialize, serde::Deserialize, Debug)]
#[tool(crate = guard)]
enum SupportTool {
    ReadCustomer { id: u64 },
    #[tool(risk = "irreversible")]
    DeleteCustomer { id: u64 },
}

struct Handler;

impl SupportToolHandler for Handler {
    type Output = u64;
    fn read_customer(&mut self, id: u64) -> u64 {
        id
    }
    fn delete_customer(&mut self, approval: Approval<'_, SupportToolDeleteCustomer>) -> u64 {
        approval.id + 100
    }
}

static GUARD: std::sync::LazyLock<AgentGuard> =
    std::sync::LazyLock::new(|| AgentGuard::callback(|_| true).no_audit().build());

fn main() {
    let mut log = Vec::new();
    let deleted = delete_file("notes.txt".into(), "secret".into(), &mut log).expect("approved");
    assert_eq!(deleted.expect("ran"), 15);
    assert_eq!(log, ["deleted notes.txt"]);
    let _ = send_mail("a@example.com".into());

    let tool = SupportTool::parse("delete_customer", serde_json::json!({"id": 7})).expect("parses");
    assert_eq!(tool.name(), "delete_customer");
    assert_eq!(GUARD.dispatch(tool, &mut Handler).expect("approved"), 107);
    let read = SupportTool::ReadCustomer { id: 1 };
    assert_eq!(read.params().expect("serializes"), serde_json::json!({"id": 1}));
    assert_eq!(GUARD.dispatch(read, &mut Handler).expect("safe"), 1);
}
