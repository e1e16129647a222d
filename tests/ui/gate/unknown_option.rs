use agentguard::gate;

#[gate(timeout = 30)]
fn delete_file(_path: String) {}

fn main() {}
