// A tool's field is parsed from JSON, so it needs a concrete type: `impl Trait`, even nested, is one error of ours
// next to the compiler's, not a cascade from the generated code.
use agentguard::Tool;

#[derive(Tool)]
enum Tools {
    DeleteFile { path: Option<impl serde::Serialize> },
}

fn main() {}
