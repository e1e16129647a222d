// `#[tool(schema)]` without agentguard's `schema` feature: one error at the option, saying to turn it on.
use guard::Tool;

#[derive(Tool)]
#[tool(crate = guard, schema)]
enum Tools {
    ReadInvoice { id: u64 },
}

fn main() {}
