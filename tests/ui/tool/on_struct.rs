use agentguard::Tool;

#[derive(Tool)]
struct DeleteFile {
    path: String,
}

fn main() {}
