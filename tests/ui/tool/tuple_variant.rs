use agentguard::Tool;

#[derive(Tool)]
enum Tools {
    DeleteFile(String),
}

fn main() {}
