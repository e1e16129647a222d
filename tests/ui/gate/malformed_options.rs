// Options in the wrong shape: each is a spanned error, all in one compile, and the function is still emitted.
use agentguard::gate;

#[gate(name, skip = path, crate, risk = 3, guard = a b)]
fn delete_file(path: String) {
    let _ = path;
}

fn main() {
    let _ = delete_file(String::new());
}
