use agentguard::gate;

#[gate(name = "rm", name = "delete")]
fn delete_file(_path: String) {}

fn main() {}
