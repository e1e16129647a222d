use agentguard::Tool;

#[derive(Tool)]
enum Tools {
    #[tool(safe, dangerous)]
    ResetView,
}

fn main() {}
