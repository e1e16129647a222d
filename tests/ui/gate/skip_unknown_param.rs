use agentguard::gate;

#[gate(skip(conn))]
fn delete_file(_path: String) {}

fn main() {}
