use agentguard::gate;

#[gate]
const fn delete_nothing() {}

fn main() {}
