// `#[tool(schema)]` with the `schema` feature: definitions for every variant, field types with a derived schema.
use agentguard::tool::ToolDefinitions;
use agentguard::Tool;

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Money {
    cents: u64,
}

#[derive(Tool)]
#[tool(schema)]
enum Billing {
    /// Read an invoice.
    ReadInvoice { id: u64 },
    /// Charge a card.
    ChargeCard {
        id: u64,
        /// How much.
        amount: Money,
        #[serde(default)]
        note: Option<String>,
    },
    Ping,
}

// Without `#[tool(schema)]`, a field type needs no schema, even with the feature on.
#[derive(Tool)]
enum Plain {
    Charge { amount: NoSchema },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct NoSchema(u64);

fn main() {
    let defs = Billing::definitions();
    assert_eq!(defs.len(), 3);
    let _ = <Plain as agentguard::Tool>::NAMES;
}
