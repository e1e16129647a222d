// A dangerous rig tool registers guarded; a tool with a safe name registers unguarded. Both compile.
use agentguard::rig::{Guarded, GuardedToolSet};
use agentguard::{AgentGuard, Risk};
use rig_core::tool::Tool;

#[derive(Debug)]
struct Failed;
impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed")
    }
}
impl std::error::Error for Failed {}

macro_rules! tool {
    ($ty:ident, $name:literal) => {
        struct $ty;
        impl Tool for $ty {
            const NAME: &'static str = $name;
            type Error = Failed;
            type Args = serde_json::Value;
            type Output = String;
            fn description(&self) -> String {
                $name.into()
            }
            fn parameters(&self) -> serde_json::Value {
                serde_json::json!({"type": "object"})
            }
            async fn call(&self, _: serde_json::Value) -> Result<String, Failed> {
                Ok($name.into())
            }
        }
    };
}

tool!(DropDatabase, "dropDatabase");
tool!(SendEmail, "SENDEMAIL");
tool!(ListFiles, "list_files");
tool!(Weather, "weather");

fn main() {
    let guard = AgentGuard::callback(|_| false).no_audit().build();
    let _tools = GuardedToolSet::new(&guard)
        .guarded(DropDatabase)
        .always_ask(SendEmail, Risk::ExternalSend)
        .unguarded(ListFiles)
        .unguarded(Weather)
        .into_tools();
    let _one = Guarded::new(DropDatabase, &guard);
}
