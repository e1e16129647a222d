use agentguard::Tool;

#[derive(Tool)]
#[tool(dangerous)]
enum Tools {
    DeleteFile {
        #[tool(safe)]
        path: String,
    },
}

fn main() {}
