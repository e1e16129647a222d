// A rig tool whose NAME classifies as dangerous cannot be registered unguarded: the build fails, naming the tool and
// how to wrap it.
use agentguard::rig::GuardedToolSet;
use agentguard::AgentGuard;
use rig_core::tool::Tool;

#[derive(Debug)]
struct Failed;
impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed")
    }
}
impl std::error::Error for Failed {}

struct DropDatabase;

impl Tool for DropDatabase {
    const NAME: &'static str = "dropDatabase";
    type Error = Failed;
    type Args = serde_json::Value;
    type Output = String;
    fn description(&self) -> String {
        "Drop a database".into()
    }
    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({"type": "object"})
    }
    async fn call(&self, _: serde_json::Value) -> Result<String, Failed> {
        Ok("dropped".into())
    }
}

fn main() {
    let guard = AgentGuard::callback(|_| false).no_audit().build();
    let _tools = GuardedToolSet::new(&guard).unguarded(DropDatabase).into_tools();
}
