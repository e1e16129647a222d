// Every attribute error of one item is reported in one compile, and the function is still emitted: the call in
// main() does not add a "cannot find function" error.
use agentguard::gate;

#[gate(retries = 3, risk = "severe", skip(db))]
fn delete_file(_path: String) {}

fn main() {
    let _ = delete_file(String::new());
}
