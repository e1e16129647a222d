// agentguard is `guard` in this package's Cargo.toml and the macros are not told: one error each, naming the
// `crate = guard` to write, and no cascade of unresolved `::agentguard` paths.
#[guard::gate]
fn delete_file(path: String) -> usize {
    path.len()
}

#[derive(guard::Tool, serde::Serialize, serde::Deserialize)]
enum SupportTool {
    ReadCustomer { id: u64 },
}

fn main() {
    let _ = delete_file(String::new());
}
