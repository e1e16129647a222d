use agentguard::Tool;

#[derive(Tool)]
enum Tools {
    #[tool(risk = "irreversible")]
    Wipe { disk: String },
}

struct Disks;

// Implementing the gated method with its fields instead of its Approval does not match the trait.
impl ToolsHandler for Disks {
    type Output = ();
    fn wipe(&mut self, _disk: String) {}
}

fn main() {}
