// `#[tool(schema)]` describes every field to the model: a field whose type has no JSON Schema is an error at that
// field, naming it and its tool.
use agentguard::Tool;

#[derive(serde::Serialize, serde::Deserialize)]
struct Money {
    cents: u64,
}

#[derive(Tool)]
#[tool(schema)]
enum Billing {
    ReadInvoice { id: u64 },
    ChargeCard { id: u64, amount: Money },
}

fn main() {}
