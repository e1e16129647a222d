use agentguard::gate;

#[gate(risk = "catastrophic")]
fn delete_file(_path: String) {}

fn main() {}
