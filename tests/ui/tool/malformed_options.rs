// Options in the wrong shape: each is a spanned error, all in one compile.
use agentguard::Tool;

#[derive(Tool)]
enum Tools {
    #[tool(safe = true, name, safe)]
    ReadFile { path: String },
}

fn main() {}
