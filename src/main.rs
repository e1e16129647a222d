//! A bare `cargo run` at the root: the quickstart example, after one line on stderr naming the others.

#[path = "../examples/quickstart.rs"]
mod quickstart;

fn main() {
    eprintln!(
        "running the quickstart; other examples: support_desk, gated_functions, tool_enum, \
         web_approvals (--features web), worker (--features sqlite): `cargo run --example NAME`"
    );
    quickstart::main();
}
