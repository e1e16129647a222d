use agentguard::Tool;

#[derive(Tool)]
enum Tools {
    #[tool(risky)]
    DeleteFile { path: String },
}

fn main() {}
