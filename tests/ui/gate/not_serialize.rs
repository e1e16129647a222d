use agentguard::gate;

struct Connection;

#[gate]
fn delete_row(conn: Connection, _id: u64) {
    let _ = conn;
}

fn main() {}
