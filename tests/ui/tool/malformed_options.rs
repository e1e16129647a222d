// Options in the wrong shape or the wrong place: each is a spanned error, all in one compile.
use agentguard::Tool;

#[derive(Tool)]
#[tool(crate = agentguard, crate = agentguard)]
enum Tools {
    #[tool(safe = true, name, crate = agentguard)]
    ReadFile { path: String },
}

fn main() {}
