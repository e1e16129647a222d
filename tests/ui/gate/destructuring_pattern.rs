use agentguard::gate;

#[gate]
fn move_file((_from, _to): (String, String)) {}

fn main() {}
