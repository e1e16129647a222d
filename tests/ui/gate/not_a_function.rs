use agentguard::gate;

#[gate]
struct DeleteFile {
    path: String,
}

fn main() {}
